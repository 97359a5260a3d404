"""The shared training loop (lbvae/pipeline/loop.py) and run lifecycle (lbvae/pipeline/family.py) carry a family that
is nothing but a model, a loss, a step and a results row: a toy written here."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lbvae.pipeline import family
from lbvae.pipeline.family import Family
from lbvae.pipeline.loop import LossRecord
from lbvae.pipeline.runs import METRICS, Interrupted, RunSpec
from utils import atomic_write, read_csv

TRUE_W = torch.tensor([[1.0, -2.0, 0.5]])


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    log_interval: int = 2
    checkpoint_interval: int = 3
    batch_size: int = 8
    loss_window: int = 4
    figures: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ToyRun:
    """Linear regression by plain SGD on fresh Gaussian inputs: the whole family's state."""

    def __init__(self, spec: RunSpec, cfg: ToyConfig):
        self.spec, self.specs, self.failure, self.kill_at = spec, [spec], None, None
        torch.manual_seed(spec.seed)
        self.model, self.noise = torch.nn.Linear(3, 1, bias=False), torch.Generator().manual_seed(spec.seed)
        payload = {"step": 0, **LossRecord.fresh(("mse",), cfg.loss_window, spec.steps)}
        if spec.checkpoint_path.exists():
            payload = torch.load(spec.checkpoint_path, weights_only=True)
            self.model.load_state_dict(payload["model"])
            self.noise.set_state(payload["noise"])
        self.step, self.record = payload["step"], LossRecord(("mse",), [payload], "cpu")

    def train_step(self) -> None:
        if self.step == self.kill_at:
            raise KeyboardInterrupt
        x = torch.randn(8, 3, generator=self.noise)
        loss = ((self.model(x) - x @ TRUE_W.T) ** 2).mean()
        grad, = torch.autograd.grad(loss, self.model.weight)
        with torch.no_grad():
            self.model.weight -= 0.25 * grad
        self.record.add(loss.detach()[None, None], self.step)
        self.step += 1

    def failures(self):
        return self.record.nonfinite(self.step)

    def keep(self, indices):
        self.specs = [self.spec] if indices else []

    def log_row(self, k, rate):
        return {"images_per_s": rate}

    def save(self) -> None:
        with atomic_write(self.spec.checkpoint_path) as f:
            torch.save({"model": self.model.state_dict(), "noise": self.noise.get_state(), "step": self.step,
                        **self.record.member(0)}, f)

    def result(self, k, failure=None):
        self.failure = failure
        return self


class Toy(Family):
    kill_at = None

    def identity(self, spec):
        return {"stage": spec.stage, "seed": spec.seed, "steps": spec.steps}

    def trainee(self, specs, cfg, dataset, device, feed):
        run = ToyRun(specs[0], cfg)
        run.kill_at = self.kill_at
        return run

    def evaluate(self, result, cfg, dataset, device, wall_time_s, pack_size):
        error = float((result.model.weight.detach() - TRUE_W).abs().max())
        return {"row": {"stage": "toy", "seed": result.spec.seed, "steps": result.step, "status": "done",
                        "weight_error": error, "wall_time_s": wall_time_s}}


def spec(tmp_path, name: str) -> RunSpec:
    return RunSpec("toy", "gaussian", 0.0, 0.0, 7, 10, tmp_path / name)


def test_a_toy_family_trains_is_killed_and_resumes_to_the_same_weights(tmp_path):
    toy, cfg = Toy(), ToyConfig()
    whole, = family.run_pack([spec(tmp_path, "whole")], cfg, toy, None, "cpu")
    toy.kill_at = 7                             # mid-run, after the checkpoint at step 6
    with pytest.raises(Interrupted, match=r"interrupted at step 7 .*\(last checkpoint: step 6\)"):
        family.run_pack([spec(tmp_path, "killed")], cfg, toy, None, "cpu")
    killed = spec(tmp_path, "killed")
    assert not (killed.run_dir / METRICS).exists()
    assert torch.load(killed.checkpoint_path, weights_only=True)["step"] == 6
    toy.kill_at = None
    resumed, = family.run_pack([killed], cfg, toy, None, "cpu")
    assert resumed["status"] == whole["status"] == "done" and resumed["steps"] == 10
    assert whole["weight_error"] < 0.1                  # it trained: the toy fits its weights
    a, b = (torch.load(spec(tmp_path, d).weights_path, weights_only=True) for d in ("whole", "killed"))
    assert torch.equal(a["weight"], b["weight"])
    logs = [read_csv(tmp_path / d / "train_log.csv") for d in ("whole", "killed")]
    assert [(r["step"], r["train_mse"]) for r in logs[0]] == [(r["step"], r["train_mse"]) for r in logs[1]]
    assert json.loads((killed.run_dir / METRICS).read_text())["row"]["weight_error"] == whole["weight_error"]


def test_the_lambda_beta_family_gets_the_same_eval_only(tmp_path, capsys):
    """--eval-only is lbvae/pipeline/family.py's: main_beta.py evaluates a saved checkpoint to the numbers
    the run saved when it finished (pack size and time aside: they are not the model's)."""
    from lbvae.pipeline import study
    flags = ["--source", "standin", "--datasets", "dsprites", "--betas", "4", "--seeds", "0", "--steps", "6",
             "--batch-size", "8", "--log-interval", "3", "--checkpoint-interval", "3", "--loss-window", "4",
             "--metric-train-points", "200", "--metric-test-points", "100", "--heldout-eval-points", "20",
             "--no-figures", "--device", "cpu", "--results-dir", str(tmp_path / "r")]
    root = study.main("beta", flags)
    run = root / "dsprites" / "beta_4" / "seed_0"
    out = study.main("beta", ["--eval-only", str(run / "checkpoint.pt"), "--out", str(tmp_path / "e")])
    saved, again = (json.loads((d / METRICS).read_text())["row"] for d in (run, out))
    assert saved.pop("pack_size") == 1 and again.pop("pack_size") is None
    saved.pop("wall_time_s"), again.pop("wall_time_s")
    assert again == saved
    assert "evaluated" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:          # the saved run names its cell: a flag that disagrees is refused
        study.main("beta", ["--eval-only", str(run / "checkpoint.pt"), "--betas", "8"])
    assert err.value.code == 2 and "is the run beta=4.0" in capsys.readouterr().err
