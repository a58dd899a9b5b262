"""Variational information bottleneck (Alemi et al. 2017) on per-class features.

An encoder maps a feature z (... x C) to a Gaussian posterior q(t | z) = N(mu(z), Sigma(z)) over a
D-dimensional code t, with a KL term to the prior N(0, I). In training t is sampled with the
reparameterisation t = mu + L eps (eps ~ N(0, I)); at evaluation t = mu (deterministic, so
``forward(x)`` of a model is a function). ``covariance="diag"`` predicts log-variances;
``"full"`` predicts a lower-triangular Cholesky factor L (diagonal through softplus + 1e-4).
The KL is computed in float32 and returned per item (sum over the D dimensions, in nats).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

COVARIANCES = ("diag", "full")
_LOGVAR_RANGE = (-10.0, 10.0)  # keeps exp() finite in bf16 and fp32


def kl_diag_to_standard_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) = 1/2 sum_d (var + mu^2 - 1 - log_var): ... x D -> ...."""
    mu, log_var = mu.float(), log_var.float()
    return 0.5 * (log_var.exp() + mu.square() - 1.0 - log_var).sum(dim=-1)


def kl_full_to_standard_normal(mu: Tensor, chol: Tensor) -> Tensor:
    """KL(N(mu, L L^T) || N(0, I)) = 1/2 (tr(L L^T) + mu^T mu - D - log det(L L^T)).

    mu: ... x D, chol: ... x D x D lower triangular with a positive diagonal -> ....
    """
    mu, chol = mu.float(), chol.float()
    d = mu.shape[-1]
    trace = chol.square().sum(dim=(-2, -1))
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(dim=-1)
    return 0.5 * (trace + mu.square().sum(dim=-1) - d - logdet)


class VariationalBottleneck(nn.Module):
    """``forward(z) -> (t, kl)``: z ... x C -> code t ... x D, kl ... (nats, float32)."""

    def __init__(self, in_dim: int, out_dim: int, covariance: str = "diag"):
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        self.out_dim, self.covariance = out_dim, covariance
        self.mean = nn.Linear(in_dim, out_dim)
        n_scale = out_dim if covariance == "diag" else out_dim * (out_dim + 1) // 2
        self.scale = nn.Linear(in_dim, n_scale)
        # Start near the prior's scale (log-var 0 / unit Cholesky diagonal) rather than at random.
        nn.init.zeros_(self.scale.bias)
        nn.init.normal_(self.scale.weight, std=1e-3)
        if covariance == "full":
            rows, cols = torch.tril_indices(out_dim, out_dim)
            self.register_buffer("_rows", rows, persistent=False)
            self.register_buffer("_cols", cols, persistent=False)
            with torch.no_grad():
                # softplus(b) = 1 on the diagonal entries.
                self.scale.bias[rows == cols] = float(torch.log(torch.expm1(torch.tensor(1.0))))

    def posterior(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(mu ... x D, log_var ... x D) for ``diag``; (mu, Cholesky factor ... x D x D) for ``full``."""
        mu = self.mean(z).float()
        raw = self.scale(z).float()
        if self.covariance == "diag":
            return mu, raw.clamp(*_LOGVAR_RANGE)
        d = self.out_dim
        chol = raw.new_zeros(*raw.shape[:-1], d, d)
        on_diag = self._rows == self._cols
        values = torch.where(on_diag, F.softplus(raw) + 1e-4, raw)
        chol[..., self._rows, self._cols] = values
        return mu, chol

    def forward(self, z: Tensor, sample: bool | None = None) -> tuple[Tensor, Tensor]:
        mu, scale = self.posterior(z)
        if self.covariance == "diag":
            kl = kl_diag_to_standard_normal(mu, scale)
        else:
            kl = kl_full_to_standard_normal(mu, scale)
        if not (self.training if sample is None else sample):
            return mu, kl
        eps = torch.randn_like(mu)
        if self.covariance == "diag":
            t = mu + torch.exp(0.5 * scale) * eps
        else:
            t = mu + (scale @ eps.unsqueeze(-1)).squeeze(-1)
        return t, kl
