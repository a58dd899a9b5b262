"""On-disk cache of decoded image arrays, so a large folder is decoded once, not at every run.

Entries are uncompressed ``.npz`` files in ``$MEDATTN_CACHE`` (default ``~/.cache/medattn``) named
by a hash of the source files' absolute paths, byte sizes and modification times, the target image
size and the decoder version. Editing, adding or removing a file changes the key. Writes are atomic
(temporary file + ``os.replace``); a cache that cannot be read or written is ignored with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

VERSION = 1  # bump when decoding changes what the arrays hold


def cache_dir() -> Path:
    return Path(os.environ.get("MEDATTN_CACHE") or Path.home() / ".cache" / "medattn")


def cache_key(files: Sequence[str | os.PathLike], image_size: int | None, extra: str = "") -> str:
    """Hex digest over (absolute path, size, mtime_ns) of every file, the size and ``extra``."""
    h = hashlib.sha256(json.dumps([VERSION, image_size, extra]).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def load(key: str, n: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The cached (images, masks) for ``key`` if present and holding ``n`` images, else None."""
    path = cache_dir() / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
            masks = z["masks"] if "masks" in z.files else None
    except Exception as e:  # noqa: BLE001 - a damaged entry is recomputed, never fatal
        warnings.warn(f"ignoring unreadable cache entry {path}: {e}", stacklevel=2)
        return None
    if len(images) != n or (masks is not None and len(masks) != n):
        return None
    return images, masks


def save(key: str, images: np.ndarray, masks: np.ndarray | None) -> Path | None:
    """Write the entry atomically; returns its path, or None (with a warning) if it failed."""
    folder = cache_dir()
    path = folder / f"{key}.npz"
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
        arrays = {"images": images} if masks is None else {"images": images, "masks": masks}
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return path
    except OSError as e:
        warnings.warn(f"could not write the decoded-image cache {path}: {e}", stacklevel=2)
        if tmp and os.path.exists(tmp):
            os.remove(tmp)
        return None
