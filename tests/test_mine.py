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

import metrics
from config import MINE_VARIANTS, ConfigError, MineConfig, validate_mine
from lbvae.mine import report as mine_report
from lbvae.mine import study as mine_study
from lbvae.mine.estimator import MINE, correlated_gaussians, dv_bound, estimate_mi
from lbvae.pipeline import runs
from losses import attention_entropy, attention_load_l2, attention_sparsity, mine_vae_loss
from models import FactorMutualInformation, GaussianFitEstimator, MINEDisentangleVAE, to_float
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
    assert failed["status"] == "failed" and failed["steps"] == 3 and "non-finite" in failed["reason"]
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


@pytest.mark.parametrize("partition", [False, True], ids=["no partition file", "official partition"])
def test_celeba_trains_with_traversals_and_empty_metric_cells(tmp_path, partition):
    folder = tmp_path / "data" / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        iio.imwrite(folder / f"{i + 1:06d}.jpg", rng.integers(0, 255, (218, 178, 3), dtype=np.uint8),
                    extension=".jpg")
    if partition:       # images 11 and 12 are the official test partition
        (folder.parent / "list_eval_partition.txt").write_text(
            "".join(f"{i + 1:06d}.jpg {0 if i < 9 else 1 if i < 10 else 2}\n" for i in range(12)))
    root = mine_study.main(FAST + ["--source", "real", "--data-dir", str(tmp_path / "data"), "--datasets", "celeba",
                                   "--variants", "full", "--results-dir", str(tmp_path / "r"),
                                   "--batch-size", "8", "--heldout-fraction", "0.2"])     # at most the 12 images
    (row,) = rows(root / "results.csv")
    assert row["status"] == "done" and row["dataset"] == "celeba"
    assert row["mig"] == row["z_diff"] == row["irs"] == ""
    assert row["mine_mi_posthoc"] != "" and row["train_window_nll"] != ""
    # Pillow merges identical consecutive frames: a decoder 4 steps old may not change between some.
    gif = iio.imread(root / "celeba" / "full" / "seed_0" / "traversal.gif")
    assert 1 <= gif.shape[0] <= 11 and gif.shape[2] > 64 * 9, gif.shape      # one column per latent
    # PSNR and SSIM on the official test partition when it is there, else on the held-out split (2 of 12).
    assert row["recon_eval_split"] == ("official test partition" if partition else "held-out split")
    assert row["recon_eval_images"] == "2"
    assert 0 < float(row["psnr"]) < 100 and -1 <= float(row["ssim"]) <= 1
    saved = json.loads((root / "celeba" / "full" / "seed_0" / "metrics.json").read_text())
    assert "psnr" in saved["definitions"] and "ssim" in saved["definitions"]


# --- issue 21: the sparsity penalty, the original's objective, progress images, PSNR/SSIM -----------
def allocations(k=10, latents=128):
    """(uniform, one-to-one: factor k on latent k, all factors on latent 0), each (1, K, L)."""
    uniform = torch.full((1, k, latents), 1 / latents)
    one_to_one = torch.zeros(1, k, latents)
    one_to_one[0, torch.arange(k), torch.arange(k)] = 1
    all_on_one = torch.zeros(1, k, latents)
    all_on_one[0, :, 0] = 1
    return uniform, one_to_one, all_on_one


def test_sparsity_penalty_is_larger_for_uniform_than_for_one_to_one_attention():
    uniform, one_to_one, all_on_one = allocations()
    assert attention_sparsity(uniform) > attention_sparsity(one_to_one) + 1
    # H(factor | latent): log K where a latent is shared evenly by all K factors, 0 when none is shared.
    assert float(attention_sparsity(uniform)) == pytest.approx(math.log(10), rel=1e-5)
    assert float(attention_sparsity(all_on_one)) == pytest.approx(math.log(10), rel=1e-5)
    assert float(attention_sparsity(one_to_one)) == pytest.approx(0, abs=1e-6)
    # The penalty it replaced ranks them the other way round: smallest for uniform attention.
    assert attention_load_l2(uniform) < attention_load_l2(one_to_one) < attention_load_l2(all_on_one)


def test_sparsity_penalty_by_hand_on_a_small_allocation():
    a = torch.tensor([[[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]]])       # K = 2 factors share latent 0
    # latent 0: load 1, shares (½, ½) -> entropy log 2, weight 1/2; latents 1, 2: one factor each -> 0.
    assert float(attention_sparsity(a)) == pytest.approx(0.5 * math.log(2), rel=1e-6)


def loss_inputs(n=3, latents=4, factors=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=g).round()
    logits = torch.randn(n, 1, 4, 4, generator=g)
    mu, logvar = torch.randn(n, latents, generator=g), torch.randn(n, latents, generator=g) * 0.3
    attention = torch.softmax(torch.randn(n, factors, latents, generator=g), dim=-1)
    return x, logits, mu, logvar, attention


@pytest.mark.parametrize("loss_scale", ["batch_mean", "batch_sum"])
def test_mine_vae_loss_terms_match_a_hand_computation(loss_scale):
    x, logits, mu, logvar, attention = loss_inputs()
    estimates, weights = torch.tensor([0.3, -0.1, 0.7]), torch.tensor([0.5, 1.0, 1.5])
    terms = mine_vae_loss(logits, x, mu, logvar, attention, estimates, weights, kl_weight=2.0,
                          disentanglement_weight=1.5, attention_reg_weight=0.1, entropy_reg_weight=0.05,
                          loss_scale=loss_scale)
    p, xn, m, lv, a = (t.double().numpy() for t in (torch.sigmoid(logits), x, mu, logvar, attention))
    recon = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).reshape(3, -1).sum(1).mean()
    kl = (0.5 * (m ** 2 + np.exp(lv) - 1 - lv)).sum(1).mean()
    load = a.sum(1, keepdims=True)
    sparse = -(a * np.log(a / load)).sum((1, 2)).mean() / 2
    ent = -(a * np.log(a)).sum(2).mean()
    mine = (0.5 * 0.3 - 1.0 * 0.1 + 1.5 * 0.7) / 3
    s = 3 if loss_scale == "batch_sum" else 1       # the original's scale sums recon and KL over the batch
    expected = {"recon": recon, "kl": kl, "sparse": sparse, "ent": ent, "redundancy": mine,
                "total": s * (recon + 2.0 * kl) + 1.5 * mine + 0.1 * sparse + 0.05 * ent}
    for key, value in expected.items():
        assert float(terms[key]) == pytest.approx(value, rel=1e-5), key


VARIANT_SETTINGS = [dict(mine_target="redundancy", bilevel="alternate"),
                    dict(mine_target="factor", bilevel="alternate"),
                    dict(mine_target="redundancy", bilevel="inner_attention", grad_clip=1.0),
                    dict(mine_target="factor", bilevel="inner_attention", loss_scale="batch_sum", weight_decay=1e-4,
                         lr_decay=0.5, grad_clip=1.0)]


@pytest.mark.parametrize("settings", VARIANT_SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
def test_every_objective_variant_trains_two_steps_with_the_documented_loss(tmp_path, settings):
    cfg = mine_study.mine_from_args(mine_study_args(FAST)).replace(log_interval=1, sample_interval=0, **settings)
    spec = mine_study.RunSpec("mine", "squares", cfg.kl_weight, 0.0, 0, 2, tmp_path / "run", variant="full")
    state = mine_study.train(spec, cfg, Squares(), torch.device("cpu"))
    terms = len(state.estimator.estimators)
    assert terms == (cfg.num_factors if settings["mine_target"] == "factor" else cfg.mine_parts)
    s = cfg.batch_size if cfg.loss_scale == "batch_sum" else 1
    for row in state.log:
        total = (s * (row["train_recon"] + cfg.kl_weight * row["train_kl"])
                 + cfg.disentanglement_weight * row["train_redundancy"]
                 + cfg.attention_reg_weight * row["train_sparse"] + cfg.entropy_reg_weight * row["train_ent"])
        assert row["train_total"] == pytest.approx(total, rel=1e-5), row
        assert all(math.isfinite(v) for k, v in row.items() if k != "mine_step_bound"), row
    assert math.isfinite(state.log[-1]["mine_step_bound"])              # a T step after VAE step 2


def test_factor_weights_are_the_embedding_spread_by_hand():
    model = MINEDisentangleVAE(channels=1, latent_dim=4, num_factors=3, factor_dim=2, attention_dim=8,
                               gaussian_fit_samples=50)
    assert torch.equal(model.factor_weights(), torch.ones(3))            # nothing seen yet
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    model.complexity.update(z, torch.zeros(50, 4))
    with torch.no_grad():
        e = model.factor_encoder(z).double().numpy()                      # (50, K, F)
    c = 0.5 * np.log1p(e.var(axis=0, ddof=1)).sum(axis=1)
    assert model.factor_complexity().double().numpy() == pytest.approx(c, rel=1e-5)
    assert model.factor_weights().double().numpy() == pytest.approx(c / c.mean(), rel=1e-5)


def test_factor_target_feeds_each_factor_embedding_to_its_own_estimator():
    torch.manual_seed(0)
    estimator = FactorMutualInformation(latent_dim=4, num_factors=3, factor_dim=2, hidden=8)
    z, e = torch.randn(16, 4), torch.randn(16, 3, 2)
    got = mine_study.mine_estimates(estimator, z, e, torch.Generator().manual_seed(5), update_ema=False)
    g = torch.Generator().manual_seed(5)
    by_hand = [estimator.estimators[k](e[:, k], z, g, update_ema=False)["mi"] for k in range(3)]
    assert torch.allclose(got, torch.stack(by_hand))


def test_the_learning_rate_decay_reaches_the_optimiser(tmp_path):
    cfg = mine_study.mine_from_args(mine_study_args(FAST)).replace(lr_decay=0.5, sample_interval=0)
    spec = mine_study.RunSpec("mine", "squares", cfg.kl_weight, 0.0, 0, 4, tmp_path / "run", variant="full")
    state = mine_study.train(spec, cfg, Squares(), torch.device("cpu"))
    # 48 training images, batch 16: step 3 (the fourth) draws from epoch 1.
    assert state.optimizer.param_groups[0]["lr"] == cfg.lr * 0.5


@pytest.mark.parametrize("clip", [0.0, 1e-3], ids=["unclipped", "clipped"])
def test_inner_attention_steps_are_sgd_on_the_attention_only(clip):
    torch.manual_seed(0)
    model = MINEDisentangleVAE(channels=1, latent_dim=4, num_factors=2, factor_dim=4, attention_dim=8)
    torch.nn.init.normal_(model.attention.out.weight, std=0.1)          # let the attention reach the decoder
    x = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    out = model.run(x, generator=torch.Generator().manual_seed(2))
    estimates, weights = torch.tensor([0.2, 0.4]), torch.ones(2)
    cfg = MineConfig(inner_steps=1, inner_lr=0.01, grad_clip=clip)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attended, attention = model.attention(out["z"].detach(), model.factor_encoder(out["z"].detach()))
    by_hand = (lambda t: t["recon"] + t["kl"] + t["redundancy"] + 0.1 * t["sparse"] + 0.05 * t["ent"])(
        mine_vae_loss(model.decoder(attended), x, out["mu"], out["logvar"], attention, estimates, weights))
    grads = dict(zip([n for n, _ in model.attention.named_parameters()],
                     torch.autograd.grad(by_hand, list(model.attention.parameters()))))
    norm = float(torch.sqrt(sum(g.pow(2).sum() for g in grads.values())))
    factor = min(1.0, clip / (norm + 1e-6)) if clip else 1.0          # clip_grad_norm_'s global rescaling
    mine_study.inner_attention_steps(model, x, out, estimates, weights, cfg, (True, True, True))
    for name, value in model.state_dict().items():
        if name.startswith("attention."):
            expected = before[name] - 0.01 * factor * grads[name[len("attention."):]]
            assert torch.allclose(value, expected, atol=1e-7), name
        else:
            assert torch.equal(value, before[name]), name


def test_learning_rate_decays_once_per_epoch():
    cfg = MineConfig(lr=1e-3, lr_decay=0.5, batch_size=4)
    assert [mine_study.learning_rate(cfg, s, train_images=10) for s in (0, 2, 3, 5, 8)] == \
        [1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4]          # epoch = step·4 // 10


def test_original_preset_and_variant_settings():
    cfg = mine_study.mine_from_args(mine_study_args(["--preset", "original"]))
    assert (cfg.lr, cfg.weight_decay, cfg.lr_decay, cfg.grad_clip, cfg.seeds) == (1e-3, 1e-4, 0.95, 1.0, (1265,))
    assert (cfg.loss_scale, cfg.mine_target, cfg.bilevel) == ("batch_sum", "factor", "inner_attention")
    assert mine_study.mine_root(cfg).name == "mine_results_original"
    default = MineConfig()
    assert (default.loss_scale, default.mine_target, default.bilevel) == ("batch_mean", "redundancy", "alternate")
    assert mine_study.mine_variant_config(default, "factors_15").num_factors == 15
    assert mine_study.mine_variant_config(default, "dw_2").disentanglement_weight == 2.0
    assert mine_study.mine_variant_config(default, "no_ent") == default


@pytest.mark.parametrize("flag, needle", [("--mine-target parts", "--mine-target"), ("--bilevel inner", "--bilevel"),
                                          ("--loss-scale sum", "--loss-scale"), ("--inner-lr 0", "--inner-lr"),
                                          ("--lr-decay 1.5", "--lr-decay"), ("--grad-clip -1", "--grad-clip"),
                                          ("--preset paper", "--preset"),
                                          ("--bilevel inner_attention", "--bilevel inner_attention needs --grad-clip"),
                                          ("--sample-interval -1", "--sample-interval")])
def test_bad_objective_settings_are_one_line_errors(flag, needle, capsys):
    with pytest.raises(SystemExit) as err:
        mine_study.main(["--demo"] + flag.split())      # refused before anything trains
    assert err.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and needle in message[-1], message


def test_factor_target_mine_matches_closed_form_mi_of_correlated_gaussians(one_thread):
    """I(z; e_k) for a 2-d code z and two 1-d embeddings, e_k correlated with z_k only."""
    rhos, n = (0.5, 0.9), 20_000
    rng = np.random.default_rng(1)
    z = rng.standard_normal((n, 2)).astype(np.float32)
    e = np.stack([r * z[:, k] + math.sqrt(1 - r * r) * rng.standard_normal(n) for k, r in enumerate(rhos)], 1)
    z, e = torch.from_numpy(z), torch.from_numpy(e.astype(np.float32))[:, :, None]     # (n, K=2, F=1)
    torch.manual_seed(0)
    estimator = FactorMutualInformation(latent_dim=2, num_factors=2, factor_dim=1, hidden=64)
    optimizer = torch.optim.Adam(estimator.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    train, held = torch.arange(n // 2, n), torch.arange(n // 2)
    for _ in range(800):
        idx = train[torch.randint(len(train), (256,), generator=g)]
        optimizer.zero_grad()
        (-estimator(z[idx], e[idx], generator=g).sum()).backward()
        optimizer.step()
    for k, rho in enumerate(rhos):
        true = -0.5 * math.log(1 - rho ** 2)
        estimate = estimator.estimators[k].estimate(e[held, k], z[held], generator=g, repeats=4)
        assert abs(estimate - true) / true < 0.05, (rho, estimate, true)


def progress_cfg(**changes):
    settings = {"sample_interval": 1, "checkpoint_interval": 3, "log_interval": 3, **changes}
    return mine_study.mine_from_args(mine_study_args(FAST)).replace(**settings)


def test_progress_images_appear_at_the_right_steps_and_leave_training_alone(tmp_path):
    cfg = progress_cfg(sample_interval=2)
    def spec(d):
        return mine_study.RunSpec("mine", "squares", cfg.kl_weight, 0.0, 0, 5, tmp_path / d, variant="full")
    with_images = mine_study.train(spec("a"), cfg, Squares(), torch.device("cpu"))
    assert sorted(p.name for p in (tmp_path / "a" / "samples").iterdir()) == ["step_2.png", "step_4.png"]
    assert mine_study.vis.progress_steps(cfg, 5) == [2, 4]
    picture = iio.imread(tmp_path / "a" / "samples" / "step_2.png")
    assert picture.shape[:2] == (14 * 66 + 2, 12 * 66 + 2)     # 12 originals, 12 reconstructions, 12 × 12 prior samples
    without = mine_study.train(spec("b"), cfg.replace(sample_interval=0), Squares(), torch.device("cpu"))
    assert not (tmp_path / "b" / "samples").exists()
    for a, b in zip(with_images.model.state_dict().values(), without.model.state_dict().values()):
        assert torch.equal(a, b)


def test_progress_images_survive_a_kill_and_resume_without_duplicates(tmp_path, monkeypatch):
    cfg = progress_cfg()
    spec = mine_study.RunSpec("mine", "squares", cfg.kl_weight, 0.0, 0, 6, tmp_path / "run", variant="full")
    whole = mine_study.RunSpec("mine", "squares", cfg.kl_weight, 0.0, 0, 6, tmp_path / "whole", variant="full")
    mine_study.train(whole, cfg, Squares(), torch.device("cpu"))
    written = []
    save = mine_study.vis.save_png
    monkeypatch.setattr(mine_study.vis, "save_png", lambda a, path: (written.append(path.name), save(a, path)))
    step = mine_study.vae_step

    def killed_in_step_5(state, x, cfg, switches):
        if state.step == 4:                 # checkpoint at 3, images of steps 1..4 written
            raise KeyboardInterrupt
        return step(state, x, cfg, switches)

    monkeypatch.setattr(mine_study, "vae_step", killed_in_step_5)
    with pytest.raises(runs.Interrupted):
        mine_study.train(spec, cfg, Squares(), torch.device("cpu"))
    samples = spec.run_dir / "samples"
    (samples / ".step_5.png.abc12345.tmp").write_bytes(b"half a png")      # a write the kill cut short
    mtimes = {p.name: p.stat().st_mtime_ns for p in samples.glob("step_*.png")}
    monkeypatch.setattr(mine_study, "vae_step", step)
    mine_study.train(spec, cfg, Squares(), torch.device("cpu"))        # resumes from step 3
    assert written == [f"step_{k}.png" for k in (1, 2, 3, 4, 5, 6)]    # each once: step 4 is retrained, not redrawn
    assert sorted(p.name for p in samples.iterdir()) == sorted(f"step_{k}.png" for k in range(1, 7))
    assert all((samples / name).stat().st_mtime_ns == t for name, t in mtimes.items())
    for k in range(1, 7):                   # the resumed run drew what the uninterrupted one drew
        assert (samples / f"step_{k}.png").read_bytes() == (whole.run_dir / "samples" / f"step_{k}.png").read_bytes()


def test_factor_traversal_moves_one_factor_allocation_at_a_time():
    torch.manual_seed(0)
    model = MINEDisentangleVAE(channels=1, latent_dim=4, num_factors=3, factor_dim=4, attention_dim=8).eval()
    torch.nn.init.normal_(model.attention.out.weight, std=0.5)
    images = to_float(torch.from_numpy(Squares().images(np.arange(2))))
    reference = 3 * torch.randn(64, 4, generator=torch.Generator().manual_seed(1))    # codes of a trained spread
    view = mine_report.FactorTraversalView(model, reference)
    with torch.no_grad():
        t, _ = view.encoder(images)                                       # (2 images, 3 factors)
        codes, same = view.moved(t.repeat_interleave(3, dim=0))         # at its own coordinates: unmoved
        mu = model.encoder(images)[0]
        assert torch.equal(codes, mu.repeat_interleave(3, dim=0))
        assert torch.allclose(same, model.factor_encoder(mu).repeat_interleave(3, dim=0), atol=1e-5)
        rows = t.repeat_interleave(3, dim=0)                              # row i·3 + k: image i, factor k moved
        rows[torch.arange(6), torch.arange(6) % 3] = 2.0
        base = model.attention(*view.moved(t.repeat_interleave(3, dim=0)))[1]
        moved = model.attention(*view.moved(rows))[1]                     # (6, K, L)
        for r in range(6):
            changed = (moved[r] - base[r]).abs().amax(dim=1) > 1e-6       # which factors' allocations moved
            assert changed.tolist() == [k == r % 3 for k in range(3)], r
        # ... and so does what the decoder reads: z + Out(attended values), here with a non-zero Out.
        shift = model.attention(*view.moved(rows))[0] - model.attention(*view.moved(t.repeat_interleave(3, dim=0)))[0]
        assert float(shift.abs().max()) > 1e-3
        assert not torch.equal(view.decoder(rows), view.decoder(t.repeat_interleave(3, dim=0)))
    frames = mine_study.vis.traversal_frames(view, Squares().images(np.arange(2)), torch.device("cpu"))
    assert frames.shape[0] == 11 and frames.shape[2] == 3 * 66 + 2     # one column per factor


def test_psnr_and_ssim_of_identical_images_are_infinite_and_one():
    x = np.random.default_rng(0).random((2, 3, 16, 16))
    q = metrics.reconstruction_quality(x, x)
    assert q["psnr"] == math.inf and q["ssim"] == pytest.approx(1.0)


def test_psnr_and_ssim_of_known_pairs_match_a_hand_computation():
    rng = np.random.default_rng(0)
    x, y = rng.random((1, 1, 7, 7)), rng.random((1, 1, 7, 7))       # one 7×7 window: SSIM is its formula
    q = metrics.reconstruction_quality(np.concatenate([x, np.full_like(x, 0.2)]),
                                       np.concatenate([y, np.full_like(x, 0.5)]))
    a, b = x.ravel(), y.ravel()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    cov = np.cov(a, b)                                                # sample (co)variances, as scikit-image's default
    ssim_xy = ((2 * a.mean() * b.mean() + c1) * (2 * cov[0, 1] + c2)
               / ((a.mean() ** 2 + b.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)))
    ssim_const = (2 * 0.2 * 0.5 + c1) / (0.2 ** 2 + 0.5 ** 2 + c1)   # no variance: the luminance term only
    assert q["ssim_per_image"] == pytest.approx([ssim_xy, ssim_const], rel=1e-6)
    assert q["psnr_per_image"] == pytest.approx([10 * math.log10(1 / np.mean((a - b) ** 2)),
                                                 10 * math.log10(1 / 0.3 ** 2)], rel=1e-9)
    assert q["psnr"] == pytest.approx(np.mean(q["psnr_per_image"]))
