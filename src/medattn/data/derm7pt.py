"""derm7pt reader: the 7-point checklist criteria of Kawahara et al.'s data set, dermoscopic images.

Layout: ``ROOT/meta/meta.csv`` (one row per case: ``diagnosis``, the seven criteria, ``derm``: the
image path relative to ``ROOT/images/``), optional ``ROOT/splits/*_indexes_filtered.csv`` (Derm7pt+)
and ``ROOT/meta/{train,valid,test}_indexes.csv`` (the original release). Tasks (option ``task``):

- ``criteria`` (default, multi-label): one 0/1 label per criterion, 1 where the criterion shows its
  melanoma-indicative level (`CRITERIA`, with every level's mapping);
- ``levels`` (multi-label): one label per level of every criterion, one-hot within a criterion
  (``group_infrequent``, default true: Kawahara et al.'s grouped levels);
- ``diagnosis`` (multi-class): Kawahara et al.'s five groups (`DIAGNOSIS_GROUPS`), or their 15
  classes with ``group_infrequent: false``; ``melanoma``: classes [other, melanoma].

Mappings follow the public derm7pt code (github.com/jeremykawahara/derm7pt, ``derm7pt/dataset.py``:
``Derm7PtDataset`` scores and ``Derm7PtDatasetGroupInfrequent`` groups); docs/data.md lists them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._common import (CsvTable, Problems, build_dataset, check_options, check_split, duplicates, empty_classes, note, read_csv,
                      require_dir)
from .split_files import rows_from_split_file, split_record
from ._registry import DataError, register_reader
from .dataset import ImageDataset
from .io import IMAGE_EXTENSIONS
from .splits import stratified_split


@dataclass(frozen=True)
class Criterion:
    """One checklist criterion: its meta.csv column, the name of its binary label, whether it is
    major (2 points) or minor (1 point), and per level (as spelt in meta.csv) Kawahara et al.'s
    grouped level and whether the level is melanoma-indicative (scores in the checklist)."""

    column: str
    label: str
    major: bool
    levels: dict[str, tuple[str, bool]]


CRITERIA = (
    Criterion("pigment_network", "atypical_pigment_network", True,
              {"absent": ("absent", False), "typical": ("typical", False), "atypical": ("atypical", True)}),
    Criterion("blue_whitish_veil", "blue_whitish_veil", True,
              {"absent": ("absent", False), "present": ("present", True)}),
    Criterion("vascular_structures", "atypical_vascular_pattern", True,
              {"absent": ("absent", False), "arborizing": ("regular", False), "comma": ("regular", False),
               "hairpin": ("regular", False), "within regression": ("regular", False), "wreath": ("regular", False),
               "dotted": ("irregular", True), "linear irregular": ("irregular", True)}),
    Criterion("streaks", "irregular_streaks", False,
              {"absent": ("absent", False), "regular": ("regular", False), "irregular": ("irregular", True)}),
    Criterion("pigmentation", "irregular_pigmentation", False,
              {"absent": ("absent", False), "diffuse regular": ("regular", False),
               "localized regular": ("regular", False), "diffuse irregular": ("irregular", True),
               "localized irregular": ("irregular", True)}),
    Criterion("dots_and_globules", "irregular_dots_and_globules", False,
              {"absent": ("absent", False), "regular": ("regular", False), "irregular": ("irregular", True)}),
    Criterion("regression_structures", "regression_structures", False,
              {"absent": ("absent", False), "blue areas": ("present", True), "white areas": ("present", True),
               "combinations": ("present", True)}),
)
"""The seven criteria, majors first (Argenziano et al. 1998; levels and scores as derm7pt's code)."""

DIAGNOSES = {
    "BCC": ["basal cell carcinoma"], "BLN": ["blue nevus"], "CN": ["clark nevus"], "CBN": ["combined nevus"],
    "CGN": ["congenital nevus"], "DN": ["dermal nevus"], "DF": ["dermatofibroma"], "LT": ["lentigo"],
    "MEL": ["melanoma", "melanoma (in situ)", "melanoma (less than 0.76 mm)", "melanoma (0.76 to 1.5 mm)",
            "melanoma (more than 1.5 mm)", "melanoma metastasis"],
    "MLS": ["melanosis"], "MISC": ["miscellaneous"], "RN": ["recurrent nevus"], "RSN": ["reed or spitz nevus"],
    "SK": ["seborrheic keratosis"], "VL": ["vascular lesion"],
}
"""Kawahara et al.'s 15 diagnosis classes (``Derm7PtDataset.diagnosis``) and the meta.csv labels of each."""

DIAGNOSIS_GROUPS = {
    "BCC": ["BCC"], "NEV": ["BLN", "CN", "CBN", "CGN", "DN", "RN", "RSN"], "MEL": ["MEL"],
    "MISC": ["DF", "LT", "MLS", "MISC", "VL"], "SK": ["SK"],
}
"""Their five groups (``Derm7PtDatasetGroupInfrequent.diagnosis``), in their order."""

TASKS = ("criteria", "levels", "diagnosis", "melanoma")
SPLIT_SCHEMES = {"stratified": None, "asymmetric": "splits/asymmetric_{}_indexes_filtered.csv",
                 "symmetric": "splits/symmetric_{}_indexes_filtered.csv", "official": "meta/{}_indexes.csv"}
INDEX_FILE_SPLIT = {"train": "train", "val": "valid", "test": "test"}
SEVEN_POINT_THRESHOLD = 3
"""A 7-point score of 3 or more suggests melanoma (Argenziano et al. 1998)."""


def normalise_level(cell: str) -> str:
    """'Diffuse_Irregular ' -> 'diffuse irregular' (Derm7pt+ documents underscores, meta.csv has spaces)."""
    return " ".join(cell.strip().lower().replace("_", " ").split())


def seven_point_weights(major_weight: float = 2.0, minor_weight: float = 1.0) -> np.ndarray:
    """(7,) points of the `CRITERIA` labels, in their order: ``major_weight`` for the three major
    criteria, ``minor_weight`` for the four minor ones."""
    return np.array([major_weight if c.major else minor_weight for c in CRITERIA], dtype=np.float64)


def seven_point_score(criteria: np.ndarray, major_weight: float = 2.0, minor_weight: float = 1.0) -> np.ndarray:
    """7-point checklist score: (N, 7) 0/1 flags (or probabilities) of the ``criteria`` task ->
    (N,) sum of their points. ``score >= SEVEN_POINT_THRESHOLD`` suggests melanoma."""
    criteria = np.asarray(criteria, dtype=np.float64)
    if criteria.ndim != 2 or criteria.shape[1] != len(CRITERIA):
        raise ValueError(f"criteria must be N x {len(CRITERIA)} (the criteria task's labels), got {criteria.shape}")
    return criteria @ seven_point_weights(major_weight, minor_weight)


def level_names(group_infrequent: bool = True) -> list[str]:
    """Label names of the ``levels`` task: ``<column>:<level>`` for every criterion and level."""
    out = []
    for c in CRITERIA:
        levels = [g for g, _ in c.levels.values()] if group_infrequent else list(c.levels)
        out += [f"{c.column}:{lv}" for lv in dict.fromkeys(levels)]
    return out


def _targets(table: CsvTable, task: str, group: bool, problems: Problems) -> tuple[np.ndarray, list[str]]:
    """Targets of every row for ``task`` (criteria / levels: (N, K) float32; diagnosis / melanoma: (N,) int64)."""
    n = len(table.rows)
    if task in ("diagnosis", "melanoma"):
        classes = list(DIAGNOSIS_GROUPS) if group else list(DIAGNOSES)
        of_label = {lab: code for code, labels in DIAGNOSES.items() for lab in labels}
        group_of = {m: g for g, members in DIAGNOSIS_GROUPS.items() for m in members}
        out = np.full(n, -1, dtype=np.int64)
        for i, row in enumerate(table.rows):
            code = of_label.get(normalise_level(row["diagnosis"]))
            if code is None:
                problems.add(f"unknown diagnosis (expected one of {', '.join(sorted(of_label))})",
                             f"{table.where(i, 'diagnosis')}: {row['diagnosis']!r}")
            elif task == "melanoma":
                out[i] = int(code == "MEL")
            else:
                out[i] = classes.index(group_of[code] if group else code)
        return out, (["other", "melanoma"] if task == "melanoma" else classes)
    names = [c.label for c in CRITERIA] if task == "criteria" else level_names(group)
    out = np.zeros((n, len(names)), dtype=np.float32)
    for i, row in enumerate(table.rows):
        for k, c in enumerate(CRITERIA):
            level = normalise_level(row[c.column])
            if level not in c.levels:
                problems.add(f"unknown level of {c.column} (expected one of {', '.join(c.levels)})",
                             f"{table.where(i, c.column)}: {row[c.column]!r}")
                out[i] = np.nan
                continue
            grouped, indicative = c.levels[level]
            if task == "criteria":
                out[i, k] = float(indicative)
            else:
                out[i, names.index(f"{c.column}:{grouped if group else level}")] = 1.0
    return out, names


def match_files(images: Path, table: CsvTable, column: str, problems: Problems,
                info: dict) -> list[Path | None]:
    """The image of every row's ``column`` path (relative to ``images``), matched case-insensitively
    (derm7pt names ``FCl/Fcl068.jpg`` for the file ``FCL/Fcl068.jpg``; file-name case is mixed
    elsewhere). A path that matches two files case-insensitively is an error, never a guess; the
    rows matched with another case are reported in one line and in ``info["case_matched"]``."""
    by_lower: dict[str, list[str]] = {}
    for d, _, files in os.walk(images):
        for f in files:
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                rel = os.path.relpath(os.path.join(d, f), images).replace(os.sep, "/")
                by_lower.setdefault(rel.lower(), []).append(rel)
    out: list[Path | None] = []
    fixed = []
    for i, row in enumerate(table.rows):
        given = row[column].replace("\\", "/")
        found = by_lower.get(given.lower(), [])
        if len(found) != 1:
            kind = "image file not found" if not found else "several files match one path case-insensitively"
            problems.add(f"{kind} in {images}", f"{table.where(i, column)}: {given!r}"
                         + (f" ({', '.join(sorted(found))})" if found else ""))
            out.append(None)
            continue
        if found[0] != given:
            fixed.append({"row": i, "given": given, "file": found[0]})
        out.append(images / found[0])
    if fixed:
        info["case_matched"] = fixed
        note(f"derm7pt: {len(fixed)} row(s) name their image in another letter case and were matched "
             f"case-insensitively (e.g. {fixed[0]['given']} -> {fixed[0]['file']})", info)
    return out


def _unlisted(images: Path, table: CsvTable, paths: list[Path | None], problems: Problems) -> None:
    # An image below images/ that no row names (derm, or clinic in the original release) is an error.
    named = {str(p).lower() for p in paths if p is not None}
    if "clinic" in table.columns:
        named |= {str(images / c).lower() for c in table.column("clinic") if c}
    for d, _, files in os.walk(images):
        for f in sorted(files):
            p = os.path.join(d, f)
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS and p.lower() not in named:
                problems.add("image file with no row in meta.csv (pass ignore_unlisted=True to leave such files out)", p)


def _parts(root: Path, table: CsvTable, ids: list[str], options: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Rows of train / val / test and the protocol that made them."""
    scheme = options.get("split_scheme", "stratified")
    if options.get("split_file"):
        return rows_from_split_file(options["split_file"], "derm7pt", ids), {"split_file": str(options["split_file"])}
    if scheme not in SPLIT_SCHEMES:
        raise DataError(f"derm7pt: option split_scheme must be one of {', '.join(SPLIT_SCHEMES)}, got {scheme!r}")
    if scheme == "stratified":
        fractions = {"val": float(options.get("val_fraction", 0.2)), "test": float(options.get("test_fraction", 0.4))}
        seed = int(options.get("seed", 0))
        diagnosis = [normalise_level(d) for d in table.column("diagnosis")]
        return stratified_split(diagnosis, fractions, seed), {"stratify": "diagnosis", "val_fraction": fractions["val"],
                                                              "test_fraction": fractions["test"], "seed": seed}
    parts = {}
    for name, word in INDEX_FILE_SPLIT.items():
        path = root / SPLIT_SCHEMES[scheme].format(word)
        index = read_csv(path, ["indexes"])
        rows = []
        for i, cell in enumerate(index.column("indexes")):
            if not cell.isdigit() or int(cell) >= len(ids):
                raise DataError(f"{path}: {index.where(i, 'indexes')}: {cell!r} is not a row of meta.csv "
                                f"(0 to {len(ids) - 1})")
            rows.append(int(cell))
        parts[name] = np.array(sorted(rows), dtype=np.int64)
    seen = np.concatenate(list(parts.values()))
    if len(set(seen.tolist())) != len(seen):
        raise DataError(f"derm7pt: split_scheme {scheme}: a row is in two of the index files {SPLIT_SCHEMES[scheme]}")
    return parts, {"index_files": SPLIT_SCHEMES[scheme].format("{train,valid,test}")}


@register_reader("derm7pt")
def read_derm7pt(root: str, split: str, image_size: int | None, **options) -> ImageDataset:
    """derm7pt dermoscopic images with the 7-point checklist (see the module docstring and docs/data.md).

    Options: ``task`` (criteria | levels | diagnosis | melanoma), ``group_infrequent`` (true),
    ``major_weight`` (2) and ``minor_weight`` (1) of the 7-point score (kept in
    ``extra["seven_point_weights"]``), ``split_scheme``: "stratified" (default: by diagnosis,
    ``val_fraction`` 0.2, ``test_fraction`` 0.4, ``seed`` 0, about the proportions of the
    Derm7pt+ splits), "asymmetric" / "symmetric" (Derm7pt+ filtered subsets, ``splits/``) or
    "official" (``meta/*_indexes.csv`` of the original release); ``split_file`` (a saved
    ``splits.json``); ``ignore_unlisted``. ``extra["splits"]`` holds every split's ids and rows.
    """
    check_options("derm7pt", options, ("task", "group_infrequent", "major_weight", "minor_weight", "split_scheme",
                                       "val_fraction", "test_fraction", "seed", "split_file", "ignore_unlisted"))
    root = require_dir(root, "derm7pt")
    check_split("derm7pt", split, ("train", "val", "test"))
    task = options.get("task", "criteria")
    if task not in TASKS:
        raise DataError(f"derm7pt: option task must be one of {', '.join(TASKS)}, got {task!r}")
    table = read_csv(root / "meta" / "meta.csv", ["diagnosis", "derm", *(c.column for c in CRITERIA)])
    problems = Problems(table.path)
    targets, class_names = _targets(table, task, bool(options.get("group_infrequent", True)), problems)
    images = root / "images"
    if not images.is_dir():
        raise DataError(f"derm7pt: image folder {images} does not exist")
    info: dict = {}
    paths = match_files(images, table, "derm", problems, info)
    if not options.get("ignore_unlisted", False):
        _unlisted(images, table, paths, problems)
    problems.raise_if_any()
    ids = [Path(p).stem for p in paths]
    duplicates(ids, [f"{table.where(i, 'derm')} ({paths[i]})" for i in range(len(ids))], problems,
               what="image id (file name without extension)")
    problems.raise_if_any()
    parts, protocol = _parts(root, table, ids, options)
    check_split("derm7pt", split, parts)
    rows = parts[split]
    empty = empty_classes(targets[rows], class_names, "multilabel" if targets.ndim == 2 else "multiclass")
    if split == "train" and empty:
        raise DataError(f"derm7pt: label(s) with no training image under split_scheme "
                        f"{options.get('split_scheme', 'stratified')}: {', '.join(empty)}"
                        + ("; pass group_infrequent=true to group the rare levels as Kawahara et al."
                           if task == "levels" and options.get("group_infrequent") is False else ""))
    weights = seven_point_weights(float(options.get("major_weight", 2.0)), float(options.get("minor_weight", 1.0)))
    info.update(splits=split_record("derm7pt", ids, parts, **protocol), seven_point_weights=weights.tolist(),
                seven_point_threshold=SEVEN_POINT_THRESHOLD)
    if task == "criteria":  # the diagnosis beside the criteria: the checklist's melanoma decision is scored
        melanoma, _ = _targets(table, "melanoma", True, problems)
        info["melanoma"] = melanoma[rows].tolist()
    return build_dataset(source=str(root), split=split, ids=[ids[i] for i in rows], image_paths=[paths[i] for i in rows],
                         targets=targets[rows], class_names=class_names,
                         task="multilabel" if task in ("criteria", "levels") else "multiclass",
                         image_size=image_size, options=options, extra=info)
