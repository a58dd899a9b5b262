"""Images without labels, from a folder (any depth) or from files named on the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ._registry import DataError
from .dataset import UNLABELED, ImageDataset
from .io import IMAGE_EXTENSIONS, decode_images, list_image_files


def collect_image_paths(items: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files; every item must exist
    and every folder must hold at least one image."""
    paths: list[Path] = []
    missing, empty, not_images = [], [], []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_image_files(p, recursive=True)
            (paths.extend(found) if found else empty.append(str(p)))
        elif p.is_file():
            (paths.append(p) if p.suffix.lower() in IMAGE_EXTENSIONS else not_images.append(str(p)))
        else:
            missing.append(str(p))
    for what, bad in (("does not exist", missing), ("holds no image file", empty),
                      (f"is not an image file ({', '.join(sorted(IMAGE_EXTENSIONS))})", not_images)):
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DataError(f"{bad[0]} {what}{more}")
    return paths


def read_images(items: Sequence[str | Path], image_size: int, progress: bool = True) -> ImageDataset:
    """Decode the images of files and folders into an unlabeled ImageDataset (ids: file stems, or
    relative paths when stems repeat)."""
    paths = collect_image_paths(items)
    images, _ = decode_images(paths, image_size, progress=progress, cache=False, source="images")
    ids = [p.stem for p in paths]
    if len(set(ids)) != len(ids):
        ids = [str(p) for p in paths]
    return ImageDataset(images, np.full(len(paths), UNLABELED, dtype=np.int64), ["unlabeled"], ids,
                        source=", ".join(map(str, items)))


def read_image_dir(folder: str | Path, image_size: int) -> ImageDataset:
    """All images under ``folder`` (recursively), unlabeled."""
    return read_images([folder], image_size)
