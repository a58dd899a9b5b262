"""The cache folder: size limit with least-recently-used removal, entries in use kept, killed writes
cleaned up, file modes from the umask, and the `medattn cache` command."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from medattn import files

from medattn.cli import main
from medattn.data import DataError, cache
from medattn.data.io import decode_images
from readers_testkit import write_image

QUIET = dict(progress=False, cache=True)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MEDATTN_CACHE_MAX_GB", raising=False)
    return tmp_path / "cache"


def _set(folder, seed: int, n: int = 20) -> list:
    paths = [folder / f"{seed}_{i}.png" for i in range(n)]
    for i, p in enumerate(paths):
        write_image(p, size=(20, 20), seed=seed * 100 + i)
    return paths


def _keys(cache_dir) -> set[str]:
    return {e.key for e in cache.list_entries() if e.state == "ready"}


def test_least_recently_used_entries_make_room_under_the_limit(tmp_path, cache_dir, monkeypatch):
    a, b, c = (_set(tmp_path / "img", s) for s in range(3))
    decode_images(a, 20, **QUIET)
    decode_images(b, 20, **QUIET)
    (ka,), (kb,) = ({cache.cache_key(p, 20, "178956970|False")} for p in (a, b))
    assert _keys(cache_dir) == {ka, kb}
    old = time.time() - 3600
    os.utime(cache.entry_path(kb) / "entry.json", (old, old))  # b used long ago ...
    decode_images(a, 20, **QUIET)  # ... a just now (a hit marks the entry as used)
    # room for exactly these two entries: a third one must push one out
    monkeypatch.setenv("MEDATTN_CACHE_MAX_GB", str(sum(e.bytes for e in cache.list_entries()) / cache.GB))
    decode_images(c, 20, **QUIET)
    kc = cache.cache_key(c, 20, "178956970|False")
    assert _keys(cache_dir) == {ka, kc}  # b, the least recently used, made room


def test_an_entry_in_use_is_never_removed(tmp_path, cache_dir, monkeypatch):
    a, b = _set(tmp_path / "img", 0), _set(tmp_path / "img", 1)
    images, _ = decode_images(a, 20, storage="memmap", **QUIET)  # held open, memory-mapped
    monkeypatch.setenv("MEDATTN_CACHE_MAX_GB", "0")
    with pytest.warns(UserWarning, match="more than the cache size limit allows"):
        decode_images(b, 20, storage="memory", **QUIET)
    (entry,) = cache.list_entries()
    assert entry.key == cache.cache_key(a, 20, "178956970|False")
    removed, in_use = cache.clear()
    assert removed == [] and [e.key for e in in_use] == [entry.key]
    assert images[5].shape == (20, 20, 3)
    del images
    removed, in_use = cache.clear()
    assert [e.key for e in removed] == [entry.key] and in_use == [] and cache.list_entries() == []


def test_killed_writes_are_cleaned_up_at_the_next_start(tmp_path, cache_dir):
    a = _set(tmp_path / "img", 0)
    key = "0" * 32
    cache_dir.mkdir()
    stale_dir, stale_file = cache_dir / f".{key}.abc.tmp", cache_dir / f".{key}.old.tmp"
    stale_dir.mkdir()
    (stale_dir / "images.npy").write_bytes(b"x" * 100)
    stale_file.write_bytes(b"half an npz")
    busy = cache_dir / f".{'1' * 32}.busy.tmp"
    busy.mkdir()
    young = cache_dir / f".{'2' * 32}.young.tmp"
    young.mkdir()
    old = time.time() - 3600
    for p in (stale_dir, stale_file, busy):
        os.utime(p, (old, old))
    held = cache.lock(busy, exclusive=True)  # a writer that is still running
    assert {e.path.name: e.state for e in cache.list_entries() if e.key != "2" * 32} == {
        stale_dir.name: "killed write", stale_file.name: "killed write", busy.name: "being written"}
    decode_images(a, 20, **QUIET)
    assert not stale_dir.exists() and not stale_file.exists()
    assert busy.is_dir() and young.is_dir()  # a locked or just-created folder is left alone
    del held


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask(tmp_path, cache_dir, umask):
    a = _set(tmp_path / "img", 0)
    before = os.umask(umask)
    try:
        assert files.current_umask() == umask
        decode_images(a, 20, **QUIET)
    finally:
        os.umask(before)
    entry = cache.entry_path(cache.cache_key(a, 20, "178956970|False"))
    assert entry.stat().st_mode & 0o777 == 0o777 & ~umask
    for f in entry.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name


def test_limit_sources_and_bad_values(cache_dir, monkeypatch):
    assert cache.max_bytes() == int(cache.DEFAULT_MAX_GB * cache.GB)
    cache.set_max_gb(1.5)
    assert cache.max_bytes() == 1_500_000_000
    monkeypatch.setenv("MEDATTN_CACHE_MAX_GB", "none")
    assert cache.max_bytes() is None
    monkeypatch.setenv("MEDATTN_CACHE_MAX_GB", "lots")
    with pytest.raises(DataError, match="MEDATTN_CACHE_MAX_GB: the cache size limit must be a number of GB"):
        cache.max_bytes()


def test_cache_command_list_verify_clear_limit(tmp_path, cache_dir, capsys):
    a, b = _set(tmp_path / "img", 0), _set(tmp_path / "img", 1)
    decode_images(a, 20, source="setA", desc="A train", **QUIET)
    decode_images(b, 20, source="setB", desc="B val", storage="memmap", **QUIET)
    (cache_dir / f"{'f' * 32}.npz").write_bytes(b"old layout")
    ka, kb = (cache.cache_key(p, 20, "178956970|False") for p in (a, b))
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "setA A train" in out and "setB B val" in out and "old layout" in out
    assert f"{ka[:12]}  ready" in out and "limit 20.00 GB (default)" in out
    assert main(["cache", "verify", ka, kb, "--quiet"]) == 0
    assert "2 entries checked, 0 damaged" in capsys.readouterr().out
    images = cache.entry_path(kb) / "images.npy"
    data = bytearray(images.read_bytes())
    data[-7] ^= 0xFF  # the last image
    images.write_bytes(data)
    assert main(["cache", "verify", "--quiet", "--remove"]) == 1
    out = capsys.readouterr().out
    assert f"{kb[:12]}  DAMAGED: images: 1 row(s) differ from their digest: 19" in out
    assert f"{kb[:12]}  removed" in out and "3 entries checked, 2 damaged" in out  # and the old .npz
    assert _keys(cache_dir) == {ka}
    assert main(["cache", "clear", "--key", "0123"]) == 2
    assert "no cache entry with a key starting '0123'" in capsys.readouterr().err
    assert main(["cache", "clear", "--older-than", "1"]) == 0 and _keys(cache_dir) == {ka}
    assert main(["cache", "limit", "0"]) == 0
    out = capsys.readouterr().out
    assert "removed" in out and "limit 0.0 kB" in out and _keys(cache_dir) == set()
    assert main(["cache", "limit", "none"]) == 0 and "limit none" in capsys.readouterr().out
    decode_images(a, 20, **QUIET)
    assert main(["cache", "clear", "--key", ka[:6]]) == 0 and _keys(cache_dir) == set()
    np.testing.assert_array_equal(decode_images(a, 20, **QUIET)[0], decode_images(a, 20, progress=False, cache=False)[0])
