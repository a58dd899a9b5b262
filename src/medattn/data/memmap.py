"""One cache entry on disk: decoded arrays as ``.npy`` files, read whole into RAM or memory-mapped.

An entry is a folder (``medattn.data.cache`` names and places it)::

    entry.json      layout, image count, source, each array's shape / dtype / data offset / byte size,
                    "complete": true, and the SHA-256 of digests.npy
    images.npy      N x H x W x 3 uint8        masks.npy  N x H x W uint8 (when the set has masks)
    digests.npy     N x A x 32 uint8: the SHA-256 of every row (image, mask) of every array

Integrity (why: docs/large_data.md). Opening an entry checks the completeness marker, every header
and exact file size, the digests file against its hash, and rows 0, N - 1 and 62 random rows against
their digests (`check_entry` with `sample_rows`; 0.1 s on 12 GB); ``medattn cache verify`` checks
every row. The decoding workers compute the row digests as they write: no second pass over the data.

Memory. `PagedArray`, the read-only ``np.memmap`` an entry is opened as, returns in-RAM copies:
whole rows by ``pread`` (nothing mapped into the process, no page faults), anything else through
the map, whose pages are handed back to the page cache every `RELEASE_BYTES`, so the resident set
of a training process stays near one batch whatever the size of the file.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import multiprocessing
import os
import random
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

LAYOUT = 2  # version of this folder layout (layout 1: one .npz file per entry)
MANIFEST = "entry.json"
DIGESTS = "digests.npy"
SAMPLED_ROWS = 64
CHUNK = 32  # images per task of a decoding worker process
RELEASE_BYTES = 256 << 20
STORAGES = ("auto", "memory", "memmap")
AUTO_MEMMAP_SHARE = 0.25
"""``storage: auto`` memory-maps a set whose decoded arrays would take more than this share of the
memory available now (train and val are decided one after the other, each against what is left)."""


def available_memory() -> int:
    """Bytes of RAM available to this process now: MemAvailable, capped by a cgroup (container) limit."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file, used_file in (("memory.max", "memory.current"),  # cgroup v2, then v1 (as a container sees them)
                                  ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:  # v1 writes "no limit" as a huge number
                avail = min(avail, int(limit) - int(Path("/sys/fs/cgroup", used_file).read_text()))
        except (OSError, ValueError):
            continue
    return max(0, avail)


def choose_storage(storage: str, nbytes: int) -> str:
    """"memory" or "memmap" for arrays of ``nbytes`` under option ``storage`` (auto: see
    `AUTO_MEMMAP_SHARE`)."""
    if storage == "auto":
        return "memmap" if nbytes > AUTO_MEMMAP_SHARE * available_memory() else "memory"
    return storage


def row_digests(a: np.ndarray, rows: Iterable[int] | None = None) -> np.ndarray:
    """SHA-256 of each row ``a[i]`` (of the ``rows`` given, else all), as R x 32 uint8."""
    rows = range(len(a)) if rows is None else list(rows)
    out = np.empty((len(rows), 32), dtype=np.uint8)
    for j, i in enumerate(rows):
        out[j] = np.frombuffer(hashlib.sha256(np.ascontiguousarray(a[i]).data).digest(), dtype=np.uint8)
    return out


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while data.nbytes:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class EntryWriter:
    """Writes the arrays of a new entry into ``folder`` (a temporary folder; `medattn.data.cache`
    renames it into place). Picklable: worker processes write their rows straight into the files with
    ``pwrite``, so no image goes through a pipe and no page is mapped into a worker."""

    def __init__(self, folder: str | os.PathLike, shapes: dict[str, tuple[int, ...]]):
        self.folder = Path(folder)
        self.arrays: dict[str, dict] = {}
        for name, shape in shapes.items():
            path = self.folder / f"{name}.npy"
            m = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=tuple(shape))  # header, sparse data
            self.arrays[name] = {"file": path.name, "shape": list(shape), "dtype": "uint8", "offset": int(m.offset),
                                 "bytes": int(m.nbytes)}
            del m
        self._fds: dict[tuple[int, str], int] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": {}}

    def _fd(self, name: str) -> int:
        key = (os.getpid(), name)
        if key not in self._fds:
            self._fds[key] = os.open(self.folder / self.arrays[name]["file"], os.O_WRONLY)
        return self._fds[key]

    def write_rows(self, name: str, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (R x ...) at rows ``start .. start + R - 1`` of array ``name``."""
        a = self.arrays[name]
        row_bytes = int(np.prod(a["shape"][1:]))
        data = np.ascontiguousarray(rows, dtype=np.uint8)
        if data.shape[1:] != tuple(a["shape"][1:]):
            raise ValueError(f"{name}: rows of shape {data.shape[1:]}, the array holds {a['shape'][1:]}")
        _write_all(self._fd(name), memoryview(data).cast("B"), a["offset"] + start * row_bytes)

    def close(self) -> None:
        for key in [k for k in self._fds if k[0] == os.getpid()]:
            os.close(self._fds.pop(key))

    def finish(self, digests: np.ndarray, meta: dict) -> None:
        """Write the digests (N x A x 32) and the manifest, flushing every file to the disk first, so a
        crash can leave an entry without its marker but never a marker over missing data."""
        self.close()
        for a in self.arrays.values():
            _fsync(self.folder / a["file"])
        np.save(self.folder / DIGESTS, np.ascontiguousarray(digests, dtype=np.uint8))
        _fsync(self.folder / DIGESTS)
        manifest = {"layout": LAYOUT, **meta, "arrays": self.arrays, "row_digest": "sha256",
                    "digests_sha256": _file_sha256(self.folder / DIGESTS), "complete": True}
        (self.folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        _fsync(self.folder / MANIFEST)
        _fsync(self.folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The entry's manifest if it is there, parses and says the entry is complete, else None."""
    try:
        m = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(m, dict) and m.get("complete") is True and m.get("layout") == LAYOUT and "images" in m.get("arrays", {})
    return m if ok else None


def entry_bytes(manifest: dict) -> int:
    return sum(int(a["bytes"]) for a in manifest["arrays"].values())


def sample_rows(n: int, k: int = SAMPLED_ROWS) -> list[int]:
    """Rows 0 and n - 1 and k - 2 others at random (all rows when n <= k), sorted."""
    if n <= k:
        return list(range(n))
    return sorted({0, n - 1, *random.Random().sample(range(1, n - 1), k - 2)})


def check_entry(folder: str | os.PathLike, manifest: dict, rows: Sequence[int] | None,
                progress: bool = False) -> list[str]:
    """What is wrong with the entry (an empty list: nothing found). Always checks each array's header
    and exact byte size and the digests file; then the digests of ``rows`` (None: every row)."""
    folder = Path(folder)
    problems, arrays = [], {}
    for name, a in manifest["arrays"].items():
        path = folder / a["file"]
        try:
            size = path.stat().st_size
            if size != a["offset"] + a["bytes"]:
                problems.append(f"{a['file']} is {size} bytes, {a['offset'] + a['bytes']} expected (truncated or damaged)")
                continue
            arr = paged(path)
        except Exception as e:  # noqa: BLE001 - a header numpy cannot parse (SyntaxError, ...) is damage too
            problems.append(f"{a['file']}: unreadable header ({type(e).__name__})")
            continue
        if list(arr.shape) != a["shape"] or a["shape"][0] != manifest["count"] or arr.dtype != np.uint8 \
                or arr.offset != a["offset"]:
            problems.append(f"{a['file']}: header says {arr.shape} {arr.dtype} at byte {arr.offset}, the manifest "
                            f"{tuple(a['shape'])} uint8 at byte {a['offset']}")
            continue
        arrays[name] = arr
    try:
        digests = np.load(folder / DIGESTS) if _file_sha256(folder / DIGESTS) == manifest.get("digests_sha256") else None
    except (OSError, ValueError):
        digests = None
    if digests is None or digests.shape != (manifest["count"], len(manifest["arrays"]), 32):
        return [*problems, f"{DIGESTS} is missing or does not match its SHA-256 in {MANIFEST}"]
    if problems:
        return problems
    rows = list(range(manifest["count"]) if rows is None else rows)
    for k, (name, arr) in enumerate(arrays.items()):
        bad = []
        with tqdm(total=len(rows), desc=f"verify {folder.name[:8]} {name}", unit="row", disable=not progress,
                  leave=False) as bar:
            for start in range(0, len(rows), 256):
                chunk = rows[start:start + 256]
                found = row_digests(arr, chunk)
                bad.extend(i for i, d, ref in zip(chunk, found, digests[chunk, k]) if not np.array_equal(d, ref))
                bar.update(len(chunk))
        if bad:
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            problems.append(f"{name}: {len(bad)} row(s) differ from their digest: {', '.join(map(str, bad[:5]))}{more}")
    return problems


class EntryLock:
    """An open file descriptor holding a lock on an entry; closed (lock released) when garbage collected."""

    def __init__(self, fd: int | None):
        self.fd = fd

    def __del__(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _row_index(index, n: int) -> tuple[np.ndarray | None, bool]:
    """``index`` as row numbers along the first axis (and whether it was one int), or (None, False)
    for any other kind of index (tuples, Ellipsis, multi-dimensional arrays)."""
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of bounds for axis 0 with size {n}")
        return np.array([index % n]), True
    if isinstance(index, slice):
        return np.arange(*index.indices(n)), False
    if isinstance(index, (list, np.ndarray)):
        a = np.asarray(index)
        if a.ndim == 1 and a.dtype == bool and len(a) == n:
            return np.flatnonzero(a), False
        if a.ndim == 1 and a.dtype.kind in "iu":
            if len(a) and (a.min() < -n or a.max() >= n):
                raise IndexError(f"index out of bounds for axis 0 with size {n}")
            return a.astype(np.int64) % max(n, 1), False
    return None, False


class _Pager:
    """Reads whole rows of one ``.npy`` file with ``pread`` (no page faults, nothing mapped into the
    process), counts what other indexing reads through the map and releases the map's pages every
    `RELEASE_BYTES`; holds the entry's shared lock while any array of the entry is alive."""

    def __init__(self, m: np.memmap, path: Path, lock: EntryLock | None):
        self.mm, self.lock = m._mmap, lock
        self.fd = os.open(path, os.O_RDONLY)
        self.shape, self.address, self.offset = m.shape, m.ctypes.data, m.offset
        self.row_bytes = int(np.prod(m.shape[1:], dtype=np.int64))
        self.since = 0
        self.guard = threading.Lock()

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` as a new R x ... array; one ``pread`` per run of consecutive rows."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        flat = out.reshape(len(rows), -1)
        for run in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(rows) != 1) + 1) if len(rows) else ():
            buf = memoryview(flat[run[0]:run[-1] + 1]).cast("B")
            pos = self.offset + int(rows[run[0]]) * self.row_bytes
            while buf.nbytes:
                got = os.preadv(self.fd, [buf], pos)
                if got == 0:
                    raise OSError(f"unexpected end of the cache file at byte {pos}")
                buf, pos = buf[got:], pos + got
        return out

    def read(self, nbytes: int) -> None:
        with self.guard:
            self.since += nbytes
            if self.since < RELEASE_BYTES:
                return
            self.since = 0
        if hasattr(mmap, "MADV_DONTNEED") and not self.mm.closed:
            self.mm.madvise(mmap.MADV_DONTNEED)  # shared read-only file mapping: no data is lost

    def __del__(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)


class PagedArray(np.memmap):
    """A read-only memory-mapped array whose indexing returns in-RAM copies (see the module docstring)."""

    _pager: _Pager | None = None

    def __array_finalize__(self, obj) -> None:
        super().__array_finalize__(obj)
        self._pager = getattr(obj, "_pager", None) if self._mmap is not None else None

    def __getitem__(self, index):
        p = self._pager
        if p is not None and self.shape == p.shape and self.ctypes.data == p.address:  # the whole array
            rows, single = _row_index(index, len(self))
            if rows is not None:
                out = p.read_rows(rows)
                return out[0] if single else out
        out = super().__getitem__(index)
        if not isinstance(out, np.ndarray):
            return out  # one element
        out = np.array(out) if getattr(out, "_mmap", None) is not None else out.view(np.ndarray)
        if p is not None:
            p.read(out.nbytes)
        return out


def paged(path: str | os.PathLike, lock: EntryLock | None = None) -> PagedArray:
    """A ``.npy`` file as a read-only `PagedArray` (keeping ``lock`` while alive)."""
    m = np.load(path, mmap_mode="r")
    arr = m.view(PagedArray)
    arr._pager = _Pager(m, Path(path), lock)
    return arr


def open_entry(folder: str | os.PathLike, manifest: dict, mmap_arrays: bool,
               lock: EntryLock | None = None) -> dict[str, np.ndarray]:
    """The entry's arrays by name: `PagedArray` views of the files (``mmap_arrays``; they keep
    ``lock``, a shared lock on the entry, while alive) or in-RAM copies."""
    out = {}
    for name, a in manifest["arrays"].items():
        arr = paged(Path(folder) / a["file"], lock)
        out[name] = arr if mmap_arrays else arr[:]
    return out


# ------------------------------------------------------------------------------------------ decoding
def _decode_chunk(decode: Callable, writer: EntryWriter, start: int, paths: Sequence, mask_paths: Sequence | None,
                  shape: tuple[int, int]) -> tuple[list, np.ndarray]:
    """Decode images ``start ..`` into the writer's files (in a worker process); returns the results
    and the rows' SHA-256 digests (R x A x 32), which is all that goes back through the pipe."""
    digests = np.zeros((len(paths), 1 + (mask_paths is not None), 32), dtype=np.uint8)
    results = []
    try:
        for j, path in enumerate(paths):
            status, what, img, mask = decode(path, None if mask_paths is None else mask_paths[j])
            if status == "ok" and tuple(what) == tuple(shape):  # another size is reported by the caller
                for k, (name, row) in enumerate((("images", img), ("masks", mask))[:digests.shape[1]]):
                    writer.write_rows(name, start + j, row[None])
                    digests[j, k] = row_digests(row[None])[0]
            results.append((status, what))
    finally:
        writer.close()
    return results, digests


def decode_into(writer: EntryWriter, decode: Callable, paths: Sequence, mask_paths: Sequence | None,
                shape: tuple[int, int], num_workers: int, bar) -> tuple[list, np.ndarray]:
    """Decode every image (and mask) into the writer's files in ``num_workers`` processes, on chunks of
    `CHUNK` images. ``decode(path, mask_path) -> (status, what, image, mask)`` (`medattn.data.io.decode_one`
    with its options bound; picklable); rows of another size than ``shape`` are not written. Returns
    the N (status, what) results and the N x A x 32 row digests. Workers are forked on Linux (as
    PyTorch's DataLoader does: the parent's modules, torch included, are not imported again)."""
    n = len(paths)
    chunks = [(s, paths[s:s + CHUNK], None if mask_paths is None else mask_paths[s:s + CHUNK]) for s in range(0, n, CHUNK)]
    results: list = [None] * n
    digests = np.zeros((n, 1 + (mask_paths is not None), 32), dtype=np.uint8)

    def keep(start: int, out: tuple) -> None:
        results[start:start + len(out[0])] = out[0]
        digests[start:start + len(out[0])] = out[1]
        bar.update(len(out[0]))

    if num_workers <= 1:
        for start, p, m in chunks:
            keep(start, _decode_chunk(decode, writer, start, p, m, shape))
        return results, digests
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    try:
        with ProcessPoolExecutor(min(num_workers, len(chunks)), mp_context=ctx) as pool:
            futures = {pool.submit(_decode_chunk, decode, writer, s, p, m, shape): s for s, p, m in chunks}
            for f in as_completed(futures):
                keep(futures[f], f.result())
    except BrokenProcessPool:
        raise RuntimeError("a decoding worker process died (killed, or out of memory); "
                           "try fewer workers (option num_workers)") from None
    return results, digests
