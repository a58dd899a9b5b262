"""Class-query multi-head attention over a feature map, and a class-wise linear head.

K learnable class queries attend over the h*w positions of a feature map (multi-head scaled
dot-product attention, as in Query2Label's decoder, without positional encoding, FFN or residual):

    a_{b,h,k,p} = softmax_p(q_{h,k} . key_{b,h,p} / sqrt(d_h)),   f_{b,k} = W_o concat_h sum_p a_{b,h,k,p} v_{b,h,p}

``forward(f)`` returns the class features B x K x D and the attention B x heads x K x (h*w) (float32,
each row sums to 1). ``readout(weights, values(f))`` pools the values under any other weights of that
shape (the intervention pools under the complement of the attention). The logits are computed in float32.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class ClassQueryAttention(nn.Module):
    """Multi-head attention of K class queries over the positions of a B x C x h x w map."""

    def __init__(self, in_channels: int, num_classes: int, embed_dim: int = 256, num_heads: int = 4):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_classes, self.embed_dim, self.num_heads = num_classes, embed_dim, num_heads
        self.queries = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.02)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(in_channels, embed_dim)
        self.v_proj = nn.Linear(in_channels, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _heads(self, x: Tensor) -> Tensor:
        # ... x N x D -> ... x heads x N x d_h
        return x.unflatten(-1, (self.num_heads, -1)).transpose(-3, -2)

    def attention(self, f: Tensor) -> Tensor:
        """B x C x h x w -> attention weights B x heads x K x (h*w), float32, rows sum to 1."""
        tokens = f.flatten(2).transpose(1, 2)                           # B x P x C
        q = self._heads(self.q_proj(self.queries)).float()               # heads x K x d_h
        k = self._heads(self.k_proj(tokens)).float()                     # B x heads x P x d_h
        logits = torch.einsum("hkd,bhpd->bhkp", q, k) / math.sqrt(q.shape[-1])
        return torch.softmax(logits, dim=-1)

    def values(self, f: Tensor) -> Tensor:
        """B x C x h x w -> per-head values B x heads x (h*w) x d_h."""
        return self._heads(self.v_proj(f.flatten(2).transpose(1, 2)))

    def readout(self, weights: Tensor, values: Tensor, bias: bool = True) -> Tensor:
        """Pool ``values`` (from ``values(f)``) under ``weights`` (B x heads x K x P) -> class features
        B x K x D; ``bias=False`` leaves out the output projection's bias (for a context added to
        features that already carry it)."""
        pooled = torch.einsum("bhkp,bhpd->bkhd", weights.to(values.dtype), values).flatten(2)
        return self.out_proj(pooled) if bias else F.linear(pooled, self.out_proj.weight)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        att = self.attention(f)
        return self.readout(att, self.values(f)), att


class ClassWiseLinear(nn.Module):
    """One linear classifier per class: B x K x D -> logits B x K, logit_k = <w_k, x_k> + b_k."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(dim))

    def forward(self, x: Tensor) -> Tensor:
        return (x * self.weight.to(x.dtype)).sum(dim=-1) + self.bias.to(x.dtype)
