"""The packed engine: a run trains the same alone and in any pack, runs in a pack stay
independent, and a pack resumes bit-exactly (also split into other packs)."""
import dataclasses

import numpy as np
import pytest
import torch

from config import Config
from lbvae.pipeline import family
from lbvae.pipeline.engine import PackedBetaVAE
from lbvae.pipeline.runs import CHECKPOINT, RunSpec
from lbvae.pipeline.training import ImageFeed, initial_weights, train_pack
from models import BetaVAE
from tiny_data import Squares


def _train_pack(*args, **kwargs):
    """Every RunResult of a pack, in the order the runs left it."""
    return list(train_pack(*args, **kwargs))

CFG = Config(batch_size=8, loss_window=5, log_interval=4, checkpoint_interval=3, heldout_fraction=0.1,
             device="cpu")
CPU = torch.device("cpu")


def _spec(root, name, seed, beta=4.0, lam=0.0, steps=6):
    return RunSpec("beta", "squares", beta, lam, seed=seed, steps=steps, run_dir=root / name)


def _max_diff(a: BetaVAE, b: BetaVAE) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


@pytest.fixture
def two_threads():
    """Fix the CPU thread count the engine plans with: a pack of one then runs with 2
    intra-op threads, packs of 2 or more with one thread per run (lbvae/pipeline/engine.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_run_trains_the_same_alone_and_in_any_pack(tmp_path, two_threads):
    alone = _train_pack([_spec(tmp_path, "alone", seed=1)], CFG, Squares(), CPU)[0]
    pair = _train_pack([_spec(tmp_path, "q0", seed=1), _spec(tmp_path, "q1", seed=5)], CFG, Squares(), CPU)[0]
    pack = _train_pack([_spec(tmp_path, "p0", seed=3, beta=1.0), _spec(tmp_path, "p1", seed=1),
                       _spec(tmp_path, "p2", seed=2, beta=16.0, lam=4.0)], CFG, Squares(), CPU)
    inside = pack[1]
    assert inside.spec.seed == pair.spec.seed == 1 and inside.step == alone.step == 6
    # Same thread count per run (one) in both packs: bit for bit.
    assert _max_diff(pair.model, inside.model) == 0.0
    assert torch.equal(pair.window, inside.window)
    # Alone it ran on two threads, which sums the weight gradients in another order.
    # Measured by this test (pytest -s prints it) on the 2-core CPU this was written on:
    # 5.0e-8 max abs weight difference after 6 steps, 9.8e-7 max relative loss
    # difference; the bounds are about 4x those.
    weights, losses = _max_diff(alone.model, inside.model), float(((alone.window - inside.window).abs()
                                                                  / inside.window.abs()).max())
    print(f"alone vs in a pack: max abs weight difference {weights:.2g}, max relative loss difference {losses:.2g}")
    assert weights < 2e-7 and losses < 4e-6


def test_vmap_mode_computes_the_same_gradients_as_split_mode(tmp_path):
    # vmap is the GPU path (one grouped convolution per layer for the pack); on the CPU
    # it must compute the same per-run losses and gradients up to summation order.
    states = [initial_weights(_spec(tmp_path, "r", seed=s), 1, CFG.latent_dim) for s in (1, 2)]
    x = ImageFeed(Squares(), CPU).batch(np.array([[0, 5, 9, 17, 21, 30, 33, 47], [1, 2, 3, 4, 40, 41, 42, 43]]))
    eps = torch.randn((2, 8, CFG.latent_dim), generator=torch.Generator().manual_seed(0))
    beta, lam = torch.tensor([4.0, 8.0]), torch.tensor([0.0, 2.0])
    out = {}
    for mode in ("split", "vmap"):
        pack = PackedBetaVAE(states, 1, CFG.latent_dim, CPU, mode=mode)
        pack.forward_backward(x, eps, beta, lam)       # a second call must not add to these gradients
        out[mode] = pack.forward_backward(x, eps, beta, lam), {n: p.grad for n, p in pack.params.items()}
    assert torch.allclose(out["split"][0], out["vmap"][0], rtol=1e-6)
    for name, grad in out["split"][1].items():
        other = out["vmap"][1][name]
        assert float((grad - other).norm()) <= 1e-5 * float(grad.norm()) + 1e-12, name
    # Swapping the runs' noise must change run 0's gradient: the check above can fail.
    swapped = PackedBetaVAE(states, 1, CFG.latent_dim, CPU, mode="vmap")
    swapped.forward_backward(x, eps.flip(0), beta, lam)
    assert not torch.allclose(swapped.params["encoder.fc_mu.bias"].grad, out["split"][1]["encoder.fc_mu.bias"])


def test_vmap_and_split_training_agree_to_float_tolerance(tmp_path):
    # Measured after 6 steps: 2.6e-6 max abs weight difference, 1.3e-6 relative in the losses.
    specs = [_spec(tmp_path, "a", seed=1), _spec(tmp_path, "b", seed=2, beta=8.0)]
    cfg = CFG.replace(checkpoint_interval=100)
    split = _train_pack(specs, cfg, Squares(), CPU, mode="split")
    vmapped = _train_pack([dataclasses.replace(s, run_dir=tmp_path / ("v" + s.run_dir.name)) for s in specs],
                         cfg, Squares(), CPU, mode="vmap")
    for s, v in zip(split, vmapped):
        assert _max_diff(s.model, v.model) < 2e-5
        assert torch.allclose(s.window, v.window, rtol=1e-5, atol=1e-6)


def test_runs_of_one_pack_keep_their_own_seed_data_and_beta(tmp_path):
    a, b, c = _train_pack([_spec(tmp_path, "a", seed=1), _spec(tmp_path, "b", seed=2),
                          _spec(tmp_path, "c", seed=1, beta=64.0)], CFG, Squares(), CPU)
    assert _max_diff(a.model, b.model) > 1e-3            # other seed: other init, data and noise
    assert _max_diff(a.model, c.model) > 1e-6            # same seed and data, other β
    assert a.window_means()["kl"] > c.window_means()["kl"]   # β=64 presses the KL down
    first = {s.seed: torch.load(s.run_dir / CHECKPOINT, weights_only=True) for s in (a.spec, b.spec)}
    assert not torch.equal(first[1]["generator"], first[2]["generator"])


def test_a_pack_resumes_bit_exactly(tmp_path):
    specs = [_spec(tmp_path / "whole", "a", seed=1, steps=12), _spec(tmp_path / "whole", "b", seed=2, steps=12)]
    whole = _train_pack(specs, CFG, Squares(), CPU)
    cut = [dataclasses.replace(s, run_dir=tmp_path / "cut" / s.run_dir.name) for s in specs]
    with pytest.raises(KeyboardInterrupt):
        _train_pack(cut, CFG, Squares(fail_after_reads=8), CPU)
    assert {torch.load(s.run_dir / CHECKPOINT, weights_only=True)["step"] for s in cut} == {6}
    resumed = _train_pack(cut, CFG, Squares(), CPU)
    for w, r in zip(whole, resumed):
        assert r.step == w.step == 12
        assert _max_diff(w.model, r.model) == 0.0
        assert torch.equal(w.window, r.window)
    alone = _train_pack([dataclasses.replace(specs[0], run_dir=tmp_path / "alone")], CFG, Squares(), CPU)[0]
    assert alone.window_means()["total"] == pytest.approx(whole[0].window_means()["total"], rel=1e-5)


def test_checkpoints_are_single_run_files_a_plain_model_and_adam_can_load(tmp_path):
    spec = _spec(tmp_path, "a", seed=1)
    _train_pack([spec, _spec(tmp_path, "b", seed=2)], CFG, Squares(), CPU)
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
        _train_pack(specs[:1], CFG, Squares(fail_after_reads=4), CPU)
    packs = family.form_packs(specs + [_spec(tmp_path, "long", seed=9, steps=9)], pack_size=3)
    assert [[s.run_dir.name for s in p] for p in packs] == [["r0"], ["r1", "r2", "r3"], ["r4"], ["long"]]
    with pytest.raises(ValueError, match="same step"):
        _train_pack(specs[:2], CFG, Squares(), CPU)


def test_resident_images_give_the_same_batches_as_host_reads():
    dataset = Squares()
    indices = np.array([[0, 5, 47], [3, 3, 12]])
    host = ImageFeed(dataset, CPU, resident=False).batch(indices)
    resident = ImageFeed(dataset, CPU, resident=True, chunk=7).batch(indices)
    assert torch.equal(host, resident) and host.shape == (2, 3, 1, 64, 64)
    assert host[0].is_contiguous(memory_format=torch.channels_last)
    expected = torch.from_numpy(dataset.images(indices.ravel())).float().div(255).view(2, 3, 1, 64, 64)
    assert torch.equal(host, expected)


def test_bf16_autocast_trains(tmp_path):
    result = _train_pack([_spec(tmp_path, "a", seed=1, steps=4)], CFG.replace(precision="bf16"), Squares(), CPU)[0]
    assert result.failure is None and np.isfinite(result.window_means()["total"])
