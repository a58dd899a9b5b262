"""The optimiser of a run (AdamW, Adam or SGD over the model's parameter groups) and its learning-rate
schedule (linear warm-up, then cosine decay), computed from the global step: no scheduler state to save."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import TrainConfig
from ..models.base import MedAttnModel
from ..registry import Registry

OPTIMIZERS: Registry[Callable[[list[dict]], torch.optim.Optimizer]] = Registry("optimizer", "medattn.engine")


@OPTIMIZERS.register("adamw")
def adamw(groups: list[dict]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups)


@OPTIMIZERS.register("adam")
def adam(groups: list[dict]) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups)


@OPTIMIZERS.register("sgd")
def sgd(groups: list[dict]) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, momentum=0.9, nesterov=True)


def build_optimizer(model: MedAttnModel, train: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer`` over four parameter groups: (head, backbone) x (decayed, not decayed).

    The backbone group's learning rate is ``lr * backbone_lr_scale``; tensors of one dimension
    (biases, norm weights) get no weight decay. Each group keeps its ``base_lr`` for the schedule.
    """
    backbone_ids = {id(p) for p in model.param_groups()["backbone"]}
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in backbone_ids, p.ndim <= 1), []).append(p)
    param_groups = []
    for (is_backbone, no_decay), params in sorted(groups.items()):
        lr = train.lr * (train.backbone_lr_scale if is_backbone else 1.0)
        param_groups.append({"params": params, "lr": lr, "base_lr": lr,
                             "weight_decay": 0.0 if no_decay else train.weight_decay})
    return OPTIMIZERS.get(train.optimizer)(param_groups)


class WarmupCosine:
    """Learning-rate factor of a global step: linear warm-up to 1 over ``warmup_steps``, then cosine
    decay to ``min_lr_ratio`` at ``total_steps``."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0):
        self.total_steps, self.warmup_steps, self.min_lr_ratio = max(1, int(total_steps)), int(warmup_steps), min_lr_ratio

    @classmethod
    def for_run(cls, train: TrainConfig, steps_per_epoch: int) -> "WarmupCosine":
        return cls(train.epochs * steps_per_epoch, int(round(train.warmup_epochs * steps_per_epoch)), train.min_lr_ratio)

    def factor(self, step: int) -> float:
        warm = self.warmup_steps
        if warm and step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, self.total_steps - warm))
        floor = self.min_lr_ratio
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Set every group's ``lr`` to its ``base_lr`` times ``factor(step)``."""
        factor = self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
