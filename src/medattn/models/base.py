"""The contract every medattn model follows.

- ``forward(x) -> logits`` only (B x K), so Grad-CAM, ONNX export, TorchScript and the metrics work on
  every model unchanged. ``x`` is a float image batch in [0, 1], B x 3 x H x W: the model normalises
  it itself (``self.normalize``), so callers never need to know a backbone's mean and std.
- ``forward_train(x, targets, ctx) -> TrainOutput``: the logits of the original branch and every
  named loss term, ``'total'`` included. The trainer only ever reads ``losses['total']`` for the
  backward pass and logs the other terms by name; it knows nothing about any one method.
- ``attention_maps(x) -> {name: B x 1 x h x w}``: the model's native maps (empty for a plain
  classifier).
- ``cam_layer``: the module whose output Grad-CAM uses (the last feature level by default).
- ``param_groups() -> {"backbone": [...], "head": [...]}``: for per-group learning rates.
- ``num_classes`` and ``task`` ("multiclass" / "multilabel") are constructor arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor


@dataclass
class LossContext:
    """What a model's loss needs from the trainer besides the batch.

    Attributes:
        criterion: the configured classification loss ``criterion(logits, targets) -> scalar``
            (cross-entropy, class-weighted CE, BCE, focal, ASL, ...). It ignores unlabeled rows and
            returns a zero that still has a graph when a batch has no label.
        epoch: 0-based epoch index (BIIGMA's hybrid-branch schedule, IBCA's ramp).
        num_epochs: planned number of epochs (IBCA's ramp).
        class_weights: optional (K,) data-set class weights (inverse frequency), for methods that
            offer them as an option (BIIGMA ``ce_mode="class_weights"``).
    """

    criterion: Callable[[Tensor, Tensor], Tensor]
    epoch: int = 0
    num_epochs: int = 1
    class_weights: Tensor | None = None


@dataclass
class TrainOutput:
    """Output of ``forward_train``: logits B x K of the original branch and named scalar losses."""

    logits: Tensor
    losses: dict[str, Tensor]


class Normalize(nn.Module):
    """(x - mean) / std with per-channel constants, x in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


TASKS = ("multiclass", "multilabel")


class MedAttnModel(nn.Module):
    """Base class: a classifier with named loss terms, native attention maps and parameter groups.

    ``num_classes`` K and ``task`` ("multiclass": softmax over K classes; "multilabel": K independent
    sigmoids) are constructor arguments of every registered model.
    """

    # True for a model whose ``forward_train`` can leave trainable parameters without a gradient in
    # some step (a branch that only runs sometimes): DDP then has to search the graph for them
    # (``find_unused_parameters``), at some cost per step. Every model registered today computes all
    # its branches in every step (BIIGMA-Net weights its hybrid branch by 0 before it joins).
    skips_parameters_in_training: bool = False

    def __init__(self, num_classes: int, task: str = "multiclass"):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        self.num_classes = int(num_classes)
        self.task = task

    def forward_train(self, x: Tensor, targets: Tensor, ctx: LossContext) -> TrainOutput:
        """Default: the configured criterion on the logits, logged as ``ce``."""
        logits = self(x)
        ce = ctx.criterion(logits, targets)
        return TrainOutput(logits=logits, losses={"ce": ce, "total": ce})

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Native attention maps by name, each B x 1 x h x w (none for a plain classifier)."""
        return {}

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output Grad-CAM explains."""
        raise AttributeError(f"{type(self).__name__} does not name a Grad-CAM layer")

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group: ``"backbone"`` (the pretrained feature extractor, whose
        learning rate ``train.backbone_lr_scale`` scales) and ``"head"`` (everything else), each in
        ``named_parameters`` order. Default: no backbone."""
        return split_parameters(self, None)


def split_parameters(model: nn.Module, backbone: nn.Module | None) -> dict[str, list[nn.Parameter]]:
    """``{"backbone": trainable parameters of backbone, "head": the model's other trainable ones}``."""
    inside = set() if backbone is None else {id(p) for p in backbone.parameters()}
    groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head": []}
    for p in model.parameters():
        if p.requires_grad:
            groups["backbone" if id(p) in inside else "head"].append(p)
    return groups
