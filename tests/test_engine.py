"""The packed engine: a run trains the same alone and in any pack, runs in a pack stay
independent, and a pack resumes bit-exactly (also split into other packs)."""
import dataclasses

import numpy as np
import pytest
import torch

import study
from config import Config
from models import BetaVAE
from tiny_data import Squares
from training import CHECKPOINT, ImageSource, RunSpec, train_pack

CFG = Config(batch_size=8, loss_window=5, log_interval=4, checkpoint_interval=3, heldout_fraction=0.1,
             device="cpu")
CPU = torch.device("cpu")


def _spec(root, name, seed, beta=4.0, lam=0.0, steps=6):
    return RunSpec("beta", "squares", beta, lam, seed=seed, steps=steps, run_dir=root / name)


def _max_diff(a: BetaVAE, b: BetaVAE) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def test_a_run_trains_bit_identically_alone_and_inside_a_pack(tmp_path):
    alone = train_pack([_spec(tmp_path, "alone", seed=1)], CFG, Squares(), CPU)[0]
    pack = train_pack([_spec(tmp_path, "p0", seed=3, beta=1.0), _spec(tmp_path, "p1", seed=1),
                       _spec(tmp_path, "p2", seed=2, beta=16.0, lam=4.0)], CFG, Squares(), CPU)
    inside = pack[1]
    assert inside.spec.seed == 1 and inside.step == alone.step == 6
    assert _max_diff(alone.model, inside.model) == 0.0
    assert torch.equal(alone.window, inside.window)
    assert [r["train_total"] for r in alone.log] == [r["train_total"] for r in inside.log]


def test_vmap_mode_agrees_with_split_mode_to_float_tolerance(tmp_path):
    # vmap is the GPU path (grouped convolutions); on the CPU it must compute the same
    # runs up to summation order. Measured: 2.6e-6 max abs weight difference after 12 steps.
    specs = [_spec(tmp_path, "a", seed=1), _spec(tmp_path, "b", seed=2, beta=8.0)]
    split = train_pack(specs, CFG.replace(checkpoint_interval=100), Squares(), CPU, mode="split")
    vmapped = train_pack([dataclasses.replace(s, run_dir=tmp_path / ("v" + s.run_dir.name)) for s in specs],
                         CFG.replace(checkpoint_interval=100), Squares(), CPU, mode="vmap")
    for s, v in zip(split, vmapped):
        assert _max_diff(s.model, v.model) < 1e-4
        assert torch.allclose(s.window, v.window, rtol=1e-5)


def test_runs_of_one_pack_keep_their_own_seed_data_and_beta(tmp_path):
    a, b, c = train_pack([_spec(tmp_path, "a", seed=1), _spec(tmp_path, "b", seed=2),
                          _spec(tmp_path, "c", seed=1, beta=64.0)], CFG, Squares(), CPU)
    assert _max_diff(a.model, b.model) > 1e-3            # other seed: other init, data and noise
    assert _max_diff(a.model, c.model) > 1e-6            # same seed and data, other β
    assert a.window_means()["kl"] > c.window_means()["kl"]   # β=64 presses the KL down
    first = {s.seed: torch.load(s.run_dir / CHECKPOINT, weights_only=True) for s in (a.spec, b.spec)}
    assert not torch.equal(first[1]["generator"], first[2]["generator"])


def test_a_pack_resumes_bit_exactly_even_split_into_other_packs(tmp_path):
    specs = [_spec(tmp_path / "whole", "a", seed=1, steps=12), _spec(tmp_path / "whole", "b", seed=2, steps=12)]
    whole = train_pack(specs, CFG, Squares(), CPU)
    cut = [dataclasses.replace(s, run_dir=tmp_path / "cut" / s.run_dir.name) for s in specs]
    with pytest.raises(KeyboardInterrupt):
        train_pack(cut, CFG, Squares(fail_after_reads=8), CPU)
    assert {torch.load(s.run_dir / CHECKPOINT, weights_only=True)["step"] for s in cut} == {6}
    resumed = [train_pack([s], CFG, Squares(), CPU)[0] for s in cut]      # each alone now
    for w, r in zip(whole, resumed):
        assert r.step == w.step == 12
        assert _max_diff(w.model, r.model) == 0.0
        assert torch.equal(w.window, r.window)


def test_checkpoints_are_single_run_files_a_plain_model_and_adam_can_load(tmp_path):
    spec = _spec(tmp_path, "a", seed=1)
    train_pack([spec, _spec(tmp_path, "b", seed=2)], CFG, Squares(), CPU)
    saved = torch.load(spec.run_dir / CHECKPOINT, weights_only=True)
    model = BetaVAE(1, CFG.latent_dim)
    model.load_state_dict(saved["model"])                    # strict: names and shapes of one BetaVAE
    optimizer = torch.optim.Adam(model.parameters(), lr=CFG.lr)
    optimizer.load_state_dict(saved["optimizer"])
    assert all(optimizer.state[p]["exp_avg"].shape == p.shape for p in model.parameters())
    assert saved["step"] == 6 and saved["window"].shape == (CFG.loss_window, 4)


def test_packs_hold_runs_at_the_same_step_and_target(tmp_path):
    specs = [_spec(tmp_path, f"r{i}", seed=i, steps=6) for i in range(5)]
    with pytest.raises(KeyboardInterrupt):                    # r0 stops with a checkpoint at step 3
        train_pack(specs[:1], CFG, Squares(fail_after_reads=4), CPU)
    packs = study.form_packs(specs + [_spec(tmp_path, "long", seed=9, steps=9)], pack_size=3)
    assert [[s.run_dir.name for s in p] for p in packs] == [["r0"], ["r1", "r2", "r3"], ["r4"], ["long"]]
    with pytest.raises(ValueError, match="same step"):
        train_pack(specs[:2], CFG, Squares(), CPU)


def test_resident_images_give_the_same_batches_as_host_reads():
    dataset = Squares()
    indices = np.array([[0, 5, 47], [3, 3, 12]])
    host = ImageSource(dataset, CPU, resident=False).batch(indices)
    resident = ImageSource(dataset, CPU, resident=True, chunk=7).batch(indices)
    assert torch.equal(host, resident) and host.shape == (2, 3, 1, 64, 64)
    assert host[0].is_contiguous(memory_format=torch.channels_last)
    expected = torch.from_numpy(dataset.images(indices.ravel())).float().div(255).view(2, 3, 1, 64, 64)
    assert torch.equal(host, expected)


def test_bf16_autocast_trains(tmp_path):
    result = train_pack([_spec(tmp_path, "a", seed=1, steps=4)], CFG.replace(precision="bf16"), Squares(), CPU)[0]
    assert result.failure is None and np.isfinite(result.window_means()["total"])
