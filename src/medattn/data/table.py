"""`csv` reader: any table of image paths with multi-class, multi-label or no labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import (CsvTable, Problems, build_dataset, check_options, duplicates, parse_binary, parse_onehot,
                      read_csv)
from ._registry import DataError, register_reader
from .dataset import UNLABELED, ImageDataset, labeled_mask
from .io import IMAGE_EXTENSIONS
from .splits import split_fractions, stratified_split

IMAGE_COLUMNS = ("image", "image_id", "filename", "file", "path", "image_path")
LABEL_COLUMNS = ("label", "class")
OPTIONS = ("csv", "image_dir", "image_col", "label_col", "label_cols", "task", "classes", "mask_col", "mask_dir",
           "split_col", "group_col", "val_fraction", "test_fraction", "seed")


def _locate(base: Path, value: str) -> Path | None:
    # A path relative to `base` (or absolute), with or without one of the image extensions.
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
        return p
    for ext in IMAGE_EXTENSIONS:
        for e in (ext, ext.upper()):
            q = p.with_name(p.name + e)
            if q.is_file():
                return q
    return None


def _is_int(v: str) -> bool:
    return v.lstrip("-").isdigit()


def _class_column(table: CsvTable, col: str, classes: list[str] | None, problems: Problems) -> tuple[np.ndarray, list[str]]:
    """Class index per row from one column of names or integer indices; empty cell -> unlabeled."""
    values = table.column(col)
    filled = [v for v in values if v]
    as_index = bool(filled) and all(_is_int(v) for v in filled) and not (classes and set(filled) <= set(classes))
    if classes is None:
        names = [str(i) for i in range(max(int(v) for v in filled) + 1)] if as_index else sorted(set(filled))
    else:
        names = classes
    out = np.full(len(values), UNLABELED, dtype=np.int64)
    for i, v in enumerate(values):
        if not v:
            continue
        if as_index and 0 <= int(v) < len(names):
            out[i] = int(v)
        elif not as_index and v in names:
            out[i] = names.index(v)
        else:
            problems.add(f"unknown class (classes: {', '.join(names)})", f"{table.where(i, col)}: {v!r}")
    return out, names


def _multilabel(table: CsvTable, cols: list[str], problems: Problems) -> np.ndarray:
    out = np.full((len(table.rows), len(cols)), np.nan, dtype=np.float32)
    for i, row in enumerate(table.rows):
        vals = [parse_binary(row[c]) for c in cols]
        for c, v in zip(cols, vals):
            if v is None:
                problems.add("value is not 0 or 1", f"{table.where(i, c)}: {row[c]!r}")
        if any(v is None for v in vals):
            continue
        empty = [np.isnan(v) for v in vals]
        if any(empty) and not all(empty):
            problems.add("row with some label cells empty (leave all empty for an unlabeled image)",
                         table.where(i, cols[empty.index(True)]))
        elif not all(empty):
            out[i] = vals
    return out


def _stratum(targets: np.ndarray, task: str) -> np.ndarray:
    # Multi-label rows are stratified by their rarest positive label (-1: none, -2: unlabeled).
    if task == "multiclass":
        return targets
    lab = labeled_mask(targets)
    freq = np.nansum(targets[lab], axis=0)
    key = np.full(len(targets), -2, dtype=np.int64)
    for i in np.flatnonzero(lab):
        pos = np.flatnonzero(targets[i] == 1)
        key[i] = pos[np.argmin(freq[pos])] if len(pos) else -1
    return key


def _csv_path(root: str | None, options: dict) -> tuple[Path, Path]:
    if options.get("csv"):
        csv = Path(options["csv"]).expanduser()
        base = root if root and Path(root).is_dir() else csv.parent
    elif root and Path(root).is_file():
        csv, base = Path(root), Path(root).parent
    elif root and Path(root).is_dir():
        found = sorted(Path(root).glob("*.csv"))
        if len(found) != 1:
            raise DataError(f"csv: give option csv (found {len(found)} CSV files in {root})")
        csv, base = found[0], Path(root)
    else:
        raise DataError(f"csv: give option csv or a data root that is a CSV file or folder (got {root!r})")
    return csv, Path(options.get("image_dir") or base).expanduser()


@register_reader("csv")
def read_table(root: str | None, split: str, image_size: int | None, **options) -> ImageDataset:
    """Images listed in a CSV. See docs/data.md for the full rules; in short:

    - ``csv``: the table (else ``root`` if it is a CSV file, or the only CSV in ``root``); images are
      relative to ``image_dir`` (default ``root`` if it is a folder, else the CSV's folder), given
      with or without extension. ``image_col``: default the first of image, image_id, filename,
      file, path, image_path. Ids are the cells without extension and must be unique.
    - Labels: ``label_col`` (class names, or integer indices; default a column named label or
      class if present; ``classes`` fixes the list and order), or ``label_cols`` (0/1 columns: one
      positive per row with ``task`` multiclass, the default, or any number with ``task``
      multilabel). Empty label cells mean unlabeled (target -1, or a row of NaN); no label column
      at all means every image is unlabeled.
    - ``mask_col`` (relative to ``mask_dir``, default ``image_dir``): a mask for every row.
    - Splits: ``split_col`` values (e.g. train/val/test); else a stratified split
      (``val_fraction`` 0.1, ``test_fraction`` 0.2, ``seed`` 0, grouped by ``group_col`` if
      given). A CSV with no label at all and no ``split_col`` has one split, ``train``, of all rows.
    """
    check_options("csv", options, OPTIONS)
    csv, image_dir = _csv_path(root, options)
    table = read_csv(csv)
    cols = table.columns
    image_col = options.get("image_col") or next((c for c in IMAGE_COLUMNS if c in cols), None)
    label_cols = options.get("label_cols")
    if isinstance(label_cols, str):
        label_cols = [c.strip() for c in label_cols.split(",") if c.strip()]
    label_col = options.get("label_col") or (None if label_cols else next((c for c in LABEL_COLUMNS if c in cols), None))
    if image_col is None:
        raise DataError(f"{csv}: no image column (found: {', '.join(cols)}); name it with option image_col "
                        f"(default: the first of {', '.join(IMAGE_COLUMNS)})")
    needed = [image_col, *([label_col] if label_col else []), *(label_cols or []),
              *[options[k] for k in ("mask_col", "split_col", "group_col") if options.get(k)]]
    missing = [c for c in needed if c not in cols]
    if missing:
        raise DataError(f"{csv}: missing column(s) {', '.join(repr(c) for c in missing)} (found: {', '.join(cols)})")
    task = options.get("task", "multiclass")
    if task not in ("multiclass", "multilabel"):
        raise DataError(f"csv: option task must be multiclass or multilabel, got {task!r}")
    if label_col and label_cols:
        raise DataError("csv: give label_col or label_cols, not both")
    if task == "multilabel" and not label_cols:
        raise DataError("csv: task multilabel needs label_cols (one 0/1 column per label)")
    problems = Problems(csv)
    classes = [str(c) for c in options["classes"]] if options.get("classes") else None
    if label_cols:
        class_names = list(label_cols)
        targets = (_multilabel(table, class_names, problems) if task == "multilabel"
                   else parse_onehot(table, class_names, problems, allow_empty=True))
    elif label_col:
        targets, class_names = _class_column(table, label_col, classes, problems)
    else:
        targets, class_names = np.full(len(table.rows), UNLABELED, dtype=np.int64), classes or []
    cells = table.column(image_col)
    ids = [c[: -len(Path(c).suffix)] if Path(c).suffix.lower() in IMAGE_EXTENSIONS else c for c in cells]
    duplicates(ids, [table.where(i, image_col) for i in range(len(ids))], problems)
    paths = []
    for i, c in enumerate(cells):
        paths.append(_locate(image_dir, c) if c else None)
        if paths[-1] is None:
            problems.add("missing image file", f"{table.where(i, image_col)}: {c!r} not found in {image_dir}")
    masks = None
    if options.get("mask_col"):
        mask_dir = Path(options.get("mask_dir") or image_dir).expanduser()
        masks = []
        for i, c in enumerate(table.column(options["mask_col"])):
            masks.append(_locate(mask_dir, c) if c else None)
            if masks[-1] is None:
                problems.add("missing mask file", f"{table.where(i, options['mask_col'])}: {c!r} not found in {mask_dir}")
    problems.raise_if_any()
    labeled = labeled_mask(targets)
    if options.get("split_col"):
        values = table.column(options["split_col"])
        if split not in values:
            raise DataError(f"{csv}: no row with {options['split_col']}={split!r} "
                            f"(values: {', '.join(sorted(set(values)))})")
        rows = np.flatnonzero(np.asarray(values) == split)
    elif not labeled.any():
        if split != "train":
            raise DataError(f"{csv}: an unlabeled CSV without split_col has only the split 'train' (all rows), not {split!r}")
        rows = np.arange(len(cells))
    else:
        if split not in ("train", "val", "test"):
            raise DataError(f"csv: no split {split!r}; available without split_col: train, val, test")
        groups = table.column(options["group_col"]) if options.get("group_col") else None
        rows = stratified_split(_stratum(targets, task), split_fractions(options), int(options.get("seed", 0)),
                                groups)[split]
    return build_dataset(source=str(csv), split=split, ids=[ids[i] for i in rows], image_paths=[paths[i] for i in rows],
                         targets=targets[rows], class_names=class_names, task=task, image_size=image_size,
                         options=options, mask_paths=None if masks is None else [masks[i] for i in rows])
