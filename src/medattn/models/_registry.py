"""Model registry: ``register_model``, ``create_model``, ``list_models`` (timm-style).

A registered entry is a factory ``fn(**kwargs) -> MedAttnModel``. Options that are ``None`` are
dropped before the call, so one CLI or config can drive every model.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Decorator: register a model factory under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise KeyError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _import_all()
    return sorted(_MODELS)


def model_factory(name: str) -> Callable[..., nn.Module]:
    _import_all()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model("biigma", backbone="resnet50", num_classes=3)``.

    Keyword options set to ``None`` are dropped. Unknown options raise a ``TypeError`` naming them.
    """
    fn = model_factory(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(f"model {name!r} has no option(s) {', '.join(unknown)}; it takes {', '.join(params)}")
    model = fn(**kwargs)
    model.registry_name = name
    return model


def _import_all() -> None:
    # Model files register themselves on import.
    import importlib
    import pkgutil

    from .. import models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
