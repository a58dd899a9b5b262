"""BIIGMA-Net's vector sampling module: background shuffling across the batch (paper Fig. 2).

Given the final side output R (B x C x h x w) and the soft map M (B x 1 x h x w):
the background vectors (1 - M) * R of every image and position form a set of B*h*w C-dimensional
vectors; a random permutation of that set (without replacement, across images and positions) is
reshaped back to Theta (B x C x h x w), and the hybrid feature is

    H = M * R + (1 - M) * Theta.

(1 - M) is applied twice to the moved vectors (once at their source, once at their destination), as
in the paper's formula and the official ``VectorSamplingLayer``. Gradients reach R and M through both
products and through the gather.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


def vector_sample(features: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Hybrid feature H = M R + (1 - M) Theta; features B x C x h x w, mask B x 1 x h x w in [0, 1].

    ``generator`` (a CPU ``torch.Generator``) makes the permutation reproducible; without it the
    global RNG is used (reproducible under ``torch.manual_seed``).
    """
    if features.ndim != 4 or mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"expected features B x C x h x w and mask B x 1 x h x w, got "
                         f"{tuple(features.shape)} and {tuple(mask.shape)}")
    b, c, h, w = features.shape
    if (mask.shape[0], mask.shape[2], mask.shape[3]) != (b, h, w):
        raise ValueError(f"mask {tuple(mask.shape)} does not match features {tuple(features.shape)}")
    mask = mask.to(features.dtype)
    inv = 1.0 - mask
    background = (inv * features).permute(0, 2, 3, 1).reshape(b * h * w, c)
    perm = torch.randperm(b * h * w, generator=generator, device="cpu").to(features.device)
    theta = background.index_select(0, perm).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return mask * features + inv * theta


class VectorSampling(nn.Module):
    """Module form of ``vector_sample``; ``seed`` gives it its own generator (None: global RNG)."""

    def __init__(self, seed: int | None = None):
        super().__init__()
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        return vector_sample(features, mask, self.generator)
