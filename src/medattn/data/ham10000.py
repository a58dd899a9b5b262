"""HAM10000 reader: ``HAM10000_metadata.csv`` plus the image folders, split by lesion.

HAM10000 has several images of one lesion (2545 of 10015 images share a lesion with another image),
so a split by image would put the same lesion in train and test. The splits here are stratified by
``dx`` and grouped by ``lesion_id`` (`medattn.data.splits.stratified_split`); the ids of every split
are kept in ``extra["splits"]`` (`medattn.data.split_files.write_splits_json` saves them, option
``split_file`` reads them back).

Layouts: the official release (``HAM10000_images_part_1/``, ``HAM10000_images_part_2/``, masks in
``HAM10000_segmentations_lesion_tschandl/``) and one image folder ``HAM10000_images/`` with masks in
``HAM10000_segmentations/`` (as ``../shared/data/ham10000_200x150``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._common import (CsvTable, Problems, build_dataset, check_options, check_split, duplicates, index_images, read_csv,
                      require_dir, resolve, segmentation_masks, unlisted)
from .split_files import rows_from_split_file, split_record
from ._registry import DataError, register_reader
from .dataset import ImageDataset
from .io import IMAGE_EXTENSIONS
from .splits import stratified_split

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
"""The seven ``dx`` codes, sorted: actinic keratosis / intraepithelial carcinoma, basal cell
carcinoma, benign keratosis, dermatofibroma, melanoma, melanocytic nevus, vascular lesion."""
IMAGE_FOLDERS = ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images", "images")
MASK_FOLDERS = ("HAM10000_segmentations_lesion_tschandl", "HAM10000_segmentations")
"""Mask folders, the first that exists: the official name (Tschandl et al.), then the short one."""


@dataclass
class HamMetadata:
    """The validated metadata table: per row the image id, lesion id and class index into HAM_CLASSES."""

    table: CsvTable
    image_ids: list[str]
    lesion_ids: list[str]
    targets: np.ndarray


def read_metadata(path: str | os.PathLike) -> HamMetadata:
    """Read and check ``HAM10000_metadata.csv`` (columns lesion_id, image_id, dx): every dx one of
    `HAM_CLASSES`, no empty lesion or image id, no image id twice. Needs no images."""
    table = read_csv(path, ["lesion_id", "image_id", "dx"])
    problems = Problems(table.path)
    targets = np.full(len(table.rows), -1, dtype=np.int64)
    for i, row in enumerate(table.rows):
        if row["dx"] in HAM_CLASSES:
            targets[i] = HAM_CLASSES.index(row["dx"])
        else:
            problems.add(f"unknown dx (expected one of {', '.join(HAM_CLASSES)})", f"{table.where(i, 'dx')}: {row['dx']!r}")
        for c in ("lesion_id", "image_id"):
            if not row[c]:
                problems.add(f"empty {c}", table.where(i, c))
    image_ids = table.column("image_id")
    duplicates(image_ids, [table.where(i, "image_id") for i in range(len(image_ids))], problems)
    problems.raise_if_any()
    return HamMetadata(table, image_ids, table.column("lesion_id"), targets)


def split_metadata(meta: HamMetadata | str | os.PathLike, val_fraction: float = 0.1, test_fraction: float = 0.2,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of train / val / test: stratified by dx, grouped by lesion_id (no images needed)."""
    if not isinstance(meta, HamMetadata):
        meta = read_metadata(meta)
    return stratified_split(meta.targets, {"val": val_fraction, "test": test_fraction}, seed, groups=meta.lesion_ids)


@register_reader("ham10000")
def read_ham10000(root: str, split: str, image_size: int | None, **options) -> ImageDataset:
    """HAM10000: ``root/HAM10000_metadata.csv`` (or option ``metadata``) and images ``<image_id>.jpg``
    in ``HAM10000_images_part_1/``, ``HAM10000_images_part_2/``, ``HAM10000_images/`` and/or
    ``images/``.

    Classes: `HAM_CLASSES`. Splits train / val / test from `split_metadata` (options
    ``val_fraction`` 0.1, ``test_fraction`` 0.2, ``seed`` 0), or from a saved ``splits.json``
    (option ``split_file``); ``extra["splits"]`` holds the ids of all three. Masks (``masks``:
    auto / true / available / false, ``mask_dir``): ``<image_id>_segmentation.png`` in
    ``HAM10000_segmentations_lesion_tschandl/`` or ``HAM10000_segmentations/``.
    ``ignore_unlisted``: leave images that have no metadata row out instead of stopping.
    """
    check_options("ham10000", options, ("metadata", "val_fraction", "test_fraction", "seed", "masks", "mask_dir",
                                        "ignore_unlisted", "split_file"))
    root = require_dir(root, "ham10000")
    check_split("ham10000", split, ("train", "val", "test"))
    meta = read_metadata(Path(options.get("metadata") or root / "HAM10000_metadata.csv"))
    folders = [root / f for f in IMAGE_FOLDERS if (root / f).is_dir()]
    if not folders:
        raise DataError(f"ham10000: no image folder in {root} (looked for {', '.join(IMAGE_FOLDERS)})")
    index: dict[str, list[Path]] = {}
    for folder in folders:
        for stem, files in index_images(folder, IMAGE_EXTENSIONS).items():
            index.setdefault(stem, []).extend(files)
    problems = Problems(meta.table.path)
    where = [meta.table.where(i) for i in range(len(meta.image_ids))]
    paths = resolve(index, meta.image_ids, where, problems, " or ".join(str(f) for f in folders))
    if not options.get("ignore_unlisted", False):
        unlisted(index, meta.image_ids, problems, meta.table.path.name)
    masks = segmentation_masks("ham10000", options, [root / f for f in MASK_FOLDERS], meta.image_ids, where, problems)
    problems.raise_if_any()
    if options.get("split_file"):
        parts = rows_from_split_file(options["split_file"], "ham10000", meta.image_ids)
        protocol = {"split_file": str(options["split_file"])}
    else:
        fractions = (float(options.get("val_fraction", 0.1)), float(options.get("test_fraction", 0.2)))
        parts = split_metadata(meta, *fractions, int(options.get("seed", 0)))
        protocol = {"stratify": "dx", "group": "lesion_id", "val_fraction": fractions[0],
                    "test_fraction": fractions[1], "seed": int(options.get("seed", 0))}
    check_split("ham10000", split, parts)
    rows = parts[split]
    return build_dataset(source=str(root), split=split, ids=[meta.image_ids[i] for i in rows],
                         image_paths=[paths[i] for i in rows], targets=meta.targets[rows], class_names=HAM_CLASSES,
                         task="multiclass", image_size=image_size, options=options,
                         mask_paths=None if masks is None else [masks[i] for i in rows],
                         extra={"splits": split_record("ham10000", meta.image_ids, parts, **protocol)})
