"""Scaling of attention maps to the [0, 1] range the model contract promises."""
from __future__ import annotations

import torch
from torch import Tensor


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max scale each map of a B x 1 x H x W batch to [0, 1]; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = hi - lo
    scaled = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return scaled.view_as(maps)
