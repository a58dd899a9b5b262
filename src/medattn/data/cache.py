"""The on-disk cache of decoded image arrays: where it is, keys, locks, the size limit, listing, clearing.

``$MEDATTN_CACHE`` (default ``~/.cache/medattn``) holds::

    <key>/                  an entry: the decoded images (and masks) of one file list (`medattn.data.memmap`)
    .<key>.<random>.tmp/    an entry being written, renamed to <key>/ when complete (one atomic rename)
    <key>.npz               an entry of the first layout (no longer read; listed, evicted and cleared)
    limit.json              {"max_gb": 20}: the size limit set by `medattn cache limit`

A key hashes every source file's absolute path, byte size and modification time, the target size, the
decoder version and the options that change pixels: editing, adding or removing a file gives a new key.

Locks (``flock`` on the entry's folder): a process reading an entry holds a shared lock for as long as
its arrays are alive; a writer holds an exclusive lock on its temporary folder. Removing an entry (to
stay under the size limit, or by `medattn cache clear`) needs the exclusive lock, so an entry that is
being read is never removed, and a temporary folder whose lock can be taken belongs to a write that
was killed: it is removed at the next start (`remove_stale_temps`).

Size limit: ``$MEDATTN_CACHE_MAX_GB``, else limit.json, else `DEFAULT_MAX_GB` (GB = 10^9 bytes;
"none" for no limit). Before an entry is written, the least recently used entries are removed until
it fits.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import chmod_from_umask
from ._registry import DataError
from .memmap import (EntryLock, EntryWriter, check_entry, choose_storage, entry_bytes, open_entry, read_manifest,
                     row_digests, sample_rows)

try:
    import fcntl
except ImportError:  # Windows: no flock; entries are then never treated as in use
    fcntl = None

VERSION = 1  # bump when decoding changes what the arrays hold
DEFAULT_MAX_GB = 20.0
GB = 10**9
LIMIT_FILE = "limit.json"
STALE_AFTER_S = 60.0  # a temporary folder younger than this may not hold its writer's lock yet
_KEY = re.compile(r"^[0-9a-f]{32}$")


def cache_dir() -> Path:
    return Path(os.environ.get("MEDATTN_CACHE") or Path.home() / ".cache" / "medattn")


def cache_key(files: Sequence[str | os.PathLike], image_size: int | None, extra: str = "") -> str:
    """Hex digest over (absolute path, size, mtime_ns) of every file, the size and ``extra``."""
    h = hashlib.sha256(json.dumps([VERSION, image_size, extra]).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def entry_path(key: str) -> Path:
    return cache_dir() / key


# ------------------------------------------------------------------------------------------ files
def lock(path: str | os.PathLike, exclusive: bool = False, wait: bool = True) -> EntryLock | None:
    """A shared (or exclusive) flock on ``path`` (a file or folder), released when the returned
    object is garbage collected; None if ``wait`` is False and another process holds a conflicting
    lock, or if ``path`` is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    if fcntl is not None:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
    return EntryLock(fd)


def share(held: EntryLock) -> None:
    """Turn an exclusive lock into a shared one (the writer of an entry goes on to read it)."""
    if fcntl is not None and held.fd is not None:
        fcntl.flock(held.fd, fcntl.LOCK_SH)


# ------------------------------------------------------------------------------------------ limit
def max_bytes() -> int | None:
    """The size limit in bytes (None: no limit); see the module docstring."""
    value = os.environ.get("MEDATTN_CACHE_MAX_GB")
    where = "MEDATTN_CACHE_MAX_GB"
    if value is None:
        try:
            value = json.loads((cache_dir() / LIMIT_FILE).read_text()).get("max_gb", DEFAULT_MAX_GB)
            where = str(cache_dir() / LIMIT_FILE)
        except (OSError, ValueError, AttributeError):
            value = DEFAULT_MAX_GB
    if value is None or str(value).strip().lower() in ("none", "inf", ""):
        return None
    try:
        gb = float(value)
    except ValueError:
        raise DataError(f"{where}: the cache size limit must be a number of GB or 'none', got {value!r}") from None
    if gb < 0:
        raise DataError(f"{where}: the cache size limit must not be negative, got {gb}")
    return int(gb * GB)


def set_max_gb(gb: float | None) -> Path:
    """Write limit.json (None: no limit); returns its path."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LIMIT_FILE
    tmp = path.with_name(f".{LIMIT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"max_gb": gb}) + "\n")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------ entries
@dataclass
class CacheEntry:
    """One item of the cache folder. ``state``: ready, damaged (rebuilt at its next use), old layout,
    being written, or killed write (a temporary folder removed at the next start)."""

    key: str
    path: Path
    bytes: int
    images: int | None
    source: str
    created: float | None
    last_used: float
    state: str


def _disk_bytes(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    total = 0
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp") and _KEY.match(name[1:33]) is not None


def _temp_state(path: Path) -> str:
    if time.time() - path.stat().st_mtime < STALE_AFTER_S:
        return "being written"
    held = lock(path, exclusive=True, wait=False) if path.is_dir() else EntryLock(None)
    return "being written" if held is None else "killed write"


def list_entries() -> list[CacheEntry]:
    """Everything in the cache folder that belongs to it, least recently used first."""
    folder = cache_dir()
    out = []
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        name = p.name
        try:
            mtime = p.stat().st_mtime
            if p.is_dir() and _KEY.match(name):
                m = read_manifest(p)
                last = (p / "entry.json").stat().st_mtime if m else mtime
                source = " ".join(str(m.get(k) or "") for k in ("source", "description")).strip() if m else ""
                out.append(CacheEntry(name, p, _disk_bytes(p), m and m["count"], source,
                                      (m or {}).get("created"), last, "ready" if m else "damaged"))
            elif p.is_file() and name.endswith(".npz") and _KEY.match(name[:-4]):
                out.append(CacheEntry(name[:-4], p, _disk_bytes(p), None, "", None, mtime, "old layout"))
            elif _is_temp(name):
                out.append(CacheEntry(name[1:33], p, _disk_bytes(p), None, "", None, mtime, _temp_state(p)))
        except FileNotFoundError:  # removed by another process meanwhile
            continue
    return sorted(out, key=lambda e: e.last_used)


def remove(path: str | os.PathLike) -> bool:
    """Remove one entry (folder or old .npz); False if a process is reading it (it is kept)."""
    path = Path(path)
    if not path.is_dir():
        path.unlink(missing_ok=True)
        return True
    held = lock(path, exclusive=True, wait=False)
    if held is None:
        return not path.exists()
    # Renamed first, so no reader finds a half-removed entry; the new name is that of a temporary
    # folder, so if this process dies now the next start removes it.
    trash = path.with_name(f".{path.name[:32]}.{os.getpid()}-{time.monotonic_ns()}.tmp")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return True
    shutil.rmtree(trash, ignore_errors=True)
    return True


def remove_stale_temps() -> list[Path]:
    """Remove the temporary files and folders of writes that were killed; returns their paths."""
    removed = []
    for e in list_entries():
        if e.state == "killed write":
            shutil.rmtree(e.path, ignore_errors=True) if e.path.is_dir() else e.path.unlink(missing_ok=True)
            removed.append(e.path)
    return removed


def make_room(nbytes: int) -> bool:
    """Remove least recently used entries (not those in use) until ``nbytes`` more fit under the
    limit; False if they still do not fit. Killed writes are removed first."""
    remove_stale_temps()
    limit = max_bytes()
    if limit is None:
        return True
    entries = [e for e in list_entries() if e.state in ("ready", "damaged", "old layout")]
    total = sum(e.bytes for e in entries)
    for e in entries:
        if total + nbytes <= limit:
            break
        if remove(e.path):
            total -= e.bytes
    return total + nbytes <= limit


def clear(older_than_days: float | None = None, key: str | None = None) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Remove all entries, or those last used more than ``older_than_days`` ago, or the one whose key
    starts with ``key``. Returns (removed, kept because in use). Writes in progress are left alone."""
    entries = [e for e in list_entries() if e.state != "being written"]
    if key is not None:
        entries = [e for e in entries if e.key.startswith(key)]
        if len({e.key for e in entries}) > 1:
            raise ValueError(f"key {key!r} matches {len(entries)} entries; give more characters")
    if older_than_days is not None:
        entries = [e for e in entries if time.time() - e.last_used > older_than_days * 86400]
    removed, in_use = [], []
    for e in entries:
        (removed if remove(e.path) else in_use).append(e)
    return removed, in_use


# ------------------------------------------------------------------------------------------ use
def lookup(key: str) -> tuple[Path, dict | None, EntryLock] | None:
    """The entry for ``key`` under a shared lock, with its manifest (None if incomplete or damaged:
    rebuild it), marked as used now; None if there is no entry."""
    path = entry_path(key)
    held = lock(path) if path.is_dir() else None
    if held is None:
        return None
    try:
        if os.fstat(held.fd).st_ino != os.stat(path).st_ino:  # replaced while we waited for the lock
            return None
    except OSError:
        return None
    manifest = read_manifest(path)
    if manifest is not None:
        try:
            os.utime(path / "entry.json")  # its time is the entry's last use (atime is unreliable)
        except OSError:
            pass
    return path, manifest, held


def new_temp(key: str, nbytes: int) -> tuple[Path, EntryLock]:
    """A temporary folder for a new entry of ``nbytes``, under its writer's exclusive lock (call
    `make_room` first). Raises OSError when the disk has not that much space free."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < nbytes:
        raise OSError(f"the cache folder {folder} has {free / GB:.1f} GB free, {nbytes / GB:.1f} GB are needed "
                      f"(set MEDATTN_CACHE to a folder on a larger disk, or free space)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=folder))
    return tmp, lock(tmp, exclusive=True)


def publish(tmp: Path, key: str) -> Path | None:
    """Rename a finished temporary folder to the entry of ``key``; None if an entry is already there
    (another process wrote it first, or a damaged one is in use), and ``tmp`` is left in place."""
    chmod_from_umask(tmp)
    for p in tmp.iterdir():
        chmod_from_umask(p)
    path = entry_path(key)
    if path.exists() and read_manifest(path) is None:
        remove(path)
    try:
        os.rename(tmp, path)
    except OSError:
        return None
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load(key: str, n: int, storage: str) -> dict[str, np.ndarray] | None:
    """The arrays of the entry for ``key`` if it holds ``n`` images and passes the open-time check
    (`medattn.data.memmap.check_entry` on sampled rows), in RAM or memory-mapped as
    ``choose_storage(storage, size)`` says; None otherwise (a damaged entry is removed, with a warning).
    Killed writes are removed first."""
    remove_stale_temps()
    found = lookup(key)
    if found is None:
        return None
    folder, manifest, held = found
    del found  # `held` must be the only reference to the lock: it is dropped before a removal
    if manifest is None:
        problems = ["its entry.json is missing, incomplete or unreadable"]
    elif manifest["count"] != n:
        problems = [f"it holds {manifest['count']} images, {n} expected"]
    else:
        problems = check_entry(folder, manifest, sample_rows(n))
    if problems:
        warnings.warn(f"rebuilding the damaged cache entry {folder}: {'; '.join(problems)}", stacklevel=3)
        del held
        remove(folder)
        return None
    return open_entry(folder, manifest, choose_storage(storage, entry_bytes(manifest)) == "memmap", held)


def save(key: str, arrays: dict[str, np.ndarray], meta: dict) -> Path | None:
    """Write in-RAM arrays as the entry for ``key``; returns its path, or None (with a warning) if it
    failed or is larger than the size limit allows."""
    nbytes = sum(a.nbytes for a in arrays.values())
    if not make_room(nbytes):
        warnings.warn(f"not caching {nbytes / GB:.2f} GB of decoded images: more than the cache size limit "
                      f"allows (MEDATTN_CACHE_MAX_GB, or `medattn cache limit`)", stacklevel=3)
        return None
    tmp = None
    try:
        tmp, held = new_temp(key, nbytes)
        writer = EntryWriter(tmp, {name: a.shape for name, a in arrays.items()})
        for name, a in arrays.items():
            writer.write_rows(name, 0, a)
        writer.finish(np.stack([row_digests(a) for a in arrays.values()], axis=1), meta)
        return publish(tmp, key)
    except OSError as e:
        warnings.warn(f"could not write the decoded-image cache in {cache_dir()}: {e}", stacklevel=3)
        return None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def verify(entry: CacheEntry, progress: bool = False) -> list[str]:
    """The full check of one entry (every row against its digest); an empty list: it is sound."""
    if entry.state == "old layout":
        return ["an entry of the first layout (.npz), no longer read; remove it with `medattn cache clear`"]
    held = lock(entry.path)
    manifest = read_manifest(entry.path) if held is not None else None
    if manifest is None:
        return ["entry.json is missing, incomplete or unreadable (the entry is rebuilt at its next use)"]
    return check_entry(entry.path, manifest, None, progress=progress)
