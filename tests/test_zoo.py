"""The model zoo in the study: --objective, its swept weight, its names, its identity and
its λ stage (the losses themselves: tests/test_objectives.py)."""
import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import config
import models
from config import OBJECTIVES, Config, ConfigError, from_dict, grid_weights, validate
from lbvae.pipeline import family, study
from lbvae.pipeline.runs import RunSpec
from lbvae.pipeline.training import ImageFeed, Pack, save_weights
from losses import OBJECTIVES as LOSS_OBJECTIVES
from losses import SWEPT_WEIGHT
from models import BetaVAE
from tiny_data import Squares

FAST = ["--demo", "--datasets", "dsprites", "--seeds", "0", "--steps", "6", "--lambda-steps", "4",
        "--lambda", "0", "2", "--log-interval", "3", "--checkpoint-interval", "3", "--loss-window", "4",
        "--metric-train-points", "400", "--metric-test-points", "200", "--heldout-eval-points", "50",
        "--device", "cpu"]
ANNEALED = ["--objective", "annealed", "--sweep", "5", "100", "--iteration-threshold", "4"]


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_config_knows_the_losses_objectives_and_their_swept_weights():
    assert set(OBJECTIVES) == {*LOSS_OBJECTIVES, "factor"}      # FactorVAE: a network, not regularizer()
    assert {name: o.weight for name, o in OBJECTIVES.items()} == SWEPT_WEIGHT
    for name, o in OBJECTIVES.items():
        assert o.baseline in o.grid, name     # the reference cell is on the default grid


def test_each_objective_sweeps_its_own_grid_and_checks_its_weights():
    assert grid_weights(validate(Config())) == Config().betas                 # the paper's β grid, unchanged
    assert grid_weights(validate(Config(objective="annealed"))) == (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)
    assert grid_weights(validate(Config(objective="dip_i", sweep=(3.0,)))) == (3.0,)
    # DIP-VAE's λ_d factor is recorded resolved: 10 for I, 1 for II, as disentanglement_lib's study.
    assert validate(Config(objective="dip_i")).lambda_d_factor == 10.0
    assert validate(Config(objective="dip_ii")).lambda_d_factor == 1.0
    assert from_dict(validate(Config(objective="dip_ii")).to_dict()).lambda_d_factor == 1.0
    assert validate(Config()).lambda_d_factor is None
    with pytest.raises(ConfigError, match="objective.*choose from beta, annealed"):
        validate(Config(objective="vae"))
    with pytest.raises(ConfigError, match="annealed-gamma is a weight of --objective annealed only"):
        validate(Config(objective="tcvae", annealed_gamma=10.0))
    with pytest.raises(ConfigError, match="lambda-d-factor is a weight of --objective dip_i / dip_ii"):
        validate(Config(lambda_d_factor=2.0))
    with pytest.raises(ConfigError, match="sweep has duplicates"):
        validate(Config(objective="tcvae", sweep=(2.0, 2.0)))
    for name in ("objective", "annealed_gamma", "iteration_threshold", "lambda_d_factor"):
        assert name in config.RUN_DEFINING, name


@pytest.fixture(scope="module")
def annealed_roots(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    beta_root = study.main("beta", FAST + ANNEALED + ["--results-dir", str(out)])
    lambda_root = study.main("lambda", FAST + ANNEALED + ["--results-dir", str(out)])
    return out, beta_root, lambda_root


def test_an_objective_has_its_own_trees_names_and_columns(annealed_roots):
    out, beta_root, _ = annealed_roots
    assert beta_root == out / "annealedvae_results"
    run = beta_root / "dsprites" / "c_max_5" / "seed_0"
    assert (run / "annealed_c_max_5_seed_0.pth").exists()
    saved = json.loads((run / "config.json").read_text())
    assert saved["objective"] == "annealed" and saved["iteration_threshold"] == 4
    table = rows(beta_root / "results.csv")
    assert "beta" not in table[0] and [r["c_max"] for r in table] == ["5.0", "100.0"]
    assert {r["objective"] for r in table} == {"annealed"} and all(r["status"] == "done" for r in table)
    summary = (beta_root / "summary.txt").read_text()
    assert summary.startswith("annealedvae_results (AnnealedVAE") and "C_max=100" in summary
    # Its settings bind its tree as the β-VAE's bind theirs.
    with pytest.raises(SystemExit) as err:
        study.main("beta", FAST + ANNEALED[:-1] + ["8", "--results-dir", str(out)])
    assert err.value.code == 2


def test_the_lambda_stage_continues_an_objective_against_its_reference_cell(annealed_roots):
    out, _, lambda_root = annealed_roots
    assert lambda_root == out / "lambda_annealedvae_results"
    run = lambda_root / "dsprites" / "c_max_100" / "lambda_2" / "seed_0"
    assert (run / "lambda_annealed_c_max_100_lambda_2_seed_0.pth").exists()
    table = rows(lambda_root / "results.csv")
    assert sorted((r["c_max"], r["lambda"]) for r in table) == [
        ("100.0", "0.0"), ("100.0", "2.0"), ("5.0", "0.0"), ("5.0", "2.0")]
    # The reference is the least regularised weight (most capacity), λ = 0: its change is 0.
    change = rows(lambda_root / "percent_change.csv")
    base = [r for r in change if r["beta"] == "100.0" and r["lambda"] == "0.0"]
    assert base and all(float(r["percent_change"]) == 0.0 for r in base if float(r["baseline_c_max100_lambda0"]))
    assert "against the (C_max=100, λ=0) cell" in (lambda_root / "percent_change.txt").read_text()


def test_a_pack_trains_the_objective_on_its_training_set_and_continues_its_schedule(tmp_path):
    """The Pack hands the engine the objective, its fixed weights and the training set's
    size, and a λ run's schedule step goes on from the β stage's last step."""
    init = tmp_path / "init.pth"
    torch.manual_seed(0)
    save_weights(BetaVAE(1, 10), init)
    cfg = validate(Config(objective="annealed", steps=40, iteration_threshold=80, annealed_gamma=7.0,
                          batch_size=8, heldout_fraction=0.1))
    spec = RunSpec("lambda", "squares", 25.0, 2.0, 0, 5, tmp_path / "run", init_from=init, objective="annealed")
    train_idx = np.arange(40)
    pack = Pack([spec], cfg, 1, "cpu", train_idx, feed=ImageFeed(Squares(), "cpu"))
    assert (pack.model.objective, pack.model.dataset_size) == ("annealed", 40)
    assert pack.model.weights == {"gamma": 7.0, "iteration_threshold": 80}
    steps = []
    inner = pack.model.forward_backward
    pack.model.forward_backward = lambda *a: steps.append(a[-1]) or inner(*a)
    pack.train_step()
    pack.train_step()
    assert steps == [40, 41]



# --- FactorVAE: a discriminator per run, trained beside its VAE ----------------------------------
def _factor_pack(tmp_path, gammas, seeds=(1, 2), steps=40, **kwargs):
    cfg = validate(Config(objective="factor", steps=steps, batch_size=8, heldout_fraction=0.1, **kwargs))
    specs = [RunSpec("beta", "squares", g, 0.0, s, steps, tmp_path / f"run_{g}_{s}", objective="factor")
             for g, s in zip(gammas, seeds)]
    return Pack(specs, cfg, 1, "cpu", np.arange(40), feed=ImageFeed(Squares(), "cpu"))


def test_factor_vae_adds_gamma_times_its_discriminators_tc_and_trains_the_discriminator_apart(tmp_path):
    import losses
    from lbvae.pipeline.engine import PackedBetaVAE
    pack = _factor_pack(tmp_path, (10.0, 40.0))
    model, x = pack.model, pack.feed.batch(np.stack([o(0) for o in pack.orders]))
    eps = torch.randn((2, 8, 10), generator=torch.Generator().manual_seed(0))
    before = {n: p.detach().clone() for n, p in model.disc_params.items()}
    terms = model.forward_backward(x, eps, pack.beta, pack.lam)
    assert all(p.grad is None for p in model.disc_params.values())      # the VAE's step never trains D
    for k, gamma in enumerate((10.0, 40.0)):
        vae, disc = model.member_model(k), models.FactorDiscriminator(10)
        disc.load_state_dict(model.member_discriminator(k))
        with torch.no_grad():
            _, mu, logvar = vae(x[k], eps=eps[k])
            z = mu + eps[k] * torch.exp(0.5 * logvar)
            tc = losses.factor_vae_tc(disc(z))
        assert torch.equal(model.codes[k], z)
        added = terms[k, 0] - terms[k, 1] - terms[k, 2]                   # total − recon − KL (λ = 0)
        assert added.item() == pytest.approx(gamma * tc.item(), rel=1e-4, abs=1e-4)
    # The discriminator's own step: cross-entropy of the codes against their permutation.
    generators = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    disc_losses = model.discriminator_backward(generators)
    for k, seed in enumerate((5, 6)):
        disc = models.FactorDiscriminator(10)
        disc.load_state_dict({n: t[k] for n, t in before.items()})
        z = model.codes[k]
        expected = losses.factor_discriminator_loss(disc(z), disc(losses.permute_dims(z, torch.Generator()
                                                                                     .manual_seed(seed))))
        expected.backward()
        assert disc_losses[k].item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(model.disc_params["net.0.weight"].grad[k], disc.net[0].weight.grad, rtol=1e-4,
                              atol=1e-7)
    # vmap (the GPU mode) computes what split does.
    states = [model.member_state_dict(k) for k in (0, 1)]
    discs = [model.member_discriminator(k) for k in (0, 1)]
    vm = PackedBetaVAE(states, 1, 10, "cpu", mode="vmap", objective="factor", discriminators=discs)
    sp = PackedBetaVAE(states, 1, 10, "cpu", mode="split", objective="factor", discriminators=discs)
    assert torch.allclose(vm.forward_backward(x, eps, pack.beta, pack.lam),
                          sp.forward_backward(x, eps, pack.beta, pack.lam), rtol=1e-5)
    assert torch.allclose(vm.codes, sp.codes, rtol=1e-5, atol=1e-6)


def test_a_factor_vae_pack_equals_its_runs_alone_and_resumes_bit_exactly(tmp_path, one_thread):
    pack = _factor_pack(tmp_path / "pack", (10.0, 40.0))
    initial = pack.model.member_discriminator(0)
    for _ in range(3):
        pack.train_step()
    assert not torch.equal(initial["net.0.weight"], pack.model.member_discriminator(0)["net.0.weight"])   # trained
    for k, gamma in enumerate((10.0, 40.0)):
        alone = _factor_pack(tmp_path / f"alone_{k}", (gamma,), seeds=((1, 2)[k],))
        alone.train_step()
        alone.save()                       # its checkpoint holds the discriminator and its Adam
        resumed = _factor_pack(tmp_path / f"alone_{k}", (gamma,), seeds=((1, 2)[k],))
        assert resumed.step == 1
        resumed.train_step()
        resumed.train_step()
        for name, t in pack.model.member_state_dict(k).items():
            assert torch.equal(t, resumed.model.member_state_dict(0)[name]), name
        for name, t in pack.model.member_discriminator(k).items():
            assert torch.equal(t, resumed.model.member_discriminator(0)[name]), name


def test_a_factor_vae_lambda_run_continues_its_discriminator(tmp_path):
    beta = _factor_pack(tmp_path, (10.0,), seeds=(1,))
    beta.train_step()
    beta.train_step()
    result = beta.result(0)
    weights = result.spec.weights_path
    (path, state), = result.extra_weights.items()
    assert path == tmp_path / "run_10.0_1" / "factor_gamma_10_seed_1_discriminator.pth"
    # A finished run saves its discriminator beside its weights.
    stub = SimpleNamespace(evaluate=lambda *a, **k: {"row": {"status": "done"}})
    family.complete_run(result, beta.cfg.replace(figures=False), stub, None, "cpu", pack_size=1, wall_time_s=0.0)
    assert weights.exists() and path.exists()
    path.unlink()
    cfg = validate(Config(objective="factor", steps=40, batch_size=8, heldout_fraction=0.1))
    spec = RunSpec("lambda", "squares", 10.0, 2.0, 1, 5, tmp_path / "lam", init_from=weights, objective="factor")
    with pytest.raises(SystemExit, match="missing β checkpoint .*factor_gamma_10_seed_1_discriminator.pth"):
        study.check_parents([spec], cfg)
    torch.save(state, path)
    study.check_parents([spec], cfg)
    lam = Pack([spec], cfg, 1, "cpu", np.arange(40), feed=ImageFeed(Squares(), "cpu"))
    for name, t in state.items():
        assert torch.equal(lam.model.member_discriminator(0)[name], t), name


# --- the zoo preset ------------------------------------------------------------------------------
def test_the_zoo_preset_runs_every_objective_at_its_two_weights(monkeypatch):
    import argparse
    calls = []
    monkeypatch.setattr(study, "main", lambda stage, argv: calls.append((stage, argv)) or "root")
    args = argparse.Namespace(**{**dict.fromkeys(Config.__dataclass_fields__), "preset": "zoo", "out": None})
    args.results_dir = "/elsewhere"                 # not the repository's zoo_results: no page written
    study.run_zoo("beta", ["--preset", "zoo", "--results-dir", "/elsewhere"], args)
    assert [a[-1] for _, a in calls] == list(config.ZOO_WEIGHTS)
    for objective in config.ZOO_WEIGHTS:
        ns = argparse.Namespace(**{**dict.fromkeys(Config.__dataclass_fields__), "preset": "zoo",
                                   "objective": objective})
        cfg = config.from_args(ns)
        assert grid_weights(cfg) == config.ZOO_WEIGHTS[objective] and cfg.steps == config.ZOO_STEPS
        assert OBJECTIVES[objective].baseline in grid_weights(cfg)        # every λ stage has its reference cell
        assert cfg.iteration_threshold == (config.ZOO_STEPS // 3 if objective == "annealed" else 100_000)
        assert study.stage_root(cfg, "beta").parts[0] == "zoo_results"


def _zoo_rows(values: dict) -> list[dict]:
    """Rows of finished runs: {(weight, λ): [MIG of each seed]}; the other metrics constant."""
    return [{"status": "done", "dataset": "dsprites", "beta": w, "lambda": lam, "seed": s, "mig": v,
             **{k: 1.0 for k in ("i_xz_upper", "active_latents", "sap", "i_m", "train_window_nll")}}
            for (w, lam), vals in values.items() for s, v in enumerate(vals)]


def test_the_zoo_page_marks_each_change_beyond_or_within_the_seed_noise():
    from lbvae.analysis import zoo
    beta_rows = _zoo_rows({(1.0, 0.0): [0.10, 0.11, 0.12], (16.0, 0.0): [0.02, 0.03, 0.04]})
    lambda_rows = _zoo_rows({(1.0, 0.0): [0.10, 0.11, 0.12], (1.0, 8.0): [0.09, 0.13, 0.11],
                             (16.0, 0.0): [0.02, 0.03, 0.04], (16.0, 8.0): [0.06, 0.07, 0.08]})
    text = "\n".join(zoo.objective_section("beta", beta_rows, lambda_rows, "dsprites"))
    mig = [line for line in text.splitlines() if line.startswith("| MIG |")]
    # β stage: 0.11 → 0.03, std 0.01: beyond noise.
    assert mig[0] == "| MIG | 0.11 ± 0.01 (3) | 0.03 ± 0.01 (3) | -0.08 **beyond noise** |"
    # λ stage: at β = 1 the change (0) is within the noise; at β = 16, +0.04 against std 0.01 is beyond it.
    assert "0.11 → 0.11: +0 (within noise)" in mig[1] and "0.03 → 0.07: +0.04 **beyond noise**" in mig[1]
    one_seed = zoo.change((0.1, math.nan, 1), (0.5, math.nan, 1))
    assert one_seed == "+0.4 (one seed: undecided)"
