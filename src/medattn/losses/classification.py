"""Classification criteria, by name (``loss.name`` in a config).

A criterion is built by ``build_criterion(name, task, class_weights, **options)`` and called as
``criterion(logits, targets) -> scalar``. Every criterion ignores unlabeled rows (target -1, or a NaN
row for multi-label) and returns a zero that keeps the graph when a batch has no labeled row, so
semi-supervised methods (SIBnet) can add their own terms on top.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.dataset import labeled_mask
from ._registry import Criterion, build_criterion, list_criteria, register_criterion

__all__ = ["Criterion", "build_criterion", "ignoring_unlabeled", "list_criteria", "register_criterion",
           "require_task", "zero_like_graph"]


def zero_like_graph(logits: Tensor) -> Tensor:
    """A scalar 0 that is still connected to ``logits`` (so backward() works on it)."""
    return logits.sum() * 0.0


def ignoring_unlabeled(loss: Callable[[Tensor, Tensor], Tensor]) -> Criterion:
    """Make ``loss(labeled logits, labeled targets) -> scalar`` a criterion: unlabeled rows are dropped
    (``labeled_mask``) and a batch without a labeled row gives ``zero_like_graph(logits)``."""

    def criterion(logits: Tensor, targets: Tensor) -> Tensor:
        keep = labeled_mask(targets)
        if not keep.any():
            return zero_like_graph(logits)
        return loss(logits[keep], targets[keep])

    return criterion


def require_task(task: str, wanted: str, name: str) -> None:
    if task != wanted:
        raise ValueError(f"loss {name!r} is for {wanted} data; this data set is {task}")


def _cross_entropy(weight: Tensor | None, label_smoothing: float) -> Criterion:
    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        w = None if weight is None else weight.to(logits.device)
        return F.cross_entropy(logits.float(), targets, weight=w, label_smoothing=label_smoothing)

    return ignoring_unlabeled(loss)


@register_criterion("ce")
def cross_entropy(task: str, class_weights: Tensor | None = None, label_smoothing: float = 0.0) -> Criterion:
    """Plain cross-entropy (mean over labeled rows)."""
    require_task(task, "multiclass", "ce")
    return _cross_entropy(None, label_smoothing)


@register_criterion("weighted_ce")
def weighted_cross_entropy(task: str, class_weights: Tensor | None = None, label_smoothing: float = 0.0) -> Criterion:
    """Cross-entropy with data-set class weights (inverse class frequency, normalised to mean 1);
    PyTorch's weighted mean: sum_b w_{y_b} CE_b / sum_b w_{y_b}."""
    require_task(task, "multiclass", "weighted_ce")
    if class_weights is None:
        raise ValueError("loss 'weighted_ce' needs class weights (the trainer passes the training set's)")
    return _cross_entropy(class_weights, label_smoothing)


@register_criterion("bce")
def binary_cross_entropy(task: str, class_weights: Tensor | None = None, pos_weight: list[float] | str | None = None) -> Criterion:
    """Multi-label BCE with logits; ``pos_weight`` a list of K weights or ``"balanced"``
    (negatives / positives per class of the training set, via ``class_weights``)."""
    require_task(task, "multilabel", "bce")
    if pos_weight == "balanced":
        if class_weights is None:
            raise ValueError("pos_weight='balanced' needs the training set's class statistics")
        weight = class_weights
    else:
        weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)

    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        pw = None if weight is None else weight.to(logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=pw)

    return ignoring_unlabeled(loss)

