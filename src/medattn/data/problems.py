"""Offenders collected by kind, raised as one `DataError` (used by the readers and the decoder)."""
from __future__ import annotations

import os

from ._registry import DataError

SHOWN = 5
"""How many offenders of each kind an error message names before "(and N more)"."""


class Problems:
    """Offenders collected by kind; `raise_if_any` raises one `DataError` naming the first few of
    each kind and the count of the rest."""

    def __init__(self, source: str | os.PathLike = ""):
        self.source = str(source)
        self._kinds: dict[str, list[str]] = {}

    def add(self, kind: str, where: str) -> None:
        self._kinds.setdefault(kind, []).append(where)

    def __bool__(self) -> bool:
        return bool(self._kinds)

    def message(self) -> str:
        parts = []
        for kind, items in self._kinds.items():
            more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            parts.append(f"{kind} [{len(items)}]: {'; '.join(items[:SHOWN])}{more}")
        head = f"{self.source}: " if self.source else ""
        if len(parts) == 1:
            return head + parts[0]
        return f"{head}{len(parts)} kinds of problems:\n  - " + "\n  - ".join(parts)

    def raise_if_any(self) -> None:
        if self._kinds:
            raise DataError(self.message())
