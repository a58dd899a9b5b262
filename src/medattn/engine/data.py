"""The data a training run needs, read from its config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..data import DataError, ImageDataset, load_split


@dataclass
class RunData:
    train: ImageDataset
    val: ImageDataset
    unlabeled: ImageDataset | None = None
    tests: dict[str, ImageDataset] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    @property
    def task(self) -> str:
        return self.train.task


def read_split(cfg: Config, split: str) -> ImageDataset:
    """Split ``split`` of the data ``cfg.data`` describes."""
    d = cfg.data
    return load_split(d.format, d.root, split, d.image_size, **d.options)


def read_unlabeled(path: str, image_size: int, data_format: str | None = None) -> ImageDataset:
    """Unlabeled images: a folder of images (any depth) or a CSV without label columns."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"unlabeled data {p} does not exist")
    if data_format is None:
        data_format = "csv" if p.is_file() else "image_dir"
    if data_format == "image_dir":
        from ..data.unlabeled import read_image_dir

        return read_image_dir(p, image_size)
    options = {"csv": str(p)} if data_format == "csv" else {}
    return load_split(data_format, str(p.parent) if p.is_file() else str(p), "train", image_size, **options)


def read_run_data(cfg: Config) -> RunData:
    """Train and validation splits (and unlabeled images), validated before any training starts."""
    d = cfg.data
    train = read_split(cfg, d.train_split)
    val = read_split(cfg, d.val_split)
    if train.class_names != val.class_names:
        raise DataError(f"train and val splits have different classes: {train.class_names} vs {val.class_names}")
    counts = train.class_counts()
    empty = [c for c, n in zip(train.class_names, counts) if n == 0]
    if empty:
        raise DataError(f"{train.source or d.format}: class(es) with no training image: {', '.join(empty)}")
    unlabeled = None
    if d.unlabeled:
        unlabeled = read_unlabeled(d.unlabeled, d.image_size, d.unlabeled_format)
    tests = {}
    for split in d.test_splits:  # read now: a missing test image must not wait for the end of training
        tests[split] = val if split == d.val_split else read_split(cfg, split)
        if tests[split].class_names != train.class_names:
            raise DataError(f"the {split} split's classes {tests[split].class_names} differ from train's "
                            f"{train.class_names}")
    return RunData(train, val, unlabeled, tests)


def class_weights(dataset: ImageDataset) -> torch.Tensor:
    """Multi-class: inverse class frequency normalised to mean 1, (K,).
    Multi-label: negatives / positives per label (BCE ``pos_weight``), (K,)."""
    counts = dataset.class_counts().astype(np.float64)
    if dataset.task == "multilabel":
        n = dataset.labeled.sum()
        return torch.tensor((n - counts) / np.maximum(counts, 1), dtype=torch.float32)
    w = counts.sum() / (len(counts) * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32)
