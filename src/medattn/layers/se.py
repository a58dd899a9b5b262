"""Squeeze-and-excitation as BIIGMA-Net's MICA uses it, on top of timm's ``SEModule``.

timm's ``SEModule`` fits exactly once two of its defaults are overridden: ``bias=False`` (the official
Keras code builds both 1x1 convs with ``use_bias=False``) and the reduced width given directly as
``C // r`` (Keras: ``input_shape[-1] // reduction_ratio``; timm would otherwise round ``C / 16`` up to a
multiple of 8, e.g. 24 instead of 20 channels at C = 320). So this file reuses it rather than writing
a new block: ``x * sigmoid(W_e relu(W_s GAP(x)))`` with W_s: C -> C // r and W_e: C // r -> C.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.layers import SEModule


@torch.no_grad()
def keras_he_normal_(weight: torch.Tensor) -> torch.Tensor:
    """Keras ``he_normal`` in place: truncated normal (cut at 2 std) with std sqrt(2 / fan_in) / 0.8796.

    The divisor makes the truncated distribution's standard deviation exactly sqrt(2 / fan_in), as
    Keras' ``VarianceScaling(2.0, "fan_in", "truncated_normal")`` does. fan_in = in_channels * kernel area.
    """
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


class SEBlock(SEModule):
    """SE block without biases: B x C x h x w -> B x C x h x w (channel re-weighting in (0, 1)).

    Args:
        channels: C.
        reduction: r; the squeeze width is ``max(1, C // r)`` (paper and code: r = 16).
        bias: add biases to the two 1x1 convs (the official code has none).
        he_normal: initialise both convs with Keras' ``he_normal`` as the official code does
            (False keeps PyTorch's default init).
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False, he_normal: bool = True):
        if reduction < 1:
            raise ValueError(f"SE reduction must be >= 1, got {reduction}")
        super().__init__(channels, rd_channels=max(1, channels // reduction), bias=bias)
        self.reduction = reduction
        if he_normal:
            keras_he_normal_(self.fc1.weight)
            keras_he_normal_(self.fc2.weight)
