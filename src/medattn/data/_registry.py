"""Registry of data readers (``--data-format`` names), on ``medattn.registry.Registry``.

A reader is a function ``reader(root, split, image_size, **options) -> ImageDataset``, registered with
``@register_reader(name)`` in any module of ``medattn.data``. It validates everything before decoding
(missing or unreadable files, columns, labels, duplicated ids, mask sizes) and raises `DataError`
with one message naming the file, row or column and the number of further offenders.
"""
from __future__ import annotations

from typing import Protocol

from ..errors import DataError, UnknownNameError
from ..registry import Registry
from .dataset import ImageDataset

__all__ = ["DataError", "READERS", "Reader", "list_readers", "load_split", "register_reader"]


class Reader(Protocol):
    def __call__(self, root: str, split: str, image_size: int | None, **options) -> ImageDataset: ...


READERS: Registry[Reader] = Registry("data format", "medattn.data")
register_reader = READERS.register


def list_readers() -> list[str]:
    return READERS.names()


def load_split(data_format: str, root: str | None, split: str, image_size: int | None = None, **options) -> ImageDataset:
    """Read one split (`train`, `val`, `test`, and `test_shifted` for the synthetic set).

    Options that are ``None`` are dropped, so one CLI can drive every reader.
    """
    try:
        reader = READERS.get(data_format)
    except UnknownNameError as err:
        raise DataError(str(err).replace("unknown data format", "unknown --data-format")) from None
    options = {k: v for k, v in options.items() if v is not None}
    return reader(root, split, image_size, **options)
