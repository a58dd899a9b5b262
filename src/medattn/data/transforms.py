"""Augmentation of whole batches in torch (no per-image Python loop).

Images arrive as uint8 B x H x W x 3 (the in-memory data set) and leave as float B x 3 x H x W in
[0, 1]. All randomness comes from one ``torch.Generator`` so a run is reproducible and resumable.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def to_float_batch(images: np.ndarray | Tensor, device: torch.device | None = None) -> Tensor:
    """uint8 B x H x W x 3 -> float32 B x 3 x H x W in [0, 1], on ``device`` (default: the CPU).

    For a CUDA device the uint8 batch goes over (pinned memory, non-blocking copy: a quarter of the
    bytes of the float batch) and is converted there."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()
    t = torch.as_tensor(images)
    if device is not None and device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


class BatchAugment:
    """Random flips, 90-degree rotations, resized crop with optional rotation, and colour jitter.

    ``__call__(x, generator) -> x`` on float B x 3 x H x W in [0, 1]; the output has the same size.
    Geometric transforms are done with one ``affine_grid`` / ``grid_sample`` per batch. ``x`` may be
    on a GPU: the random parameters are drawn from the (CPU) generator, so the result does not
    depend on the device, and only they are copied to it.
    """

    def __init__(self, hflip: bool = True, vflip: bool = True, rot90: bool = True,
                 scale: tuple[float, float] | None = (0.75, 1.0), rotate: float = 0.0, brightness: float = 0.1,
                 contrast: float = 0.1, saturation: float = 0.1, hue: float = 0.0):
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90
        self.scale = tuple(scale) if scale else None
        self.rotate = float(rotate)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def _uniform(self, n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    def geometry(self, b: int, g: torch.Generator) -> Tensor:
        """B x 2 x 3 affine matrices (output -> input coordinates, normalised to [-1, 1])."""
        angle = torch.zeros(b)
        if self.rot90:
            angle += torch.randint(0, 4, (b,), generator=g).float() * (math.pi / 2)
        if self.rotate:
            angle += self._uniform(b, -self.rotate, self.rotate, g) * (math.pi / 180)
        sx = torch.ones(b)
        sy = torch.ones(b)
        tx = torch.zeros(b)
        ty = torch.zeros(b)
        if self.scale:
            area = self._uniform(b, self.scale[0], self.scale[1], g)
            log_ratio = self._uniform(b, math.log(3 / 4), math.log(4 / 3), g)
            ratio = torch.exp(log_ratio)
            sx = torch.sqrt(area * ratio).clamp(max=1.0)
            sy = torch.sqrt(area / ratio).clamp(max=1.0)
            tx = (torch.rand(b, generator=g) * 2 - 1) * (1 - sx)
            ty = (torch.rand(b, generator=g) * 2 - 1) * (1 - sy)
        if self.hflip:
            sx = sx * torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
        if self.vflip:
            sy = sy * torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([
            torch.stack([cos * sx, -sin * sy, tx], dim=1),
            torch.stack([sin * sx, cos * sy, ty], dim=1),
        ], dim=1)
        return theta

    def colour(self, x: Tensor, g: torch.Generator) -> Tensor:
        b = x.shape[0]
        if self.brightness:
            x = x * self._uniform(b, 1 - self.brightness, 1 + self.brightness, g).to(x).view(b, 1, 1, 1)
        if self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * self._uniform(b, 1 - self.contrast, 1 + self.contrast, g).to(x).view(b, 1, 1, 1) + mean
        if self.saturation:
            grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            x = (x - grey) * self._uniform(b, 1 - self.saturation, 1 + self.saturation, g).to(x).view(b, 1, 1, 1) + grey
        if self.hue:
            # Rotate chroma around the grey axis (a cheap, differentiable hue shift).
            angle = (self._uniform(b, -self.hue, self.hue, g) * 2 * math.pi).to(x)
            k = (torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3)).to(x)
            cos, sin = torch.cos(angle).view(b, 1, 1, 1), torch.sin(angle).view(b, 1, 1, 1)
            cross = torch.cross(k.view(1, 3, 1, 1).expand_as(x), x, dim=1)
            dot = (x * k.view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = x * cos + cross * sin + k.view(1, 3, 1, 1) * dot * (1 - cos)
        return x.clamp_(0.0, 1.0)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b = x.shape[0]
        if self.rot90 or self.rotate or self.scale or self.hflip or self.vflip:
            theta = self.geometry(b, generator).to(x)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return self.colour(x, generator)
