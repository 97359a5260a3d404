"""The mistakes that would silently change the study's result, each caught by a test:
the λ·L2 term not trained, the λ stage not continuing the β weights, training on
held-out images, diverged weights saved, bf16 ignored, and a run's files depending on
anything but its settings and seed."""
import json
import math

import numpy as np
import torch

from config import Config
from lbvae.pipeline import study, training
from lbvae.pipeline.evaluation import heldout_split, metric_indices
from lbvae.pipeline.runs import CHECKPOINT, RunSpec
from lbvae.pipeline.training import Pack, save_weights, train, train_pack
from tiny_data import TINY, Squares, tiny_spec

CPU = torch.device("cpu")
CFG = Config(batch_size=8, loss_window=5, log_interval=4, checkpoint_interval=3, heldout_fraction=0.1,
             device="cpu")


def _spec(root, name, seed=1, beta=4.0, lam=0.0, steps=6, stage="beta", init_from=None):
    return RunSpec(stage, "squares", beta, lam, seed=seed, steps=steps, run_dir=root / name, init_from=init_from)


def test_the_lambda_term_is_in_the_trained_loss(tmp_path):
    """total = recon + β·KL + λ·L2 per run of a pack, and λ changes the weights."""
    runs = list(train_pack([_spec(tmp_path, "l0", lam=0.0, steps=2), _spec(tmp_path, "l8", lam=8.0, steps=2)],
                           CFG, Squares(), CPU))
    for result in runs:
        total, recon, kl, l2 = result.window[:2].double().unbind(1)
        expected = recon + result.spec.beta * kl + result.spec.lam * l2
        assert torch.allclose(total, expected, rtol=1e-5), (result.spec.lam, total, expected)
        assert (l2 > 0).all()
    # Same seed, data, noise and β: only λ differs, so only the λ term can move them apart.
    plain, with_l2 = (r.model.state_dict() for r in runs)
    assert max(float((plain[k] - with_l2[k]).abs().max()) for k in plain) > 1e-6


def test_lambda_runs_start_from_the_beta_run_weights(tmp_path):
    cfg = Config(source="standin", datasets=("dsprites",), betas=(1.0, 8.0), lambdas=(0.0, 4.0), seeds=(0, 3),
                 results_dir=str(tmp_path))
    parents = {(s.dataset, s.beta, s.seed): s.weights_path for s in study.beta_specs(cfg)}
    for spec in study.lambda_specs(cfg):
        assert spec.init_from == parents[(spec.dataset, spec.beta, spec.seed)]
    beta_run = train(_spec(tmp_path, "beta", seed=2, steps=3), CFG, Squares(), CPU)
    save_weights(beta_run.model, tmp_path / "beta.pth")
    lam = _spec(tmp_path, "lam", seed=2, lam=4.0, stage="lambda", init_from=tmp_path / "beta.pth")
    pack = Pack([lam], CFG, 1, CPU, heldout_split(len(Squares()), CFG.heldout_fraction)[0])
    start = pack.model.member_state_dict(0)
    trained = beta_run.model.state_dict()
    assert all(torch.equal(start[k], trained[k].cpu()) for k in trained)
    fresh = training.initial_weights(_spec(tmp_path, "fresh", seed=2), 1, CFG.latent_dim)
    assert any(not torch.equal(start[k], fresh[k]) for k in fresh)      # the check above can fail


class RecordingSquares(Squares):
    """Squares that remembers every image index read."""

    def __init__(self):
        super().__init__()
        self.read = set()

    def _images(self, indices):
        self.read.update(indices.tolist())
        return super()._images(indices)


def test_training_never_reads_the_heldout_images(tmp_path):
    data = RecordingSquares()
    train_idx, held = heldout_split(len(data), CFG.heldout_fraction)
    assert len(held) > 0
    train(_spec(tmp_path, "a", steps=30), CFG, data, CPU)                # 240 images: five epochs
    assert data.read == set(train_idx.tolist())                          # every training image, nothing else


def test_weights_that_turn_non_finite_fail_the_run_before_they_are_saved(tmp_path, monkeypatch):
    step = Pack.train_step

    def step_then_corrupt_run_0(pack, feed=None):
        step(pack, feed)
        if pack.step == CFG.checkpoint_interval and pack.specs[0].run_dir.name == "bad":
            with torch.no_grad():      # this step's loss was finite: only the weights show it
                pack.model.params["decoder.fc1.bias"][0, 0] = math.inf

    monkeypatch.setattr(Pack, "train_step", step_then_corrupt_run_0)
    bad, good = list(train_pack([_spec(tmp_path, "bad", seed=1), _spec(tmp_path, "good", seed=2)],
                                CFG, Squares(), CPU))
    assert bad.spec.run_dir.name == "bad" and bad.failure is not None
    assert bad.failure.step == CFG.checkpoint_interval and "non-finite parameters" in str(bad.failure)
    assert not (tmp_path / "bad" / CHECKPOINT).exists()                  # never saved
    assert good.failure is None and good.step == 6


def test_bf16_runs_the_forward_in_bf16(tmp_path):
    """The same step in fp32 and bf16: close, but not equal (bf16 keeps 8 bits of mantissa)."""
    terms = {}
    for precision in ("fp32", "bf16"):
        result = next(train_pack([_spec(tmp_path, precision, steps=1)], CFG.replace(precision=precision),
                                 Squares(), CPU))
        terms[precision] = result.window[0]
    assert not torch.equal(terms["fp32"], terms["bf16"])
    assert torch.allclose(terms["fp32"], terms["bf16"], rtol=2e-2)


def test_metric_points_are_drawn_after_the_distinct_images():
    """The original's order: 5 distinct images first, then the metric points, one generator."""
    n, seed = 1000, 4
    rng = np.random.default_rng(seed)
    distinct = [rng.integers(k * n // 5, (k + 1) * n // 5) for k in range(5)]
    points = rng.choice(n, size=400, replace=False)
    got = metric_indices(n, seed, 300, 100)
    assert got["distinct"].tolist() == distinct
    assert got["train"].tolist() == points[:300].tolist() and got["test"].tolist() == points[300:].tolist()


TIMINGS = ("wall_time_s", "images_per_s_per_run", "images_per_s")


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _files(run_dir):
    """Every file of a run: JSON and CSV parsed with their timing fields dropped, the
    checkpoint loaded (its log holds a timing), anything else as bytes."""
    out = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        name = str(path.relative_to(run_dir))
        if path.suffix == ".json":
            out[name] = _without_timings(json.loads(path.read_text()))
        elif path.suffix == ".csv":
            header, *rows = [line.split(",") for line in path.read_text().splitlines()]
            keep = [i for i, column in enumerate(header) if column not in TIMINGS]
            out[name] = [[row[i] for i in keep] for row in [header, *rows]]
        elif path.name == CHECKPOINT:
            payload = torch.load(path, weights_only=True)
            out[name] = {**payload, "log": _without_timings(payload["log"])}
        else:
            out[name] = path.read_bytes()
    return out


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_run_is_determined_by_its_settings_and_seed_down_to_its_files(tmp_path):
    cfg = Config(**{**TINY, "figures": True})
    for name in ("first", "second"):
        study.run_pack([tiny_spec(tmp_path / name, 10)], cfg, Squares(), CPU)
    first, second = _files(tmp_path / "first"), _files(tmp_path / "second")
    assert {"checkpoint.pt", "metrics.json", "train_log.csv", "config.json", "traversal.gif"} <= first.keys()
    assert first.keys() == second.keys()
    for name in first:
        assert _same(first[name], second[name]), name
    # Only what determines the run: no global RNG states, nothing of the machine.
    assert first[CHECKPOINT].keys() == {"model", "optimizer", "generator", "step", "window", "interval_sum", "log"}
    # The comparison can fail: another seed changes the weights and the scores.
    study.run_pack([tiny_spec(tmp_path / "other", 10, seed=8)], cfg, Squares(), CPU)
    other = _files(tmp_path / "other")
    assert not _same(first[CHECKPOINT], other[CHECKPOINT]) and not _same(first["metrics.json"], other["metrics.json"])
