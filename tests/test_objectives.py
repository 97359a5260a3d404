"""The standard disentangling objectives' regularisers (losses.regularizer) on hand-built inputs."""
import math

import pytest
import torch

import losses
import models
from losses import annealed_capacity, dip_covariance, permute_dims, regularizer, total_correlation_terms


def posterior(m, d, seed=0, scale=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = scale * torch.randn(m, d, generator=g, dtype=dtype)
    logvar = torch.empty(m, d, dtype=dtype).uniform_(-3.0, -1.0, generator=g)
    z = mu + torch.randn(m, d, generator=g, dtype=dtype) * torch.exp(0.5 * logvar)
    return mu, logvar, z


def test_beta_is_the_lambda_beta_loss_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 64, 64, generator=g)
    logits = torch.randn(8, 1, 64, 64, generator=g)
    mu, logvar, z = posterior(8, 10, dtype=torch.float32)
    terms = losses.lambda_beta_loss(logits, x, mu, logvar, beta=4.0, lam=2.0)
    reg = regularizer("beta", mu, logvar, z, beta=4.0)
    assert torch.equal(terms["recon"] + reg["total"] + 2.0 * terms["l2"], terms["total"])
    assert torch.equal(reg["kl"], terms["kl"])


def test_annealed_starts_as_gamma_kl_and_its_capacity_stops_at_c_max():
    mu, logvar, z = posterior(16, 4)
    at_zero = regularizer("annealed", mu, logvar, z, step=0, gamma=1000.0, c_max=25.0, iteration_threshold=100)
    assert torch.equal(at_zero["total"], 1000.0 * at_zero["kl"])
    assert annealed_capacity(50, 25.0, 100) == 12.5
    assert annealed_capacity(100, 25.0, 100) == annealed_capacity(10**6, 25.0, 100) == 25.0
    late = regularizer("annealed", mu, logvar, z, step=10**6, gamma=2.0, c_max=25.0, iteration_threshold=100)
    assert late["total"].item() == pytest.approx(2.0 * abs(late["kl"].item() - 25.0), rel=1e-12)


def whitened(m, d, seed=0):
    """Means whose batch covariance (the 1/M estimate) is exactly the identity."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(m, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
    mu = mu - mu.mean(0)
    chol = torch.linalg.cholesky(mu.T @ mu / m)
    return mu @ torch.linalg.inv(chol).T


def test_dip_penalty_is_zero_exactly_where_the_covariance_is_the_identity():
    mu = whitened(500, 5)
    logvar = torch.full_like(mu, -2.0)
    dip_i = regularizer("dip_i", mu, logvar, mu, lambda_od=10.0)
    assert dip_i["dip"].item() == pytest.approx(0.0, abs=1e-20)
    assert regularizer("dip_ii", mu, logvar, mu, lambda_od=10.0)["dip"].item() > 0.1    # II adds the variances
    # II: the means' covariance plus the mean encoder variance is the identity.
    variance = torch.linspace(0.1, 0.5, 5, dtype=torch.float64)
    mu_ii = mu * torch.sqrt(1.0 - variance)
    dip_ii = regularizer("dip_ii", mu_ii, variance.log().expand_as(mu_ii), mu_ii, lambda_od=10.0)
    assert dip_ii["dip"].item() == pytest.approx(0.0, abs=1e-20)
    assert torch.allclose(dip_covariance(mu_ii, variance.log().expand_as(mu_ii), "ii"),
                          torch.eye(5, dtype=torch.float64), atol=1e-12)


def test_dip_weights_off_diagonal_and_diagonal_as_disentanglement_lib():
    mu, logvar, z = posterior(64, 3, scale=2.0)
    cov = dip_covariance(mu, logvar, "i")
    off = (cov - torch.diag(torch.diag(cov))).pow(2).sum()
    diag = (torch.diag(cov) - 1).pow(2).sum()
    kl = losses.kl_to_standard_normal(mu, logvar).mean()
    assert regularizer("dip_i", mu, logvar, z, lambda_od=2.0)["total"].item() == pytest.approx(
        (kl + 2.0 * off + 20.0 * diag).item(), rel=1e-12)                   # λ_d = 10·λ_od for I
    cov = dip_covariance(mu, logvar, "ii")
    off = (cov - torch.diag(torch.diag(cov))).pow(2).sum()
    diag = (torch.diag(cov) - 1).pow(2).sum()
    assert regularizer("dip_ii", mu, logvar, z, lambda_od=2.0)["dip"].item() == pytest.approx(
        (2.0 * off + 2.0 * diag).item(), rel=1e-12)                         # λ_d = λ_od for II
    assert torch.allclose(dip_covariance(mu, logvar, "i"), torch.cov(mu.T, correction=0), atol=1e-12)


def test_tcvae_terms_add_up_to_the_single_sample_kl():
    mu, logvar, z = posterior(32, 6)
    terms = total_correlation_terms(z, mu, logvar, dataset_size=737_280)
    log_qz_x = losses.gaussian_log_density(z, mu, logvar).sum(-1)
    log_pz = losses.gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(-1)
    assert (terms["mi"] + terms["tc"] + terms["dim_kl"]).item() == pytest.approx(
        (log_qz_x - log_pz).mean().item(), rel=1e-12)
    reg = regularizer("tcvae", mu, logvar, z, dataset_size=737_280, beta=6.0)
    assert reg["total"].item() == pytest.approx((reg["kl"] + 5.0 * terms["tc"]).item(), rel=1e-12)
    with pytest.raises(ValueError, match="dataset_size"):
        regularizer("tcvae", mu, logvar, z, beta=6.0)


def test_tcvae_constant_shifts_tc_by_d_minus_1_log_n():
    mu, logvar, z = posterior(32, 6)
    shift = (total_correlation_terms(z, mu, logvar, 10_000)["tc"] - total_correlation_terms(z, mu, logvar, 1)["tc"])
    assert shift.item() == pytest.approx(5 * math.log(10_000), rel=1e-12)


def correlated_gaussians(n, rho, g, dtype=torch.float32):
    """n pairs from N(0, [[1, ρ], [ρ, 1]])."""
    a = torch.randn(n, 2, generator=g, dtype=dtype)
    return torch.stack([a[:, 0], rho * a[:, 0] + math.sqrt(1 - rho ** 2) * a[:, 1]], dim=1)


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_tcvae_tc_estimates_the_total_correlation_of_gaussian_codes(rho):
    """Means ~ N(0, [[1, ρ], [ρ, 1]]) with posterior variance s² give q(z) = N(0, Σ + s²I), whose
    TC is −½ log(1 − r²), r = ρ / (1 + s²). With N = 1 the MWS weights are the batch's own
    aggregate posterior (the constant shifts it by (D − 1)·log N, tested above)."""
    m, s2 = 3000, 0.25
    g = torch.Generator().manual_seed(3)
    mu = correlated_gaussians(m, rho, g, dtype=torch.float64)
    logvar = torch.full_like(mu, math.log(s2))
    z = mu + math.sqrt(s2) * torch.randn(m, 2, generator=g, dtype=torch.float64)
    r = rho / (1 + s2)
    expected = -0.5 * math.log(1 - r ** 2)
    assert total_correlation_terms(z, mu, logvar, dataset_size=1)["tc"].item() == pytest.approx(expected, abs=0.03)


def test_permute_dims_keeps_each_latent_and_breaks_their_dependence():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 1, generator=g)
    z = torch.cat([a, 0.9 * a + 0.1 * torch.randn(4000, 1, generator=g), torch.randn(4000, 1, generator=g)], 1)
    out = permute_dims(z, torch.Generator().manual_seed(1))
    assert torch.equal(torch.sort(out, dim=0).values, torch.sort(z, dim=0).values)
    assert torch.corrcoef(z.T)[0, 1] > 0.99 and abs(torch.corrcoef(out.T)[0, 1]) < 0.05
    assert not torch.equal(out[:, 0], out[:, 1]) and not torch.equal(out, z)
    assert torch.equal(out, permute_dims(z, torch.Generator().manual_seed(1)))     # seeded: the same draw


def test_factor_vae_tc_and_discriminator_loss_on_hand_built_logits():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [0.0, 1.0]])
    assert losses.factor_vae_tc(logits).item() == pytest.approx((3.0 + 0.0 - 1.0) / 3)
    confident = torch.tensor([[20.0, -20.0]]), torch.tensor([[-20.0, 20.0]])
    assert losses.factor_discriminator_loss(*confident).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.factor_discriminator_loss(*reversed(confident)).item() == pytest.approx(40.0, rel=1e-6)


def test_unknown_objective_is_named():
    mu, logvar, z = posterior(4, 2)
    with pytest.raises(ValueError, match="choose from beta, annealed, tcvae, dip_i, dip_ii"):
        regularizer("factorvae", mu, logvar, z)


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_factor_discriminator_learns_the_total_correlation_of_gaussians(rho):
    """Trained on codes against their permuted copies (Kim & Mnih's density-ratio trick), the
    discriminator's TC on held-out codes is within 0.06 nats of −½ log(1 − ρ²) (0 and 0.511).
    A smaller MLP and a larger lr than FactorVAE's keep it to seconds; measured over seeds
    0–2 at ρ = 0.8 this setting gave 0.486–0.521."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    codes = correlated_gaussians(20_000, rho, g)
    train, held_out = codes[:16_000], codes[16_000:]
    disc = models.FactorDiscriminator(2, hidden=64, layers=2)
    opt = torch.optim.Adam(disc.parameters(), lr=3e-4, betas=(0.5, 0.9))
    for _ in range(800):
        batch = train[torch.randint(0, len(train), (512,), generator=g)]
        loss = losses.factor_discriminator_loss(disc(batch), disc(permute_dims(batch, g)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        tc = losses.factor_vae_tc(disc(held_out)).item()
    assert tc == pytest.approx(-0.5 * math.log(1 - rho ** 2), abs=0.06)


def test_factor_discriminator_has_disentanglement_libs_shape():
    disc = models.FactorDiscriminator(10)
    linears = [m for m in disc.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
    assert disc(torch.zeros(3, 10)).shape == (3, 2)


# --- the objectives on the packed engine ----------------------------------------------------------
ZOO = {"annealed": {"gamma": 10.0, "iteration_threshold": 10}, "tcvae": {}, "dip_i": {}, "dip_ii": {}}


def engine_inputs(latent_dim=10):
    from lbvae.pipeline.runs import RunSpec
    from lbvae.pipeline.training import ImageFeed, initial_weights
    from tiny_data import Squares
    states = [initial_weights(RunSpec("beta", "squares", 1.0, 0.0, seed=s, steps=1, run_dir=None), 1, latent_dim)
              for s in (1, 2)]
    for state in states:           # spread, narrow posteriors: at initialisation all are alike and wide
        state["encoder.fc_mu.weight"] *= 1000.0
        state["encoder.fc_logvar.bias"] -= 3.0
    x = ImageFeed(Squares(), torch.device("cpu")).batch(
        torch.tensor([[0, 5, 9, 17, 21, 30, 33, 47], [1, 2, 3, 4, 40, 41, 42, 43]]).numpy())
    eps = torch.randn((2, 8, latent_dim), generator=torch.Generator().manual_seed(0))
    return states, x, eps


@pytest.mark.parametrize("objective", sorted(ZOO))
def test_a_pack_of_mixed_weights_equals_its_runs_alone(objective, one_thread):
    from lbvae.pipeline.engine import PackedBetaVAE
    states, x, eps = engine_inputs()
    swept, lam = torch.tensor([2.0, 8.0]), torch.tensor([0.0, 4.0])
    kwargs = dict(objective=objective, weights=ZOO[objective], dataset_size=64)
    pack = PackedBetaVAE(states, 1, 10, "cpu", mode="split", **kwargs)
    terms = pack.forward_backward(x, eps, swept, lam, step=3)
    for k in (0, 1):
        alone = PackedBetaVAE([states[k]], 1, 10, "cpu", mode="split", **kwargs)
        alone_terms = alone.forward_backward(x[k:k + 1], eps[k:k + 1], swept[k:k + 1], lam[k:k + 1], step=3)
        assert torch.equal(alone_terms[0], terms[k])
        for name, p in pack.params.items():
            assert torch.equal(alone.params[name].grad[0], p.grad[k]), name


@pytest.mark.parametrize("objective", sorted(ZOO))
def test_the_engine_adds_the_objectives_regularizer_with_each_runs_weight(objective):
    from lbvae.pipeline.engine import PackedBetaVAE
    states, x, eps = engine_inputs()
    swept, lam = torch.tensor([2.0, 8.0]), torch.tensor([0.0, 4.0])
    pack = PackedBetaVAE(states, 1, 10, "cpu", mode="split", objective=objective, weights=ZOO[objective],
                         dataset_size=64)
    terms = pack.forward_backward(x, eps, swept, lam, step=3)
    for k in (0, 1):
        model = pack.member_model(k)
        with torch.no_grad():
            logits, mu, logvar = model(x[k], eps=eps[k])
            base = losses.lambda_beta_loss(logits, x[k], mu, logvar, 0.0, float(lam[k]))
            z = mu + eps[k] * torch.exp(0.5 * logvar)
            reg = regularizer(objective, mu, logvar, z, step=3, dataset_size=64,
                              **{**ZOO[objective], losses.SWEPT_WEIGHT[objective]: float(swept[k])})
        added = terms[k, 0] - terms[k, 1] - float(lam[k]) * terms[k, 3]       # total − recon − λ·l2
        assert added.item() == pytest.approx(reg["total"].item(), rel=1e-4, abs=1e-3)
        assert terms[k, 2].item() == pytest.approx(base["kl"].item(), rel=1e-5)


@pytest.mark.parametrize("objective", ["annealed", "tcvae"])
def test_vmap_mode_runs_the_objectives_as_split_mode_does(objective):
    from lbvae.pipeline.engine import PackedBetaVAE
    states, x, eps = engine_inputs()
    swept, lam = torch.tensor([2.0, 8.0]), torch.tensor([0.0, 4.0])
    out = {}
    for mode in ("split", "vmap"):
        pack = PackedBetaVAE(states, 1, 10, "cpu", mode=mode, objective=objective, weights=ZOO[objective],
                             dataset_size=64)
        out[mode] = pack.forward_backward(x, eps, swept, lam, step=3), pack.params["encoder.fc_mu.weight"].grad
    assert torch.allclose(out["split"][0], out["vmap"][0], rtol=1e-5)
    assert float((out["split"][1] - out["vmap"][1]).norm()) <= 1e-4 * float(out["split"][1].norm())


def test_the_engine_names_an_unknown_objective():
    from lbvae.pipeline.engine import PackedBetaVAE
    states, _, _ = engine_inputs()
    with pytest.raises(ValueError, match="objective 'factorvae': choose from beta, annealed"):
        PackedBetaVAE(states, 1, 10, "cpu", objective="factorvae")
