"""A short supervised run on coloured squares, shared by the method tests."""
from __future__ import annotations

import torch

from medattn.losses.classification import build_criterion
from medattn.models import LossContext


def coloured_squares(n: int = 6, size: int = 64, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is the colour channel of a bright square on a dark background."""
    x = torch.rand(n, 3, size, size) * 0.3
    y = torch.arange(n) % num_classes
    for i in range(n):
        x[i, int(y[i]), size // 4:size * 5 // 8, size // 4:size * 5 // 8] = 1.0
    return x, y


def loss_history(model: torch.nn.Module, steps: int = 8, term: str = "ce", lr: float = 3e-3) -> list[float]:
    """``term`` of ``forward_train`` at each of ``steps`` Adam steps on ``coloured_squares()``."""
    x, y = coloured_squares()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ctx = LossContext(criterion=build_criterion("ce", "multiclass"))
    history = []
    for _ in range(steps):
        out = model.forward_train(x, y, ctx)
        opt.zero_grad()
        out.losses["total"].backward()
        opt.step()
        history.append(out.losses[term].item())
    return history
