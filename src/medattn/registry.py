"""One small registry for every kind of named entry: models, data readers, loss criteria, ablation grids.

A file registers its entries with the registry's decorator and nothing else is edited: on the first
lookup the registry imports every module of its package (sub-packages included), so a new file in
``medattn/models/`` (or ``data/``, ``losses/``) is found by being there.

    MODELS = Registry("model", "medattn.models")

    @MODELS.register("baseline")
    def baseline(backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, ...): ...

    MODELS.build("baseline", num_classes=3, drop_rate=None)   # None options are dropped (timm style)
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` by name; ``package``'s modules register themselves on import."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated function, class or object under ``name``."""

        def deco(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = entry
            return entry

        return deco

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def get(self, name: str) -> T:
        """The entry of ``name``; ``UnknownNameError`` listing the registered names otherwise."""
        self._discover()
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the entry of ``name`` with ``kwargs``, dropping those that are None. An option the
        entry does not take is a ``TypeError`` naming it and the options it does take."""
        fn = self.get(name)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        params = accepted_options(fn)
        if params is not None:
            unknown = sorted(set(kwargs) - set(params))
            if unknown:
                raise TypeError(f"{self.kind} {name!r} has no option(s) {', '.join(unknown)}; "
                                f"it takes {', '.join(params)}")
        return fn(**kwargs)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{self.package}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)


def accepted_options(fn: Callable) -> list[str] | None:
    """Keyword names a function or class accepts; None when it takes ``**kwargs`` (anything)."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
