"""Recorded splits: what a reader that makes (or reads) its own split keeps in ``extra["splits"]``, the
``splits.json`` a run saves from it, and the option ``split_file`` that reads one back."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..files import atomic_write_text
from ._common import Problems
from ._registry import DataError
from .dataset import ImageDataset


def split_record(reader: str, ids: Sequence[str], parts: dict[str, np.ndarray], **protocol) -> dict:
    """What a reader that makes (or reads) its own split keeps in ``extra["splits"]``: the reader,
    the protocol (seed, fractions, grouping, ...), and per split the ids and the 0-based rows of
    its table, so the split can be saved (`write_splits_json`) and read back (option ``split_file``)."""
    return {"reader": reader, "protocol": protocol,
            "ids": {name: [ids[int(i)] for i in idx] for name, idx in parts.items()},
            "rows": {name: [int(i) for i in idx] for name, idx in parts.items()}}


def write_splits_json(dataset: ImageDataset, path: str | os.PathLike, overwrite: bool = False) -> Path | None:
    """Write ``dataset.extra["splits"]`` to ``path`` (e.g. ``<run>/splits.json``) atomically; None
    when the reader made no split of its own. An existing file with other content is an error
    unless ``overwrite`` (the same content, e.g. on ``--resume``, is left as it is)."""
    record = dataset.extra.get("splits")
    if record is None:
        return None
    path = Path(path)
    text = json.dumps(record, indent=1) + "\n"
    if path.exists() and not overwrite:
        if path.read_text() == text:
            return path
        raise FileExistsError(f"{path} already holds another split; remove it or pass overwrite=True")
    atomic_write_text(path, text)
    return path


def rows_from_split_file(path: str | os.PathLike, reader: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Split name -> rows of ``ids`` from a ``splits.json`` (`write_splits_json`), for option
    ``split_file``. Every id it names must be one of ``ids``."""
    path = Path(path).expanduser()
    try:
        record = json.loads(path.read_text())
        named = record["ids"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{reader}: split_file {path} is not a splits.json with an 'ids' mapping ({e})") from None
    if record.get("reader") not in (None, reader):
        raise DataError(f"{path}: a split of reader {record['reader']!r}, not {reader!r}")
    row = {x: i for i, x in enumerate(ids)}
    problems = Problems(path)
    parts = {}
    for name, members in named.items():
        for x in members:
            if x not in row:
                problems.add(f"id of split {name!r} not in the data", repr(x))
        parts[name] = np.array(sorted(row[x] for x in members if x in row), dtype=np.int64)
    problems.raise_if_any()
    return parts
