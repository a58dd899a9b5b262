"""Registry of classification criteria (``loss.name`` in a config), on ``medattn.registry.Registry``.

A criterion factory ``fn(task, class_weights=None, **options) -> criterion`` is registered with
``@register_criterion(name)`` in any module of ``medattn.losses``; the criterion is called as
``criterion(logits, targets) -> scalar``.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from ..registry import Registry

Criterion = Callable[[Tensor, Tensor], Tensor]
CRITERIA: Registry[Callable[..., Criterion]] = Registry("loss", "medattn.losses")
register_criterion = CRITERIA.register


def list_criteria() -> list[str]:
    return CRITERIA.names()


def build_criterion(name: str, task: str, class_weights: Tensor | None = None, **options) -> Criterion:
    """The criterion ``name`` for ``task`` (``"auto"``: ``ce`` for multi-class, ``bce`` for multi-label)."""
    if name == "auto":
        name = "ce" if task == "multiclass" else "bce"
    return CRITERIA.get(name)(task=task, class_weights=class_weights, **options)
