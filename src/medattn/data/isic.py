"""ISIC challenge readers in the official layouts: `isic2017` (Part 3), `isic2018` (Task 3) and
`isic2019` (training set, split here). See docs/data.md for the layouts and options."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import (CsvTable, Problems, build_dataset, check_options, check_split, duplicates, index_images, note,
                      parse_binary, parse_onehot, read_csv, require_dir, resolve,
                      segmentation_masks, unlisted)
from .split_files import rows_from_split_file, split_record
from ._registry import DataError, register_reader
from .dataset import ImageDataset
from .io import IMAGE_EXTENSIONS
from .splits import split_fractions, stratified_split

ISIC2017_PARTS = {"train": ("Training",), "val": ("Validation",), "test": ("Test_v2", "Test")}
ISIC2017_TASKS = {
    "3class": ["melanoma", "seborrheic_keratosis", "nevus"],
    "melanoma": ["other", "melanoma"],
    "seborrheic_keratosis": ["other", "seborrheic_keratosis"],
}
ISIC2018_PARTS = {"train": "Training", "val": "Validation", "test": "Test"}
UNK_MODES = ("error", "drop", "keep")
SUBSETS = ("all", "available")


def _lookup(reader: str, table: CsvTable, ids: list[str], image_dir: Path, mask_folder: Path | None,
            options: dict, problems: Problems, ignore: tuple[str, ...] = ()) -> tuple[list[Path], list[Path] | None]:
    """Every listed image (and mask) file; raises the collected problems, unlisted files included."""
    if not image_dir.is_dir():
        raise DataError(f"{reader}: image folder {image_dir} does not exist")
    where = [table.where(i) for i in range(len(ids))]
    duplicates(ids, where, problems)
    index = index_images(image_dir, IMAGE_EXTENSIONS, ignore_suffixes=ignore)
    paths = resolve(index, ids, where, problems, image_dir)
    if not options.get("ignore_unlisted", False):
        unlisted(index, ids, problems, table.path.name)
    masks = None if mask_folder is None else segmentation_masks(reader, options, mask_folder, ids, where, problems)
    problems.raise_if_any()
    return paths, masks


def _build(root: Path, split: str, ids: list[str], paths: list[Path], masks: list[Path | None] | None,
           targets: np.ndarray, class_names: list[str], image_size: int | None, options: dict,
           rows: np.ndarray | None = None, extra: dict | None = None) -> ImageDataset:
    rows = np.arange(len(ids)) if rows is None else rows
    return build_dataset(source=str(root), split=split, ids=[ids[i] for i in rows],
                         image_paths=[paths[i] for i in rows], targets=targets[rows], class_names=class_names,
                         task="multiclass", image_size=image_size, options=options,
                         mask_paths=None if masks is None else [masks[i] for i in rows], extra=extra)


@register_reader("isic2017")
def read_isic2017(root: str, split: str, image_size: int | None, **options) -> ImageDataset:
    """ISIC 2017 Part 3: ``ISIC-2017_{Training,Validation,Test_v2}_Data/`` and
    ``ISIC-2017_{...}_Part3_GroundTruth.csv`` (image_id, melanoma, seborrheic_keratosis).

    Options: ``task`` "3class" (classes melanoma, seborrheic_keratosis, nevus = neither; default),
    "melanoma" or "seborrheic_keratosis" (one-vs-rest: classes [other, <task>]); ``masks``
    (auto / true / available / false) and ``mask_dir`` (Part 1 ``<id>_segmentation.png`` in
    ``ISIC-2017_{...}_Part1_GroundTruth/``, below the root or below ``mask_dir``; ``masks:
    available`` keeps the test images that have no mask, see ``ImageDataset.has_mask``);
    ``ignore_unlisted``. ``*_superpixels.png`` files are ignored.
    """
    check_options("isic2017", options, ("task", "masks", "mask_dir", "ignore_unlisted"))
    root = require_dir(root, "isic2017")
    task = options.get("task", "3class")
    if task not in ISIC2017_TASKS:
        raise DataError(f"isic2017: option task must be one of {', '.join(ISIC2017_TASKS)}, got {task!r}")
    check_split("isic2017", split, ISIC2017_PARTS)
    candidates = ISIC2017_PARTS[split]
    part = next((p for p in candidates if (root / f"ISIC-2017_{p}_Data").is_dir()), candidates[0])
    table = read_csv(root / f"ISIC-2017_{part}_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"])
    problems = Problems(table.path)
    ids = table.column("image_id")
    targets = np.full(len(ids), -1, dtype=np.int64)
    for i, row in enumerate(table.rows):
        vals = {c: parse_binary(row[c]) for c in ("melanoma", "seborrheic_keratosis")}
        bad = [c for c, v in vals.items() if v is None or np.isnan(v)]
        for c in bad:
            problems.add("label is not 0 or 1", f"{table.where(i, c)}: {row[c]!r}")
        if bad:
            continue
        mel, sk = vals["melanoma"] == 1.0, vals["seborrheic_keratosis"] == 1.0
        if mel and sk:
            problems.add("image marked both melanoma and seborrheic_keratosis", table.where(i))
            continue
        if task == "3class":
            targets[i] = 0 if mel else 1 if sk else 2
        else:
            targets[i] = int(mel if task == "melanoma" else sk)
    paths, masks = _lookup("isic2017", table, ids, root / f"ISIC-2017_{part}_Data",
                           root / f"ISIC-2017_{part}_Part1_GroundTruth", options, problems, ignore=("_superpixels",))
    return _build(root, split, ids, paths, masks, targets, ISIC2017_TASKS[task], image_size, options)


def isic2018_part(split: str) -> str:
    """Folder word of a split: train -> Training, val -> Validation, test -> Test, a_b -> AB."""
    return ISIC2018_PARTS.get(split) or "".join(w[:1].upper() + w[1:] for w in split.split("_"))


@register_reader("isic2018")
def read_isic2018(root: str, split: str, image_size: int | None, **options) -> ImageDataset:
    """ISIC 2018 Task 3: ``ISIC2018_Task3_<Split>_Input/<id>.jpg|png`` and
    ``ISIC2018_Task3_<Split>_GroundTruth/ISIC2018_Task3_<Split>_GroundTruth.csv`` (or that CSV in
    the root): column ``image`` and one 0/1 column per class, classes in header order.

    Split names map to folder words train -> Training, val -> Validation, test -> Test, and any
    other ``a_b`` -> ``AB`` (``test_shifted`` -> ``TestShifted``). Options: ``masks`` (auto / true /
    available / false) / ``mask_dir`` (``ISIC2018_Task1_<Split>_GroundTruth/<id>_segmentation.png``;
    Task 1 has masks for only part of the Task 3 images: ``masks: available``), ``ignore_unlisted``.
    """
    check_options("isic2018", options, ("masks", "mask_dir", "ignore_unlisted"))
    root = require_dir(root, "isic2018")
    part = isic2018_part(split)
    image_dir = root / f"ISIC2018_Task3_{part}_Input"
    if not image_dir.is_dir():
        found = sorted(p.name[len("ISIC2018_Task3_"):-len("_Input")] for p in root.glob("ISIC2018_Task3_*_Input"))
        raise DataError(f"isic2018: no folder {image_dir.name} for split {split!r} in {root}"
                        f" (split folders found: {', '.join(found) or 'none'})")
    name = f"ISIC2018_Task3_{part}_GroundTruth"
    csv = next((p for p in (root / name / f"{name}.csv", root / f"{name}.csv") if p.is_file()), root / name / f"{name}.csv")
    table = read_csv(csv, ["image"])
    classes = [c for c in table.columns if c != "image"]
    if not classes:
        raise DataError(f"{csv}: no class columns besides 'image'")
    problems = Problems(csv)
    targets = parse_onehot(table, classes, problems)
    ids = table.column("image")
    paths, masks = _lookup("isic2018", table, ids, image_dir, root / f"ISIC2018_Task1_{part}_GroundTruth",
                           options, problems)
    return _build(root, split, ids, paths, masks, targets, classes, image_size, options)


@register_reader("isic2019")
def read_isic2019(root: str, split: str, image_size: int | None, **options) -> ImageDataset:
    """ISIC 2019: ``ISIC_2019_Training_Input/`` (or option ``image_dir``) and
    ``ISIC_2019_Training_GroundTruth.csv`` (image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC[, UNK]);
    classes in header order.

    Only the training set has public labels, so ``train`` / ``val`` / ``test`` are a deterministic
    stratified split of it (``val_fraction`` 0.1, ``test_fraction`` 0.2, ``seed`` 0), grouped by
    ``lesion_id`` when ``ISIC_2019_Training_Metadata.csv`` is present (``group_by_lesion``, default
    true), or the split saved in a ``splits.json`` (``split_file``); ``extra["splits"]`` holds the
    ids of all three. The UNK column (all 0 in the official file) is not a class. Option ``unk``:
    "error" (default: a row labelled UNK is an error naming the rows), "drop" (leave those rows out)
    or "keep" (UNK becomes a 9th class). Option ``subset``: "all" (default: every listed image must
    be there) or "available" (only the listed images found in the folder; the split is made over
    them and the count left out is reported). ``ignore_unlisted`` as for the other readers.
    """
    check_options("isic2019", options, ("unk", "val_fraction", "test_fraction", "seed", "group_by_lesion",
                                        "ignore_unlisted", "subset", "image_dir", "split_file"))
    root = require_dir(root, "isic2019")
    check_split("isic2019", split, ("train", "val", "test"))
    unk, subset = options.get("unk", "error"), options.get("subset", "all")
    if unk not in UNK_MODES:
        raise DataError(f"isic2019: option unk must be one of {', '.join(UNK_MODES)}, got {unk!r}")
    if subset not in SUBSETS:
        raise DataError(f"isic2019: option subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    table = read_csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image"])
    cols = [c for c in table.columns if c != "image"]
    problems = Problems(table.path)
    col_idx = parse_onehot(table, cols, problems)
    classes = cols if unk == "keep" else [c for c in cols if c != "UNK"]
    remap = np.array([classes.index(c) if c in classes else -1 for c in cols] + [-1])
    targets = remap[col_idx]  # -1 (invalid row) indexes the trailing -1
    is_unk = (col_idx == cols.index("UNK")) if "UNK" in cols else np.zeros(len(col_idx), dtype=bool)
    if unk == "error":
        for i in np.flatnonzero(is_unk):
            problems.add("row labelled UNK (pass unk=drop to leave such rows out, or unk=keep for a 9th class)",
                         table.where(int(i), "UNK"))
    ids = table.column("image")
    image_dir = Path(options.get("image_dir") or root / "ISIC_2019_Training_Input").expanduser()
    info: dict = {}
    paths, present = _isic2019_images(table, ids, image_dir, subset, options, problems, info)
    keep = np.flatnonzero(present & ~is_unk) if unk == "drop" else np.flatnonzero(present)
    if subset == "available":
        targets, classes = _classes_present(targets, classes, keep, info)
    groups = _lesion_groups(root, ids) if options.get("group_by_lesion", True) else None
    if options.get("split_file"):
        parts = rows_from_split_file(options["split_file"], "isic2019", ids)
        kept = set(keep.tolist())
        absent = [ids[i] for idx in parts.values() for i in idx if i not in kept]
        if absent:
            raise DataError(f"isic2019: split_file {options['split_file']} names {len(absent)} image(s) that are not "
                            f"read here (e.g. {absent[0]}: not in {image_dir}, or an UNK row with unk=drop)")
        protocol = {"split_file": str(options["split_file"])}
    else:
        fractions = {"val": float(options.get("val_fraction", 0.1)), "test": float(options.get("test_fraction", 0.2))}
        seed = int(options.get("seed", 0))
        parts = {k: keep[v] for k, v in stratified_split(targets[keep], fractions, seed,
                                                          None if groups is None else [groups[i] for i in keep]).items()}
        protocol = {"stratify": "class", "group": "lesion_id" if groups is not None else None,
                    "val_fraction": fractions["val"], "test_fraction": fractions["test"], "seed": seed,
                    "unk": unk, "subset": subset, "rows_used": int(len(keep)), "rows_listed": len(ids)}
    return _build(root, split, ids, paths, None, targets, classes, image_size, options, rows=parts[split],
                  extra={"splits": split_record("isic2019", ids, parts, **protocol), **info})


def _classes_present(targets: np.ndarray, classes: list[str], keep: np.ndarray, info: dict) -> tuple[np.ndarray, list[str]]:
    # subset=available: a class none of whose images is present is left out of the classes (reported).
    counts = np.bincount(targets[keep], minlength=len(classes))
    absent = [c for c, n in zip(classes, counts) if n == 0]
    if not absent:
        return targets, classes
    kept = [c for c in classes if c not in absent]
    remap = np.array([kept.index(c) if c in kept else -1 for c in classes])
    note(f"isic2019: subset=available: no present image of class(es) {', '.join(absent)}; they are left out of the "
         f"classes ({', '.join(kept)})", info)
    return remap[targets], kept


def _isic2019_images(table: CsvTable, ids: list[str], image_dir: Path, subset: str, options: dict,
                     problems: Problems, info: dict) -> tuple[list[Path | None], np.ndarray]:
    """The file of every listed image and which are present; with ``subset`` "all" a missing image
    is an error naming the count, an example and ``subset=available``. Raises the collected problems;
    the note on what ``subset=available`` left out goes into ``info["notes"]``."""
    where = [table.where(i) for i in range(len(ids))]
    duplicates(ids, where, problems)
    if not image_dir.is_dir():
        if subset == "available":
            raise DataError(f"isic2019: subset=available, but the image folder {image_dir} does not exist")
        raise DataError(f"isic2019: image folder {image_dir} does not exist, so all {len(ids)} images listed in "
                        f"{table.path.name} are missing (e.g. {ids[0] if ids else '-'}); point option image_dir at "
                        f"the images, or pass subset=available to use the part of them that a folder holds")
    index = index_images(image_dir, IMAGE_EXTENSIONS)
    present = np.array([x in index for x in ids], dtype=bool)
    n_missing = int(len(ids) - present.sum())
    rows = np.flatnonzero(present) if subset == "available" else np.arange(len(ids))
    hint = "" if subset == "available" else (
        f", {n_missing} of {len(ids)} listed (pass subset=available to use only the {int(present.sum())} present; "
        f"the split is then made over them)")
    found = resolve(index, [ids[i] for i in rows], [where[i] for i in rows], problems, image_dir, hint=hint)
    if not options.get("ignore_unlisted", False):
        unlisted(index, ids, problems, table.path.name)
    problems.raise_if_any()
    if subset == "available":
        if not present.any():
            raise DataError(f"isic2019: subset=available, but none of the {len(ids)} images listed in "
                            f"{table.path.name} is in {image_dir}")
        note(f"isic2019: subset=available: {n_missing} of {len(ids)} listed images are not in {image_dir} and were "
             f"left out; the split is made over the {int(present.sum())} present", info)
    paths: list[Path | None] = [None] * len(ids)
    for i, p in zip(rows, found):
        paths[i] = p
    return paths, present


def _lesion_groups(root: Path, ids: list[str]) -> list[str] | None:
    # lesion_id per image from the official metadata file; an image without one is its own group.
    meta = root / "ISIC_2019_Training_Metadata.csv"
    if not meta.is_file():
        return None
    table = read_csv(meta, ["image"])
    if "lesion_id" not in table.columns:
        return None
    lesion = {r["image"]: r["lesion_id"] for r in table.rows if r["lesion_id"]}
    return [lesion.get(i, f"image:{i}") for i in ids]
