"""HSIC independence loss: exact against NumPy, statistical sanity, invariances, numerical safety."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.losses.hsic import (center_kernel, cosine_independence, gaussian_kernel, hsic_matrix, median_sigma,
                                 pairwise_hsic, pairwise_sq_dists)


def _np_hsic(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """tr(K H L H) / n^2 with explicit matrices, float64; x, y: n x C."""
    n = x.shape[0]
    dx = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    dy = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    k = np.exp(-dx / (2 * sigma ** 2))
    l = np.exp(-dy / (2 * sigma ** 2))
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h) / n ** 2)


def _rows(t: torch.Tensor, b: int) -> np.ndarray:
    """B x C x h x w -> image b's positions as n x C float64 (row-major over h, w)."""
    return t[b].permute(1, 2, 0).reshape(-1, t.shape[1]).double().numpy()


def _heads(n_heads=3, b=4, c=6, h=5, w=4, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(b, c, h, w, generator=g) for _ in range(n_heads)]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 4.0])
def test_matches_numpy_trace_formula(sigma):
    heads = _heads()
    got = hsic_matrix(heads, sigma)
    assert got.shape == (4, 3, 3) and got.dtype == torch.float32
    for b in range(4):
        for i in range(3):
            for j in range(3):
                ref = _np_hsic(_rows(heads[i], b), _rows(heads[j], b), sigma)
                assert abs(got[b, i, j].item() - ref) < 1e-5 * max(1.0, abs(ref)), (b, i, j)


def test_pairwise_loss_sums_pairs_and_averages_batch():
    heads = _heads(n_heads=3, b=3)
    ref = 0.0
    for i in range(3):
        for j in range(i + 1, 3):
            ref += np.mean([_np_hsic(_rows(heads[i], b), _rows(heads[j], b), 2.0) for b in range(3)])
    assert pairwise_hsic(heads, 2.0).item() == pytest.approx(ref, abs=1e-6)
    # the stacked N x B x C x h x w form gives the same value
    assert pairwise_hsic(torch.stack(heads), 2.0).item() == pytest.approx(ref, abs=1e-6)


def test_single_head_is_zero_with_graph():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = pairwise_hsic([x], 2.0)
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and torch.all(x.grad == 0)


def test_centering_identity_equals_explicit_matrices():
    k = gaussian_kernel(torch.randn(3, 7, 2), 1.0)
    h = torch.eye(7) - torch.ones(7, 7) / 7
    torch.testing.assert_close(center_kernel(k), h @ k @ h, atol=1e-6, rtol=1e-5)


def test_gradient_equals_naive_cubic_implementation():
    heads = [t.requires_grad_(True) for t in _heads(n_heads=2, b=2, c=3, h=4, w=4, seed=3)]
    pairwise_hsic(heads, 1.0).backward()
    fast = [t.grad.clone() for t in heads]
    naive_in = [t.detach().clone().double().requires_grad_(True) for t in heads]
    pts = [t.permute(0, 2, 3, 1).reshape(2, 16, 3) for t in naive_in]
    hm = torch.eye(16, dtype=torch.float64) - 1.0 / 16
    ks = [torch.exp(-torch.cdist(p, p) ** 2 / 2.0) for p in pts]
    (torch.einsum("bij,bji->b", hm @ ks[0] @ hm, ks[1]) / 256).mean().backward()
    for f, n in zip(fast, naive_in):
        torch.testing.assert_close(f.double(), n.grad, atol=1e-6, rtol=1e-4)


def test_near_zero_for_independent_and_positive_for_dependent():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2, 20, 20, generator=g)
    independent = torch.randn(4, 2, 20, 20, generator=g)
    linear = 2.0 * x + 0.1 * torch.randn(4, 2, 20, 20, generator=g)
    nonlinear = x ** 2 + 0.1 * torch.randn(4, 2, 20, 20, generator=g)
    h_ind = hsic_matrix([x, independent], 1.0)[:, 0, 1]
    h_lin = hsic_matrix([x, linear], 1.0)[:, 0, 1]
    h_nonlin = hsic_matrix([x, nonlinear], 1.0)[:, 0, 1]
    assert h_ind.max().item() < 5e-3
    assert h_lin.min().item() > 10 * h_ind.max().item()
    assert h_nonlin.min().item() > 3 * h_ind.max().item()


def test_invariant_to_joint_permutation_of_positions():
    heads = _heads(n_heads=3, b=2, c=4, h=6, w=6, seed=5)
    perm = torch.randperm(36, generator=torch.Generator().manual_seed(0))

    def permute(t):
        flat = t.flatten(2)[:, :, perm]
        return flat.reshape(t.shape)

    torch.testing.assert_close(hsic_matrix(heads, 2.0), hsic_matrix([permute(t) for t in heads], 2.0),
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 4.0, "median"])
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_finite_value_and_gradient(sigma, scale):
    heads = [t.requires_grad_(True) for t in _heads(n_heads=3, b=2, c=32, h=7, w=7, seed=7, scale=scale)]
    loss = pairwise_hsic(heads, sigma)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(t.grad).all() for t in heads)
    # K_pp = 1 exactly even for large activations, so a head is never "less than independent" of itself
    k = gaussian_kernel(heads[0].detach().permute(0, 2, 3, 1).reshape(2, 49, 32), 0.5)
    assert torch.all(torch.diagonal(k, dim1=-2, dim2=-1) == 1.0)


def test_constant_features_give_zero_not_nan():
    heads = [torch.ones(2, 3, 4, 4, requires_grad=True), torch.zeros(2, 3, 4, 4, requires_grad=True)]
    for sigma in (2.0, "median"):
        loss = pairwise_hsic(heads, sigma)
        loss.backward()
        assert loss.item() == pytest.approx(0.0, abs=1e-7)
        assert all(torch.isfinite(t.grad).all() for t in heads)


def test_median_heuristic_is_median_pairwise_distance():
    x = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(2))
    d = pairwise_sq_dists(x)
    sig = median_sigma(d)
    assert sig.shape == (3, 1, 1)
    for b in range(3):
        xb = x[b].double().numpy()
        dist = np.sqrt(((xb[:, None] - xb[None]) ** 2).sum(-1))[np.triu_indices(10, 1)]
        # torch's median of an even count is the lower of the two middle values
        assert sig[b, 0, 0].item() == pytest.approx(np.sort(dist)[(dist.size - 1) // 2], rel=1e-5)


def test_kernels_are_float32_under_bf16_autocast():
    heads = [t.to(torch.bfloat16) for t in _heads(n_heads=2, b=2, c=8, h=4, w=4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = pairwise_hsic(heads, 2.0)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(pairwise_hsic([t.float() for t in heads], 2.0).item(), rel=1e-6)


def test_cosine_independence_matches_numpy():
    heads = _heads(n_heads=3, b=2, c=4, h=3, w=3, seed=9)
    ref = 0.0
    for i in range(3):
        for j in range(i + 1, 3):
            vals = []
            for b in range(2):
                u, v = heads[i][b].flatten().double().numpy(), heads[j][b].flatten().double().numpy()
                vals.append(abs(u @ v) / np.linalg.norm(u) / np.linalg.norm(v))
            ref += np.mean(vals)
    assert cosine_independence(heads).item() == pytest.approx(ref, abs=1e-6)
    assert cosine_independence(heads[:1]).item() == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="head 1 has shape"):
        pairwise_hsic([torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5)])
    with pytest.raises(ValueError, match="sigma must be a positive number or 'median'"):
        pairwise_hsic(_heads(2), "mean")
    with pytest.raises(ValueError, match="sigma must be positive"):
        pairwise_hsic(_heads(2), 0.0)


def test_fixed_sigma_saturates_on_far_apart_points():
    """Points much further apart than sigma: K = L = I, so each pair gives tr(HH)/n^2 = (n-1)/n^2 and
    no gradient (docs/biigma.md, "A fixed sigma can leave the term inert"); the median bandwidth acts."""
    torch.manual_seed(0)
    heads = [(10 * torch.randn(2, 320, 7, 7)).requires_grad_() for _ in range(3)]
    value = pairwise_hsic(heads, 2.0)
    assert value.item() == pytest.approx(3 * 48 / 49 ** 2, rel=1e-6)
    value.backward()
    assert max(h.grad.abs().max().item() for h in heads) < 1e-12
    median = pairwise_hsic([h.detach().requires_grad_() for h in heads], "median")
    assert median.item() < 0.5 * value.item()
