"""Atomic file writes: a temporary file beside the target, then ``os.replace`` (the commit point), so a
reader never sees half a file and a kill leaves the previous version intact. Files get the user's
normal permissions (``0o666`` minus the umask, as ``open()`` would give), not ``mkstemp``'s ``0o600``.

Temporary files are named ``.<target name>.tmp-<random>``; ``remove_stale_temporaries`` deletes the
ones a killed writer left behind.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

TMP_MARK = ".tmp-"


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status), else
    by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_from_umask(path: str | os.PathLike) -> None:
    """Give a file 0666 and a folder 0777 less the umask: the mode ``open``/``mkdir`` would have given
    it. Files from ``tempfile.mkstemp`` / ``mkdtemp`` are 0600 / 0700 whatever the umask."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~current_umask())


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None]) -> Path:
    """Call ``writer(temporary path)`` and move the result to ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        chmod_from_umask(tmp)
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


def sha256_file(path: str | os.PathLike) -> str:
    """The file's SHA-256 as 64 hex digits, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
