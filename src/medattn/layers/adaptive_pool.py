"""Adaptive max pooling that ONNX can express for any input and output size.

``torch.nn.functional.adaptive_max_pool2d`` has no ONNX form unless the output size divides the input
size (both the dynamo and the TorchScript exporter refuse it otherwise; e.g. BIIGMA's side-output
adapters at 100 px input pool 13 x 13 -> 4 x 4). ``adaptive_max_pool2d`` here computes the same values
from PyTorch's own window definition, output cell i of n over an input of length L covering
[floor(i L / n), ceil((i + 1) L / n)): when n divides L that is ``max_pool2d`` with kernel = stride =
L / n; otherwise the maximum is taken separably (rows, then columns), as slices of static size, which
every exporter translates. The gradient goes to one maximal element per window, as PyTorch's does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _windows(length: int, n: int) -> list[tuple[int, int]]:
    return [(math.floor(i * length / n), math.ceil((i + 1) * length / n)) for i in range(n)]


def _pool_axis(x: Tensor, dim: int, n: int) -> Tensor:
    length = x.shape[dim]
    return torch.cat([x.narrow(dim, s, e - s).max(dim=dim, keepdim=True).values for s, e in _windows(length, n)],
                     dim=dim)


def adaptive_max_pool2d(x: Tensor, size: tuple[int, int]) -> Tensor:
    """B x C x H x W -> B x C x h x w, equal to ``F.adaptive_max_pool2d(x, size)`` (module docstring)."""
    (h_in, w_in), (h, w) = x.shape[-2:], size
    if (h_in, w_in) == (h, w):
        return x
    if h_in % h == 0 and w_in % w == 0:
        kernel = (h_in // h, w_in // w)
        return F.max_pool2d(x, kernel, kernel)
    return _pool_axis(_pool_axis(x, -2, h), -1, w)
