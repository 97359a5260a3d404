"""The evidence preset's pieces: per-latent KL and active latents, the preset's settings,
the MI bias floor and the collapse figure."""
import argparse

import numpy as np
import pytest
import torch

import metrics
from config import EVIDENCE_OVERRIDES, PRESETS, Config, ConfigError, add_config_arguments, from_args
from evaluation import ACTIVE_KL_NATS, kl_per_latent, latent_columns
from models import BetaVAE
from runs import stage_root
from tiny_data import Squares

IGNORED = [1, 4, 7]


def model_ignoring(latents, latent_dim=10):
    """A BetaVAE whose encoder outputs mu = 0, logvar = 0 (the prior) for ``latents``
    whatever the image, and a mean 2 away from the prior's for the others."""
    torch.manual_seed(0)
    model = BetaVAE(1, latent_dim)
    with torch.no_grad():
        for layer in (model.encoder.fc_mu, model.encoder.fc_logvar):
            layer.weight[latents] = 0
            layer.bias[latents] = 0
        others = [d for d in range(latent_dim) if d not in latents]
        model.encoder.fc_mu.bias[others] += 2.0
    return model


def test_ignored_latents_have_zero_kl_and_are_inactive():
    images = Squares().images(np.arange(40))
    kl = kl_per_latent(model_ignoring(IGNORED), images, torch.device("cpu"), batch_size=16)
    assert kl.shape == (10,)
    assert np.all(kl[IGNORED] == 0)
    others = np.setdiff1d(np.arange(10), IGNORED)
    assert np.all(kl[others] > ACTIVE_KL_NATS)
    cols = latent_columns(kl)
    assert cols["active_latents"] == 10 - len(IGNORED)
    assert cols["i_xz_upper"] == pytest.approx(kl.sum())


def test_kl_per_latent_matches_the_closed_form_of_one_latent():
    """A model with mu = m, logvar = v for one latent: KL = (m² + e^v − 1 − v) / 2 exactly."""
    model = model_ignoring(list(range(10)))
    with torch.no_grad():
        model.encoder.fc_mu.bias[3], model.encoder.fc_logvar.bias[3] = 1.5, -0.7
    kl = kl_per_latent(model, Squares().images(np.arange(5)), torch.device("cpu"))
    assert kl[3] == pytest.approx(0.5 * (1.5 ** 2 + np.exp(-0.7) - 1 + 0.7), rel=1e-6)
    assert latent_columns(kl)["active_latents"] == 1


def parse(argv, stage="beta"):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return from_args(parser.parse_args(argv), stage=stage)


@pytest.mark.parametrize("stage", ["beta", "lambda"])
def test_evidence_preset_resolves_to_valid_settings(stage):
    cfg = parse(["--preset", "evidence"], stage)
    assert cfg.preset == "evidence" and not cfg.demo and cfg.source == "standin"
    assert max(cfg.betas) >= 16 and {0.0, 8.0} <= set(cfg.lambdas) and len(cfg.seeds) >= 3
    assert 1.0 in cfg.betas and 0.0 in cfg.lambdas          # the (β = 1, λ = 0) baseline
    assert set(cfg.betas) <= set(EVIDENCE_OVERRIDES["betas"])   # λ runs continue β runs of the preset
    # its own results folder: never mixed with the demo's or the real study's
    assert stage_root(cfg, "r").parts[0] == PRESETS["evidence"][2] != PRESETS["demo"][2]
    assert parse(["--preset", "evidence", "--steps", "7"], stage).steps == 7     # flags given win


def test_demo_flag_is_the_demo_preset():
    assert parse(["--demo"]) == parse(["--preset", "demo"])
    assert parse(["--demo"], "lambda") == parse(["--preset", "demo"], "lambda")
    assert parse([]) == Config()


@pytest.mark.parametrize("argv, needle", [(["--preset", "paper"], "--preset"),
                                          (["--demo", "--preset", "evidence"], "--demo")])
def test_unknown_or_conflicting_preset_is_named(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        parse(argv)


def test_shuffled_floor_is_near_zero_for_independent_and_below_true_mi():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 5, size=(2000, 2))
    codes = np.stack([factors[:, 0] + rng.normal(0, 0.1, 2000), rng.normal(size=2000)], 1).astype(np.float32)
    floor = metrics.shuffled_mi_floor(factors, codes, num_bins=20)
    mi = metrics.mutual_info_matrix(factors, codes, num_bins=20)
    assert floor.shape == mi.shape == (2, 2)
    assert floor[0, 0] < 0.1 * mi[0, 0]                 # the link is broken by the shuffle
    assert np.all(floor > 0) and np.all(floor < 0.05)   # the plug-in bias: positive, small at n = 2000
