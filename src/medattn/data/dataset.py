"""The in-memory data set every reader returns and every command consumes.

Small medical data sets (a few thousand images at 128-448 px) fit in memory as uint8. Decoding and
resizing happen once, in the reader; augmentation runs on whole batches in torch
(`medattn.data.transforms`), so a 2-core machine does not spend its epochs decoding JPEGs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Task = Literal["multiclass", "multilabel"]

UNLABELED = -1
"""Target of an unlabeled image in a multi-class set (multi-label sets use a row of NaN)."""


def labeled_mask(targets):
    """(N,) bool: which rows of ``targets`` carry a label, for numpy arrays and torch tensors alike:
    (N,) class indices with ``UNLABELED`` (-1), or (N, K) 0/1 with a row of NaN for an unlabeled image."""
    if targets.ndim == 1:
        return targets >= 0
    return ~(targets != targets).any(1)  # x != x only for NaN


@dataclass
class ImageDataset:
    """Decoded images, targets and optional lesion masks of one split.

    Attributes:
        images: N x H x W x 3 uint8, RGB.
        targets: multiclass: (N,) int64 class index, ``UNLABELED`` (-1) for unlabeled images;
            multilabel: (N, K) float32 of 0/1, a row of NaN for unlabeled images.
        class_names: K names, in the order of the target columns / indices.
        ids: N image ids (file stem or the id column of the CSV), unique.
        task: "multiclass" or "multilabel".
        masks: optional N x H x W uint8 lesion masks (0 background, 255 or 1 lesion); for
            multi-label sets with one mask per class: N x K x H x W.
        source: where the data came from (folder or CSV), for messages.
        extra: reader-specific facts about the split (``split``, ``files``, ``splits``: the ids of
            every split of the protocol, see `medattn.data.split_files.split_record`; ``notes``).
        has_mask: (N,) bool, which images have a real lesion mask, set whenever ``masks`` is
            (False only with the readers' ``masks: available``, whose images without a mask file
            get an all-zero mask). Mask-based scores must leave the False rows out; classification
            scores use every image. None when there are no masks.
    """

    images: np.ndarray
    targets: np.ndarray
    class_names: list[str]
    ids: list[str]
    task: Task = "multiclass"
    masks: np.ndarray | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
    has_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be N x H x W x 3 uint8, got {self.images.shape} {self.images.dtype}")
        if len(self.targets) != n or len(self.ids) != n:
            raise ValueError(f"{n} images but {len(self.targets)} targets and {len(self.ids)} ids")
        if self.masks is not None and len(self.masks) != n:
            raise ValueError(f"{n} images but {len(self.masks)} masks")
        if self.masks is None:
            if self.has_mask is not None:
                raise ValueError("has_mask is given but there are no masks")
        else:
            self.has_mask = (np.ones(n, dtype=bool) if self.has_mask is None
                             else np.asarray(self.has_mask, dtype=bool))
            if self.has_mask.shape != (n,):
                raise ValueError(f"{n} images but has_mask of shape {self.has_mask.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def labeled(self) -> np.ndarray:
        """(N,) bool: which images carry a label."""
        return labeled_mask(self.targets)

    def class_counts(self) -> np.ndarray:
        """(K,) number of labeled images of each class (positives per label for multi-label)."""
        lab = self.labeled
        if self.task == "multiclass":
            return np.bincount(self.targets[lab], minlength=self.num_classes)
        return self.targets[lab].sum(axis=0).astype(np.int64)

    def onehot(self) -> np.ndarray:
        """(N, K) float64 targets as 0/1 columns (multi-class: one-hot)."""
        if self.task == "multilabel":
            return self.targets.astype(np.float64)
        out = np.zeros((len(self), self.num_classes))
        lab = self.labeled
        out[np.flatnonzero(lab), self.targets[lab]] = 1.0
        return out

    def subset(self, index: np.ndarray) -> "ImageDataset":
        """The images at ``index`` (int array or bool mask), as a new data set."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return ImageDataset(
            images=self.images[index],
            targets=self.targets[index],
            class_names=list(self.class_names),
            ids=[self.ids[i] for i in index],
            task=self.task,
            masks=None if self.masks is None else self.masks[index],
            source=self.source,
            extra=dict(self.extra),
            has_mask=None if self.has_mask is None else self.has_mask[index],
        )
