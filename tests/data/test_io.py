"""Image decoding: mode conversions, resizing, pixel limit, parallel decoding and the disk cache."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from medattn.data import DataError
from medattn.data import io
from medattn.data.io import ImageReadError, decode_images, read_image, read_mask
from readers_testkit import write_image, write_mask


def test_rgb_png_is_read_exactly(tmp_path):
    a = write_image(tmp_path / "a.png", size=(7, 5))
    img, full = read_image(tmp_path / "a.png")
    assert img.dtype == np.uint8 and img.shape == (5, 7, 3)
    np.testing.assert_array_equal(img, a)
    assert full == (7, 5)


def test_grayscale_and_bilevel_become_rgb(tmp_path):
    g = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    Image.fromarray(g).save(tmp_path / "g.png")
    img, _ = read_image(tmp_path / "g.png")
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], g)
    Image.fromarray(g > 100).save(tmp_path / "b.png")  # mode "1"
    img, _ = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(img[..., 1], np.where(g > 100, 255, 0))


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((1, 3, 4), dtype=np.uint8)
    a[0, :, :3] = (200, 40, 0)
    a[0, :, 3] = (0, 255, 128)
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    img, _ = read_image(tmp_path / "t.png")
    np.testing.assert_array_equal(img[0, 0], (255, 255, 255))  # transparent -> white
    np.testing.assert_array_equal(img[0, 1], (200, 40, 0))  # opaque -> colour
    expected = np.array([200, 40, 0]) * 128 / 255 + 255 * 127 / 255
    assert np.abs(img[0, 2].astype(float) - expected).max() <= 1.0


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "p.png")
    img, _ = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(img[0], [[10, 20, 30], [200, 100, 50]])
    p.save(tmp_path / "pt.png", transparency=0)
    img, _ = read_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(img[0], [[255, 255, 255], [200, 100, 50]])


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_is_scaled_by_257(tmp_path, ext):
    a = np.array([[0, 257 * 100, 65535, 300]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / f"a{ext}")
    assert Image.open(tmp_path / f"a{ext}").mode.startswith("I;16")
    img, _ = read_image(tmp_path / f"a{ext}")
    np.testing.assert_array_equal(img[0, :, 0], [0, 100, 255, 1])


def test_exif_rotation_is_applied(tmp_path):
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[:, :10] = (255, 0, 0)
    rgb[:, 10:] = (0, 0, 255)
    pil = Image.fromarray(rgb)
    exif = pil.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    pil.save(tmp_path / "r.jpg", exif=exif, quality=95)
    img, full = read_image(tmp_path / "r.jpg")
    assert img.shape == (20, 10, 3) and full == (10, 20)
    top, bottom = img[:8].mean(axis=(0, 1)), img[12:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("RGB", (6, 6), (0, 128, 255)).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    img, _ = read_image(tmp_path / "c.jpg")
    assert np.abs(img.reshape(-1, 3).mean(0) - (0, 128, 255)).max() < 6


def test_resize_is_antialiased_bilinear(tmp_path):
    checker = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(checker).save(tmp_path / "c.png")
    img, full = read_image(tmp_path / "c.png", size=8)
    assert img.shape == (8, 8, 3) and full == (32, 32)
    # nearest neighbour would give only 0 / 255; an antialiased 4x shrink gives the mean grey
    assert np.abs(img[1:-1, 1:-1].astype(float) - 127.5).max() < 2


def test_large_jpeg_draft_matches_full_decode(tmp_path):
    yy, xx = np.mgrid[0:800, 0:640]
    a = np.stack([xx * 255 // 640, yy * 255 // 800, (xx + yy) * 255 // 1440], -1).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "big.jpg", quality=95)
    img, full = read_image(tmp_path / "big.jpg", size=64)
    ref = np.asarray(Image.open(tmp_path / "big.jpg").convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
    assert full == (640, 800)
    assert np.abs(img.astype(int) - ref).mean() < 1.5


def test_masks_use_nearest_and_palette_indices(tmp_path):
    m = write_mask(tmp_path / "m.png", size=(16, 16))
    out, full = read_mask(tmp_path / "m.png", size=5)
    assert out.shape == (5, 5) and full == (16, 16)
    assert set(np.unique(out)) == {0, 255}
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png")[0], m)
    p = Image.fromarray((m > 0).astype(np.uint8), "P")
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png")[0], (m > 0).astype(np.uint8))


def test_truncated_and_garbage_files_raise(tmp_path):
    write_image(tmp_path / "ok.jpg", size=(64, 64))
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageReadError, match="unreadable"):
        read_image(tmp_path / "junk.png")


def test_pixel_limit_is_ours_not_pils(tmp_path, monkeypatch):
    write_image(tmp_path / "a.png", size=(20, 20))
    with pytest.raises(ImageReadError) as e:
        read_image(tmp_path / "a.png", max_pixels=399)
    assert "max_pixels=399" in e.value.kind and e.value.detail == "20x20 = 400 pixels"
    # PIL's own limit (warning above it, error above twice it) must not apply when max_pixels allows
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img, _ = read_image(tmp_path / "a.png", max_pixels=400)
    assert img.shape == (20, 20, 3)
    assert Image.MAX_IMAGE_PIXELS == 50  # restored


def test_decode_images_collects_every_problem(tmp_path):
    paths = []
    for i in range(8):
        p = tmp_path / f"bad{i}.png"
        p.write_bytes(b"garbage")
        paths.append(p)
    write_image(tmp_path / "good.png")
    with pytest.raises(DataError) as e:
        decode_images([tmp_path / "good.png", *paths], 4, progress=False, cache=False, source="SRC")
    msg = str(e.value)
    assert msg.startswith("SRC: unreadable image [8]: ")
    assert str(paths[0]) in msg and str(paths[4]) in msg and str(paths[5]) not in msg
    assert msg.endswith("(and 3 more)")


def test_decode_images_sizes_masks_and_order(tmp_path):
    arrays = [write_image(tmp_path / f"{i}.png", size=(6, 4), seed=i) for i in range(5)]
    for i in range(5):
        write_mask(tmp_path / f"{i}_m.png", size=(6, 4))
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    masks = [tmp_path / f"{i}_m.png" for i in range(5)]
    imgs, ms = decode_images(paths, None, masks, progress=False, cache=False, num_workers=3)
    np.testing.assert_array_equal(imgs, np.stack(arrays))
    assert ms.shape == (5, 4, 6)
    write_image(tmp_path / "odd.png", size=(5, 4))
    with pytest.raises(DataError, match=r"images of different sizes .*odd.png is 5x4"):
        decode_images([*paths, tmp_path / "odd.png"], None, progress=False, cache=False)
    write_mask(tmp_path / "3_m.png", size=(7, 4))
    with pytest.raises(DataError, match=r"mask size different from its image \[1\]: .*3_m.png is 7x4, image .*3.png is 6x4"):
        decode_images(paths, 4, masks, progress=False, cache=False)


def test_cache_round_trip_and_invalidation(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDATTN_CACHE", str(tmp_path / "cache"))
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        write_image(p, seed=i)
    first, _ = decode_images(paths, 6, progress=False, cache=True)
    entries = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "entry.json").is_file()
    calls = []
    real = io.read_image
    monkeypatch.setattr(io, "read_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    again, _ = decode_images(paths, 6, progress=False, cache=True)
    np.testing.assert_array_equal(first, again)
    assert calls == []  # served from the cache
    write_image(paths[1], seed=99)
    os.utime(paths[1], ns=(1, 1))  # a different mtime (and content) makes a new key
    changed, _ = decode_images(paths, 6, progress=False, cache=True)
    assert len(calls) == 3 and not np.array_equal(changed[1], first[1])
    np.testing.assert_array_equal(changed[0], first[0])
    assert not list((tmp_path / "cache").glob(".*.tmp"))
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2
