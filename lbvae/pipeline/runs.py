"""The run lifecycle every model family shares: identity, folders, lock, resume, failure,
done marker, results table.

A run is one cell of a study's grid: (stage, dataset, β, λ, seed) for the λβ-VAE study,
(dataset, variant, seed) for the MINE-VAE family (stage "mine", β = its KL weight).
Each run owns one folder:

    config.json     the settings it trains with (written when its training starts)
    lock            present while a process trains it (``utils.RunLock``)
    checkpoint.pt   its whole training state, rewritten atomically every checkpoint_interval steps
    <weights>.pth   its final weights, a plain state_dict named as the original code named them
    train_log.csv   interval-mean training losses
    metrics.json    its scores and their definitions; written last, so it marks the run done
    failed.json     instead of metrics.json when training diverged (NaN/Inf)

A stage's root holds ``config.json`` (the settings that define its runs: another value
needs another results directory) and the aggregate ``results.csv`` with one row per run.

The lifecycle of one run, whatever trains it: ``claim`` it (lock; skip it if done),
``write_run_config``, train (resuming from checkpoint.pt), then ``mark_done`` with its
evaluation or ``mark_failed`` with the reason. A family supplies only the training loop,
the evaluation and its own columns.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from config import OBJECTIVES, PRESETS, STAGE_RUN_DEFINING, ConfigError, weight_symbol
from lbvae.data import files as data_files
from lbvae.data.ground_truth import DataError
from utils import (
    LOCK,
    LockHeld,
    RunLock,
    atomic_write,
    fmt_number,
    holds_more_than,
    read_csv,
    read_json,
    remove_stale_temporaries,
    write_csv,
    write_json,
)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
FAILED = "failed.json"
CONFIG = "config.json"

# The results table: the λβ study's columns; other families append theirs after these,
# so every family's tables concatenate.
RESULT_COLUMNS = ["stage", "dataset", "source", "origin", "beta", "lambda", "seed", "steps", "status",
                  "train_window_nll", "train_window_kl", "train_window_l2", "train_window_total",
                  "heldout_neg_elbo", "heldout_recon", "heldout_kl", "heldout_mean_image_nll", "heldout_images",
                  "mig", "sap", "i_m", "i_m_normalized", "wall_time_s", "pack_size", "reason",
                  "active_latents", "i_xz_upper"]

# Final weights are named as the original code named its checkpoints, so published
# weights and ours are interchangeable.
WEIGHTS_NAMES = {
    "beta": "betavae_beta_{beta}_seed_{seed}.pth",
    "lambda": "lambda_betavae_beta_{beta}_lambda_{lam}_seed_{seed}.pth",
    "mine": "mine_vae_{variant}_seed_{seed}.pth",
}
OTHER_WEIGHTS_NAME = "{stage}_seed_{seed}.pth"      # a family without a name of its own above


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with the step reached; still a KeyboardInterrupt, so
    every ``finally`` (locks) runs and nothing catches it by accident."""


class RunFailed(RuntimeError):
    """Training diverged (NaN/Inf); the run is marked failed and the sweep goes on."""

    def __init__(self, step: int, reason: str):
        super().__init__(reason)
        self.step = step


@dataclass(frozen=True)
class RunSpec:
    """A run's identity and its folder."""
    stage: str                      # "beta", "lambda" or "mine"
    dataset: str
    beta: float                     # the objective's swept weight: β for the β-VAE (config.OBJECTIVES)
    lam: float                      # the weight of the λ·MSE term (0 outside the λ stage)
    seed: int
    steps: int                      # the step the run trains to
    run_dir: Path
    init_from: Path | None = None   # λ stage: the final weights of the β run it continues
    variant: str | None = None      # MINE family: the ablation variant
    objective: str = "beta"         # λβ family: the regulariser (config.OBJECTIVES)

    @property
    def name(self) -> str:
        if self.stage == "mine":
            return f"{self.dataset} {self.variant} seed={self.seed}"
        lam = f" λ={fmt_number(self.lam)}" if self.stage == "lambda" else ""
        objective = "" if self.objective == "beta" else f"{OBJECTIVES[self.objective].title} "
        weight = f"{weight_symbol(self.objective)}={fmt_number(self.beta)}"
        return f"{self.dataset} {objective}{weight}{lam} seed={self.seed}"

    @property
    def weights_path(self) -> Path:
        """Plain state_dict of the final weights."""
        if self.objective != "beta":
            # <objective>_<weight>_<value>[_lambda_<λ>]_seed_<s>.pth, as the β-VAE's names go
            lam = f"_lambda_{fmt_number(self.lam)}" if self.stage == "lambda" else ""
            prefix = "lambda_" if self.stage == "lambda" else ""
            return self.run_dir / (f"{prefix}{self.objective}_{OBJECTIVES[self.objective].weight}_"
                                   f"{fmt_number(self.beta)}{lam}_seed_{self.seed}.pth")
        return self.run_dir / WEIGHTS_NAMES.get(self.stage, OTHER_WEIGHTS_NAME).format(
            stage=self.stage, beta=fmt_number(self.beta), lam=fmt_number(self.lam), seed=self.seed,
            variant=self.variant)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def is_done(self) -> bool:
        """metrics.json is there and readable (a truncated one means: evaluate again)."""
        return read_saved(self.run_dir / METRICS) is not None

    def is_failed(self) -> bool:
        return (self.run_dir / FAILED).exists()

    def state(self) -> str:
        """done, failed, running (a live lock) or pending, from the run's folder alone."""
        if self.is_done():
            return "done"
        if self.is_failed():
            return "failed"
        if RunLock(self.run_dir / LOCK).is_live():
            return "running"
        return "pending"


# --- the stage root -------------------------------------------------------------------------
def stage_root(cfg, root_name: str) -> Path:
    """Where a stage's results live; a preset's results (demo_results, evidence_results)
    never mix with real-data results or another preset's."""
    if cfg.results_dir:
        return Path(cfg.results_dir) / root_name
    preset = "demo" if cfg.demo else getattr(cfg, "preset", "")
    return Path(PRESETS[preset][2] if preset in PRESETS else ".") / root_name


def setting_text(value) -> str:
    """A setting as comparable text: lists space-separated, floats exact (repr), None empty;
    the form of the settings columns of results.csv and of the flags in hints."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(setting_text(v) for v in value)
    if isinstance(value, float) and not isinstance(value, bool):
        return repr(value)
    return str(value)


def _flag(key: str, value) -> str:
    return f"--{key.replace('_', '-')} {setting_text(value)}"


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def check_results_dir(root: Path) -> None:
    """--results-dir must be (or be creatable as) a directory: /dev/null or a file is one line."""
    for folder in (root, *root.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"config: {folder} is not a directory; give a directory (--results-dir, --out)")
            return


def bind_results_dir(cfg, root: Path, run_defining: tuple[str, ...], write: bool = False) -> None:
    """Tie a stage root to the settings that define its runs: refuse settings that differ
    from the ones it was made with. ``write`` records them in its config.json: only when
    something is about to train, so --status, --collect or a command that fails before
    training never binds (or writes into) a directory."""
    check_results_dir(root)
    saved_path = root / CONFIG
    if saved_path.exists():
        try:
            saved = read_json(saved_path)
        except (OSError, ValueError) as err:
            raise ConfigError(f"config: {saved_path} is unreadable ({err}); move it aside or use another "
                              f"--results-dir") from None
        ours = cfg.to_dict()
        # A key the file lacks was not recorded by the version that made it: unknown, accepted.
        conflicts = [key for key in run_defining if key in saved and saved[key] != _jsonable(ours[key])]
        if conflicts and holds_results(root):
            key = conflicts[0]
            raise ConfigError(
                f"config: {root} was made with {key}={saved[key]!r}, not {_jsonable(ours[key])!r}; rerun with "
                f"{_flag(key, saved[key])} to add to it, or use another --results-dir")
        if conflicts and write:
            # Only the settings file is there: nothing computed is lost by rebinding the folder.
            print(f"{root} held no runs, only a config.json made with {conflicts[0]}={saved[conflicts[0]]!r}; "
                  f"it now records this command's settings")
    if write:
        write_json(saved_path, cfg.to_dict())


def holds_results(root: Path) -> bool:
    """Whether a stage root holds anything besides its config.json (run folders, tables,
    figures, an interrupted write): then its settings bind every later command."""
    return holds_more_than(root, CONFIG)


def read_saved(path: Path) -> dict | None:
    """A run's JSON file (metrics.json, failed.json), or None if it is missing or unreadable."""
    try:
        saved = read_json(path)
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def _run_settings(run_dir: Path) -> dict | None:
    """The settings in a run's own config.json; None without one. ConfigError if unreadable."""
    path = run_dir / CONFIG
    if not path.exists():
        return None
    saved = read_saved(path)
    if saved is None:
        raise ConfigError(f"config: {path} is unreadable; delete it to reuse the run as it is (its settings then "
                          f"count as unknown), or move the run folder aside to train it anew")
    return saved


def identity_conflicts(spec: RunSpec, cfg) -> list[str]:
    """The run-defining settings the run's folder was made with that ``cfg`` does not
    share, as "key=stored" texts. A folder without config.json or without a key (made
    before the key was recorded) counts as unknown and agrees."""
    saved = _run_settings(spec.run_dir)
    if saved is None:
        return []
    ours = cfg.to_dict()
    return [key for key in STAGE_RUN_DEFINING[spec.stage]
            if key in saved and key in ours and saved[key] != _jsonable(ours[key])]


def check_identity(specs: list[RunSpec], cfg) -> None:
    """Refuse to reuse (resume, or skip as done or failed) any run whose folder was made
    with other run-defining settings: one line naming the setting, the stored value and
    the fix. Folders with nothing to reuse (no checkpoint, no result) are retrained anyway."""
    conflicts = []
    for spec in specs:
        if any((spec.run_dir / name).exists() for name in (CHECKPOINT, METRICS, FAILED)):
            keys = identity_conflicts(spec, cfg)
            if keys:
                conflicts.append((spec, keys[0]))
    if not conflicts:
        return
    spec, key = conflicts[0]
    stored = read_json(spec.run_dir / CONFIG)[key]
    more = f" (and {len(conflicts) - 1} more run(s))" if len(conflicts) > 1 else ""
    raise ConfigError(
        f"config: {spec.run_dir} was made with {key}={stored!r}, not {_jsonable(cfg.to_dict()[key])!r}{more}; "
        f"rerun with {_flag(key, stored)} to reuse it, or use another --results-dir (or move the run folder "
        f"aside) to train it anew")


def command_flags(cfg, base, always: tuple[str, ...], keys: tuple[str, ...], lead: tuple[str, ...] = ()) -> str:
    """Command-line flags that reproduce ``cfg`` from ``base`` (the defaults, or the demo
    preset): the ``always`` settings, and each of ``keys`` that differs from ``base``."""
    ours, theirs = cfg.to_dict(), base.to_dict()
    flags = list(lead) + [_flag(k, ours[k]) for k in always]
    flags += [_flag(k, ours[k]) for k in keys if k not in always and ours[k] != theirs[k] and ours[k] is not None]
    return " ".join(flags)


def require_writable(folder: Path) -> None:
    """Fail now, in one line, if ``folder`` cannot be created or written (not after an
    hour of work that then cannot be saved)."""
    folder = Path(folder)
    check_results_dir(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / ".write_test"):
            pass
        (folder / ".write_test").unlink()
    except OSError as err:
        raise ConfigError(f"config: cannot write into {folder} ({err.strerror or err}); choose a writable "
                          f"folder (--out DIR)") from None


def check_batch_fits(cfg, name: str, train_images: int) -> None:
    """A batch larger than the training images would repeat images within one step."""
    if cfg.batch_size > train_images:
        raise ConfigError(f"config: --batch-size {cfg.batch_size} is larger than the {train_images:,} training "
                          f"images of {name}; use at most {train_images:,}")


def preflight(cfg, specs: list[RunSpec]) -> None:
    """What a cluster submission checks before it queues anything: the data files, and
    that no run folder it would reuse was made with other settings."""
    check_data_present(cfg)
    check_identity(specs, cfg)


def check_data_present(cfg) -> None:
    """Stop with the list of missing real files and how to get each."""
    if cfg.source != "real":
        return
    missing = [(d, p) for d in cfg.datasets
               for p in data_files.missing_files(d, cfg.data_dir, variant=cfg.mpi3d_variant)]
    if missing:
        lines = ["The real dataset files are missing:"]
        for d, p in missing:
            how = data_files.how_to_get(d, variant=cfg.mpi3d_variant, data_dir=cfg.data_dir)
            lines.append(f"  {p}\n    get it: {how}")
        lines.append("Run with --demo (procedural stand-ins, no downloads) to try everything without them.")
        raise SystemExit("\n".join(lines))


# --- one run's lifecycle --------------------------------------------------------------------
class Claim:
    """The locks of the runs this process will train, taken together.

    ``todo`` are the runs to train; ``rows`` the results of those another process
    finished in the meantime. Runs another live process holds are skipped with a line.
    ``touch`` refreshes the locks' heartbeat (call it at every checkpoint)."""

    def __init__(self, specs: list[RunSpec]):
        self.specs, self.locks, self.todo, self.rows, self.configs = specs, [], [], [], {}

    def __enter__(self) -> Claim:
        try:
            for spec in self.specs:
                try:
                    lock = RunLock(spec.run_dir / LOCK).acquire()
                except LockHeld as err:
                    tqdm.write(f"skipped: {err}")
                    continue
                self.locks.append(lock)
                if spec.is_done():              # finished by another process meanwhile
                    self.rows.append(read_row(spec))
                else:
                    # Ours alone now: what a killed writer left half-written goes.
                    remove_stale_temporaries(spec.run_dir)
                    self.todo.append(spec)
        except BaseException:
            self.release()
            raise
        return self

    def write_config(self, spec: RunSpec, cfg, **identity) -> None:
        """``write_run_config``, remembered so that a heartbeat can write it again."""
        self.configs[spec.run_dir] = (spec, cfg, identity)
        write_run_config(spec, cfg, **identity)

    def touch(self) -> None:
        for lock in self.locks:
            if not lock.touch():
                # Someone deleted the run's folder while it trained: its files are written
                # again from here on (config.json now, checkpoint at this checkpoint).
                run_dir = lock.path.parent
                tqdm.write(f"warning: {run_dir} was deleted while training; writing its files again")
                if run_dir in self.configs:
                    spec, cfg, identity = self.configs[run_dir]
                    write_run_config(spec, cfg, **identity)

    def release(self) -> None:
        for lock in self.locks:
            lock.release()

    def __exit__(self, *exc) -> None:
        self.release()


def write_run_config(spec: RunSpec, cfg, **identity) -> None:
    """The run's own config.json: every setting, and the run's identity under "run"."""
    write_json(spec.run_dir / CONFIG, {**cfg.to_dict(), "run": identity})


def mark_done(spec: RunSpec, evaluation: dict) -> dict:
    """Write metrics.json (its presence marks the run done); returns its results row."""
    (spec.run_dir / FAILED).unlink(missing_ok=True)
    write_json(spec.run_dir / METRICS, evaluation)
    return evaluation["row"]


def mark_failed(spec: RunSpec, step: int, reason: str, **columns) -> dict:
    """Write failed.json; returns the run's results row."""
    row = {"stage": spec.stage, "dataset": spec.dataset, **columns, "beta": spec.beta, "lambda": spec.lam,
           "seed": spec.seed, "steps": step, "status": "failed", "reason": reason}
    write_json(spec.run_dir / FAILED, row)
    return row


def read_row(spec: RunSpec) -> dict | None:
    """The results row of a done or failed run; None if it has none yet (or only an
    unreadable metrics.json: the run is evaluated again)."""
    for name in (METRICS, FAILED):
        saved = read_saved(spec.run_dir / name)
        if saved is not None:
            return saved.get("row", saved)
    return None


def runs_to_train(specs: list[RunSpec], retry_failed: bool) -> list[RunSpec]:
    todo = [s for s in specs if not s.is_done() and (retry_failed or not s.is_failed())]
    for spec in todo:
        if (spec.run_dir / METRICS).exists():
            print(f"{spec.run_dir / METRICS} is unreadable: {spec.name} is evaluated again "
                  f"(from its checkpoint; trained again if it has none)")
    return todo


def set_aside_unreadable(spec: RunSpec, load) -> dict | None:
    """Mark the run failed if the file it would start from cannot be read by ``load``:
    its checkpoint.pt (moved aside to checkpoint.pt.corrupt, so --retry-failed trains it
    again from step 0), or, without one, the weights it continues (``init_from``, left
    alone: it belongs to another run). Returns the failed row, or None if all is readable.
    Call it while holding the run's lock."""
    path = spec.checkpoint_path if spec.checkpoint_path.exists() else spec.init_from
    if path is None or not Path(path).exists():
        return None
    try:
        load(path)
        return None
    except Exception as err:        # torch raises many types for a file that is not a checkpoint
        why = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:120] if str(err).strip() else ''}"
    if path == spec.checkpoint_path:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        reason = (f"{path} is unreadable ({why}); moved aside to {aside.name}; --retry-failed trains the run "
                  f"again from step 0")
    else:
        reason = (f"the weights it continues, {path}, are unreadable ({why}); train that run again (move its "
                  f"folder aside and rerun its stage), then rerun this one with --retry-failed")
    tqdm.write(f"failed: {spec.name}: {reason}")
    return mark_failed(spec, 0, reason)


def window_means(window, step: int, keys) -> dict[str, float]:
    """Mean of each column (named by ``keys``) of a per-step ring buffer of losses over
    the last min(step, len(window)) steps: the train-window losses."""
    filled = min(step, len(window))
    if filled == 0:
        return dict.fromkeys(keys, math.nan)
    return dict(zip(keys, window[:filled].double().mean(0).tolist()))


# --- a run's randomness, resumable ----------------------------------------------------------
class BatchOrder:
    """Image indices of each step's batch: the concatenation of one fresh permutation of
    the training images per epoch (``default_rng([seed, epoch])``), cut into batches."""

    def __init__(self, train_indices: np.ndarray, batch_size: int, seed: int):
        self.train_indices, self.batch_size, self.seed = train_indices, batch_size, seed
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch, self._perm = epoch, self.train_indices[rng.permutation(len(self.train_indices))]
        return self._perm

    def __call__(self, step: int) -> np.ndarray:
        n = len(self.train_indices)
        start, parts, need = step * self.batch_size, [], self.batch_size
        while need:
            epoch, offset = divmod(start, n)
            take = min(need, n - offset)
            parts.append(self._permutation(epoch)[offset:offset + take])
            start, need = start + take, need - take
        return np.concatenate(parts)


# --- the stage's table ----------------------------------------------------------------------
# Where --collect --out sends a stage's tables and figures: {output folder: the tree it
# reads} and back. Module state, set only for the duration of one ``outputs_to`` block.
_SOURCES: dict[Path, Path] = {}
_REDIRECTS: dict[Path, Path] = {}


@contextlib.contextmanager
def outputs_to(root: Path, out: Path | None):
    """Within this block a stage's summary of ``root`` is written to ``out`` (a read-only
    results tree can still be summarised); ``output_root`` gives the folder to write."""
    if out is None:
        yield
        return
    _SOURCES[Path(out)] = Path(root)
    _REDIRECTS[Path(root)] = Path(out)
    try:
        yield
    finally:
        _SOURCES.pop(Path(out), None)
        _REDIRECTS.pop(Path(root), None)


def output_root(root: Path) -> Path:
    """The folder a stage's summary of ``root`` is written to: ``root`` unless redirected."""
    return _REDIRECTS.get(Path(root), Path(root))


def _grid_order(row: dict):
    from lbvae.data.ground_truth import DATASET_NAMES
    dataset = row.get("dataset")
    return (str(row.get("stage")), DATASET_NAMES.index(dataset) if dataset in DATASET_NAMES else len(DATASET_NAMES),
            str(dataset), float(row.get("beta") or 0), float(row.get("lambda") or 0), str(row.get("variant") or ""),
            int(row.get("seed") or 0))


def _row_key(row: dict) -> tuple:
    return tuple(str(row.get(k)) for k in ("stage", "dataset", "beta", "lambda", "variant", "seed"))


def setting_columns(stage: str) -> dict[str, str]:
    """{setting: its column} of a stage's run-defining settings. A setting that already is a
    results column (source, latent_dim, kl_weight) is that column; ``steps`` is the run's
    step target, ``config_steps``, since the ``steps`` column is the step a run reached."""
    return {key: ("config_" + key if key == "steps" else key) for key in STAGE_RUN_DEFINING.get(stage, ())}


def scan_rows(root: Path) -> list[dict]:
    """The rows of every done or failed run under ``root``, whichever command made it,
    each with its run-defining settings from its own config.json (None: not recorded).
    An unreadable metrics.json is reported and left out (its run is evaluated again)."""
    rows = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "slurm" and not d.startswith("eval_"))
        if METRICS not in files and FAILED not in files:
            continue
        folder = Path(folder)
        saved = read_saved(folder / METRICS) if METRICS in files else None
        if saved is None and METRICS in files:
            print(f"{folder / METRICS} is unreadable: left out of the tables; rerun the grid to evaluate it again")
        if saved is None and FAILED in files:
            saved = read_saved(folder / FAILED)
        row = saved.get("row", saved) if saved is not None and "evaluated_file" not in saved else None
        if not isinstance(row, dict) or row.get("stage") not in STAGE_RUN_DEFINING:
            continue
        settings = read_saved(folder / CONFIG) or {}
        row = dict(row)
        for key, column in setting_columns(row["stage"]).items():
            if row.get(column) is None:
                row[column] = setting_text(settings.get(key)) if key in settings else None
        rows.append(row)
    return rows


def write_results(root: Path, rows: list[dict], columns: list[str], weight: str = "beta") -> list[dict]:
    """Rewrite results.csv with every run found under the stage's tree (not only the rows
    of this command's grid: runs of earlier commands stay in the aggregate) and ``rows``
    not found there; the run-defining settings follow as columns. Returns the rows read
    back, so that every table and figure after it is drawn from the file itself.

    ``weight`` names the column of the swept weight (rows and RunSpec call it ``beta``):
    an AnnealedVAE table says c_max, a DIP-VAE table lambda_od (config.OBJECTIVES)."""
    found = scan_rows(_SOURCES.get(Path(root), Path(root)))
    keys = {_row_key(r) for r in found}
    merged = sorted(found + [r for r in rows if _row_key(r) not in keys], key=_grid_order)
    extra = {}
    for row in merged:
        extra.update(dict.fromkeys(setting_columns(row.get("stage")).values()))
    header = columns + [c for c in extra if c not in columns]
    if weight != "beta":
        merged = [{(weight if k == "beta" else k): v for k, v in row.items()} for row in merged]
        header = [weight if c == "beta" else c for c in header]
    write_csv(root / "results.csv", merged, header)
    return [{("beta" if k == weight else k): v for k, v in row.items()} for row in read_csv(root / "results.csv")]


def figure_rows(rows: list[dict], cfg, stage: str) -> list[dict]:
    """The rows a figure may pool: all of them when the finished runs share their
    run-defining settings; else those with this command's settings, with a line saying
    which settings differ and that results.csv and the summary keep every run apart."""
    done = [r for r in rows if r.get("status") == "done"]
    ours = cfg.to_dict()
    differ = {}
    for key, column in setting_columns(stage).items():
        values = {setting_text(r.get(column)) for r in done if r.get(column) is not None}
        if len(values) > 1:
            differ[key] = (column, values)
    if not differ:
        return rows
    keep = [r for r in rows if all(r.get(c) is None or setting_text(r.get(c)) == setting_text(ours.get(k))
                                   for k, (c, _) in differ.items())]
    kept = sum(r.get("status") == "done" for r in keep)
    what = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, (_, v) in differ.items())
    print(f"note: the finished runs differ in run-defining settings ({what}); figures show the {kept} run(s) with "
          f"this command's values; results.csv and the summary list every run with its settings")
    return keep


def report_missing(rows: list[dict], specs: list[RunSpec]) -> None:
    missing = sum(read_row(s) is None for s in specs)
    if missing:
        print(f"note: {missing} of {len(specs)} runs have no results yet; figures show what exists")
    extra = len(rows) - (len(specs) - missing)
    if extra > 0:
        print(f"note: the tables also hold {extra} run(s) outside this command's grid (made by earlier commands)")


def one_line_errors(main):
    """A command's entry point with user errors as one line on stderr, never a traceback:
    bad settings (exit 2), data errors (2), an unwritable or full disk (1), Ctrl-C (130)."""
    from lbvae.data.ground_truth import DataError

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Interrupted as err:
            code, line = 130, str(err)
        except KeyboardInterrupt:
            code, line = 130, "interrupted; rerun the same command to resume from the last checkpoints"
        except ConfigError as err:
            code, line = 2, str(err)
        except DataError as err:
            code, line = 2, f"data error: {err}"
        except OSError as err:
            code, line = 1, os_error_line(err)
        sys.stderr.write(line + "\n")
        raise SystemExit(code)
    return wrapper


def os_error_line(err: OSError) -> str:
    """One line for a file-system error, with what to do about it."""
    where = err.filename or ""
    what = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: {what}; free some space (or use another --results-dir), then rerun to resume"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write {where}: {what}; use a writable --results-dir (a read-only one can be inspected "
                f"with --status, or summarised with --collect --out DIR)")
    return f"{where}: {what}" if where else f"file error: {what}"


def train_here(specs: list[RunSpec], cfg, run_grid, summarize, parser: argparse.ArgumentParser,
               retry_failed: bool, outputs: str) -> Path:
    """Train and evaluate the grid's missing runs on this machine, then summarize the
    stage; ``outputs`` says what the stage root holds, for the last line printed."""
    print("resolved config:\n" + cfg.to_json())
    if cfg.demo:
        print("--demo: procedural stand-ins and the demo preset of small, short runs (--help lists what it "
              "sets; flags given on the command line win)")
    elif getattr(cfg, "preset", ""):
        print(f"--preset {cfg.preset}: config.py sets its settings and says why (flags given on the command "
              f"line win)")
    check_data_present(cfg)
    tic = time.perf_counter()
    try:
        rows = run_grid(specs, cfg, retry_failed=retry_failed)
    except DataError as err:
        parser.exit(2, f"data error: {err}\n")
    root = summarize(rows, specs, cfg)
    done = sum(r["status"] == "done" for r in rows)
    print(f"done: {done} runs finished ({len(specs)} in grid) in {time.perf_counter() - tic:.0f} s; "
          f"results in {root}/results.csv, {outputs} in {root}/")
    return root


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of a 20-line usage dump (flags are one --help away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")
