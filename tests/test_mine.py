"""The MINE estimator and the MINE disentangling VAE: estimator accuracy on Gaussians,
a few training steps of every ablation variant, resume, eval-only and CelebA."""
import csv
import json
import math
import os
import socket

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import mine_study
import runs
from config import MINE_VARIANTS, ConfigError, MineConfig, validate_mine
from losses import attention_entropy, attention_sparsity
from mine import MINE, correlated_gaussians, dv_bound, estimate_mi
from models import GaussianFitEstimator, MINEDisentangleVAE
from tests.tiny_data import Squares

# Tiny but complete: every variant, real metric code paths, a few steps each.
FAST = ["--demo", "--steps", "4", "--seeds", "0", "--vae-steps", "2", "--mine-steps", "1",
        "--log-interval", "2", "--checkpoint-interval", "2", "--loss-window", "4",
        "--metric-train-points", "300", "--metric-test-points", "100", "--sampled-metric-train", "20",
        "--sampled-metric-eval", "10", "--sampled-metric-batch", "4", "--heldout-eval-points", "20",
        "--mine-eval-steps", "20", "--device", "cpu"]


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# --- the estimator --------------------------------------------------------------------
@pytest.fixture
def one_thread():
    """One intra-op thread: the estimate then sums in one order on every machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_mine_matches_closed_form_mi_of_correlated_gaussians(rho, one_thread):
    x, z, true = correlated_gaussians(20_000, dim=1, rho=rho, seed=1)
    estimate = estimate_mi(x, z, steps=800, batch_size=256, hidden=64, seed=0)["mi"]
    assert abs(estimate - true) / true < 0.05, (rho, estimate, true)


def test_mine_finds_no_information_between_independent_variables():
    rng = np.random.default_rng(0)
    estimate = estimate_mi(rng.standard_normal((4000, 2)), rng.standard_normal((4000, 2)), steps=300, seed=0)["mi"]
    assert abs(estimate) < 0.03


def test_ema_correction_changes_the_gradient_not_the_value():
    torch.manual_seed(0)
    mine = MINE(1, 1, hidden=8, ema_rate=0.5)
    x = torch.randn(64, 1)
    z = x + 0.1 * torch.randn(64, 1)
    g = torch.Generator().manual_seed(0)
    mine(x, z, generator=torch.Generator().manual_seed(1))        # first update: EMA = batch mean
    mine.log_ema.fill_(math.log(10.0))                              # an EMA far from this batch's mean
    out = mine(x, z, generator=g, update_ema=False)
    t_marg = mine.T(x, z[torch.randperm(64, generator=torch.Generator().manual_seed(0))])
    assert torch.allclose(out["mi"], dv_bound(mine.T(x, z), t_marg), atol=1e-6)
    out["loss"].backward()
    corrected = [p.grad.clone() for p in mine.parameters()]
    mine.zero_grad()
    (-dv_bound(mine.T(x, z), t_marg)).backward()
    plain = [p.grad for p in mine.parameters()]
    assert not all(torch.allclose(a, b) for a, b in zip(corrected, plain))


# --- model parts ------------------------------------------------------------------------
def test_attention_penalties_prefer_one_to_one_allocation():
    one_to_one = torch.eye(3, 5)[None]                      # factor k -> latent k
    shared = torch.zeros(1, 3, 5)
    shared[:, :, 0] = 1                                     # every factor on latent 0
    uniform = torch.full((1, 3, 5), 0.2)
    assert attention_sparsity(one_to_one) < attention_sparsity(shared)
    assert attention_entropy(one_to_one) < 1e-6 < attention_entropy(uniform)
    assert attention_entropy(uniform) == pytest.approx(math.log(5))


def test_gaussian_fit_complexity_ranks_informative_latents():
    est = GaussianFitEstimator(latent_dim=3, samples=500)
    rng = torch.Generator().manual_seed(0)
    z = torch.randn(500, 3, generator=rng) * torch.tensor([1.0, 1.0, 0.1])
    logvar = torch.log(torch.tensor([[0.01, 1.0, 0.01]])).expand(500, 3)
    est.update(z, logvar)
    c = est.complexity()
    # latent 0: spread 1 with posterior std 0.1 -> ½ log(1/0.01) ≈ 2.3 nats; latent 1 is the prior.
    assert c[0] == pytest.approx(0.5 * math.log(100), abs=0.2)
    assert c[1] < 0.1 and c[2] < 0.1


def test_model_forward_is_beta_vae_compatible_and_attention_rows_sum_to_one():
    model = MINEDisentangleVAE(channels=1, latent_dim=6, num_factors=3, factor_dim=8, attention_dim=16)
    x = torch.rand(4, 1, 64, 64)
    logits, mu, logvar = model(x, generator=torch.Generator().manual_seed(0))
    assert logits.shape == x.shape and mu.shape == logvar.shape == (4, 6)
    attention = model.run(x)["attention"]
    assert attention.shape == (4, 3, 6)
    assert torch.allclose(attention.sum(-1), torch.ones(4, 3))


def test_config_validation_names_the_setting():
    with pytest.raises(ConfigError, match="--variants"):
        validate_mine(MineConfig(variants=("full", "no_everything")))
    with pytest.raises(ConfigError, match="--mine-parts"):
        validate_mine(MineConfig(latent_dim=4, mine_parts=8))


# --- training, ablation, eval-only ---------------------------------------------------------
@pytest.fixture(scope="module")
def ablation_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("mine")
    return out, mine_study.main(FAST + ["--ablation", "--results-dir", str(out)])


def test_every_ablation_variant_trains_and_is_evaluated(ablation_root):
    _, root = ablation_root
    table = rows(root / "results.csv")
    assert sorted(r["variant"] for r in table) == sorted(MINE_VARIANTS)
    header = list(table[0])
    assert header[:len(mine_study.RESULT_COLUMNS)] == mine_study.RESULT_COLUMNS    # λβ table first
    for r in table:
        assert r["status"] == "done" and r["stage"] == "mine" and r["steps"] == "4", r
        for key in ("z_diff", "z_min_var", "irs", "jemmig", "mig", "mine_mi_posthoc", "heldout_neg_elbo"):
            assert r[key] != "", key
        assert 0 <= float(r["mig"]) <= 1 and 0 <= float(r["z_diff"]) <= 1
    run = root / "shapes3d" / "full" / "seed_0"
    for name in ("config.json", "checkpoint.pt", "mine_vae_full_seed_0.pth", "train_log.csv", "metrics.json"):
        assert (run / name).exists(), name
    assert [int(r["step"]) for r in rows(run / "train_log.csv")] == [2, 4]
    gif = iio.imread(run / "traversal.gif")
    assert gif.shape[0] == 11 and gif.shape[2] > 64 * 9      # 11 frames, one column per latent
    text = (root / "ablation.txt").read_text()
    assert all(v in text for v in MINE_VARIANTS) and "z_diff" in text
    assert {r["metric"] for r in rows(root / "ablation.csv")} >= {"z_diff", "irs", "jemmig", "mig"}


def test_switched_off_terms_leave_the_loss(ablation_root):
    """no_mine trains the critic but not against it: its first VAE step's total has no
    redundancy term, while the full model's does (same seed, same first batch)."""
    _, root = ablation_root
    log = {v: rows(root / "shapes3d" / v / "seed_0" / "train_log.csv")[0] for v in MINE_VARIANTS}
    parts = {v: float(log[v]["train_total"]) - float(log[v]["train_recon"]) - float(log[v]["train_kl"])
             for v in MINE_VARIANTS}
    sparse, ent = float(log["no_mine"]["train_sparse"]), float(log["no_mine"]["train_ent"])
    assert parts["no_mine"] == pytest.approx(0.1 * sparse + 0.05 * ent, rel=1e-3, abs=1e-3)
    assert parts["no_ent"] != pytest.approx(parts["no_sparse"], rel=1e-6)


def test_resume_is_bit_for_bit(tmp_path):
    cfg = mine_study.mine_from_args(mine_study_args(FAST))
    def spec(d, steps):
        return mine_study.RunSpec("mine", "squares", cfg.kl_weight, 0.0, 3, steps, tmp_path / d, variant="full")
    device = torch.device("cpu")
    whole = mine_study.train(spec("a", 6), cfg, Squares(), device)
    mine_study.train(spec("b", 2), cfg, Squares(), device)     # stops (and checkpoints) at step 2
    resumed = mine_study.train(spec("b", 6), cfg, Squares(), device)
    for a, b in zip(list(whole.model.state_dict().values()) + list(whole.estimator.state_dict().values()),
                    list(resumed.model.state_dict().values()) + list(resumed.estimator.state_dict().values())):
        assert torch.equal(a, b)


def test_a_diverged_run_is_marked_failed_and_the_grid_goes_on(tmp_path, monkeypatch):
    cfg = mine_study.mine_from_args(mine_study_args(FAST)).replace(metric_train_points=30, metric_test_points=10)
    step = mine_study.vae_step

    def diverge_in_seed_3(state, x, cfg, switches):
        row = step(state, x, cfg, switches)
        return row * math.nan if state.model.seed_for_test == 3 and state.step == 2 else row

    build = mine_study.build_models

    def tagged_build(cfg, channels, seed, device):
        model, estimator = build(cfg, channels, seed, device)
        model.seed_for_test = seed
        return model, estimator

    monkeypatch.setattr(mine_study, "vae_step", diverge_in_seed_3)
    monkeypatch.setattr(mine_study, "build_models", tagged_build)
    specs = [mine_study.RunSpec("mine", "squares", cfg.kl_weight, 0.0, s, 4, tmp_path / f"seed_{s}", variant="full")
             for s in (3, 4)]
    failed, done = (mine_study.run_one(s, cfg.replace(figures=False), Squares(), torch.device("cpu")) for s in specs)
    assert failed["status"] == "failed" and failed["steps"] == 4 and "non-finite" in failed["reason"]
    assert (tmp_path / "seed_3" / runs.FAILED).exists() and not (tmp_path / "seed_3" / runs.METRICS).exists()
    saved = torch.load(tmp_path / "seed_3" / "checkpoint.pt", weights_only=True)    # the diverged state is never saved
    assert saved["step"] == 2 and all(torch.isfinite(v).all() for v in saved["model"].values())
    assert done["status"] == "done" and (tmp_path / "seed_4" / runs.METRICS).exists()


def test_a_run_another_live_process_trains_is_skipped(tmp_path, capsys):
    cfg = mine_study.mine_from_args(mine_study_args(FAST))
    spec = mine_study.RunSpec("mine", "squares", cfg.kl_weight, 0.0, 0, 4, tmp_path / "run", variant="full")
    spec.run_dir.mkdir()
    (spec.run_dir / runs.LOCK).write_text(f"{socket.gethostname()} {os.getppid()}")    # our parent: alive
    assert mine_study.run_one(spec, cfg, Squares(), torch.device("cpu")) is None
    assert "is being trained by pid" in capsys.readouterr().out
    assert not (spec.run_dir / "checkpoint.pt").exists() and (spec.run_dir / runs.LOCK).exists()


def mine_study_args(argv):
    parser = runs.Parser()
    mine_study.add_mine_config_arguments(parser)
    return parser.parse_args(argv)


def test_eval_only_reproduces_the_saved_metrics(ablation_root, capsys, tmp_path):
    _, root = ablation_root
    run = root / "shapes3d" / "no_ent" / "seed_0"
    out = mine_study.main(["--eval-only", str(run / "checkpoint.pt"), "--device", "cpu", "--out", str(tmp_path / "e")])
    assert out == tmp_path / "e" and not (run / "eval_checkpoint").exists()      # --out: nothing beside the run
    saved = json.loads((run / "metrics.json").read_text())["row"]
    again = rows(out / "results.csv")[0]
    for key in ("z_diff", "z_min_var", "irs", "jemmig", "mig", "mine_mi_posthoc", "train_window_nll"):
        assert float(again[key]) == pytest.approx(saved[key], rel=1e-6), key
    assert iio.imread(out / "traversal.gif").shape[0] == 11
    assert "evaluated" in capsys.readouterr().out


@pytest.mark.parametrize("extra, needle", [
    (["--datasets", "dsprites"], "is the run dataset='shapes3d' (its config.json); drop --datasets or give "
                                 "--datasets shapes3d"),
    (["--seeds", "3"], "is the run seed=0"),
    (["--out", "/dev/null/x"], "/dev/null is not a directory"),
], ids=["other dataset", "other seed", "unwritable out"])
def test_eval_only_refuses_before_evaluating(ablation_root, capsys, extra, needle):
    _, root = ablation_root
    run = root / "shapes3d" / "full" / "seed_0"
    with pytest.raises(SystemExit) as err:
        mine_study.main(["--eval-only", str(run / "checkpoint.pt"), "--device", "cpu"] + extra)
    assert err.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and needle in message[0], message
    assert not (run / "eval_checkpoint").exists()


def test_eval_only_of_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as err:
        mine_study.main(["--eval-only", str(tmp_path / "nope.pt")])
    assert err.value.code == 2


def test_celeba_trains_with_traversals_and_empty_metric_cells(tmp_path):
    folder = tmp_path / "data" / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        iio.imwrite(folder / f"{i + 1:06d}.jpg", rng.integers(0, 255, (218, 178, 3), dtype=np.uint8),
                    extension=".jpg")
    root = mine_study.main(FAST + ["--source", "real", "--data-dir", str(tmp_path / "data"), "--datasets", "celeba",
                                   "--variants", "full", "--results-dir", str(tmp_path / "r"),
                                   "--batch-size", "8"])     # at most the 12 images
    (row,) = rows(root / "results.csv")
    assert row["status"] == "done" and row["dataset"] == "celeba"
    assert row["mig"] == row["z_diff"] == row["irs"] == ""
    assert row["mine_mi_posthoc"] != "" and row["train_window_nll"] != ""
    # Pillow merges identical consecutive frames: a decoder 4 steps old may not change between some.
    gif = iio.imread(root / "celeba" / "full" / "seed_0" / "traversal.gif")
    assert 1 <= gif.shape[0] <= 11 and gif.shape[2] > 64 * 9, gif.shape      # one column per latent
