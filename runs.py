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
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import data_files
from config import ConfigError
from ground_truth import DataError
from utils import LockHeld, RunLock, fmt_number, read_csv, read_json, remove_stale_temporaries, write_csv, write_json

LOCK = "lock"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
FAILED = "failed.json"
CONFIG = "config.json"

# The results table: the λβ study's columns; other families append theirs after these,
# so every family's tables concatenate.
RESULT_COLUMNS = ["stage", "dataset", "source", "beta", "lambda", "seed", "steps", "status",
                  "train_window_nll", "train_window_kl", "train_window_l2", "train_window_total",
                  "heldout_neg_elbo", "heldout_recon", "heldout_kl", "heldout_mean_image_nll", "heldout_images",
                  "mig", "sap", "i_m", "i_m_normalized", "wall_time_s", "pack_size", "reason"]

# Final weights are named as the original code named its checkpoints, so published
# weights and ours are interchangeable.
WEIGHTS_NAMES = {
    "beta": "betavae_beta_{beta}_seed_{seed}.pth",
    "lambda": "lambda_betavae_beta_{beta}_lambda_{lam}_seed_{seed}.pth",
    "mine": "mine_vae_{variant}_seed_{seed}.pth",
}


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
    beta: float                     # the KL weight
    lam: float                      # the weight of the λ·MSE term (0 outside the λ stage)
    seed: int
    steps: int                      # the step the run trains to
    run_dir: Path
    init_from: Path | None = None   # λ stage: the final weights of the β run it continues
    variant: str | None = None      # MINE family: the ablation variant

    @property
    def name(self) -> str:
        if self.stage == "mine":
            return f"{self.dataset} {self.variant} seed={self.seed}"
        lam = f" λ={fmt_number(self.lam)}" if self.stage == "lambda" else ""
        return f"{self.dataset} β={fmt_number(self.beta)}{lam} seed={self.seed}"

    @property
    def weights_path(self) -> Path:
        """Plain state_dict of the final weights."""
        return self.run_dir / WEIGHTS_NAMES[self.stage].format(
            beta=fmt_number(self.beta), lam=fmt_number(self.lam), seed=self.seed, variant=self.variant)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def is_done(self) -> bool:
        return (self.run_dir / METRICS).exists()

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
    """Where a stage's results live; demo results never mix with real-data results."""
    if cfg.results_dir:
        return Path(cfg.results_dir) / root_name
    return Path("demo_results" if cfg.demo else ".") / root_name


def bind_results_dir(cfg, root: Path, run_defining: tuple[str, ...]) -> None:
    """Tie a stage root to the settings that define its runs: refuse settings that
    differ from the ones it was made with, else record them in its config.json."""
    saved_path = root / CONFIG
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
        self.specs, self.locks, self.todo, self.rows = specs, [], [], []

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

    def touch(self) -> None:
        for lock in self.locks:
            lock.touch()

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
    """The results row of a done or failed run; None if it has none yet."""
    for name in (METRICS, FAILED):
        path = spec.run_dir / name
        if path.exists():
            saved = read_json(path)
            return saved.get("row", saved)
    return None


def runs_to_train(specs: list[RunSpec], retry_failed: bool) -> list[RunSpec]:
    return [s for s in specs if not s.is_done() and (retry_failed or not s.is_failed())]


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
def write_results(root: Path, rows: list[dict], columns: list[str]) -> list[dict]:
    """Rewrite results.csv; returns the rows read back, so that every table and figure
    after it is drawn from the file itself."""
    write_csv(root / "results.csv", rows, columns)
    return read_csv(root / "results.csv")


def report_missing(rows: list[dict], specs: list[RunSpec]) -> None:
    if len(specs) > len(rows):
        print(f"note: {len(specs) - len(rows)} of {len(specs)} runs have no results yet; figures show what exists")


def train_here(specs: list[RunSpec], cfg, run_grid, summarize, parser: argparse.ArgumentParser,
               retry_failed: bool, outputs: str) -> Path:
    """Train and evaluate the grid's missing runs on this machine, then summarize the
    stage; ``outputs`` says what the stage root holds, for the last line printed."""
    print("resolved config:\n" + cfg.to_json())
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
