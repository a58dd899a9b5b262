"""Tiny on-disk data sets in each reader's layout, for the data tests (not a test module)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size: tuple[int, int] = (12, 10), colour: tuple[int, int, int] | None = None,
                seed: int = 0, mode: str = "RGB") -> np.ndarray:
    """Write a (width, height) image (random pixels unless ``colour``); returns its H x W x 3 array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if colour is None:
        a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        a = np.broadcast_to(np.array(colour, dtype=np.uint8), (h, w, 3)).copy()
    img = Image.fromarray(a)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return a


def write_mask(path: Path, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    m = np.zeros((h, w), dtype=np.uint8)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    Image.fromarray(m).save(path)
    return m


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def make_isic2017(root: Path, labels: dict[str, list[tuple[int, int]]], masks: bool = False,
                  ext: str = ".jpg") -> dict[str, list[str]]:
    """ISIC 2017 layout; ``labels[part]`` = [(melanoma, sk), ...] for part Training/Validation/Test_v2.
    Writes a ``*_superpixels.png`` beside every image. Returns the ids per part."""
    ids = {}
    n = 0
    for part, rows in labels.items():
        ids[part] = []
        for mel, sk in rows:
            i = f"ISIC_{n:07d}"
            n += 1
            ids[part].append(i)
            write_image(root / f"ISIC-2017_{part}_Data" / f"{i}{ext}", seed=n)
            write_image(root / f"ISIC-2017_{part}_Data" / f"{i}_superpixels.png", seed=n + 1000)
            if masks:
                write_mask(root / f"ISIC-2017_{part}_Part1_GroundTruth" / f"{i}_segmentation.png")
        write_csv(root / f"ISIC-2017_{part}_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"],
                  [[i, f"{m:.1f}", f"{s:.1f}"] for i, (m, s) in zip(ids[part], rows)])
    return ids


def make_isic2018(root: Path, part: str, classes: list[str], labels: list[int], csv_in_folder: bool = True,
                  masks: bool = False, start: int = 0) -> list[str]:
    ids = [f"ISIC_{start + k:07d}" for k in range(len(labels))]
    for k, i in enumerate(ids):
        write_image(root / f"ISIC2018_Task3_{part}_Input" / f"{i}.jpg", seed=start + k)
        if masks:
            write_mask(root / f"ISIC2018_Task1_{part}_GroundTruth" / f"{i}_segmentation.png")
    name = f"ISIC2018_Task3_{part}_GroundTruth"
    path = root / name / f"{name}.csv" if csv_in_folder else root / f"{name}.csv"
    write_csv(path, ["image", *classes], [[i, *[f"{float(c == y):.1f}" for c in range(len(classes))]]
                                          for i, y in zip(ids, labels)])
    return ids


def make_ham(root: Path, lesions: list[tuple[str, int]], folders: tuple[str, ...] = ("HAM10000_images_part_1",
             "HAM10000_images_part_2"), mask_folder: str | None = None) -> list[list]:
    """``lesions`` = [(dx, number of images)]; images alternate between ``folders``; a mask per
    image in ``mask_folder`` when given. Returns the rows."""
    rows = []
    for li, (dx, k) in enumerate(lesions):
        for _ in range(k):
            i = f"ISIC_{len(rows):07d}"
            rows.append([f"HAM_{li:07d}", i, dx, "histo", 50, "male", "back", "vidir_modern"])
            write_image(root / folders[len(rows) % len(folders)] / f"{i}.jpg", size=(8, 6), seed=len(rows))
            if mask_folder:
                write_mask(root / mask_folder / f"{i}_segmentation.png", size=(8, 6))
    write_csv(root / "HAM10000_metadata.csv",
              ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"], rows)
    return rows


def make_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (8, 8), start: int = 0) -> list[Path]:
    paths = []
    for c, k in counts.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for j in range(k):
            p = root / c / f"{c}_{start + j:03d}.png"
            write_image(p, size=size, seed=start + j + 100 * len(paths))
            paths.append(p)
    return paths


DERM7PT_COLUMNS = ["diagnosis", "pigment_network", "streaks", "pigmentation", "regression_structures",
                   "dots_and_globules", "blue_whitish_veil", "vascular_structures", "derm"]


def make_derm7pt(root: Path, cases: list[dict], splits: dict[str, dict[str, list[int]]] | None = None) -> list[list]:
    """derm7pt layout: ``cases`` = [{column: value, "derm": path, "file": path on disk (default the
    derm path)}]; criteria not given are "absent", diagnosis "clark nevus". ``splits[scheme][word]``
    = rows for ``splits/<scheme>_<word>_indexes_filtered.csv``. Returns the meta.csv rows."""
    rows = []
    for k, case in enumerate(cases):
        row = [case.get(c, "absent" if c not in ("diagnosis", "derm") else "clark nevus") for c in DERM7PT_COLUMNS[:-1]]
        rows.append([*row, case["derm"]])
        write_image(root / "images" / case.get("file", case["derm"]), size=(10, 10), seed=k)
    write_csv(root / "meta" / "meta.csv", DERM7PT_COLUMNS, rows)
    for scheme, words in (splits or {}).items():
        for word, idx in words.items():
            write_csv(root / "splits" / f"{scheme}_{word}_indexes_filtered.csv", ["indexes"], [[i] for i in idx])
    return rows
