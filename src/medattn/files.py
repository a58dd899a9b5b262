"""Atomic file writes: a temporary file beside the target, then ``os.replace`` (the commit point), so a
reader never sees half a file and a kill leaves the previous version intact. Files get the user's
normal permissions (``0o666`` minus the umask, as ``open()`` would give), not ``mkstemp``'s ``0o600``.

Temporary files are named ``.<target name>.tmp-<random>``; ``remove_stale_temporaries`` deletes the
ones a killed writer left behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

TMP_MARK = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None]) -> Path:
    """Call ``writer(temporary path)`` and move the result to ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of ``atomic_write`` in ``folder`` (left by a killed process; call it
    when no other process writes there); returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
                p.unlink()
                removed.append(p)
    return removed
