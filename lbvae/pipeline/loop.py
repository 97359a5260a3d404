"""The one training loop of every model family: steps, checks, logs, checkpoints.

A family (the λβ-VAE's pack in lbvae/pipeline/training.py, the MINE-VAE in lbvae/mine/study.py, a toy in a
test) hands this loop a *trainee*: P ≥ 1 runs of one dataset at the same step. The
loop owns the lifecycle: step counting, the progress bar, the NaN/Inf check, the log
rows, the checkpoints, the heartbeat, Ctrl-C and the runs' final results. The trainee
owns what is the family's: its state and how one step changes it.

What a trainee provides (duck-typed; ``Trainee`` spells it out):
- ``specs`` and ``step``: the runs (``runs.RunSpec``) and the steps they have done;
- ``train_step()``: one step of every run (its updates, its data, its noise), which
  records each run's loss terms in ``record`` (a ``LossRecord``) and advances ``step``;
- ``failures()``: the runs whose losses or weights went NaN/Inf, ``{k: RunFailed}``;
- ``keep(indices)``: continue with these runs only;
- ``log_row(k, rate)``: the columns of run k's log row after its mean losses: the
  training speed ``rate`` (images per second per run over the interval, a timing)
  under the family's name, and the family's own columns;
- ``save()``: every run's whole state, atomically, to its own checkpoint;
- ``result(k, failure)``: what run k leaves the loop with (weights, window means).

Checks run at every log row and before every checkpoint, so a diverged state is never
saved; a failed run leaves the trainee and the others go on.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

import torch
from tqdm import tqdm

from lbvae.pipeline.runs import Interrupted, RunFailed, RunSpec
from utils import write_csv


class LossRecord:
    """Per run: the loss terms of its last W steps (a ring buffer: the train-window means
    of the results row), their sum since the last log row, and its log rows. The per-run
    slices are what a checkpoint stores (``member``), so a run resumes in any trainee."""

    def __init__(self, keys: tuple[str, ...], members: list[dict], device):
        self.keys = keys
        self.window = torch.stack([m["window"] for m in members]).to(device)              # (P, W, K)
        self.interval_sum = torch.stack([m["interval_sum"] for m in members]).to(device)  # (P, K)
        self.logs = [list(m["log"]) for m in members]

    @staticmethod
    def fresh(keys: tuple[str, ...], loss_window: int, steps: int, device="cpu") -> dict:
        """A new run's slice. A window longer than the run would only hold zeros (and
        --loss-window 2e9 would allocate 32 GB): the means are the same with it clamped."""
        return {"window": torch.zeros(min(loss_window, steps), len(keys), device=device),
                "interval_sum": torch.zeros(len(keys), device=device), "log": []}

    def member(self, k: int) -> dict:
        return {"window": self.window[k].clone(), "interval_sum": self.interval_sum[k].clone(), "log": self.logs[k]}

    def add(self, rows: torch.Tensor, step: int) -> None:
        """The terms (P, K) of step ``step`` (0-based). Kept on the device: a .item() per
        step would sync a GPU every step."""
        rows = rows.detach().float()
        self.window[:, step % self.window.shape[1]] = rows
        self.interval_sum += rows

    def last_logged(self) -> int:
        return self.logs[0][-1]["step"] if self.logs and self.logs[0] else 0

    def nonfinite(self, step: int) -> dict[int, RunFailed]:
        """Runs with a NaN/Inf loss since the last log row, failed at the first such step."""
        bad = (~torch.isfinite(self.interval_sum).all(1)).tolist()
        last, w, out = self.last_logged(), self.window.shape[1], {}
        for k in (k for k, b in enumerate(bad) if b):
            recent = range(max(last, step - w), step)
            first = next((s for s in recent if not bool(torch.isfinite(self.window[k, s % w]).all())), last)
            out[k] = RunFailed(first + 1, f"non-finite loss at step {first + 1} (checked at step {step})")
        return out

    def take_means(self, step: int) -> list[list[float]]:
        """Each run's mean terms since the last log row; starts the next interval."""
        means = (self.interval_sum / (step - self.last_logged())).tolist()
        self.interval_sum.zero_()
        return means


class Trainee(Protocol):
    """What the loop asks of a family's runs (see the module docstring)."""
    specs: list[RunSpec]
    step: int
    record: LossRecord

    def train_step(self) -> None: ...
    def failures(self) -> dict[int, RunFailed]: ...
    def keep(self, indices: list[int]) -> None: ...
    def log_row(self, k: int, rate: float) -> dict: ...
    def save(self) -> None: ...
    def result(self, k: int, failure: RunFailed | None = None): ...


def write_log_rows(trainee: Trainee, batch_size: int, elapsed: float, steps_done: int) -> None:
    """A row of interval-mean losses (and the family's columns) in every run's log and
    train_log.csv, with the training speed over the interval (a timing)."""
    means = trainee.record.take_means(trainee.step)
    rate = steps_done * batch_size / max(elapsed, 1e-9)
    for k, spec in enumerate(trainee.specs):
        row = {"step": trainee.step, **{f"train_{key}": v for key, v in zip(trainee.record.keys, means[k])},
               **trainee.log_row(k, rate)}
        trainee.record.logs[k].append(row)
        write_csv(spec.run_dir / "train_log.csv", trainee.record.logs[k])


def train_runs(trainee: Trainee, steps: int, cfg, heartbeat=lambda: None, position: int = 1) -> Iterator:
    """Train the trainee's runs to ``steps``; yields each run's result as it leaves: a
    failed run at the check that finds it, the others at the end (also when resumed at
    the last step). ``heartbeat`` is called at every checkpoint (it refreshes the runs'
    locks). Ctrl-C raises ``runs.Interrupted`` with one line naming the step to resume from."""
    specs = trainee.specs
    name = specs[0].name if len(specs) == 1 else f"{specs[0].dataset} pack of {len(specs)}"
    bar = tqdm(total=steps, initial=trainee.step, desc=name, position=position, leave=False, unit="step",
               dynamic_ncols=True)
    saved_step = trainee.step           # the step a rerun resumes from
    tic, tic_step = time.perf_counter(), trainee.step
    try:
        while len(trainee.specs) and trainee.step < steps:
            trainee.train_step()
            bar.update()
            at_log = trainee.step % cfg.log_interval == 0 or trainee.step == steps
            at_checkpoint = trainee.step % cfg.checkpoint_interval == 0 or trainee.step == steps
            if at_log or at_checkpoint:
                failures = trainee.failures()
                for k, failure in failures.items():
                    yield trainee.result(k, failure)
                trainee.keep([k for k in range(len(trainee.specs)) if k not in failures])
                if not trainee.specs:
                    break
            if at_log:
                write_log_rows(trainee, cfg.batch_size, time.perf_counter() - tic, trainee.step - tic_step)
                tic, tic_step = time.perf_counter(), trainee.step
            if at_checkpoint:
                trainee.save()
                saved_step = trainee.step
                heartbeat()
    except KeyboardInterrupt:           # Ctrl-C: one line, not torch's 30-line traceback
        bar.close()
        raise Interrupted(f"interrupted at step {trainee.step} of {name} (last checkpoint: step {saved_step}); "
                          f"rerun the same command to resume") from None
    bar.close()
    for k in range(len(trainee.specs)):
        yield trainee.result(k)


def train_one(trainee: Trainee, steps: int, cfg, **kwargs):
    """A trainee of one run to ``steps``: its result; raises RunFailed if it diverged."""
    result = next(train_runs(trainee, steps, cfg, **kwargs))
    if result.failure is not None:
        raise result.failure
    return result
