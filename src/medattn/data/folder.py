"""`folder` reader: one sub-folder per class, optionally inside train/ val/ test/ folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import Problems, build_dataset, check_options, check_split, duplicates, require_dir
from ._registry import DataError, register_reader
from .dataset import ImageDataset
from .io import IMAGE_EXTENSIONS, list_image_files
from .splits import split_fractions, stratified_split

SPLIT_FOLDERS = ("train", "val", "test")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _mask_index(mask_dir: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in list_image_files(mask_dir, recursive=True):
        index.setdefault(p.stem, []).append(p)
    return index


@register_reader("folder")
def read_folder(root: str, split: str, image_size: int | None, **options) -> ImageDataset:
    """Images in ``root/<class>/`` (any depth; extensions .png .jpg .jpeg .bmp .tif .tiff, any case;
    other and hidden files are not images and are passed over). Ids are file stems and must be unique.

    If ``root`` has any of ``train/ val/ test/``, every sub-folder of ``root`` is a split holding
    class folders; the classes are the union of the class folders over all splits (so every split
    has the same class list). Otherwise the images are split here, stratified by class
    (``val_fraction`` 0.1, ``test_fraction`` 0.2, ``seed`` 0). Options: ``classes`` (the class
    list and its order; a class folder outside it is an error), ``mask_dir`` (masks
    ``<stem>_segmentation.png`` or ``<stem>.png`` anywhere below it, one for every image).
    """
    check_options("folder", options, ("val_fraction", "test_fraction", "seed", "mask_dir", "classes"))
    root = require_dir(root, "folder")
    problems = Problems(root)
    mask_dir = Path(options["mask_dir"]).expanduser().resolve() if options.get("mask_dir") else None
    top = [d for d in _subdirs(root) if d.resolve() != mask_dir]
    split_mode = any(d.name in SPLIT_FOLDERS for d in top)
    if split_mode:
        check_split("folder", split, [d.name for d in top])
        found = sorted({c.name for d in top for c in _subdirs(d)})
        base = root / split
    else:
        check_split("folder", split, SPLIT_FOLDERS)
        found = [d.name for d in top]
        base = root
    classes = [str(c) for c in options["classes"]] if options.get("classes") else found
    for name in found:
        if name not in classes:
            problems.add("class folder not in option classes", f"{name} (classes: {', '.join(classes)})")
    for p in list_image_files(base):
        problems.add("image outside a class folder", str(p))
    if not classes:
        raise DataError(f"folder: no class folders in {base}")
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        if (base / name).is_dir():
            found_files = list_image_files(base / name, recursive=True)
            files += found_files
            labels += [k] * len(found_files)
    if not files:
        raise DataError(f"folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {base}")
    ids = [p.stem for p in files]
    duplicates(ids, [str(p) for p in files], problems)
    masks = None
    if mask_dir is not None:
        if not mask_dir.is_dir():
            raise DataError(f"folder: mask_dir {mask_dir} is not a directory")
        index = _mask_index(mask_dir)
        masks = []
        for i, p in zip(ids, files):
            cands = index.get(f"{i}_segmentation") or index.get(i) or []
            if len(cands) != 1:
                problems.add("missing mask file" if not cands else "several mask files for one image",
                             f"{p} (looked for {i}_segmentation.png or {i}.png in {mask_dir})" if not cands
                             else ", ".join(map(str, cands)))
            masks.append(cands[0] if cands else None)
    problems.raise_if_any()
    targets = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(files))
    if not split_mode:
        rows = stratified_split(targets, split_fractions(options), int(options.get("seed", 0)))[split]
    return build_dataset(source=str(root), split=split, ids=[ids[i] for i in rows], image_paths=[files[i] for i in rows],
                         targets=targets[rows], class_names=classes, task="multiclass", image_size=image_size,
                         options=options, mask_paths=None if masks is None else [masks[i] for i in rows])
