"""The λβ-VAE study (Vu, Wan & Wei 2026): its grid, running it, and its tables and figures.

    main_beta.py / main_lambda.py -> main(stage)
        settings  config.from_args                   (config.py defaults, --demo, flags)
        grid      beta_specs / lambda_specs          (one runs.RunSpec per dataset, β, [λ,] seed)
        train     run_grid -> family.run_grid with FAMILIES[stage] (packs of runs of one dataset, training.Pack)
        evaluate  evaluation.evaluate, per run as it leaves its pack; its figures
        summarize results.csv, summary, aggregate figures at the stage root

Results tree (one folder per run, see lbvae/pipeline/runs.py for what it holds):
    betavae_results/<dataset>/beta_<β>/seed_<s>/
    lambda_betavae_results/<dataset>/beta_<β>/lambda_<λ>/seed_<s>/
with results.csv, summary.txt and the figures across datasets at the stage root. Another
objective (--objective; config.OBJECTIVES) has its own roots and names its swept weight:
    annealedvae_results/<dataset>/c_max_<C>/seed_<s>/, lambda_annealedvae_results/..., and so on,
so one results tree never holds two objectives.
``--launcher slurm`` hands the same grid to lbvae/pipeline/launcher.py instead of training here.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import visualizations as vis
from config import (
    OBJECTIVES,
    RUN_DEFINING,
    STAGE_RUN_DEFINING,
    ZOO_WEIGHTS,
    Config,
    ConfigError,
    add_config_arguments,
    from_args,
    from_dict,
    grid_weights,
    validate,
)
from lbvae.analysis import evidence, import_original, zoo
from lbvae.analysis import report as analysis
from lbvae.analysis.report import percent_change_rows, percent_change_text
from lbvae.pipeline import family, launcher, runs
from lbvae.pipeline.engine import LOSS_KEYS
from lbvae.pipeline.evaluation import evaluate, metric_indices
from lbvae.pipeline.family import Family
from lbvae.pipeline.runs import RESULT_COLUMNS, RunSpec, weight_symbol
from lbvae.pipeline.training import ImageFeed, Pack, discriminator_path, new_pack
from models import BetaVAE, num_parameters
from utils import fmt_number, mean_std, write_csv, write_text

ROOT_NAMES = {"beta": "betavae_results", "lambda": "lambda_betavae_results"}


def root_name(cfg: Config, stage: str) -> str:
    """betavae_results / lambda_betavae_results, or the objective's own (annealedvae_results, ...)."""
    if cfg.objective == "beta":
        return ROOT_NAMES[stage]
    name = f"{OBJECTIVES[cfg.objective].root}_results"
    return name if stage == "beta" else f"lambda_{name}"


def stage_root(cfg: Config, stage: str) -> Path:
    return runs.stage_root(cfg, root_name(cfg, stage))


# --- the grid -----------------------------------------------------------------------------
def weight_folder(cfg: Config, weight: float) -> str:
    """beta_<β>, or the objective's swept weight and value (c_max_25, lambda_od_10)."""
    return f"{OBJECTIVES[cfg.objective].weight}_{fmt_number(weight)}"


def beta_run_dir(root: Path, dataset: str, beta: float, seed: int, cfg: Config | None = None) -> Path:
    folder = weight_folder(cfg, beta) if cfg is not None else f"beta_{fmt_number(beta)}"
    return root / dataset / folder / f"seed_{seed}"


def beta_specs(cfg: Config) -> list[RunSpec]:
    root = stage_root(cfg, "beta")
    return [RunSpec("beta", d, b, 0.0, s, cfg.steps, beta_run_dir(root, d, b, s, cfg), objective=cfg.objective)
            for d in cfg.datasets for b in grid_weights(cfg) for s in cfg.seeds]


def lambda_specs(cfg: Config) -> list[RunSpec]:
    """Each λ run continues the final weights of the β-stage run of its (dataset, weight, seed)."""
    root, beta_root = stage_root(cfg, "lambda"), stage_root(cfg, "beta")
    specs = []
    for d in cfg.datasets:
        for b in grid_weights(cfg):
            for lam in cfg.lambdas:
                for s in cfg.seeds:
                    parent = RunSpec("beta", d, b, 0.0, s, cfg.steps, beta_run_dir(beta_root, d, b, s, cfg),
                                     objective=cfg.objective)
                    run_dir = root / d / weight_folder(cfg, b) / f"lambda_{fmt_number(lam)}" / f"seed_{s}"
                    specs.append(RunSpec("lambda", d, b, lam, s, cfg.lambda_steps, run_dir,
                                         init_from=parent.weights_path, objective=cfg.objective))
    return specs


# --- the family ---------------------------------------------------------------------------
class LambdaBeta(Family):
    """The λβ-VAE as lbvae/pipeline/family.py trains it: packs of runs of one dataset (training.Pack),
    MIG, SAP and I_m (evaluation.evaluate), reconstructions, traversal and MI heatmap.
    One instance per stage (``FAMILIES``): --eval-only reads a run of its stage."""
    label = "runs"
    config_class = Config
    columns = RESULT_COLUMNS
    log_keys = LOSS_KEYS
    score_keys = ("mig", "sap", "i_m")

    outputs = "figures and summary"

    def __init__(self, stage: str):
        self.stage, self.script = stage, f"main_{stage}.py"
        # A cell's swept weight goes to its job as --sweep: every objective's grid flag.
        self.cell_flags = (("dataset", "datasets"), ("beta", "sweep"),
                           *((("lambda", "lambdas"),) if stage == "lambda" else ()), ("seed", "seeds"))

    def specs(self, cfg: Config) -> list[RunSpec]:
        return beta_specs(cfg) if self.stage == "beta" else lambda_specs(cfg)

    def summarize(self, rows: list[dict], specs: list[RunSpec], cfg: Config) -> Path:
        return summarize(rows, specs, cfg, self.stage)

    def parent(self, cfg: Config) -> tuple[Path, str] | None:
        return (stage_root(cfg, "beta"), "main_beta.py") if self.stage == "lambda" else None

    def root(self, cfg: Config) -> Path:
        return stage_root(cfg, self.stage)

    def run_defining(self) -> tuple[str, ...]:
        return STAGE_RUN_DEFINING[self.stage]

    def check_todo(self, todo: list[RunSpec], cfg: Config) -> None:
        check_parents(todo, cfg)

    def pack_size(self, cfg: Config, device) -> int:
        return cfg.pack_size or default_pack_size(device)

    def feed(self, dataset, device) -> ImageFeed:
        return ImageFeed(dataset, device)       # on a GPU: the whole dataset, once

    def describe(self, cfg: Config, dataset) -> str:
        return f"model {num_parameters(BetaVAE(dataset.channels, cfg.latent_dim)):,} parameters"

    def identity(self, spec: RunSpec) -> dict:
        return {"stage": spec.stage, "dataset": spec.dataset, "beta": spec.beta, "lambda": spec.lam,
                "seed": spec.seed, "steps": spec.steps, "init_from": spec.init_from}

    def trainee(self, specs: list[RunSpec], cfg: Config, dataset, device, feed) -> Pack:
        return new_pack(specs, cfg, dataset, device, feed)

    def evaluate(self, result, cfg: Config, dataset, device, wall_time_s: float, pack_size: int) -> dict:
        scores = evaluate(result.spec, cfg, dataset, result.model, result.window_means() or {}, result.step,
                          device, wall_time_s)
        scores["row"]["pack_size"] = pack_size
        return scores

    def draw(self, spec: RunSpec, cfg: Config, dataset, model, device, out_dir: Path, scores: dict) -> None:
        points = metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
        vis.save_reconstructions(model, dataset.images(points["test"][:64]), out_dir, device)
        vis.save_traversal_gif(model, dataset.images(points["distinct"]), out_dir / "traversal.gif", device)
        vis.save_mi_heatmap(np.asarray(scores["mi"]), dataset.factor_names, out_dir / "mi_heatmap.png",
                            title=f"I(factor; latent), {spec.name}", floor=scores["mi_floor"],
                            num_bins=cfg.num_bins)

    def postfix(self, row: dict) -> str:
        if row["status"] != "done":
            return f"{row['dataset']} {weight_symbol(row.get('objective'))}={fmt_number(row['beta'])} FAILED"
        return f"last: MIG={row['mig']:.3f} SAP={row['sap']:.3f} NLL={row['train_window_nll']:.1f}"

    def config_from_saved(self, saved: dict, given: dict) -> Config:
        return validate(from_dict(saved).replace(**given))

    def config_from_args(self, args) -> Config:
        return from_args(args, stage=self.stage)

    def cell_values(self, cfg: Config, flag: str) -> tuple:
        return grid_weights(cfg) if flag == "sweep" else getattr(cfg, flag)

    def cell_given(self, given: dict, flag: str):
        return given.get("sweep", given.get("betas")) if flag == "sweep" else given.get(flag)

    def cell_spec(self, cfg: Config, cell: dict, path: Path) -> tuple[RunSpec, Config]:
        steps = cfg.lambda_steps if self.stage == "lambda" else cfg.steps
        return RunSpec(self.stage, cell["dataset"], float(cell["beta"]), float(cell.get("lambda", 0.0)),
                       int(cell["seed"]), steps, path.parent, objective=cfg.objective), cfg

    def load_model(self, cfg: Config, spec: RunSpec, channels: int, state: dict, device) -> BetaVAE:
        model = BetaVAE(channels, cfg.latent_dim).to(device, memory_format=torch.channels_last)
        model.load_state_dict(state)
        return model


FAMILIES = {stage: LambdaBeta(stage) for stage in ROOT_NAMES}


def run_grid(specs: list[RunSpec], cfg: Config, retry_failed: bool = False) -> list[dict]:
    """Train and evaluate every run that is not finished; returns all rows (done, failed)."""
    return family.run_grid(specs, cfg, FAMILIES[specs[0].stage if specs else "beta"], retry_failed)


def run_pack(specs: list[RunSpec], cfg: Config, dataset, device, feed: ImageFeed | None = None) -> list[dict]:
    """Train runs of one dataset together; evaluate and draw each as it leaves the pack."""
    return family.run_pack(specs, cfg, FAMILIES[specs[0].stage], dataset, device, feed)


def check_parents(todo: list[RunSpec], cfg: Config) -> None:
    """λ runs need the final weights of their β runs: one line naming the first missing
    one, why (not trained yet, or failed) and the β command that trains it."""
    # The β runs continued must have this command's β settings (a λ run made with
    # --steps 8 must not continue weights trained for 4).
    runs.check_identity([RunSpec("beta", s.dataset, s.beta, 0.0, s.seed, cfg.steps, s.init_from.parent,
                                 objective=s.objective) for s in todo if s.init_from], cfg)
    needed = [s.init_from for s in todo if s.init_from]
    if cfg.objective == "factor":               # a FactorVAE λ run continues its discriminator too
        needed += [discriminator_path(path) for path in needed]
    missing = sorted({path for path in needed if not path.exists()})
    if not missing:
        return
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    failed = runs.read_saved(missing[0].parent / runs.FAILED)
    why = f": that β run failed ({failed.get('reason')})" if failed else ""
    retry = " --retry-failed" if failed else ""
    raise SystemExit(f"missing β checkpoint {missing[0]}{more}{why}; train it first with "
                     f"`python main_beta.py {_grid_flags(cfg)}{retry}`")


def default_pack_size(device) -> int:
    """Runs per pack when the config leaves it to the device (pack_size 0). A GPU needs
    many small runs to fill it. A CPU pack runs its runs side by side, one per core
    (lbvae/pipeline/engine.py), so two per core keep every core busy (benchmarks/throughput.py)."""
    return 32 if device.type == "cuda" else 2 * torch.get_num_threads()


def _grid_flags(cfg: Config) -> str:
    """The flags that make main_beta.py train the β runs this λ grid continues: the grid,
    where it lives, and every β run-defining setting that differs from its preset."""
    base = from_args(argparse.Namespace(demo=cfg.demo, preset=cfg.preset or None))
    lead = ("--demo",) if cfg.demo else (f"--preset {cfg.preset}",) if cfg.preset else ()
    grid = ("sweep",) if cfg.sweep else ("betas",) if cfg.objective == "beta" else ()
    return runs.command_flags(cfg, base, always=("datasets", *grid, "seeds"),
                              keys=("results_dir", "data_dir") + RUN_DEFINING, lead=lead)


# --- tables -----------------------------------------------------------------------------
SUMMARY_METRICS = ("train_window_nll", "heldout_recon", "heldout_mean_image_nll", "heldout_neg_elbo",
                   "mig", "sap", "i_m", "i_m_normalized")


def summary_text(rows: list[dict], stage: str, objective: str = "beta") -> str:
    """mean ± std over seeds per (dataset, swept weight[, λ]) of every reported number."""
    symbol = weight_symbol(objective)
    done = [r for r in rows if r["status"] == "done"]
    # Runs made with other run-defining settings are never pooled: they get their own lines.
    columns = runs.setting_columns(stage)
    varying = [k for k, c in columns.items() if len({runs.setting_text(r.get(c)) for r in done}) > 1]
    groups = defaultdict(list)
    for r in done:
        settings = " ".join(f"{k}={runs.setting_text(r.get(columns[k])) or '?'}" for k in varying)
        groups[(r["dataset"], r["beta"], r["lambda"], settings)].append(r)
    title = "" if objective == "beta" else f" ({OBJECTIVES[objective].title}, {symbol} = its swept weight)"
    lines = [f"{root_name(Config(objective=objective), stage)}{title}: mean ± std over seeds (sample std, ddof=1)",
             "train_window_nll = mean training BCE over the last loss_window steps (the paper's 'NLL');",
             "heldout_neg_elbo = negative ELBO on images never trained on; MI-based metrics use",
             "num_bins-bin histograms (20 in the paper) of encoder means on the train metric points;",
             "SAP = discrete LinearSVC variant. Settings of every run: the columns of results.csv.", ""]
    if varying:
        lines.insert(-1, f"The runs differ in {', '.join(varying)}: each line pools runs of one setting only.")
    for (d, b, lam, settings), group in sorted(groups.items()):
        key = (f"{d:9s} {symbol}={fmt_number(b):>3s}" + (f" λ={fmt_number(lam):>3s}" if stage == "lambda" else "")
               + (f" [{settings}]" if settings else ""))
        cells = "  ".join(f"{m}={mean_std([r.get(m) for r in group])}" for m in SUMMARY_METRICS)
        lines.append(f"{key}  n={len(group)}  {cells}")
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        lines += ["", f"{len(failed)} failed run(s):"]
        lines += [f"  {r['dataset']} {symbol}={fmt_number(r['beta'])} λ={fmt_number(r['lambda'])} "
                  f"seed={r['seed']} at step {r['steps']}: {r.get('reason')}" for r in failed]
    return "\n".join(lines) + "\n"


def summarize(rows: list[dict], specs: list[RunSpec], cfg: Config, stage: str) -> Path:
    """Rewrite the results table, summary and aggregate figures from all finished runs."""
    root = runs.output_root(stage_root(cfg, stage))
    rows = runs.write_results(root, rows, RESULT_COLUMNS, OBJECTIVES[cfg.objective].weight)
    write_text(root / "summary.txt", summary_text(rows, stage, cfg.objective))
    pooled = runs.figure_rows(rows, cfg, stage)
    if cfg.figures and any(r["status"] == "done" for r in pooled):
        if stage == "beta":
            vis.metric_boxplots(pooled, root / "metric_boxplots_across_datasets.png")
        else:
            vis.lambda_heatmaps(pooled, root / "metric_heatmaps_across_datasets.png")
        vis.collapse_figure(pooled, root / "collapse_across_datasets.png")
    if stage == "lambda":
        change = percent_change_rows(pooled)
        write_csv(root / "percent_change.csv", change)
        write_text(root / "percent_change.txt", percent_change_text(change, cfg.objective))
    analysis.draw(pooled, root, stage, specs, figures=cfg.figures)
    if stage == "lambda" and cfg.preset == "evidence" and not cfg.results_dir and root == stage_root(cfg, stage):
        # The page lives in the repository (docs/evidence.md): a run in another results folder,
        # or a --collect --out elsewhere, must not overwrite it.
        evidence.write_report(pooled, root, stage_root(cfg, "beta"), cfg)
    runs.report_missing(rows, specs)
    return root


# --- command line -----------------------------------------------------------------------------
def launcher_stage(stage: str, cfg: Config, specs: list[RunSpec], argv=None, retry_failed: bool = False):
    """The β or λ stage as lbvae/pipeline/launcher.py runs it on a cluster; the λ stage continues the β
    stage's runs."""
    return family.launcher_stage(FAMILIES[stage], cfg, specs, argv, retry_failed)


@runs.one_line_errors
def main(stage: str, argv=None, description: str = "") -> Path:
    parser = runs.Parser(description=description)
    parser.add_argument("--retry-failed", action="store_true", help="retrain runs that failed before")
    parser.add_argument("--import-original", metavar="DIR",
                        help="read the original code's published runs (DIR/betavae_results/<dSprites|Shapes3D|"
                             "MPI3D>/*.npz, *.pth; lambda_betavae_results/ likewise) into this stage's results")
    family.add_eval_only_argument(parser)
    add_config_arguments(parser)
    launcher.add_launcher_arguments(parser)
    args = parser.parse_args(argv)
    if args.preset == "zoo" and args.objective is None and args.eval_only is None and not args.import_original:
        return run_zoo(stage, list(sys.argv[1:] if argv is None else argv), args)
    if args.eval_only is not None:
        return family.eval_only_command(FAMILIES[stage], args, parser)
    if args.import_original:
        return import_here(stage, args, parser)
    return family.train_command(FAMILIES[stage], args, argv, parser, lambda a: from_args(a, stage=stage),
                                RUN_DEFINING)


def run_zoo(stage: str, argv: list[str], args) -> Path:
    """--preset zoo without --objective: the stage for every objective of config.ZOO_WEIGHTS,
    one after the other (each its own resumable command, into its own trees under
    zoo_results/); after the λ stage, docs/zoo.md from all of them."""
    for objective in ZOO_WEIGHTS:
        print(f"--- zoo: {OBJECTIVES[objective].title} (--objective {objective}) ---")
        root = main(stage, argv + ["--objective", objective])
    cfg = from_args(args, stage=stage)
    if stage == "lambda" and not cfg.results_dir and not getattr(args, "out", None):
        # The page lives in the repository: a run in another results folder must not overwrite it.
        zoo.write_page({o: (stage_root(cfg.replace(objective=o), "beta"), stage_root(cfg.replace(objective=o),
                                                                                    "lambda"))
                        for o in ZOO_WEIGHTS}, cfg)
    return root


def import_here(stage: str, args, parser) -> Path:
    """--import-original: the original code's published runs into this stage's results."""
    try:
        cfg = import_original.settings(from_args(args, stage=stage))
        launcher.check_flags(args)
        root = stage_root(cfg, stage)
        # An import writes runs, so it records the settings now (training records them when it starts).
        runs.bind_results_dir(cfg, root, RUN_DEFINING, write=True)
    except (ConfigError, RuntimeError) as err:
        parser.exit(2, f"{err}\n")
    specs = beta_specs(cfg) if stage == "beta" else lambda_specs(cfg)
    rows, specs = import_original.import_stage(args.import_original, cfg, stage, root,
                                               beta_specs if stage == "beta" else lambda_specs, specs)
    return summarize(rows, specs, cfg, stage)


if __name__ == "__main__":
    sys.exit("run main_beta.py or main_lambda.py")
