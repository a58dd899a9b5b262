"""Plumbing shared by the readers: collected error messages, CSV tables with line numbers, option
checks, file look-up by id, and the validate-then-decode step that turns file lists into an
`ImageDataset`.

Every reader follows the same order: read and check the tables (columns, labels, duplicates), look
up every file, raise one `DataError` if anything is wrong, and only then decode (`build_dataset`).
"""
from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._registry import DataError
from .dataset import UNLABELED, ImageDataset, labeled_mask
from .io import decode_images
from .problems import SHOWN, Problems  # noqa: F401 - re-exported: readers import them from here

DECODE_OPTIONS = ("max_pixels", "cache", "num_workers", "progress", "storage")
"""Options every reader accepts; they go to `medattn.data.io.decode_images`."""


def check_options(reader: str, options: dict, allowed: Iterable[str]) -> None:
    """Reject option names a reader does not know (a typo must not be silently ignored)."""
    allowed = set(allowed) | set(DECODE_OPTIONS)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise DataError(f"{reader}: unknown option(s) {', '.join(unknown)}; "
                        f"this reader accepts {', '.join(sorted(allowed))}")


def decode_options(options: dict) -> dict:
    return {k: options[k] for k in DECODE_OPTIONS if k in options}


def require_dir(root: str | os.PathLike | None, reader: str) -> Path:
    """``root`` as an existing directory, else a `DataError` saying what is expected."""
    if root is None or str(root) == "":
        raise DataError(f"{reader}: data root is required (set data.root or --data-root)")
    p = Path(root).expanduser()
    if not p.is_dir():
        raise DataError(f"{reader}: data root {p} is not a directory")
    return p


def check_split(reader: str, split: str, available: Iterable[str]) -> None:
    available = list(available)
    if split not in available:
        raise DataError(f"{reader}: no split {split!r}; available: {', '.join(available)}")


@dataclass
class CsvTable:
    """A CSV file read as text cells; ``lines[i]`` is the 1-based line of row ``i`` in the file
    (the header is line 1)."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]

    def column(self, name: str) -> list[str]:
        return [r[name] for r in self.rows]

    def where(self, i: int, column: str | None = None) -> str:
        return f"line {self.lines[i]}" + (f", column {column!r}" if column else "")


def read_csv(path: str | os.PathLike, required: Sequence[str] = ()) -> CsvTable:
    """Read a CSV with a header row; cells and names are stripped of surrounding spaces.

    Raises `DataError` if the file is missing or empty, a header name repeats, or a ``required``
    column is absent (naming the missing and the present columns).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty CSV (no header row)")
        columns = [c.strip() for c in header]
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise DataError(f"{path}: repeated column name(s) in the header: {', '.join(dup)}")
        rows, lines = [], []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(columns):
                raise DataError(f"{path}: line {reader.line_num} has {len(cells)} cells, the header has {len(columns)}")
            rows.append({c: v.strip() for c, v in zip(columns, cells)})
            lines.append(reader.line_num)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
                        f"(found: {', '.join(columns)})")
    return CsvTable(path, columns, rows, lines)


def duplicates(ids: Sequence[str], where: Sequence[str], problems: Problems, what: str = "image id") -> None:
    """Add every repeated id (with all the places it occurs) to ``problems``."""
    seen: dict[str, list[int]] = {}
    for i, x in enumerate(ids):
        seen.setdefault(x, []).append(i)
    for x, idx in seen.items():
        if len(idx) > 1:
            problems.add(f"duplicated {what}", f"{x!r} at {', '.join(where[i] for i in idx)}")


def parse_binary(cell: str) -> float | None:
    """'1', '1.0', '0', '0.0' (also true/false) -> 1.0 / 0.0; '' -> NaN; anything else -> None."""
    c = cell.strip().lower()
    if c == "":
        return float("nan")
    if c in ("true", "false"):
        return float(c == "true")
    try:
        v = float(c)
    except ValueError:
        return None
    return v if v in (0.0, 1.0) else None


def parse_onehot(table: CsvTable, columns: Sequence[str], problems: Problems,
                 allow_empty: bool = False) -> np.ndarray:
    """(N,) int64 class index from one-hot 0/1 columns; -1 for rows that are entirely empty (only
    with ``allow_empty``) or invalid (those are added to ``problems``)."""
    out = np.full(len(table.rows), UNLABELED, dtype=np.int64)
    for i, row in enumerate(table.rows):
        vals = []
        for c in columns:
            v = parse_binary(row[c])
            if v is None:
                problems.add("value is not 0 or 1", f"{table.where(i, c)}: {row[c]!r}")
            vals.append(v)
        if any(v is None for v in vals):
            continue
        empty = [np.isnan(v) for v in vals]
        if all(empty) and allow_empty:
            continue
        if any(empty):
            problems.add("empty label cell", f"{table.where(i, columns[empty.index(True)])}")
            continue
        pos = [c for c, v in zip(columns, vals) if v == 1.0]
        if len(pos) != 1:
            problems.add("one-hot row without exactly one positive",
                         f"{table.where(i)}: {len(pos)} positives" + (f" ({', '.join(pos)})" if pos else ""))
            continue
        out[i] = columns.index(pos[0])
    return out


def index_images(folder: Path, extensions: Sequence[str], ignore_suffixes: Sequence[str] = ()) -> dict[str, list[Path]]:
    """Image files directly in ``folder`` by stem (several when one stem has several extensions);
    hidden files and stems ending with one of ``ignore_suffixes`` are left out."""
    out: dict[str, list[Path]] = {}
    with os.scandir(folder) as it:
        for e in it:
            name = e.name
            stem, ext = os.path.splitext(name)
            if name.startswith(".") or ext.lower() not in extensions or not e.is_file():
                continue
            if any(stem.endswith(s) for s in ignore_suffixes):
                continue
            out.setdefault(stem, []).append(Path(e.path))
    for v in out.values():
        v.sort()
    return out


def resolve(index: dict[str, list[Path]], ids: Sequence[str], where: Sequence[str], problems: Problems,
            folder: str | os.PathLike, what: str = "image", hint: str = "") -> list[Path | None]:
    """The file of each id from ``index``; a missing or ambiguous id is added to ``problems``
    (``hint`` is appended to the kind of problem, e.g. how to do without masks)."""
    out: list[Path | None] = []
    for x, w in zip(ids, where):
        found = index.get(x, [])
        if len(found) == 1:
            out.append(found[0])
            continue
        if not found:
            problems.add(f"missing {what} file{hint}", f"{x} ({w}) not in {folder}")
        else:
            problems.add(f"several {what} files for one id", f"{', '.join(p.name for p in found)} ({w})")
        out.append(None)
    return out


def unlisted(index: dict[str, list[Path]], ids: Iterable[str], problems: Problems, csv_name: str) -> None:
    """Image files with no row in the table: an error, so no image is left out silently."""
    listed = set(ids)
    for stem in sorted(set(index) - listed):
        problems.add(f"image file with no row in {csv_name} (pass ignore_unlisted=True to leave such files out)",
                     str(index[stem][0]))


def segmentation_masks(reader: str, options: dict, default_folder: Path | Sequence[Path], ids: list[str],
                       where: list[str], problems: Problems) -> list[Path | None] | None:
    """``<id>_segmentation.png`` for every image, from ``default_folder`` (one folder, or several
    candidate folders: the first that exists) or option ``mask_dir`` (the folder itself, or a folder
    that holds one of the default folders by name).

    Option ``masks``: "auto" (default: use masks when the folder exists; then every image needs
    one), True (required; every image needs one), "available" (every image is kept; an image
    without a mask file gets None here: an all-zero mask and ``has_mask`` False in the data set) or
    False (no masks, returns None).
    """
    use = options.get("masks", "auto")
    if not (use is True or use is False or use in ("auto", "available")):
        raise DataError(f"{reader}: option masks must be 'auto', 'available', true or false, got {use!r}")
    candidates = [default_folder] if isinstance(default_folder, Path) else list(default_folder)
    if options.get("mask_dir"):
        md = Path(options["mask_dir"]).expanduser()
        folder = next((md / c.name for c in candidates if (md / c.name).is_dir()), md)
    else:
        folder = next((c for c in candidates if c.is_dir()), candidates[0])
    if use is False or (use == "auto" and not folder.is_dir()):
        return None
    if not folder.is_dir():
        raise DataError(f"{reader}: masks={'true' if use is True else use} but the mask folder {folder} does not exist")
    index = index_images(folder, (".png",))
    names = [f"{i}_segmentation" for i in ids]
    if use == "available":
        for n, w in zip(names, where):
            if len(index.get(n, [])) > 1:
                problems.add("several mask files for one id", f"{', '.join(p.name for p in index[n])} ({w})")
        return [index[n][0] if len(index.get(n, [])) == 1 else None for n in names]
    missing = sum(n not in index for n in names)
    return resolve(index, names, where, problems, folder, what="mask",
                   hint=f", {missing} of {len(ids)} images (pass masks=available to keep every image and read "
                        f"the masks that exist, or masks=false to read none)")


def empty_classes(targets: np.ndarray, class_names: Sequence[str], task: str) -> list[str]:
    """Names of classes without any labeled example in ``targets`` (none when nothing is labeled)."""
    lab = targets[labeled_mask(targets)]
    if len(lab) == 0:
        return []
    counts = np.bincount(lab, minlength=len(class_names)) if task == "multiclass" else lab.sum(axis=0)
    return [c for c, n in zip(class_names, counts) if n == 0]


def note(message: str, extra: dict | None = None) -> None:
    """Tell the user one line about what a reader did (stderr; also kept in ``extra["notes"]``)."""
    print(message, file=sys.stderr)
    if extra is not None:
        extra.setdefault("notes", []).append(message)


def build_dataset(*, source: str, split: str, ids: Sequence[str], image_paths: Sequence[Path],
                  targets: np.ndarray, class_names: Sequence[str], task: str, image_size: int | None,
                  options: dict, mask_paths: Sequence[Path | None] | None = None,
                  extra: dict | None = None) -> ImageDataset:
    """Check for missing files, duplicated ids and (split ``train``) classes without an image, raise
    them in one `DataError`, then decode every image (and mask) once and return the data set.

    A ``None`` in ``mask_paths`` (option ``masks: available``) is an image without a mask: its mask
    is all zero and ``has_mask`` is False; the count is reported in one line. ``extra`` is merged
    into the data set's ``extra``.
    """

    problems = Problems(source)
    duplicates(list(ids), [str(p) for p in image_paths], problems)
    for p in image_paths:
        if not os.path.isfile(p):
            problems.add("missing image file", str(p))
    for p in mask_paths or ():
        if p is not None and not os.path.isfile(p):
            problems.add("missing mask file", str(p))
    if split == "train":
        for c in empty_classes(targets, class_names, task):
            problems.add("class with no training image", c)
    problems.raise_if_any()
    desc = f"{Path(source).name or source} {split}"
    info = {"split": split, "files": [str(p) for p in image_paths], **(extra or {})}
    has_mask = None
    if mask_paths is not None and any(p is None for p in mask_paths):
        images, masks, has_mask = _decode_some_masks(list(image_paths), list(mask_paths), image_size, options,
                                                     source, desc)
    else:
        images, masks = decode_images(list(image_paths), image_size, list(mask_paths) if mask_paths is not None else None,
                                      source=source, desc=desc, **decode_options(options))
    if mask_paths is not None and options.get("masks") == "available":
        without = sum(p is None for p in mask_paths)
        note(f"{source} {split}: masks=available: {without} of {len(mask_paths)} images have no mask file "
             f"(their masks are all zero and has_mask is False; every image is kept)", info)
    return ImageDataset(images=images, targets=targets, class_names=list(class_names), ids=list(ids), task=task,
                        masks=masks, source=source, extra=info, has_mask=has_mask)


def _decode_some_masks(image_paths: list[Path], mask_paths: list[Path | None], image_size: int | None,
                       options: dict, source: str, desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Two passes of decode_images (with and without masks), put back in order; all-zero masks where none.

    has = np.array([p is not None for p in mask_paths], dtype=bool)
    parts = []
    for flag in (True, False):
        idx = np.flatnonzero(has == flag)
        if len(idx):
            ims, ms = decode_images([image_paths[i] for i in idx], image_size,
                                    [mask_paths[i] for i in idx] if flag else None, source=source,
                                    desc=f"{desc} ({'with' if flag else 'without'} mask)", **decode_options(options))
            parts.append((idx, ims, ms))
    shapes = {ims.shape[1:] for _, ims, _ in parts}
    if len(shapes) > 1:
        raise DataError(f"{source}: the images with a mask are {parts[0][1].shape[2]}x{parts[0][1].shape[1]}, those "
                        f"without {parts[1][1].shape[2]}x{parts[1][1].shape[1]}; set image_size to resize them")
    shape = shapes.pop()
    images = np.empty((len(image_paths), *shape), dtype=np.uint8)
    masks = np.zeros((len(image_paths), *shape[:2]), dtype=np.uint8)
    for idx, ims, ms in parts:
        images[idx] = ims
        if ms is not None:
            masks[idx] = ms
    return images, masks, has
