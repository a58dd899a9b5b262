"""MICA: Multi-head Independence-guided Channel Attention (BIIGMA-Net, paper Fig. 1).

Each of N heads projects the final side output R (B x C x h x w) with its own 1x1 conv (C -> C, no
bias), a ReLU and an SE block (r = 16, no bias); the heads' outputs R^i_proj are kept separate for the
HSIC independence loss and concatenated (B x N*C x h x w) for the classifier. The order conv -> ReLU
-> SE follows the official code (``FeatureProjectionLayer``); Fig. 1 labels the box "SE + (1x1)".
"""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from .se import SEBlock, keras_he_normal_


class MICAHead(nn.Module):
    """One head: ReLU(Conv1x1(x)) re-weighted by SE; B x C x h x w -> B x C x h x w."""

    def __init__(self, channels: int, reduction: int = 16, he_normal: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.se = SEBlock(channels, reduction=reduction, bias=False, he_normal=he_normal)
        if he_normal:
            keras_he_normal_(self.proj.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.se(self.act(self.proj(x)))


class MICA(nn.Module):
    """N independent heads over the same input; ``forward`` returns the list of N head outputs.

    Args:
        channels: C of the input (each head keeps C channels).
        num_heads: N >= 1 (paper's best and the notebook: 3).
        reduction: SE reduction r (16).
        he_normal: Keras ``he_normal`` initialisation as in the official code.
    """

    def __init__(self, channels: int, num_heads: int = 3, reduction: int = 16, he_normal: bool = True):
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"MICA needs num_heads >= 1, got {num_heads}")
        self.channels = channels
        self.num_heads = num_heads
        self.heads = nn.ModuleList(MICAHead(channels, reduction, he_normal) for _ in range(num_heads))

    @property
    def out_channels(self) -> int:
        """Channels of the concatenated output, N * C."""
        return self.num_heads * self.channels

    def forward(self, x: Tensor) -> list[Tensor]:
        """B x C x h x w -> N tensors B x C x h x w (concatenate along dim 1 for the paper's ℛ)."""
        return [head(x) for head in self.heads]
