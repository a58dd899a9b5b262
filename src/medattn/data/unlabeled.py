"""Images without labels, from folders (any depth) or from files named on the command line.

``collect_image_files`` is the one rule for "these files and folders" that ``medattn predict``,
``medattn explain`` and unlabeled training data share: folders are searched recursively, every item
must exist, every file must have an image suffix and a readable header, and file stems must be unique
(outputs and ISIC submission rows are named by stem). All problems are reported in one `DataError`.
The ``<id>_superpixels.png`` maps that ISIC 2017 ships beside its images are not images: files found in
folders under that name are left out, with a note saying how many.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ._common import Problems, note
from .dataset import UNLABELED, ImageDataset
from .io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageReadError, decode_images, list_image_files, open_image


SUPERPIXELS = "_superpixels"


def collect_image_files(items: Sequence[str | os.PathLike], max_pixels: int | None = DEFAULT_MAX_PIXELS,
                        source: str = "images") -> list[Path]:
    """The image files named in ``items`` or found (recursively) in its folders, checked before any work
    (see the module docstring); sorted within each folder, in the order of ``items``, duplicates dropped."""
    problems = Problems(source)
    files: list[Path] = []
    superpixels = 0
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_image_files(p, recursive=True)
            kept = [f for f in found if not f.stem.endswith(SUPERPIXELS)]
            superpixels += len(found) - len(kept)
            found = kept
            if not found:
                problems.add(f"folder without images ({', '.join(IMAGE_EXTENSIONS)})", str(p))
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(p)
            else:
                problems.add("not an image file name", f"{p} (image suffixes: {', '.join(IMAGE_EXTENSIONS)})")
        else:
            problems.add("no such file or folder", str(p))
    files = list(dict.fromkeys(files))
    if superpixels:
        note(f"{source}: left out {superpixels} ISIC superpixel map(s) (*{SUPERPIXELS}.png) found in the folders")
    for f in files:
        try:
            open_image(f, max_pixels).close()
        except ImageReadError as err:
            problems.add(err.kind, f"{f}" + (f" ({err.detail})" if err.detail else ""))
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            problems.add("two images with one file stem (ids and outputs are named by stem)", f"{seen[f.stem]} and {f}")
        seen.setdefault(f.stem, f)
    problems.raise_if_any()
    return files


def read_images(items: Sequence[str | os.PathLike], image_size: int, progress: bool = True,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageDataset:
    """Decode the images of files and folders (``collect_image_files``) into an unlabeled ImageDataset
    whose ids are the file stems."""
    paths = collect_image_files(items, max_pixels)
    images, _ = decode_images(paths, image_size, progress=progress, cache=False, source="images", max_pixels=max_pixels)
    return ImageDataset(images, np.full(len(paths), UNLABELED, dtype=np.int64), ["unlabeled"], [p.stem for p in paths],
                        source=", ".join(map(str, items)), extra={"files": [str(p) for p in paths]})


def read_image_dir(folder: str | os.PathLike, image_size: int) -> ImageDataset:
    """All images under ``folder`` (recursively), unlabeled."""
    return read_images([folder], image_size)
