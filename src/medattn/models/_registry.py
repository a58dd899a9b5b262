"""The model registry (``register_model``, ``create_model``, ``list_models``, timm-style) and the
registry of ablation grids (``register_grid``), both on ``medattn.registry.Registry``.

A registered model is a factory or class ``fn(**kwargs) -> MedAttnModel``; a file in this package
that registers one is found without any other edit. Options that are ``None`` are dropped before the
call, so one CLI or config can drive every model.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", "medattn.models")
ABLATION_GRIDS: Registry[Callable[[], dict]] = Registry("ablation grid", "medattn.models")

register_model = MODELS.register
register_grid = ABLATION_GRIDS.register
"""``@register_grid("name")`` on a function returning ``{cell: {"model", "options", "label"?, "set"?}}``."""


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return MODELS.names()


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The factory (function or class) registered as ``name``."""
    return MODELS.get(name)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model("biigma", backbone="resnet50", num_classes=3)``.

    Keyword options set to ``None`` are dropped. Unknown options raise a ``TypeError`` naming them.
    """
    return MODELS.build(name, **kwargs)


def list_grids() -> list[str]:
    return ABLATION_GRIDS.names()


def load_grid(name: str) -> dict[str, dict]:
    """A copy of the cells of the ablation grid ``name``."""
    return dict(ABLATION_GRIDS.get(name)())
