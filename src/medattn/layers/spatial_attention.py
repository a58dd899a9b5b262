"""BIIGMA-Net's spatial-attention (SA) block: side-output adapters and the soft map M.

Paper Fig. 2: side outputs of three backbone levels go through "1x1 + MaxPool" adapters (//4, //2 and
a 1x1 alone on the last level) to the last level's h x w, are concatenated into S~, and the SA block
prunes the low-variance channels of S~, averages the rest over channels and applies a sigmoid, giving
M (B x 1 x h x w, values in (0, 1); not binarised).

The official code differs (methods.md A.1, A.6.4), so each behaviour has a flag:

- ``adapter="conv_maxpool"`` (Fig. 2): 1x1 conv (no bias, he_normal) + BatchNorm, then adaptive max
  pooling to h x w; its width is ``adapter_channels`` (None keeps each level's C). Fig. 2 gives
  neither width, bias, normalisation nor activation. The official code's commented-out conv had a
  ReLU; with it the channel mean of S~ is large (measured on ImageNet Lite0 features: M in
  0.97..1.00 at initialisation), the sigmoid saturates, M is ~1 everywhere and vector sampling does
  nothing. The BatchNorm keeps S~ at unit scale on every backbone, so M starts in about 0.5..0.8.
- ``adapter="avgpool"`` (the notebook) / ``"maxpool"`` (the ``src/`` refactor): pooling only.
- ``sa_map="variance_pruned"`` (Fig. 2) / ``"mean"`` (the code: sigmoid of the plain channel mean).

``variance_pruned_mean`` is also the per-head map of the official ``channel_pruning_layer``:
channels whose spatial variance exceeds the mean variance are kept and averaged. Where no channel of an
image passes (all variances equal, or all below a batch-wide threshold), the official code computes
0 / 0 = NaN; here that image falls back to the mean over all its channels.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .adaptive_pool import adaptive_max_pool2d
from .se import keras_he_normal_

ADAPTERS = ("conv_maxpool", "avgpool", "maxpool")
SA_MAPS = ("variance_pruned", "mean")
PRUNE_SCOPES = ("image", "batch")


def variance_pruned_mean(x: Tensor, scope: str = "image") -> Tensor:
    """Mean over the high-variance channels: B x C x h x w -> B x 1 x h x w (float32, never NaN).

    A channel c of image b is kept when Var_{h,w}(x[b, c]) (population variance) is strictly above
    the threshold tau: the mean of the variances over the image's channels (``scope="image"``) or over
    every image and channel of the batch (``scope="batch"``, the official code). The mask carries no
    gradient; the kept activations do.
    """
    if scope not in PRUNE_SCOPES:
        raise ValueError(f"prune scope must be one of {PRUNE_SCOPES}, got {scope!r}")
    x = x.float()
    var = x.detach().var(dim=(2, 3), unbiased=False)  # B x C
    tau = var.mean(dim=1, keepdim=True) if scope == "image" else var.mean()
    keep = var > tau
    # Images with no kept channel use all channels instead of dividing 0 by 0.
    keep = keep | ~keep.any(dim=1, keepdim=True)
    weights = keep.to(x.dtype) / keep.sum(dim=1, keepdim=True).to(x.dtype)  # B x C, rows sum to 1
    return torch.einsum("bc,bchw->bhw", weights, x).unsqueeze(1)


class LevelAdapter(nn.Module):
    """Brings one side output to the last level's size: optional 1x1 conv + BN, then pooling."""

    def __init__(self, in_channels: int, mode: str = "conv_maxpool", out_channels: int | None = None,
                 he_normal: bool = True):
        super().__init__()
        if mode not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, got {mode!r}")
        self.mode = mode
        self.conv = None
        self.out_channels = in_channels
        self.norm = None
        if mode == "conv_maxpool":
            self.out_channels = out_channels or in_channels
            self.conv = nn.Conv2d(in_channels, self.out_channels, kernel_size=1, bias=False)
            self.norm = nn.BatchNorm2d(self.out_channels)
            if he_normal:
                keras_he_normal_(self.conv.weight)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """B x C_i x H_i x W_i -> B x C_out x h x w (adaptive pooling equals k x k pooling with
        k = H_i / h when the sizes divide, as they do for 224 px inputs; the max pooling is
        ``layers.adaptive_pool``'s, which ONNX can express for sizes that do not divide)."""
        if self.conv is not None:
            x = self.norm(self.conv(x))
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        if self.mode == "avgpool":
            return F.adaptive_avg_pool2d(x, size)
        return adaptive_max_pool2d(x, size)


class SpatialAttentionMap(nn.Module):
    """Side outputs (finest first, coarsest last) -> M = sigmoid(SA(concat(adapters))), B x 1 x h x w.

    Args:
        in_channels: channels of each side output.
        adapter: "conv_maxpool" (Fig. 2), "avgpool" (notebook) or "maxpool" (``src/``).
        sa_map: "variance_pruned" (Fig. 2) or "mean" (official code).
        adapter_channels: width of the adapters' 1x1 convs (None: keep each level's width).
        prune_scope: threshold of the variance pruning, "image" or "batch".
    """

    def __init__(self, in_channels: Sequence[int], adapter: str = "conv_maxpool", sa_map: str = "variance_pruned",
                 adapter_channels: int | None = None, prune_scope: str = "image", he_normal: bool = True):
        super().__init__()
        if sa_map not in SA_MAPS:
            raise ValueError(f"sa_map must be one of {SA_MAPS}, got {sa_map!r}")
        if prune_scope not in PRUNE_SCOPES:
            raise ValueError(f"prune scope must be one of {PRUNE_SCOPES}, got {prune_scope!r}")
        self.sa_map = sa_map
        self.prune_scope = prune_scope
        self.adapters = nn.ModuleList(LevelAdapter(c, adapter, adapter_channels, he_normal) for c in in_channels)

    def side_features(self, levels: Sequence[Tensor]) -> Tensor:
        """S~: the adapted side outputs concatenated along channels, B x sum(C_out) x h x w."""
        if len(levels) != len(self.adapters):
            raise ValueError(f"expected {len(self.adapters)} feature levels, got {len(levels)}")
        size = tuple(levels[-1].shape[-2:])
        return torch.cat([a(x, size) for a, x in zip(self.adapters, levels)], dim=1)

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        s = self.side_features(levels)
        if self.sa_map == "mean":
            return torch.sigmoid(s.float().mean(dim=1, keepdim=True))
        return torch.sigmoid(variance_pruned_mean(s, self.prune_scope))
