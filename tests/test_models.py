import pytest
import torch
import torch.nn.functional as F

from losses import kl_to_standard_normal, lambda_beta_loss
from models import BetaVAE, num_parameters

# Parameter names of the original code's published state_dicts (docs/study.md).
ORIGINAL_PREFIXES = {"encoder.encoder.0", "encoder.encoder.2", "encoder.encoder.4", "encoder.encoder.6",
                     "encoder.fc1", "encoder.fc_mu", "encoder.fc_logvar", "decoder.fc1", "decoder.fc2",
                     "decoder.decoder.0", "decoder.decoder.2", "decoder.decoder.4", "decoder.decoder.6"}


@pytest.mark.parametrize("channels, count", [(1, 764_245), (3, 766_295)])
def test_architecture_shapes_and_parameter_count(channels, count):
    model = BetaVAE(channels)
    assert num_parameters(model) == count
    logits, mu, logvar = model(torch.rand(5, channels, 64, 64))
    assert logits.shape == (5, channels, 64, 64) and mu.shape == logvar.shape == (5, 10)


def test_state_dict_names_match_the_original_checkpoints():
    keys = BetaVAE(1).state_dict().keys()
    assert {k.rsplit(".", 1)[0] for k in keys} == ORIGINAL_PREFIXES
    # An original-style checkpoint (plain state_dict, those names) loads strictly.
    state = {k: torch.randn_like(v) for k, v in BetaVAE(1).state_dict().items()}
    model = BetaVAE(1)
    model.load_state_dict(state)
    assert torch.equal(model.encoder.fc_mu.weight, state["encoder.fc_mu.weight"])


def test_loss_terms_match_their_definitions():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 64, 64).round()
    logits, mu, logvar = torch.randn(8, 1, 64, 64), torch.randn(8, 10), torch.randn(8, 10)
    terms = lambda_beta_loss(logits, x, mu, logvar, beta=4.0, lam=2.0)
    probs = torch.sigmoid(logits)
    bce = F.binary_cross_entropy(probs, x, reduction="none").sum((1, 2, 3)).mean()
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    l2 = ((probs - x) ** 2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(terms["recon"], bce, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(terms["kl"], kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms["l2"], l2)
    torch.testing.assert_close(terms["total"], bce + 4.0 * kl + 2.0 * l2, rtol=1e-5, atol=1e-3)
    assert torch.all(kl_to_standard_normal(torch.zeros(3, 10), torch.zeros(3, 10)) == 0)


def test_lambda_zero_is_the_plain_beta_vae():
    x, logits = torch.rand(4, 3, 64, 64), torch.randn(4, 3, 64, 64)
    mu, logvar = torch.randn(4, 10), torch.randn(4, 10)
    terms = lambda_beta_loss(logits, x, mu, logvar, beta=8.0, lam=0.0)
    torch.testing.assert_close(terms["total"], terms["recon"] + 8.0 * terms["kl"])
    assert terms["l2"] > 0          # still reported for the λ = 0 control
