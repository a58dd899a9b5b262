"""Registry of data readers (`--data-format` names).

A reader is a function ``reader(root, split, image_size, **options) -> ImageDataset``. It validates
everything before decoding (missing or unreadable files, columns, labels, duplicated ids, mask sizes)
and raises `DataError` with one message naming the file, row or column and the number of further
offenders.
"""
from __future__ import annotations

from typing import Callable, Protocol

from .dataset import ImageDataset


class DataError(ValueError):
    """Bad input data: the message names the file, row or column at fault."""


class Reader(Protocol):
    def __call__(self, root: str, split: str, image_size: int | None, **options) -> ImageDataset: ...


_READERS: dict[str, Reader] = {}


def register_reader(name: str) -> Callable[[Reader], Reader]:
    def deco(fn: Reader) -> Reader:
        if name in _READERS:
            raise KeyError(f"reader {name!r} registered twice")
        _READERS[name] = fn
        return fn

    return deco


def list_readers() -> list[str]:
    _import_all()
    return sorted(_READERS)


def load_split(data_format: str, root: str | None, split: str, image_size: int | None = None, **options) -> ImageDataset:
    """Read one split (`train`, `val`, `test`, and `test_shifted` for the synthetic set).

    Options that are ``None`` are dropped, so one CLI can drive every reader.
    """
    _import_all()
    if data_format not in _READERS:
        raise DataError(f"unknown --data-format {data_format!r}; choose one of {', '.join(sorted(_READERS))}")
    options = {k: v for k, v in options.items() if v is not None}
    return _READERS[data_format](root, split, image_size, **options)


def _import_all() -> None:
    # Readers register themselves on import; imported lazily so `import medattn` stays fast.
    import importlib
    import pkgutil

    from .. import data as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
