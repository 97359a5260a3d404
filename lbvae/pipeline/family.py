"""What a model family plugs in, and the one path that trains, evaluates and records
any family's runs: claim → train (``loop.train_runs``) → weights → evaluate → figures
→ metrics.json, over a grid, and the evaluation of one saved checkpoint (--eval-only).

A family (``Family``) supplies only what is its own: its trainee (state and step, see
lbvae/pipeline/loop.py), its evaluation (the metrics.json contents: ``row`` plus what its figures
need), its figures, the identity a run's config.json records and its results columns.
The λβ-VAE (study.FAMILIES, one per stage) and the MINE-VAE (mine_study.MINE) are instances;
a third family is a model, a loss, a trainee and an evaluate away.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
from tqdm import tqdm

import datasets
from lbvae.pipeline import launcher, runs
from lbvae.pipeline.evaluation import heldout_split
from lbvae.pipeline.loop import train_runs
from lbvae.pipeline.runs import METRICS, RunSpec
from lbvae.settings import ConfigError, given_settings
from utils import atomic_write, read_csv, resolve_device, write_csv, write_json


class Family:
    """The interface of a model family. ``run_pack`` needs ``identity``, ``trainee`` and
    ``evaluate`` (and ``draw`` with figures on); the grid, the command line and
    --eval-only need the rest. Methods without a default raise NotImplementedError."""
    label = "runs"                      # in the grid's first line: "12 {label} in the grid"
    config_class: type                  # its settings (config.Config, config.MineConfig)
    columns: list[str] = runs.RESULT_COLUMNS
    log_keys: tuple[str, ...] = ()      # the loss terms its checkpoints' windows hold
    cell_flags: tuple[tuple[str, str], ...] = ()   # (config.json "run" key, flag) naming one run, for --eval-only
    score_keys: tuple[str, ...] = ()    # the scores --eval-only prints
    stage: str                          # runs.RunSpec.stage of its runs
    script: str                         # the command that trains it (main_beta.py, ...)
    outputs: str                        # what its stage root holds besides results.csv, for the last line

    # --- one run -------------------------------------------------------------------------------
    def identity(self, spec: RunSpec) -> dict:
        """The run's entry in its config.json ("run")."""
        raise NotImplementedError

    def trainee(self, specs: list[RunSpec], cfg, dataset, device, feed):
        """The runs' state at their checkpoint (or fresh), as loop.train_runs trains it."""
        raise NotImplementedError

    def evaluate(self, result, cfg, dataset, device, wall_time_s: float, pack_size: int | None) -> dict:
        """metrics.json's contents ("row": the results row) of a run that left its trainee."""
        raise NotImplementedError

    def draw(self, spec: RunSpec, cfg, dataset, model, device, out_dir: Path, scores: dict) -> None:
        """The run's figures into ``out_dir``."""
        raise NotImplementedError

    def failed_columns(self, spec: RunSpec, cfg) -> dict:
        """Extra columns of a failed run's row."""
        return {}

    # --- the grid ------------------------------------------------------------------------------
    def specs(self, cfg) -> list[RunSpec]:
        raise NotImplementedError

    def root(self, cfg) -> Path:
        """The stage root of its runs."""
        raise NotImplementedError

    def run_defining(self) -> tuple[str, ...]:
        """The settings that define its runs (config.STAGE_RUN_DEFINING)."""
        raise NotImplementedError

    def summarize(self, rows: list[dict], specs: list[RunSpec], cfg) -> Path:
        """results.csv and the family's tables and figures at the stage root; returns the root."""
        raise NotImplementedError

    def describe(self, cfg, dataset) -> str:
        """A line about the model, printed once per dataset."""
        raise NotImplementedError

    def postfix(self, row: dict) -> str:
        """The grid's progress bar text for a finished run."""
        raise NotImplementedError

    def parent(self, cfg) -> tuple[Path, str] | None:
        """The stage root and command of the runs this stage continues (the λ stage: β)."""
        return None

    def check_todo(self, todo: list[RunSpec], cfg) -> None:
        """Raise before training if a run cannot start (the λ stage: a missing β run)."""

    def pack_size(self, cfg, device) -> int:
        return 1

    def feed(self, dataset, device):
        """What every trainee of one dataset shares (the λβ-VAE: its image feed)."""
        return None

    # --- --eval-only ---------------------------------------------------------------------------
    def config_from_saved(self, saved: dict, given: dict):
        """The settings of a run's config.json, with the flags given on top."""
        raise NotImplementedError

    def config_from_args(self, args):
        raise NotImplementedError

    def cell_values(self, cfg, flag: str) -> tuple:
        """The values of a cell flag's setting (the first names the --eval-only run without a config.json)."""
        return getattr(cfg, flag)

    def cell_given(self, given: dict, flag: str):
        """The values the command line gave for a cell flag, or None."""
        return given.get(flag)

    def cell_spec(self, cfg, cell: dict, path: Path) -> tuple[RunSpec, object]:
        """The run of a --eval-only cell, and its settings (a variant may change them)."""
        raise NotImplementedError

    def load_model(self, cfg, spec: RunSpec, channels: int, state: dict, device):
        raise NotImplementedError


def load_state(path: Path) -> dict:
    """A checkpoint or weights file, read whole on the CPU (a check that it is readable)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_step(spec: RunSpec) -> int:
    """The step a run would resume from (0 without a checkpoint), read without loading
    its tensors: runs at the same step can train together."""
    path = spec.checkpoint_path
    if not path.exists():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:       # unreadable: -1 packs it alone; run_pack marks the run failed
        return -1


# --- one pack of runs, the grid --------------------------------------------------------------
def run_pack(specs: list[RunSpec], cfg, family: Family, dataset, device, feed=None) -> list[dict]:
    """Train runs of one dataset together (same step, same step target); evaluate and
    draw each as it leaves the pack. Returns their rows; runs another process holds are
    skipped."""
    with runs.Claim(specs) as claim:
        rows, todo = claim.rows, []
        for spec in claim.todo:
            failed = runs.set_aside_unreadable(spec, load_state)   # a corrupt checkpoint fails its run only
            if failed is not None:
                rows.append(failed)
                continue
            claim.write_config(spec, cfg, **family.identity(spec))
            todo.append(spec)
        tic = time.perf_counter()
        if todo:
            trainee = family.trainee(todo, cfg, dataset, device, feed)
            for result in train_runs(trainee, todo[0].steps, cfg, heartbeat=claim.touch):
                rows.append(complete_run(result, cfg, family, dataset, device, pack_size=len(todo),
                                         wall_time_s=time.perf_counter() - tic))
        return rows


def complete_run(result, cfg, family: Family, dataset, device, pack_size: int, wall_time_s: float) -> dict:
    """A run that left its trainee: failed.json, or its weights, scores, figures and
    (last) metrics.json. Returns its results row."""
    spec = result.spec
    if result.failure is not None:
        return runs.mark_failed(spec, result.failure.step, str(result.failure), **family.failed_columns(spec, cfg))
    with atomic_write(spec.weights_path) as f:
        torch.save(result.model.state_dict(), f)
    for path, state in getattr(result, "extra_weights", {}).items():
        with atomic_write(path) as f:
            torch.save(state, f)
    scores = family.evaluate(result, cfg, dataset, device, wall_time_s, pack_size)
    if cfg.figures:
        family.draw(spec, cfg, dataset, result.model, device, spec.run_dir, scores)
    return runs.mark_done(spec, scores)


def run_grid(specs: list[RunSpec], cfg, family: Family, retry_failed: bool = False) -> list[dict]:
    """Train and evaluate every run that is not finished; returns all rows (done, failed)."""
    device = resolve_device(cfg.device)
    runs.check_identity(specs, cfg)         # before anything is reused, resumed or skipped as done
    todo = runs.runs_to_train(specs, retry_failed)
    family.check_todo(todo, cfg)
    print(f"{len(specs)} {family.label} in the grid, {len(specs) - len(todo)} already finished or failed, "
          f"{len(todo)} to train on {device}")
    # Open (and so validate) every dataset before training anything: a bad file should
    # fail in seconds, not after the runs of the datasets before it.
    data = {name: datasets.load_dataset(name, source=cfg.source, data_dir=cfg.data_dir, variant=cfg.mpi3d_variant)
            for name in dict.fromkeys(spec.dataset for spec in todo)}
    for name, dataset in data.items():
        runs.check_batch_fits(cfg, name, len(heldout_split(len(dataset), cfg.heldout_fraction)[0]))
        print(f"{name}: {dataset!r}; {family.describe(cfg, dataset)}")
    if todo:        # the stage root is bound to these settings once something trains in it
        runs.bind_results_dir(cfg, family.root(cfg), family.run_defining(), write=True)
    pack_size = family.pack_size(cfg, device)
    if device.type == "cuda":
        # Pick the fastest convolution algorithms for the fixed shapes. GPU runs are
        # reproducible to float tolerance only (cuDNN's backward kernels use atomics anyway).
        torch.backends.cudnn.benchmark = True
    with tqdm(total=len(todo), desc="runs", position=0, unit="run", dynamic_ncols=True) as bar:
        for name, dataset in data.items():
            feed = family.feed(dataset, device)
            for pack in form_packs([s for s in todo if s.dataset == name], pack_size):
                for row in run_pack(pack, cfg, family, dataset, device, feed):
                    bar.set_postfix_str(family.postfix(row))
                bar.update(len(pack))
    return [row for row in map(runs.read_row, specs) if row is not None]


def form_packs(specs: list[RunSpec], pack_size: int) -> list[list[RunSpec]]:
    """Consecutive runs (grid order) that can train together: same step target and same
    step to resume from, at most pack_size of them."""
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.steps, checkpoint_step(spec)), []).append(spec)
    return [group[i:i + pack_size] for group in groups.values() for i in range(0, len(group), pack_size)]


# --- evaluation of one saved checkpoint ------------------------------------------------------
class Evaluated:
    """A saved model as ``Family.evaluate`` sees a run that left its trainee."""

    def __init__(self, spec: RunSpec, model, payload: dict, keys: tuple[str, ...]):
        self.spec, self.model, self.failure = spec, model, None
        self.step = payload.get("step")
        self._window = (runs.window_means(payload["window"], payload["step"], keys) if "window" in payload
                        else None)

    def window_means(self) -> dict | None:
        return self._window


def eval_only(family: Family, path: Path, args, out: Path | None = None) -> Path:
    """Evaluate a saved checkpoint.pt or weights .pth (metrics, figures) without training.

    Settings: the run's config.json beside the file if there is one (then flags given
    on the command line override it), else the command line; the run's cell (dataset,
    and β, λ or variant, and seed) from that config.json's "run" entry, else the first
    value of each flag. Output: ``out`` (--out), else ``eval_<file stem>/`` beside the
    file (metrics.json, results.csv, figures); checked writable before evaluating."""
    if not path.is_file():
        raise ConfigError(f"--eval-only: {path} is not a file (give a run's checkpoint.pt or .pth weights)")
    saved_path, run, cfg = path.parent / "config.json", {}, None
    given = given_settings(args, family.config_class)
    if saved_path.exists():
        saved = runs.read_saved(saved_path)
        if saved is None:
            raise ConfigError(f"--eval-only: {saved_path} is unreadable; move it aside to evaluate with the "
                              f"command line's settings")
        run = saved.pop("run", {})
        cfg = family.config_from_saved(saved, given)   # the saved settings as they are, then the flags given
    cfg = cfg or family.config_from_args(args)
    # A flag that disagrees with the saved run is an error, not ignored.
    cell = {}
    for key, flag in family.cell_flags:
        values, named = family.cell_values(cfg, flag), family.cell_given(given, flag)
        if key in run:
            if named is not None and tuple(named) != (run[key],):
                raise ConfigError(f"--eval-only: {path} is the run {key}={run[key]!r} (its config.json); drop "
                                  f"--{flag} or give --{flag} {run[key]}")
            cell[key] = run[key]
        elif named is not None and len(values) > 1:
            raise ConfigError(f"--eval-only evaluates one run: give one value of --{flag}, not {list(values)}")
        else:
            cell[key] = values[0]
    spec, cfg = family.cell_spec(cfg, cell, path)
    out = Path(out) if out is not None else path.parent / f"eval_{path.stem}"
    runs.require_writable(out)          # before the evaluation, not after it
    device = resolve_device(cfg.device)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:     # torch raises many types for a file that is not a checkpoint
        raise ConfigError(f"--eval-only: cannot read {path} as a torch checkpoint ({err})") from None
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"--eval-only: {path} holds no state_dict")
    dataset = datasets.load_dataset(spec.dataset, source=cfg.source, data_dir=cfg.data_dir,
                                    variant=cfg.mpi3d_variant)
    try:
        model = family.load_model(cfg, spec, dataset.channels, state, device)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ConfigError(f"--eval-only: {path} does not fit a model with these settings "
                          f"(latent_dim={cfg.latent_dim}, ...): "
                          f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    tic = time.perf_counter()
    result = family.evaluate(Evaluated(spec, model, payload, family.log_keys), cfg, dataset, device, 0.0, None)
    result["row"]["wall_time_s"] = time.perf_counter() - tic
    result["evaluated_file"] = str(path)
    if cfg.figures:
        family.draw(spec, cfg, dataset, model, device, out, result)
    write_csv(out / "results.csv", [result["row"]], family.columns)
    write_json(out / METRICS, result)
    return out


def add_eval_only_argument(parser) -> None:
    parser.add_argument("--eval-only", metavar="CHECKPOINT", type=Path,
                        help="evaluate a saved checkpoint.pt or weights .pth (metrics and figures), no training; "
                             "--out DIR: where its results go")


def eval_only_command(family: Family, args, parser) -> Path:
    """--eval-only from the command line: one line with the scores and where they are."""
    tic = time.perf_counter()
    try:
        launcher.check_flags(args)
        out = eval_only(family, args.eval_only, args, out=args.out)
    except (ConfigError, RuntimeError) as err:
        parser.exit(2, f"{err}\n")
    except datasets.DataError as err:
        parser.exit(2, f"data error: {err}\n")
    row = read_csv(out / "results.csv")[0]
    scores = ", ".join(f"{k}={row[k]:.3f}" for k in family.score_keys if row.get(k) is not None)
    print(f"evaluated {args.eval_only} in {time.perf_counter() - tic:.0f} s: {scores or 'no factor metrics'}; "
          f"results in {out}/")
    return out


# --- the command line every family shares ----------------------------------------------------
def launcher_stage(family: Family, cfg, specs: list[RunSpec], argv=None, retry_failed: bool = False):
    """The family's grid as lbvae/pipeline/launcher.py runs it on a cluster."""
    parent = family.parent(cfg) or (None, None)
    return launcher.make_stage(family.stage, family.script, cfg, family.root(cfg), specs,
                               functools.partial(run_grid, family=family), family.summarize, argv, retry_failed,
                               preflight=functools.partial(runs.preflight, cfg, specs),
                               parent_root=parent[0], parent_script=parent[1])


def train_command(family: Family, args, argv, parser, make_config, run_defining: tuple[str, ...]) -> Path:
    """A family's command after its flags are parsed: the settings (``make_config(args)``),
    the results folder they bind, then the grid trained here or handed to a cluster
    (--status, --collect and --launcher go to lbvae/pipeline/launcher.py)."""
    try:
        cfg = make_config(args)
        resolve_device(cfg.device)
        launcher.check_flags(args)
        root = family.root(cfg)
        runs.bind_results_dir(cfg, root, run_defining)
    except (ConfigError, RuntimeError) as err:
        parser.exit(2, f"{err}\n")
    specs = family.specs(cfg)
    if launcher.wanted(args):
        launcher.dispatch(args, launcher_stage(family, cfg, specs, argv, retry_failed=args.retry_failed))
        return root
    return runs.train_here(specs, cfg, functools.partial(run_grid, family=family), family.summarize, parser,
                           args.retry_failed, outputs=family.outputs)
