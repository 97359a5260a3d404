"""The study's grid: which runs exist, running the missing ones, and the results table.

Both entry scripts are thin: they build RunSpecs here, hand them to ``run_grid``, and
redraw every aggregate figure from the results CSV that ``run_grid`` rewrites.

Results tree (one directory per run):
    betavae_results/<dataset>/beta_<β>/seed_<s>/
    lambda_betavae_results/<dataset>/beta_<β>/lambda_<λ>/seed_<s>/
each holding config.json, checkpoint.pt, the final weights, train_log.csv,
metrics.json (or failed.json) and the run's figures; the aggregate results.csv,
summary.txt and figures sit at the stage root.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import analysis
import datasets
import visualizations as vis
from analysis import percent_change_rows, percent_change_text
from models import BetaVAE, num_parameters
from config import RUN_DEFINING, Config, ConfigError, add_config_arguments, from_args
from training import (FAILED, METRICS, ImageSource, RunResult, RunSpec, checkpoint_step, evaluate, mark_failed,
                      metric_indices, save_weights, train_pack)
from utils import (LockHeld, RunLock, fmt_number, mean_std, read_csv, read_json, resolve_device,
                   write_csv, write_json, write_text)

LOCK = "lock"
ROOT_NAMES = {"beta": "betavae_results", "lambda": "lambda_betavae_results"}
RESULT_COLUMNS = ["stage", "dataset", "source", "origin", "beta", "lambda", "seed", "steps", "status",
                  "train_window_nll", "train_window_kl", "train_window_l2", "train_window_total",
                  "heldout_neg_elbo", "heldout_recon", "heldout_kl", "heldout_mean_image_nll", "heldout_images",
                  "mig", "sap", "i_m", "i_m_normalized", "wall_time_s", "pack_size", "reason"]


def stage_root(cfg: Config, stage: str) -> Path:
    """Where a stage's results live; demo results never mix with real-data results."""
    if cfg.results_dir:
        return Path(cfg.results_dir) / ROOT_NAMES[stage]
    return Path("demo_results" if cfg.demo else ".") / ROOT_NAMES[stage]


def beta_run_dir(root: Path, dataset: str, beta: float, seed: int) -> Path:
    return root / dataset / f"beta_{fmt_number(beta)}" / f"seed_{seed}"


def beta_specs(cfg: Config) -> list[RunSpec]:
    root = stage_root(cfg, "beta")
    return [RunSpec("beta", d, b, 0.0, s, cfg.steps, beta_run_dir(root, d, b, s))
            for d in cfg.datasets for b in cfg.betas for s in cfg.seeds]


def lambda_specs(cfg: Config) -> list[RunSpec]:
    root, beta_root = stage_root(cfg, "lambda"), stage_root(cfg, "beta")
    specs = []
    for d in cfg.datasets:
        for b in cfg.betas:
            for lam in cfg.lambdas:
                for s in cfg.seeds:
                    parent = RunSpec("beta", d, b, 0.0, s, cfg.steps, beta_run_dir(beta_root, d, b, s))
                    run_dir = root / d / f"beta_{fmt_number(b)}" / f"lambda_{fmt_number(lam)}" / f"seed_{s}"
                    specs.append(RunSpec("lambda", d, b, lam, s, cfg.lambda_steps, run_dir,
                                         init_from=parent.weights_path))
    return specs


def check_compatible(cfg, root: Path, run_defining: tuple[str, ...] = RUN_DEFINING) -> None:
    """A results directory belongs to one set of run-defining settings (any settings dataclass)."""
    saved_path = root / "config.json"
    if saved_path.exists():
        try:
            saved = read_json(saved_path)
        except (OSError, ValueError) as err:
            raise ConfigError(f"config: {saved_path} is unreadable ({err}); "
                              f"move it aside or use another --results-dir") from None
        for key in run_defining:
            ours = cfg.to_dict()[key]
            ours = list(ours) if isinstance(ours, tuple) else ours
            if key in saved and saved[key] != ours:
                raise ConfigError(
                    f"config: {root} was made with {key}={saved[key]!r}, not {ours!r}; "
                    f"use another --results-dir or move that directory aside")
    write_json(saved_path, cfg.to_dict())


def check_data_present(cfg: Config) -> None:
    if cfg.source != "real":
        return
    missing = [(d, p) for d in cfg.datasets
               for p in datasets.missing_files(d, cfg.data_dir, variant=cfg.mpi3d_variant)]
    if missing:
        lines = ["The real dataset files are missing:"]
        for d, p in missing:
            how = datasets.how_to_get(d, variant=cfg.mpi3d_variant, data_dir=cfg.data_dir)
            lines.append(f"  {p}\n    get it: {how}")
        lines.append("Run with --demo (procedural stand-ins, no downloads) to try everything without them.")
        raise SystemExit("\n".join(lines))


def run_one(spec: RunSpec, cfg: Config, dataset, device) -> dict | None:
    """Train, evaluate and draw one run (a pack of one); None if another process is training it."""
    rows = run_pack([spec], cfg, dataset, device)
    return rows[0] if rows else None


def run_pack(specs: list[RunSpec], cfg: Config, dataset, device, source: ImageSource | None = None) -> list[dict]:
    """Train runs of one dataset together (same step, same step target), then evaluate
    and draw each; returns their rows. Runs another process holds are skipped."""
    locks, todo, rows = [], [], []
    try:
        for spec in specs:
            try:
                lock = RunLock(spec.run_dir / LOCK).acquire()
            except LockHeld as err:
                tqdm.write(f"skipped: {err}")
                continue
            locks.append(lock)
            if spec.is_done():              # finished by another process meanwhile
                rows.append(read_row(spec))
            else:
                todo.append(spec)
        if todo:
            rows += _train_and_evaluate(todo, cfg, dataset, device, source,
                                        heartbeat=lambda: [lk.touch() for lk in locks])
    finally:
        for lock in locks:
            lock.release()
    return rows


def _train_and_evaluate(specs: list[RunSpec], cfg: Config, dataset, device, source, heartbeat) -> list[dict]:
    for spec in specs:
        write_json(spec.run_dir / "config.json", {**cfg.to_dict(), "run": {
            "stage": spec.stage, "dataset": spec.dataset, "beta": spec.beta, "lambda": spec.lam,
            "seed": spec.seed, "steps": spec.steps, "init_from": spec.init_from}})
    tic, rows = time.perf_counter(), []

    def finish_run(result: RunResult) -> None:
        spec = result.spec
        if result.failure is not None:
            rows.append(mark_failed(spec, result.failure.step, str(result.failure)))
            return
        (spec.run_dir / FAILED).unlink(missing_ok=True)
        save_weights(result.model, spec.weights_path)
        out = evaluate(spec, cfg, dataset, result, device, wall_time_s=time.perf_counter() - tic)
        out["row"]["pack_size"] = len(specs)
        if cfg.figures:
            draw_run_figures(spec, cfg, dataset, result.model, device, out["mi"])
        write_json(spec.run_dir / METRICS, out)      # last: its presence marks the run done
        rows.append(out["row"])

    train_pack(specs, cfg, dataset, device, source=source, heartbeat=heartbeat, on_result=finish_run)
    return rows


def draw_run_figures(spec: RunSpec, cfg: Config, dataset, model, device, mi) -> None:
    points = metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
    vis.save_reconstructions(model, dataset.images(points["test"][:64]), spec.run_dir, device)
    vis.save_traversal_gif(model, dataset.images(points["distinct"]), spec.run_dir / "traversal.gif", device)
    vis.save_mi_heatmap(np.asarray(mi), dataset.factor_names, spec.run_dir / "mi_heatmap.png",
                        title=f"I(factor; latent), {spec.name}")


def read_row(spec: RunSpec) -> dict | None:
    for name in (METRICS, FAILED):
        path = spec.run_dir / name
        if path.exists():
            saved = read_json(path)
            return saved.get("row", saved)
    return None


def run_grid(specs: list[RunSpec], cfg: Config, retry_failed: bool = False) -> list[dict]:
    """Train and evaluate every run that is not finished; returns all rows (done, failed)."""
    device = resolve_device(cfg.device)
    todo = [s for s in specs if not s.is_done() and (retry_failed or not (s.run_dir / FAILED).exists())]
    missing_parents = sorted({str(s.init_from) for s in todo if s.init_from and not s.init_from.exists()})
    if missing_parents:
        raise SystemExit(
            f"missing β checkpoint {missing_parents[0]}" +
            (f" (and {len(missing_parents) - 1} more)" if len(missing_parents) > 1 else "") +
            f": train it first with `python main_beta.py {_grid_flags(cfg)}`")
    print(f"{len(specs)} runs in the grid, {len(specs) - len(todo)} already finished or failed, "
          f"{len(todo)} to train on {device}")
    # Open (and so validate) every dataset before training anything: a bad file should
    # fail in seconds, not after the runs of the datasets before it.
    data = {name: datasets.load_dataset(name, source=cfg.source, data_dir=cfg.data_dir,
                                        variant=cfg.mpi3d_variant)
            for name in dict.fromkeys(spec.dataset for spec in todo)}
    for name, dataset in data.items():
        print(f"{name}: {dataset!r}; model {num_parameters(BetaVAE(dataset.channels, cfg.latent_dim)):,} parameters")
    pack_size = cfg.pack_size or default_pack_size(device)
    if device.type == "cuda":
        # Pick the fastest convolution algorithms for the pack's fixed shapes. GPU runs are
        # reproducible to float tolerance only (cuDNN's backward kernels use atomics anyway).
        torch.backends.cudnn.benchmark = True
    with tqdm(total=len(todo), desc="runs", position=0, unit="run", dynamic_ncols=True) as bar:
        for name, dataset in data.items():
            source = ImageSource(dataset, device)       # on a GPU: the whole dataset, once
            for pack in form_packs([s for s in todo if s.dataset == name], pack_size):
                for row in run_pack(pack, cfg, dataset, device, source):
                    bar.set_postfix_str(_postfix(row))
                bar.update(len(pack))
    return [row for row in map(read_row, specs) if row is not None]


def default_pack_size(device) -> int:
    """Runs per pack when the config leaves it to the device (pack_size 0). A GPU needs
    many small runs to fill it. A CPU pack runs its runs side by side, one per core
    (engine.py), so two per core keep every core busy (benchmarks/throughput.py)."""
    return 32 if device.type == "cuda" else 2 * torch.get_num_threads()


def form_packs(specs: list[RunSpec], pack_size: int) -> list[list[RunSpec]]:
    """Consecutive runs (grid order: β, then seed) that can train together: same step
    target and same step to resume from, at most pack_size of them."""
    groups = defaultdict(list)
    for spec in specs:
        groups[(spec.steps, checkpoint_step(spec))].append(spec)
    return [group[i:i + pack_size] for group in groups.values() for i in range(0, len(group), pack_size)]


def _postfix(row: dict) -> str:
    if row["status"] != "done":
        return f"{row['dataset']} β={fmt_number(row['beta'])} FAILED"
    return f"last: MIG={row['mig']:.3f} SAP={row['sap']:.3f} NLL={row['train_window_nll']:.1f}"


def _grid_flags(cfg: Config) -> str:
    if cfg.demo:
        return "--demo"
    return (f"--datasets {' '.join(cfg.datasets)} --beta {' '.join(map(fmt_number, cfg.betas))} "
            f"--seeds {' '.join(map(str, cfg.seeds))} --steps {cfg.steps}")


# --- tables -----------------------------------------------------------------------------
SUMMARY_METRICS = ("train_window_nll", "heldout_recon", "heldout_mean_image_nll", "heldout_neg_elbo",
                   "mig", "sap", "i_m", "i_m_normalized")


def summary_text(rows: list[dict], stage: str) -> str:
    """mean ± std over seeds per (dataset, β[, λ]) of every reported number."""
    done = [r for r in rows if r["status"] == "done"]
    groups = defaultdict(list)
    for r in done:
        groups[(r["dataset"], r["beta"], r["lambda"])].append(r)
    lines = [f"{ROOT_NAMES[stage]}: mean ± std over seeds (sample std, ddof=1)",
             "train_window_nll = mean training BCE over the last loss_window steps (the paper's 'NLL');",
             "heldout_neg_elbo = negative ELBO on images never trained on; MI-based metrics use",
             "20-bin histograms of encoder means on the train metric points; SAP = discrete LinearSVC variant.", ""]
    for (d, b, lam), group in sorted(groups.items()):
        key = f"{d:9s} β={fmt_number(b):>3s}" + (f" λ={fmt_number(lam):>3s}" if stage == "lambda" else "")
        cells = "  ".join(f"{m}={mean_std([r.get(m) for r in group])}" for m in SUMMARY_METRICS)
        lines.append(f"{key}  n={len(group)}  {cells}")
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        lines += ["", f"{len(failed)} failed run(s):"]
        lines += [f"  {r['dataset']} β={fmt_number(r['beta'])} λ={fmt_number(r['lambda'])} "
                  f"seed={r['seed']} at step {r['steps']}: {r.get('reason')}" for r in failed]
    return "\n".join(lines) + "\n"


def finish(rows: list[dict], specs: list[RunSpec], cfg: Config, stage: str) -> Path:
    """Rewrite the results table, summary and aggregate figures from all finished runs."""
    root = stage_root(cfg, stage)
    write_csv(root / "results.csv", rows, RESULT_COLUMNS)
    rows = read_csv(root / "results.csv")       # everything below is drawn from the table itself
    write_text(root / "summary.txt", summary_text(rows, stage))
    missing = len(specs) - len(rows)
    if cfg.figures and any(r["status"] == "done" for r in rows):
        if stage == "beta":
            vis.metric_boxplots(rows, root / "metric_boxplots_across_datasets.png")
        else:
            vis.lambda_heatmaps(rows, root / "metric_heatmaps_across_datasets.png")
    if stage == "lambda":
        change = percent_change_rows(rows)
        write_csv(root / "percent_change.csv", change)
        write_text(root / "percent_change.txt", percent_change_text(change))
    analysis.draw(rows, root, stage, specs, figures=cfg.figures)
    if missing:
        print(f"note: {missing} of {len(specs)} runs have no results yet; figures show what exists")
    return root


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line instead of a 20-line usage dump: the flags are one --help away.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def main(stage: str, argv=None, description: str = "") -> Path:
    import import_original  # here: both import this module
    import launcher
    parser = Parser(description=description)
    parser.add_argument("--retry-failed", action="store_true", help="retrain runs that failed before")
    parser.add_argument("--import-original", metavar="DIR",
                        help="read the original code's published runs (DIR/betavae_results/<dSprites|Shapes3D|"
                             "MPI3D>/*.npz, *.pth; lambda_betavae_results/ likewise) into this stage's results")
    add_config_arguments(parser)
    launcher.add_launcher_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = from_args(args, stage=stage)
        if args.import_original:
            cfg = import_original.settings(cfg)
        resolve_device(cfg.device)
        root = stage_root(cfg, stage)
        check_compatible(cfg, root)
    except (ConfigError, RuntimeError) as err:
        parser.exit(2, f"{err}\n")
    specs = beta_specs(cfg) if stage == "beta" else lambda_specs(cfg)
    if args.import_original:
        rows, specs = import_original.import_stage(args.import_original, cfg, stage, specs)
        return finish(rows, specs, cfg, stage)
    # --status, --collect and --launcher slurm are handled there; local training goes on here.
    if launcher.dispatch(args, launcher.study_stage(stage, cfg, specs, argv, retry_failed=args.retry_failed)):
        return root
    print("resolved config:\n" + cfg.to_json())
    check_data_present(cfg)
    tic = time.perf_counter()
    try:
        rows = run_grid(specs, cfg, retry_failed=args.retry_failed)
    except datasets.DataError as err:
        parser.exit(2, f"data error: {err}\n")
    root = finish(rows, specs, cfg, stage)
    done = sum(r["status"] == "done" for r in rows)
    print(f"done: {done} runs finished ({len(specs)} in grid) in {time.perf_counter() - tic:.0f} s; "
          f"results in {root}/results.csv, figures and summary in {root}/")
    return root


if __name__ == "__main__":
    sys.exit("run main_beta.py or main_lambda.py")
