"""Independence losses between BIIGMA-Net's MICA heads: HSIC (default) and cosine similarity.

HSIC, as the official ``KernelLoss`` computes it (methods.md A.2): for heads i < j and image b, the
"points" are the n = h*w spatial positions, x_p in R^C the head-i vector at position p and y_p the
head-j one; K_pq = exp(-||x_p - x_q||^2 / (2 sigma^2)), L likewise, and the biased estimator

    HSIC_b(i, j) = tr(K H L H) / n^2,   H = I - 11^T / n.

The loss is sum_{i<j} mean_b HSIC_b(i, j). The official code forms H K H with two n x n matmuls per
kernel (O(n^3)); here tr(K H L H) = <K, L>_F - (2/n) <K1, L1> + (1'K1)(1'L1)/n^2 (H K H is never
formed), so one kernel costs O(n^2 C) (its Gram matrix) and one pair O(n^2), batched over images and
head pairs. Kernels are always computed in float32, also under bf16 autocast.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

_MIN_SIGMA = 1e-6


def _points(heads: Sequence[Tensor] | Tensor) -> Tensor:
    """N tensors B x C x h x w (or one N x B x C x h x w) -> N x B x n x C float32."""
    if isinstance(heads, Tensor):
        heads = list(heads.unbind(0))
    if len(heads) == 0:
        raise ValueError("need at least one head")
    shape = heads[0].shape
    for i, h in enumerate(heads):
        if h.ndim != 4 or h.shape != shape:
            raise ValueError(f"head {i} has shape {tuple(h.shape)}; every head must be B x C x h x w like head 0 "
                             f"{tuple(shape)}")
    b, c = shape[0], shape[1]
    return torch.stack([h.permute(0, 2, 3, 1).reshape(b, -1, c) for h in heads]).float()


def pairwise_sq_dists(x: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of x: (..., n, d) -> (..., n, n), float32.

    The points are centred first (distances do not change, rounding error does) and the diagonal
    is set to exactly 0, so large activations do not turn K_pp = 1 into something else.
    """
    x = x.float()
    x = x - x.mean(dim=-2, keepdim=True)
    sq = (x * x).sum(dim=-1)
    d = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2.0 * (x @ x.transpose(-1, -2))).clamp_min(0.0)
    n = d.shape[-1]
    return d.masked_fill(torch.eye(n, dtype=torch.bool, device=d.device), 0.0)


def median_sigma(sq_dists: Tensor) -> Tensor:
    """Median heuristic: sigma = median over p < q of ||x_p - x_q|| per matrix, (..., n, n) -> (..., 1, 1).

    Detached (a bandwidth, not a learnable quantity), and at least 1e-6.
    """
    n = sq_dists.shape[-1]
    if n < 2:
        return torch.ones(sq_dists.shape[:-2] + (1, 1), device=sq_dists.device)
    iu = torch.triu_indices(n, n, offset=1, device=sq_dists.device)
    d = sq_dists.detach()[..., iu[0], iu[1]].sqrt()
    return d.median(dim=-1).values.clamp_min(_MIN_SIGMA)[..., None, None]


def gaussian_kernel(x: Tensor, sigma: float | str | Tensor = 2.0) -> Tensor:
    """K_pq = exp(-||x_p - x_q||^2 / (2 sigma^2)): (..., n, d) -> (..., n, n) float32.

    ``sigma``: a positive number, a tensor broadcastable to (..., 1, 1), or "median".
    """
    d = pairwise_sq_dists(x)
    if isinstance(sigma, str):
        if sigma != "median":
            raise ValueError(f"sigma must be a positive number or 'median', got {sigma!r}")
        sigma = median_sigma(d)
    elif not isinstance(sigma, Tensor):
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
    return torch.exp(-d / (2.0 * sigma * sigma))


def center_kernel(k: Tensor) -> Tensor:
    """H K H for symmetric or general K (..., n, n): K - row means - column means + grand mean."""
    return k - k.mean(dim=-1, keepdim=True) - k.mean(dim=-2, keepdim=True) + k.mean(dim=(-2, -1), keepdim=True)


def hsic(k: Tensor, l: Tensor) -> Tensor:
    """Biased HSIC tr(K H L H) / n^2 of kernel matrices (..., n, n) -> (...)."""
    n = k.shape[-1]
    return (center_kernel(k) * l).sum(dim=(-2, -1)) / (n * n)


def head_kernels(heads: Sequence[Tensor] | Tensor, sigma: float | str = 2.0, relative: bool = False) -> Tensor:
    """The Gaussian kernel of every head and image: N heads B x C x h x w -> B x N x n x n (float32).

    ``relative=True``: the bandwidth is ``sigma / 2`` times the median distance between the points of
    each image and head (detached), so sigma = 2 is the median heuristic and the kernel carries
    information at any feature scale. Under autocast the kernels are still computed in float32.
    """
    with torch.autocast(device_type=_device_type(heads), enabled=False):
        x = _points(heads)  # N x B x n x C
        if not relative:
            return gaussian_kernel(x, sigma).transpose(0, 1)
        if isinstance(sigma, str):
            raise ValueError("a relative bandwidth needs a number sigma (the median heuristic is sigma = 2)")
        d = pairwise_sq_dists(x)
        width = (float(sigma) / 2.0) * median_sigma(d)
        return torch.exp(-d / (2.0 * width * width)).transpose(0, 1)


def hsic_matrix(heads: Sequence[Tensor] | Tensor, sigma: float | str = 2.0, relative: bool = False) -> Tensor:
    """HSIC_b(i, j) for every image and pair of heads: N heads B x C x h x w -> B x N x N (float32).

    Uses tr(K H L H) = <K, L>_F - (2/n) <K1, L1> + (1'K1)(1'L1)/n^2, so the centred kernels are
    never formed: one B x N x n^2 by B x n^2 x N product gives every pair's <K_i, K_j>_F. The kernels
    are ``head_kernels(heads, sigma, relative)``.
    """
    with torch.autocast(device_type=_device_type(heads), enabled=False):
        k = head_kernels(heads, sigma, relative)  # B x N x n x n
        b, n_heads, n = k.shape[0], k.shape[1], k.shape[-1]
        flat = k.reshape(b, n_heads, n * n)
        frob = torch.bmm(flat, flat.transpose(1, 2))  # B x N x N: <K_i, K_j>_F
        rows = k.sum(dim=-1)  # B x N x n: K 1
        totals = rows.sum(dim=-1)  # B x N: 1'K1
        cross = torch.bmm(rows, rows.transpose(1, 2))  # B x N x N: <K_i 1, K_j 1>
        return (frob - (2.0 / n) * cross + totals.unsqueeze(2) * totals.unsqueeze(1) / (n * n)) / (n * n)


def pairwise_hsic(heads: Sequence[Tensor] | Tensor, sigma: float | str = 2.0, relative: bool = False) -> Tensor:
    """L_HSIC = sum_{i<j} mean_b HSIC_b(i, j); 0 (with a graph) for a single head. Scalar float32.
    ``relative``: see ``hsic_matrix``."""
    m = hsic_matrix(heads, sigma, relative)
    n_heads = m.shape[-1]
    if n_heads < 2:
        return m.sum() * 0.0
    iu = torch.triu_indices(n_heads, n_heads, offset=1, device=m.device)
    return m[:, iu[0], iu[1]].mean(dim=0).sum()


def cosine_independence(heads: Sequence[Tensor] | Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine-similarity independence term (paper Table 2's alternative to HSIC):
    sum_{i<j} mean_b |cos(vec r^i_b, vec r^j_b)| over the flattened head outputs. Scalar float32.

    The paper gives no formula; this mirrors the HSIC term's pair/batch reduction [inferred].
    """
    with torch.autocast(device_type=_device_type(heads), enabled=False):
        x = _points(heads)
        v = x.reshape(x.shape[0], x.shape[1], -1)  # N x B x (n*C)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(eps)
        cos = torch.einsum("ibk,jbk->bij", v, v)
        n_heads = cos.shape[-1]
        if n_heads < 2:
            return cos.sum() * 0.0
        iu = torch.triu_indices(n_heads, n_heads, offset=1, device=cos.device)
        return cos[:, iu[0], iu[1]].abs().mean(dim=0).sum()


def _device_type(heads: Sequence[Tensor] | Tensor) -> str:
    first = heads if isinstance(heads, Tensor) else heads[0]
    return first.device.type
