"""Layers of the IBCA-style model: Gaussian-mixture attention, variational bottleneck, class-query
attention. References are computed independently (numpy / scipy / torch.nn.MultiheadAttention)."""
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from medattn.layers.class_query_attention import ClassQueryAttention, ClassWiseLinear
from medattn.layers.gaussian_mixture_attention import GaussianMixtureAttention, gaussian_mixture_map, grid_centres
from medattn.layers.variational_bottleneck import (VariationalBottleneck, kl_diag_to_standard_normal,
                                                   kl_full_to_standard_normal)
from medattn.models.ibca import attention_complement


def _random_cov(rng, n, scale):
    a = rng.normal(size=(n, 2, 2)) * scale
    return a @ a.transpose(0, 2, 1) + np.eye(2) * scale ** 2 * 0.5


def test_grid_centres_are_cell_centres_in_xy_order():
    u = grid_centres(2, 4).numpy()
    assert u.shape == (8, 2)
    np.testing.assert_allclose(u[0], [0.125, 0.25])
    np.testing.assert_allclose(u[1], [0.375, 0.25])  # x (column) moves first
    np.testing.assert_allclose(u[4], [0.125, 0.75])


def test_mixture_map_is_the_renormalised_density_on_the_grid():
    rng = np.random.default_rng(0)
    g, h, w = 3, 9, 13
    weights = rng.dirichlet(np.ones(g))
    means = rng.uniform(0.1, 0.9, size=(g, 2))
    covs = _random_cov(rng, g, 0.15)
    centres = np.stack(np.meshgrid((np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h), axis=-1).reshape(-1, 2)
    ref = np.zeros(h * w)
    for j in range(g):
        dens = multivariate_normal(means[j], covs[j]).pdf(centres)
        ref += weights[j] * dens / dens.sum()
    got = gaussian_mixture_map(torch.tensor(weights), torch.tensor(means), torch.tensor(covs), h, w)
    assert got.shape == (h, w)
    np.testing.assert_allclose(got.numpy().ravel(), ref, rtol=1e-4, atol=1e-7)
    assert abs(float(got.sum()) - 1.0) < 1e-5


def test_first_moment_equals_mixture_mean_well_inside_the_grid():
    rng = np.random.default_rng(1)
    b, k, g, size = 2, 3, 2, 32
    weights = torch.tensor(rng.dirichlet(np.ones(g), size=(b, k)), dtype=torch.float32)
    means = torch.tensor(rng.uniform(0.35, 0.65, size=(b, k, g, 2)), dtype=torch.float32)
    covs = torch.tensor(_random_cov(rng, b * k * g, 0.03).reshape(b, k, g, 2, 2), dtype=torch.float32)
    maps = gaussian_mixture_map(weights, means, covs, size, size)          # B x K x h x w
    u = grid_centres(size, size)
    moment = maps.flatten(2) @ u                                           # B x K x 2
    expected = (weights.unsqueeze(-1) * means).sum(dim=2)
    torch.testing.assert_close(moment, expected, atol=2e-4, rtol=0)
    # Near the border the truncated density's moment is pulled inwards: the tolerance is not loose.
    edge = gaussian_mixture_map(torch.ones(1), torch.tensor([[0.02, 0.5]]), torch.eye(2).unsqueeze(0) * 0.01, size, size)
    assert float((edge.flatten() @ u)[0]) > 0.05


def test_layer_maps_sum_to_one_and_parameters_are_moments_of_the_softmax():
    torch.manual_seed(0)
    layer = GaussianMixtureAttention(8, num_classes=3, num_components=2, covariance="full", min_std=0.5)
    f = torch.randn(2, 8, 5, 7) * 3
    pooled, maps, params = layer(f)
    assert pooled.shape == (2, 3, 8) and maps.shape == (2, 3, 5, 7)
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 3), atol=1e-5, rtol=0)
    assert params.weights.shape == (2, 3, 2) and params.means.shape == (2, 3, 2, 2) and params.covs.shape == (2, 3, 2, 2, 2)
    # independent numpy: softmax of the 1x1-conv logits over the grid, its mean and covariance + floor
    logits = layer.logits(f).detach().numpy().reshape(2, 3, 2, 35).astype(np.float64)
    s = np.exp(logits - logits.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    u = grid_centres(5, 7).numpy().astype(np.float64)
    mean = s @ u
    d = u[None, None, None] - mean[..., None, :]
    cov = np.einsum("bkgp,bkgpi,bkgpj->bkgij", s, d, d) + (0.5 / 7) ** 2 * np.eye(2)
    lse = np.log(np.exp(logits).sum(-1))
    weights = np.exp(lse - lse.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(params.means.detach().numpy(), mean, atol=1e-5)
    np.testing.assert_allclose(params.covs.detach().numpy(), cov, atol=1e-5)
    np.testing.assert_allclose(params.weights.detach().numpy(), weights, atol=1e-5)
    assert (np.linalg.eigvalsh(params.covs.detach().numpy()) > 0).all()
    # the pooled feature is the map-weighted sum of the feature vectors
    ref = np.einsum("bkp,bcp->bkc", maps.detach().numpy().reshape(2, 3, 35), f.numpy().reshape(2, 8, 35))
    np.testing.assert_allclose(pooled.detach().numpy(), ref, rtol=1e-4, atol=1e-4)


def test_diag_covariance_has_no_off_diagonal_and_bad_options_raise():
    layer = GaussianMixtureAttention(4, 2, 2, covariance="diag")
    _, _, params = layer(torch.randn(1, 4, 6, 6))
    assert torch.all(params.covs[..., 0, 1] == 0) and torch.all(params.covs[..., 1, 0] == 0)
    with pytest.raises(ValueError, match="covariance must be one of"):
        GaussianMixtureAttention(4, 2, covariance="spherical")
    with pytest.raises(ValueError, match="num_components must be >= 1"):
        GaussianMixtureAttention(4, 2, num_components=0)


def test_kl_diag_matches_closed_form_in_numpy():
    rng = np.random.default_rng(2)
    mu, log_var = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    ref = 0.5 * np.sum(np.exp(log_var) + mu ** 2 - 1.0 - log_var, axis=1)
    got = kl_diag_to_standard_normal(torch.tensor(mu), torch.tensor(log_var)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_kl_full_matches_closed_form_in_numpy_and_torch_distributions():
    rng = np.random.default_rng(3)
    d = 5
    mu = rng.normal(size=(3, d))
    chol = np.tril(rng.normal(size=(3, d, d)) * 0.4)
    idx = np.arange(d)
    chol[:, idx, idx] = np.abs(chol[:, idx, idx]) + 0.3
    ref = []
    for m, low in zip(mu, chol):
        sigma = low @ low.T
        _, logdet = np.linalg.slogdet(sigma)
        ref.append(0.5 * (np.trace(sigma) + m @ m - d - logdet))
    got = kl_full_to_standard_normal(torch.tensor(mu), torch.tensor(chol))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5)
    q = torch.distributions.MultivariateNormal(torch.tensor(mu), scale_tril=torch.tensor(chol))
    prior = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), torch.distributions.kl_divergence(q, prior).numpy(), rtol=1e-5)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_bottleneck_samples_in_training_and_returns_the_mean_in_eval(covariance):
    torch.manual_seed(0)
    vib = VariationalBottleneck(6, 3, covariance)
    with torch.no_grad():  # a posterior far from N(0, I), with correlations in the full case
        vib.scale.bias.copy_(torch.linspace(-1.5, 1.0, vib.scale.bias.numel()))
        vib.mean.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    z = torch.randn(2, 6)
    mu, scale = vib.posterior(z)
    vib.eval()
    t, kl = vib(z)
    torch.testing.assert_close(t, mu)
    assert kl.shape == (2,) and torch.all(kl >= 0)
    vib.train()
    samples = vib(z[:1].expand(8000, -1))[0].detach()
    cov = torch.diag(scale[0].exp()) if covariance == "diag" else scale[0] @ scale[0].T
    torch.testing.assert_close(samples.mean(0), mu[0], atol=0.06, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), cov, atol=0.08, rtol=0)


def test_class_query_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    c, d, k, heads = 6, 8, 3, 2
    layer = ClassQueryAttention(c, k, d, heads)
    ref = torch.nn.MultiheadAttention(d, heads, kdim=c, vdim=c, batch_first=True)
    with torch.no_grad():
        ref.q_proj_weight.copy_(layer.q_proj.weight)
        ref.k_proj_weight.copy_(layer.k_proj.weight)
        ref.v_proj_weight.copy_(layer.v_proj.weight)
        ref.in_proj_bias.copy_(torch.cat([layer.q_proj.bias, layer.k_proj.bias, layer.v_proj.bias]))
        ref.out_proj.weight.copy_(layer.out_proj.weight)
        ref.out_proj.bias.copy_(layer.out_proj.bias)
    f = torch.randn(2, c, 3, 4)
    feats, att = layer(f)
    tokens = f.flatten(2).transpose(1, 2)
    want, want_att = ref(layer.queries.expand(2, -1, -1), tokens, tokens, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(feats, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(att, want_att, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, heads, k))
    with pytest.raises(ValueError, match="not divisible"):
        ClassQueryAttention(c, k, 10, 3)


def test_class_wise_linear_is_one_dot_product_per_class():
    head = ClassWiseLinear(3, 4)
    x = torch.randn(2, 3, 4)
    ref = torch.einsum("bkd,kd->bk", x, head.weight) + head.bias
    torch.testing.assert_close(head(x), ref)


def test_attention_complement():
    att = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.25, 0.25, 0.25, 0.25]])
    comp = attention_complement(att)
    # (1 - a / max a) = [0, .5, .5, 1] -> / 2 ; a constant row has no complement -> uniform
    torch.testing.assert_close(comp, torch.tensor([[0.0, 0.25, 0.25, 0.5], [0.25, 0.25, 0.25, 0.25]]))
