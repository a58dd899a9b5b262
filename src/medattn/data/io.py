"""Image decoding: any file PIL reads -> uint8 RGB at a fixed size, validated, decoded once in parallel
(threads into RAM, or worker processes into a memory-mapped file for sets larger than memory: `decode_images`).

Conversions (nothing that PIL can decode is rejected):
- EXIF orientation is applied first (`ImageOps.exif_transpose`), so sizes are those of the upright image;
- grayscale (L, 1), CMYK, YCbCr, LAB, HSV -> RGB;
- RGBA, LA, PA and palette images with transparency are composited on WHITE (the background of a
  scanned or exported figure; dropping alpha would turn transparent pixels into arbitrary colours);
- 16-bit (I;16*, and I, read as a 16-bit range) -> 8 bit by ``round(v / 257)`` (65535 -> 255);
  float (F) -> 8 bit by ``round(v * 255)`` when all values are in [0, 1], else clipped to [0, 255].
Images are resized with PIL's bilinear filter, which antialiases when shrinking; masks with nearest
neighbour. Large JPEGs are decoded at a reduced DCT scale (`Image.draft`) that keeps at least twice the
target size, which is much faster and indistinguishable after the bilinear resize.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from . import cache as disk
from ._registry import DataError
from .memmap import STORAGES, EntryWriter, choose_storage, decode_into, open_entry, read_manifest
from .problems import Problems

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own default Image.MAX_IMAGE_PIXELS (decompression bomb limit)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_limit_lock = threading.Lock()
_limit_depth = 0
_limit_saved: int | None = None


class ImageReadError(Exception):
    """One file cannot be used. ``kind`` groups files in the error message, ``detail`` says why."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail


@contextmanager
def _own_pixel_limit():
    # PIL's global limit would warn or raise at sizes the `max_pixels` option allows; while we decode,
    # our own check in `open_image` replaces it. Re-entrant and thread-safe; restored at the end.
    global _limit_depth, _limit_saved
    with _limit_lock:
        if _limit_depth == 0:
            _limit_saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _limit_depth += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_depth -= 1
            if _limit_depth == 0:
                Image.MAX_IMAGE_PIXELS = _limit_saved


def _workers(num_workers: int | None) -> int:
    """Decoding threads (in-RAM storage; PIL releases the GIL while decoding) or processes (memmap
    storage): ``num_workers``, else up to 8."""
    return max(1, int(num_workers or min(8, os.cpu_count() or 1)))


def open_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) and refuse files over ``max_pixels`` (width x height; 0 or None: no limit)."""
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise ImageReadError("missing file") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"image over the pixel limit max_pixels={max_pixels}", str(e)) from None
    except Exception as e:  # noqa: BLE001 - any failure to parse the header means an unusable file
        raise ImageReadError("unreadable image", f"{type(e).__name__}: {e}") from None
    w, h = img.size
    if max_pixels and w * h > max_pixels:
        img.close()
        raise ImageReadError(f"image over the pixel limit max_pixels={max_pixels} (raise the option "
                             f"max_pixels if you trust the file)", f"{w}x{h} = {w * h} pixels")
    return img


def _load(img: Image.Image) -> None:
    try:
        img.load()
    except Exception as e:  # noqa: BLE001 - truncated data, bad chunks, codec errors alike
        raise ImageReadError("unreadable or truncated image", f"{type(e).__name__}: {e}") from None


def _sixteen_to_8bit(img: Image.Image) -> np.ndarray:
    a = np.asarray(img).astype(np.float32)
    return np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """A loaded image in any mode -> RGB, upright (EXIF applied); see the module docstring."""
    ImageOps.exif_transpose(img, in_place=True)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT:
        return Image.fromarray(_sixteen_to_8bit(img)).convert("RGB")
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        a = a * 255.0 if a.size and a.min() >= 0.0 and a.max() <= 1.0 else a
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in img.info or mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _full_size(img: Image.Image) -> tuple[int, int]:
    # Size of the upright image, read before a draft reduction (JPEG only: other formats may decode
    # the whole file to find their EXIF block).
    w, h = img.size
    return (h, w) if img.getexif().get(0x0112) in _ROTATED else (w, h)


def read_image(path: str | os.PathLike, size: int | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one image to H x W x 3 uint8 RGB (``size`` x ``size`` when given).

    Returns the array and the (width, height) of the upright full-resolution image. Raises
    `ImageReadError` for a missing, unreadable or truncated file or one over ``max_pixels``.
    """
    with _own_pixel_limit():
        img = open_image(path, max_pixels)
        with img:
            full = None
            if size and img.format == "JPEG" and img.mode in ("RGB", "L"):
                full = _full_size(img)  # JPEG EXIF is in the header: no decoding yet
                img.draft(img.mode, (2 * size, 2 * size))
            _load(img)
            rgb = to_rgb(img)
            full = full or rgb.size
            if size and rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8), full


def read_mask(path: str | os.PathLike, size: int | None = None,
              max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one mask to H x W uint8 (nearest-neighbour resize): L values as stored, palette
    images as their indices, 16-bit divided by 257, colour converted to L. Returns it and its
    (width, height)."""
    with _own_pixel_limit():
        img = open_image(path, max_pixels)
        with img:
            _load(img)
            ImageOps.exif_transpose(img, in_place=True)
            full = img.size
            if img.mode in ("L", "P"):
                a = np.asarray(img, dtype=np.uint8)
            elif img.mode in _SIXTEEN_BIT:
                a = _sixteen_to_8bit(img)
            else:
                a = np.asarray(img.convert("L"), dtype=np.uint8)
    if size and a.shape != (size, size):
        a = np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.NEAREST))
    return a, full


def decode_one(path: str | os.PathLike, mask_path: str | os.PathLike | None, image_size: int | None,
               max_pixels: int | None) -> tuple[str, object, np.ndarray | None, np.ndarray | None]:
    """Decode one image and its mask: ``(status, what, image, mask)`` with status "ok" (what: the
    image's height x width), "image" or "mask" (what: (kind, detail) of the `ImageReadError`) or
    "size" (what: a message; the mask's size differs from its image's)."""
    try:
        img, full = read_image(path, image_size, max_pixels)
    except ImageReadError as e:
        return "image", (e.kind, e.detail), None, None
    mask = None
    if mask_path is not None:
        try:
            mask, mfull = read_mask(mask_path, image_size, max_pixels)
        except ImageReadError as e:
            return "mask", (e.kind, e.detail), img, None
        if mfull != full:
            return "size", f"{mask_path} is {mfull[0]}x{mfull[1]}, image {path} is {full[0]}x{full[1]}", img, None
    return "ok", img.shape[:2], img, mask


def _raise_problems(results: list[tuple[str, object]], paths: Sequence, mask_paths: Sequence | None, source: str,
                    same_size: bool) -> None:
    problems = Problems(source)
    for i, (status, what) in enumerate(results):
        if status in ("image", "mask"):
            kind, detail = what
            where = f"{(paths if status == 'image' else mask_paths)[i]}" + (f" ({detail})" if detail else "")
            problems.add(kind if status == "image" else f"mask: {kind}", where)
        elif status == "size":
            problems.add("mask size different from its image", what)
    problems.raise_if_any()
    if same_size:
        first = results[0][1]
        for i, (_, shape) in enumerate(results):
            if shape != first:
                problems.add(f"images of different sizes (the first, {paths[0]}, is {first[1]}x{first[0]}; "
                             f"set image_size to resize them)", f"{paths[i]} is {shape[1]}x{shape[0]}")
        problems.raise_if_any()


def _decode_in_threads(paths, mask_paths, image_size, max_pixels, num_workers, bar):
    """-> (results, images, masks): N x S x S x 3 (and N x S x S) arrays in RAM, or lists when
    ``image_size`` is None."""
    n = len(paths)
    fixed = (image_size, image_size) if image_size else None
    images = np.empty((n, *fixed, 3), dtype=np.uint8) if fixed else [None] * n
    masks = None if mask_paths is None else (np.empty((n, *fixed), dtype=np.uint8) if fixed else [None] * n)

    def work(i: int) -> tuple:
        status, what, img, mask = decode_one(paths[i], None if masks is None else mask_paths[i], image_size, max_pixels)
        if img is not None:
            images[i] = img
        if mask is not None:
            masks[i] = mask
        return status, what

    with _own_pixel_limit(), ThreadPoolExecutor(_workers(num_workers)) as pool:
        results = []
        for r in pool.map(work, range(n)):
            results.append(r)
            bar.update(1)
    return results, images, masks


def _check_values(cache, storage) -> None:
    if cache not in ("auto", True, False):
        raise DataError(f"option cache must be 'auto', true or false, got {cache!r}")
    if storage not in STORAGES:
        raise DataError(f"option storage must be one of {', '.join(STORAGES)}, got {storage!r}")


def decode_images(paths: Sequence[str | os.PathLike], image_size: int | None,
                  mask_paths: Sequence[str | os.PathLike] | None = None, *,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS, num_workers: int | None = None,
                  progress: bool = True, cache: bool | str = "auto", storage: str = "auto", source: str = "",
                  desc: str = "decoding") -> tuple[np.ndarray, np.ndarray | None]:
    """Decode all images (and masks) once, collecting every problem before raising.

    Returns images N x S x S x 3 uint8 and masks N x S x S uint8 (or None). With ``image_size``
    None every image must have the same size, which is kept. A mask must have the size of its
    image. Problems (unreadable, truncated, over ``max_pixels``, size mismatches) raise one
    `DataError` naming the files.

    ``storage``: "memory" (decode in threads into RAM), "memmap" (decode in ``num_workers``
    processes into a cache entry on disk and return read-only memory-mapped arrays,
    `medattn.data.memmap.PagedArray`) or "auto" (memmap when the arrays would take more than a
    quarter of the available RAM). ``cache``: keep the decoded arrays on disk (`medattn.data.cache`),
    keyed by the files' paths, sizes and times; "auto": for more than 500 images, and always with
    memmap storage (with ``cache`` False a memory map reads a scratch file, deleted at once: the OS
    frees its space when the arrays are released).
    """
    _check_values(cache, storage)
    n = len(paths)
    masked = mask_paths is not None
    shape = (image_size, image_size) if image_size else _first_shape(paths, max_pixels)
    nbytes = n * shape[0] * shape[1] * (3 + masked) if shape else 0
    mode = choose_storage(storage, nbytes) if shape and n else "memory"
    use_cache = cache is True or (cache == "auto" and (n > 500 or mode == "memmap"))
    key = disk.cache_key([*paths, *(mask_paths or ())], image_size, f"{max_pixels}|{masked}") \
        if n and (use_cache or mode == "memmap") else None
    if use_cache and key is not None:
        hit = disk.load(key, n, storage)
        if hit is not None:
            return hit["images"], hit.get("masks")
    meta = {"key": key, "count": n, "image_size": image_size, "source": source, "description": desc,
            "created": time.time()}
    with tqdm(total=n, desc=desc, unit="img", disable=None if progress else True) as bar:
        if mode == "memmap":
            return _decode_to_memmap(key, paths, mask_paths, image_size, max_pixels, shape, num_workers, bar, meta,
                                     keep=use_cache)
        results, images, masks = _decode_in_threads(paths, mask_paths, image_size, max_pixels, num_workers, bar)
    _raise_problems(results, paths, mask_paths, source, same_size=not image_size)
    if not image_size:
        images = np.stack(images) if n else np.empty((0, 0, 0, 3), dtype=np.uint8)
        if masks is not None:
            masks = np.stack(masks) if n else np.empty((0, 0, 0), dtype=np.uint8)
    if use_cache and key is not None:
        disk.save(key, {"images": images} if masks is None else {"images": images, "masks": masks}, meta)
    return images, masks


def _first_shape(paths: Sequence, max_pixels: int | None) -> tuple[int, int] | None:
    # The size every image must have when image_size is None (None: unreadable, reported later).
    try:
        return read_image(paths[0], None, max_pixels)[0].shape[:2] if paths else None
    except ImageReadError:
        return None


def _decode_to_memmap(key, paths, mask_paths, image_size, max_pixels, shape, num_workers, bar, meta, keep: bool):
    n = len(paths)
    shapes = {"images": (n, *shape, 3)} | ({} if mask_paths is None else {"masks": (n, *shape)})
    nbytes = sum(int(np.prod(s)) for s in shapes.values())
    if keep and not disk.make_room(nbytes):
        warnings.warn(f"the memory-mapped cache of {nbytes / disk.GB:.2f} GB is larger than the cache size limit "
                      f"allows; writing it all the same (it is needed to read the data)", stacklevel=3)
    try:
        tmp, held = disk.new_temp(key, nbytes)
    except OSError as e:
        raise DataError(f"{meta['source']}: cannot write the memory-mapped image cache: {e}") from None
    try:
        writer = EntryWriter(tmp, shapes)
        decode = partial(decode_one, image_size=image_size, max_pixels=max_pixels)
        results, digests = decode_into(writer, decode, paths, mask_paths, shape, _workers(num_workers), bar)
        bar.close()
        _raise_problems(results, paths, mask_paths, meta["source"], same_size=not image_size)
        writer.finish(digests, meta)
        folder = (disk.publish(tmp, key) if keep else None) or tmp
        disk.share(held)
        arrays = open_entry(folder, read_manifest(folder), True, held)
    except OSError as e:
        raise DataError(f"{meta['source']}: cannot write the memory-mapped image cache in {tmp.parent}: {e}") from None
    finally:
        # A scratch entry (cache false), or one that lost a race with another process: its files stay
        # readable through the open maps (Linux, macOS) and their space is freed when those are released.
        shutil.rmtree(tmp, ignore_errors=True)
    return arrays["images"], arrays.get("masks")


def list_image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files (by extension, case-insensitive; hidden files left out) in ``folder``, sorted."""
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())


def resize_images(images: np.ndarray, size: int, num_workers: int | None = None) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x size x size x 3 uint8 with PIL's antialiased bilinear filter."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = np.asarray(Image.fromarray(images[i]).resize((size, size), Image.Resampling.BILINEAR))

    with ThreadPoolExecutor(_workers(num_workers)) as pool:
        list(pool.map(work, range(len(images))))
    return out
