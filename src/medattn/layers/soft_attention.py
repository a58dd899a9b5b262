"""Soft-Attention (Datta et al. 2021, after Shaikh et al.): K spatial attention maps on a feature map.

Intended semantics (methods.md D.1), for x of shape B x C x h x w:

    a_k = ReLU(Conv3x3_{C->1}^{(k)}(x) + b_k),   alpha_k = softmax over the h*w positions of a_k,
    aggregate:  u = gamma * (sum_k alpha_k) * x           (B x C x h x w)
    per map:    u = gamma * concat_k(alpha_k * x)          (B x C*K x h x w, map-major as in Keras)

gamma is a learnable scalar when ``learnable_scale`` (initial value 1), else the constant 1 (the
official Keras layer has none).

``keras_exact=True`` reproduces what the official Keras layer computes instead. Its ``conv3d`` runs
over the (H, W, C) axes of ``expand_dims(x, -1)`` with a kernel (ch, 3, 3, 1, K), strides (1, 1, C)
and SAME padding, so (channels_last, ``W`` the Keras kernel, p = (ch - 1) // 2)::

    a_k(h, w) = ReLU( sum_{r<H} sum_{dw=-1..1} sum_{c=0..2} W[r-h+p, dw+1, c, 0, k] x[r, w+dw, c] + b_k )

i.e. only the first three channels enter, and the kernel's long axis (length ch) slides along H. That
is a 2-D cross-correlation of ``x[:, :3]`` with a (K, 3, ch, 3) kernel, rows padded by p above and
ch - 1 - p below; rows of the kernel that can never meet the map (|r - h| > H - 1) are cropped.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class SoftAttention(nn.Module):
    """K spatial softmax attention maps; ``forward(x) -> (u, alpha)``.

    Args:
        channels: C, channels of the input feature map.
        num_maps: K attention maps (16 in the paper's InceptionResNetV2 model).
        aggregate: sum the K maps and scale x once (output C channels), else scale x by every map
            (output C*K channels).
        learnable_scale: multiply the output by a learnable scalar gamma (init 1).
        keras_exact: compute the maps as the official Keras layer does (see module docstring).
    """

    def __init__(self, channels: int, num_maps: int = 16, aggregate: bool = True, learnable_scale: bool = False,
                 keras_exact: bool = False):
        super().__init__()
        if channels < 1 or num_maps < 1:
            raise ValueError(f"SoftAttention needs channels >= 1 and num_maps >= 1, got {channels}, {num_maps}")
        self.channels = channels
        self.num_maps = num_maps
        self.aggregate = aggregate
        self.keras_exact = keras_exact
        if keras_exact:
            # Keras kernel (depth=ch, height=3, width=3, in=1, out=K) without its singleton "in" axis
            # (a 5-D parameter would break ``model.to(memory_format=channels_last)``);
            # he_uniform, fan_in = ch*3*3*1.
            bound = math.sqrt(6.0 / (channels * 9))
            self.kernel = nn.Parameter(torch.empty(channels, 3, 3, num_maps).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.zeros(num_maps))
        else:
            self.conv = nn.Conv2d(channels, num_maps, kernel_size=3, padding=1, bias=True)
            # he_uniform as in the Keras layer: U(-sqrt(6 / fan_in), sqrt(6 / fan_in)), zero bias.
            nn.init.kaiming_uniform_(self.conv.weight, nonlinearity="relu")
            nn.init.zeros_(self.conv.bias)
        self.gamma = nn.Parameter(torch.ones(())) if learnable_scale else None

    @property
    def out_channels(self) -> int:
        """Channels of ``u``: C (aggregate) or C*K."""
        return self.channels if self.aggregate else self.channels * self.num_maps

    def logits(self, x: Tensor) -> Tensor:
        """Pre-softmax maps a_k (after ReLU): B x C x h x w -> B x K x h x w."""
        if x.shape[1] != self.channels:
            raise ValueError(f"SoftAttention built for {self.channels} channels, got input with {x.shape[1]}")
        if not self.keras_exact:
            return F.relu(self.conv(x))
        return F.relu(keras_conv3d_as_conv2d(x, self.kernel, self.bias))

    def maps(self, x: Tensor) -> Tensor:
        """alpha: B x K x h x w, each map sums to 1 over positions (softmax in float32)."""
        a = self.logits(x)
        a = a if a.dtype == torch.float64 else a.float()
        b, k, h, w = a.shape
        return torch.softmax(a.flatten(2), dim=-1).view(b, k, h, w)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: B x C x h x w -> (u: B x out_channels x h x w, alpha: B x K x h x w)."""
        alpha = self.maps(x)
        a = alpha.to(x.dtype)
        if self.aggregate:
            u = a.sum(dim=1, keepdim=True) * x
        else:
            b, c, h, w = x.shape
            u = (a.unsqueeze(2) * x.unsqueeze(1)).reshape(b, self.num_maps * c, h, w)
        if self.gamma is not None:
            u = self.gamma.to(u.dtype) * u
        return u, alpha


def keras_conv3d_as_conv2d(x: Tensor, kernel: Tensor, bias: Tensor) -> Tensor:
    """The Keras SoftAttention conv3d (before ReLU) as one 2-D convolution.

    Args:
        x: B x C x H x W feature map.
        kernel: the Keras kernel (ch, 3, 3, 1, K) without its singleton axis: (ch, 3, 3, K).
        bias: (K,).
    Returns:
        B x K x H x W logits a_k(h, w) of the formula in the module docstring.
    """
    ch, kw, kc, k = kernel.shape
    b, c, h, w = x.shape
    # Channel axis: length C, window 3, stride C, SAME -> one output covering channels
    # j - pad_c for kernel index j, where pad_c = max(3 - C, 0) // 2 (0 when C >= 3).
    pad_total = max(kc - c, 0)
    pad_c = pad_total // 2
    xc = F.pad(x, (0, 0, 0, 0, pad_c, pad_total - pad_c))[:, :kc]
    p = (ch - 1) // 2
    lo, hi = max(0, p - (h - 1)), min(ch - 1, p + (h - 1))
    weight = kernel[lo:hi + 1].permute(3, 2, 0, 1)  # K x 3(c) x rows x 3(w)
    xp = F.pad(xc, (kw // 2, kw // 2, p - lo, hi - p))
    return F.conv2d(xp, weight.to(x.dtype), bias.to(x.dtype))
