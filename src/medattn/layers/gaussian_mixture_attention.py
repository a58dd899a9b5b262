"""Gaussian-mixture multi-label spatial attention (IBCA-style reconstruction, docs/ibca.md).

IBCA's abstract names a "Gaussian mixture multi-label spatial attention" that filters out
class-irrelevant information and captures each class's attention pattern; nothing else is public.
Here, per class k, the map is a mixture of G 2-D Gaussians whose weights, means and covariances are
predicted from the feature map [inferred]:

- a 1x1 conv gives K*G logit maps L_{kg} (B x K x G x h x w); s_{kg} = softmax of L_{kg} over the grid;
- mean mu_{kg} = sum_p s_{kg}(p) u_p (soft-argmax), u_p the cell centre in normalised coordinates
  ((j + 0.5) / w, (i + 0.5) / h) in (0, 1), (x, y) order;
- covariance Sigma_{kg} = sum_p s_{kg}(p) (u_p - mu)(u_p - mu)^T + (min_std / max(h, w))^2 I
  (moment matching; ``covariance="diag"`` keeps the diagonal only); the floor keeps it positive definite;
- weight pi_{kg} = softmax over g of logsumexp_p L_{kg}(p) (a component's share of the evidence).

The map is A_k(p) = sum_g pi_{kg} N~_{kg}(p), where N~ is the Gaussian density evaluated at the cell
centres and renormalised over the grid (N~ = softmax_p(-1/2 Mahalanobis^2), which is exact because
the normaliser of a Gaussian does not depend on p). So every A_k sums to 1 over the grid, the weights
are exact mass shares, and the first moment of A_k is sum_g pi_g mu_g whenever the Gaussians lie well
inside the grid (truncation at the border shifts it otherwise). Densities are computed in float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

COVARIANCES = ("full", "diag")


@dataclass
class MixtureParams:
    """Per-class Gaussian-mixture parameters: ``weights`` B x K x G (rows sum to 1), ``means``
    B x K x G x 2 ((x, y) in (0, 1) grid units), ``covs`` B x K x G x 2 x 2 (positive definite)."""

    weights: Tensor
    means: Tensor
    covs: Tensor

    @property
    def mixture_mean(self) -> Tensor:
        """B x K x 2: sum_g pi_g mu_g."""
        return (self.weights.unsqueeze(-1) * self.means).sum(dim=2)


def grid_centres(h: int, w: int, device: torch.device | None = None) -> Tensor:
    """(h*w) x 2 cell centres ((j + 0.5) / w, (i + 0.5) / h), row-major, float32."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def gaussian_mixture_map(weights: Tensor, means: Tensor, covs: Tensor, h: int, w: int) -> Tensor:
    """The renormalised mixture density on an h x w grid: ... x G params -> ... x h x w, sums to 1.

    weights: ... x G, means: ... x G x 2, covs: ... x G x 2 x 2 (symmetric positive definite).
    """
    u = grid_centres(h, w, means.device)                                   # P x 2
    d = u.view(*([1] * (means.ndim - 1)), -1, 2) - means.float().unsqueeze(-2)  # ... x G x P x 2
    a, b, c = covs[..., 0, 0].float(), covs[..., 0, 1].float(), covs[..., 1, 1].float()
    det = (a * c - b * b).unsqueeze(-1)
    dx, dy = d[..., 0], d[..., 1]
    maha = (c.unsqueeze(-1) * dx * dx - 2 * b.unsqueeze(-1) * dx * dy + a.unsqueeze(-1) * dy * dy) / det
    per_component = torch.softmax(-0.5 * maha, dim=-1)                    # ... x G x P
    mix = (weights.float().unsqueeze(-1) * per_component).sum(dim=-2)      # ... x P
    return mix.unflatten(-1, (h, w))


class GaussianMixtureAttention(nn.Module):
    """Per-class Gaussian-mixture spatial attention and the class features pooled under it.

    ``forward(f)``: f B x C x h x w -> (pooled B x K x C, maps B x K x h x w summing to 1 over the grid,
    ``MixtureParams``).
    """

    def __init__(self, in_channels: int, num_classes: int, num_components: int = 3, covariance: str = "full",
                 min_std: float = 0.5):
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        self.num_classes, self.num_components = num_classes, num_components
        self.covariance, self.min_std = covariance, float(min_std)
        self.logits = nn.Conv2d(in_channels, num_classes * num_components, kernel_size=1)

    def mixture_params(self, f: Tensor) -> MixtureParams:
        """Weights, means and covariances predicted from the feature map (float32)."""
        b, _, h, w = f.shape
        k, g = self.num_classes, self.num_components
        logits = self.logits(f).float().reshape(b, k, g, h * w)
        s = torch.softmax(logits, dim=-1)
        u = grid_centres(h, w, f.device)
        means = s @ u                                                      # B x K x G x 2
        d = u - means.unsqueeze(-2)                                        # B x K x G x P x 2
        covs = torch.einsum("bkgp,bkgpi,bkgpj->bkgij", s, d, d)
        if self.covariance == "diag":
            covs = torch.diag_embed(torch.diagonal(covs, dim1=-2, dim2=-1))
        floor = (self.min_std / max(h, w)) ** 2
        covs = covs + floor * torch.eye(2, device=f.device)
        weights = torch.softmax(torch.logsumexp(logits, dim=-1), dim=-1)
        return MixtureParams(weights, means, covs)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor, MixtureParams]:
        h, w = f.shape[-2:]
        params = self.mixture_params(f)
        maps = gaussian_mixture_map(params.weights, params.means, params.covs, h, w)  # B x K x h x w
        pooled = torch.einsum("bkp,bcp->bkc", maps.flatten(2), f.float().flatten(2))
        return pooled, maps, params
