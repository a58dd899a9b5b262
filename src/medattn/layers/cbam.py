"""CBAM (Woo et al. 2018) on timm's ``CbamModule``, with its spatial attention map exposed.

timm's module computes x' = x * sigma(MLP(avgpool x) + MLP(maxpool x)) and then
y = x' * sigma(BN(Conv7x7([mean_c x', max_c x']))), as the original CBAM. It returns only y; this
wrapper also returns the spatial gate so models can show it as their attention map.
Default options follow the original code (reduction 16, MLP with bias, 7x7 spatial kernel).
"""
from __future__ import annotations

import torch
from timm.layers.cbam import CbamModule
from torch import Tensor


class CBAM(CbamModule):
    """CBAM block: ``forward(x) -> y``; ``forward_with_map(x) -> (y, spatial map B x 1 x h x w)``."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel_size: int = 7, mlp_bias: bool = True):
        super().__init__(channels, rd_ratio=1.0 / reduction, rd_divisor=1, spatial_kernel_size=spatial_kernel_size,
                         mlp_bias=mlp_bias)

    def forward_with_map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: B x C x h x w -> (y: B x C x h x w, spatial gate in (0, 1): B x 1 x h x w)."""
        xc = self.channel(x)
        pooled = torch.cat([xc.mean(dim=1, keepdim=True), xc.amax(dim=1, keepdim=True)], dim=1)
        gate = self.spatial.gate(self.spatial.conv(pooled))
        return xc * gate, gate

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_map(x)[0]
