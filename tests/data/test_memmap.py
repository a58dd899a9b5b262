"""Memory-mapped storage: decoding in worker processes into a cache entry, read-only arrays that page,
the choice of storage, and detection of damaged or half-written entries."""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.data import DataError, ImageDataset, load_split
from medattn.data import cache, memmap
from medattn.data.io import decode_images
from medattn.data.memmap import PagedArray
from medattn.data.transforms import to_float_batch
from medattn.engine.inference import predict_proba
from readers_testkit import write_image, write_mask

QUIET = dict(progress=False)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MEDATTN_CACHE_MAX_GB", raising=False)
    return tmp_path / "cache"


def _files(folder: Path, n: int, size=(20, 16), masks: bool = True):
    paths = [folder / f"{i}.png" for i in range(n)]
    for i, p in enumerate(paths):
        write_image(p, size=size, seed=i)
    mpaths = None
    if masks:
        mpaths = [folder / f"{i}_m.png" for i in range(n)]
        for p in mpaths:
            write_mask(p, size=size)
    return paths, mpaths


def _entry(cache_dir: Path) -> Path:
    (entry,) = [p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return entry


def test_memmap_in_worker_processes_equals_memory(tmp_path, cache_dir):
    paths, masks = _files(tmp_path / "img", 70)
    ref, ref_m = decode_images(paths, 12, masks, cache=False, storage="memory", **QUIET)
    images, mmasks = decode_images(paths, 12, masks, storage="memmap", num_workers=2, **QUIET)
    assert isinstance(images, PagedArray) and isinstance(mmasks, PagedArray)
    assert not images.flags.writeable and images.shape == (70, 12, 12, 3)
    np.testing.assert_array_equal(images, ref)
    np.testing.assert_array_equal(mmasks, ref_m)
    # indexing gives in-RAM, writable copies, never views of the file
    for batch in (images[3:40], images[[5, 1, 64]], images[images.shape[0] - 1]):
        assert type(batch) is np.ndarray and batch.flags.writeable and not isinstance(batch, np.memmap)
    np.testing.assert_array_equal(images[[5, 1, 64]], ref[[5, 1, 64]])
    assert images[2, 3, 4, 1] == ref[2, 3, 4, 1]
    # the same files with one worker (in this process) give the same entry contents
    again, _ = decode_images(paths, 12, masks, storage="memmap", num_workers=1, cache=False, **QUIET)
    np.testing.assert_array_equal(again, ref)
    manifest = json.loads((_entry(cache_dir) / "entry.json").read_text())
    assert manifest["complete"] is True and manifest["count"] == 70
    assert manifest["arrays"]["images"]["shape"] == [70, 12, 12, 3]


def test_consumers_read_only_batches(tmp_path, cache_dir):
    paths, masks = _files(tmp_path / "img", 12)
    images, mmasks = decode_images(paths, 16, masks, storage="memmap", num_workers=2, **QUIET)
    ds = ImageDataset(images, np.arange(12) % 2, ["a", "b"], [str(i) for i in range(12)], masks=mmasks)
    sub = ds.subset(np.array([0, 5, 7]))
    np.testing.assert_array_equal(sub.images, np.asarray(images)[[0, 5, 7]])
    x = to_float_batch(ds.images[2:6])
    assert x.shape == (4, 3, 16, 16) and float(x.max()) <= 1.0
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    probs = predict_proba(model, ds, batch_size=5, channels_last=False)
    ref = predict_proba(model, np.array(images), batch_size=5, channels_last=False, task="multiclass")
    np.testing.assert_allclose(probs, ref)


def test_every_problem_is_collected_in_workers_and_nothing_is_kept(tmp_path, cache_dir):
    paths, masks = _files(tmp_path / "img", 40)
    for i in (3, 17, 33):
        paths[i].write_bytes(b"not an image")
    write_mask(masks[25], size=(9, 9))
    with pytest.raises(DataError) as e:
        decode_images(paths, 8, masks, storage="memmap", num_workers=2, source="SRC", **QUIET)
    msg = str(e.value)
    assert msg.startswith("SRC: 2 kinds of problems")
    assert "unreadable image [3]" in msg and all(str(paths[i]) in msg for i in (3, 17, 33))
    assert "mask size different from its image [1]" in msg and "25_m.png is 9x9" in msg
    assert not cache_dir.exists() or not list(cache_dir.iterdir())  # no entry, no temporary folder


def test_same_size_images_kept_and_other_sizes_reported(tmp_path, cache_dir):
    paths, _ = _files(tmp_path / "img", 6, size=(10, 7), masks=False)
    images, _ = decode_images(paths, None, storage="memmap", num_workers=2, **QUIET)
    assert images.shape == (6, 7, 10, 3)
    write_image(tmp_path / "odd.png", size=(8, 7))
    with pytest.raises(DataError, match=r"images of different sizes .*odd.png is 8x7"):
        decode_images([*paths, tmp_path / "odd.png"], None, storage="memmap", num_workers=2, **QUIET)


def test_scratch_memmap_without_cache_leaves_nothing(tmp_path, cache_dir):
    paths, _ = _files(tmp_path / "img", 5, masks=False)
    images, _ = decode_images(paths, 8, storage="memmap", cache=False, **QUIET)
    assert list(cache_dir.iterdir()) == []  # the scratch file is already unlinked
    ref, _ = decode_images(paths, 8, storage="memory", cache=False, **QUIET)
    np.testing.assert_array_equal(images, ref)  # still readable through the map


def test_auto_storage_follows_available_memory(tmp_path, cache_dir, monkeypatch):
    paths, _ = _files(tmp_path / "img", 4, masks=False)
    nbytes = 4 * 8 * 8 * 3
    monkeypatch.setattr(memmap, "available_memory", lambda: 4 * nbytes - 1)  # a quarter is just too small
    images, _ = decode_images(paths, 8, **QUIET)
    assert isinstance(images, PagedArray)
    monkeypatch.setattr(memmap, "available_memory", lambda: 4 * nbytes)
    images, _ = decode_images(paths, 8, **QUIET)  # the same entry, now read into RAM
    assert type(images) is np.ndarray and images.flags.writeable


def test_available_memory_is_plausible():
    avail = memmap.available_memory()
    assert 0 < avail < 1 << 50


def test_storage_is_a_reader_option(tmp_path, cache_dir):
    for k, cls in enumerate(("a", "b")):
        for i in range(3):
            write_image(tmp_path / "set" / cls / f"{cls}{i}.png", seed=10 * k + i)
    ds = load_split("folder", str(tmp_path / "set"), "train", 8, storage="memmap", val_fraction=0, test_fraction=0,
                    **QUIET)
    assert isinstance(ds.images, PagedArray) and len(ds) == 6
    with pytest.raises(DataError, match="option storage must be one of auto, memory, memmap, got 'mmap'"):
        load_split("folder", str(tmp_path / "set"), "train", 8, storage="mmap", val_fraction=0, test_fraction=0)


def _damage_and_reload(tmp_path, cache_dir, damage):
    paths, masks = _files(tmp_path / "img", 10)
    ref, ref_m = decode_images(paths, 8, masks, storage="memmap", **QUIET)
    ref, ref_m = np.array(ref), np.array(ref_m)
    entry = _entry(cache_dir)
    damage(entry)
    with pytest.warns(UserWarning, match="rebuilding the damaged cache entry") as w:
        images, mmasks = decode_images(paths, 8, masks, storage="memmap", **QUIET)
    np.testing.assert_array_equal(images, ref)
    np.testing.assert_array_equal(mmasks, ref_m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_images(paths, 8, masks, storage="memmap", **QUIET)  # rebuilt: sound again
    return str(w[0].message)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(data)


def test_truncated_entry_is_rebuilt(tmp_path, cache_dir):
    def cut(entry):
        os.truncate(entry / "images.npy", (entry / "images.npy").stat().st_size - 100)
    assert "truncated or damaged" in _damage_and_reload(tmp_path, cache_dir, cut)


def test_flipped_byte_in_a_row_is_found(tmp_path, cache_dir):
    def flip(entry):
        _flip(entry / "masks.npy", (entry / "masks.npy").stat().st_size - 5)  # the last mask
    assert "masks: 1 row(s) differ from their digest: 9" in _damage_and_reload(tmp_path, cache_dir, flip)


def test_flipped_header_digests_or_missing_marker_is_found(tmp_path, cache_dir):
    assert "unreadable header" in _damage_and_reload(tmp_path, cache_dir, lambda e: _flip(e / "images.npy", 60))
    shutil.rmtree(cache_dir)

    def reshape(entry):  # a header that parses, with another shape of the same byte size
        f = entry / "images.npy"
        f.write_bytes(f.read_bytes().replace(b"(10, 8, 8, 3)", b"(10, 8, 4, 6)", 1))
    assert "header says (10, 8, 4, 6)" in _damage_and_reload(tmp_path, cache_dir, reshape)
    shutil.rmtree(cache_dir)
    assert "digests.npy" in _damage_and_reload(tmp_path, cache_dir, lambda e: _flip(e / "digests.npy", 200))
    shutil.rmtree(cache_dir)
    assert "entry.json" in _damage_and_reload(tmp_path, cache_dir, lambda e: (e / "entry.json").unlink())


def test_sampled_check_at_open_and_full_check_by_verify(tmp_path, cache_dir):
    paths, _ = _files(tmp_path / "img", 10, masks=False)
    decode_images(paths, 8, storage="memmap", **QUIET)
    entry = _entry(cache_dir)
    manifest = memmap.read_manifest(entry)
    a = manifest["arrays"]["images"]
    _flip(entry / "images.npy", a["offset"] + 5 * 8 * 8 * 3 + 17)  # row 5
    assert memmap.check_entry(entry, manifest, [0, 9]) == []  # rows not drawn are not read at open
    assert memmap.check_entry(entry, manifest, None) == ["images: 1 row(s) differ from their digest: 5"]
    assert memmap.sample_rows(10) == list(range(10))
    rows = memmap.sample_rows(1000)
    assert len(rows) == 64 and rows[0] == 0 and rows[-1] == 999


def test_paged_array_reads_rows_without_mapping_them_and_releases_other_reads(tmp_path, monkeypatch):
    if not Path("/proc/self/smaps").exists():
        pytest.skip("needs /proc/self/smaps (Linux)")
    a = np.random.default_rng(0).integers(0, 256, (64, 256, 256, 3), dtype=np.uint8)  # 12.6 MB
    writer = memmap.EntryWriter(tmp_path, {"images": a.shape})
    writer.write_rows("images", 0, a)
    writer.finish(memmap.row_digests(a)[:, None], {"count": 64})
    images = memmap.open_entry(tmp_path, memmap.read_manifest(tmp_path), True)["images"]
    # whole rows, as batches are taken: read with pread, never mapped into this process
    for index in (slice(0, 64), [5, 1, 63, 2, 3, 4], np.arange(64)[::-1], np.arange(64) % 3 == 0, -1, np.int64(7)):
        np.testing.assert_array_equal(images[index], a[index])
    with pytest.raises(IndexError):
        images[[0, 64]]
    assert _mapped_kb(tmp_path / "images.npy") < 1_000
    # other indexing goes through the map; its pages are released every RELEASE_BYTES
    monkeypatch.setattr(memmap, "RELEASE_BYTES", 1 << 40)
    np.testing.assert_array_equal(images[:, 10:250], a[:, 10:250])
    assert _mapped_kb(tmp_path / "images.npy") > 10_000
    monkeypatch.setattr(memmap, "RELEASE_BYTES", 1)
    np.testing.assert_array_equal(images[..., 1], a[..., 1])  # this read releases the pages
    assert _mapped_kb(tmp_path / "images.npy") < 1_000
    np.testing.assert_array_equal(images[3:5, 7], a[3:5, 7])  # and the data is still there


def _mapped_kb(path: Path) -> int:
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isalnum() and "-" in line.split()[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total

