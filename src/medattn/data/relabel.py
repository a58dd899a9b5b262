"""Scoring a model on another data set's classes: map each of its classes to one of the model's.

Cross-dataset evaluation (an ISIC 2017 model on HAM10000, or back) needs the target set's labels in
the model's classes: ``mel=melanoma,bkl=seborrheic_keratosis,nv=nevus``. A class mapped to nothing
is left out, and the count of left-out images per class is returned so that it can be reported.
``*=CLASS`` maps every class not named to CLASS: ``mel=melanoma,*=nevus`` scores melanoma against
everything else.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from .dataset import ImageDataset


def parse_class_map(text: str) -> dict[str, str]:
    """``"a=x,b=y,*=z"`` -> {"a": "x", "b": "y", "*": "z"} (one clear error for a malformed entry)."""
    out: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        source, sep, target = (s.strip() for s in item.partition("="))
        if not sep or not source or not target:
            raise ConfigError(f"--map-classes: {item!r} is not SOURCE=TARGET (e.g. mel=melanoma,bkl=seborrheic_keratosis)")
        if source in out:
            raise ConfigError(f"--map-classes: {source!r} is mapped twice")
        out[source] = target
    if not out:
        raise ConfigError("--map-classes: no SOURCE=TARGET pair given")
    return out


def relabel(dataset: ImageDataset, mapping: dict[str, str], class_names: list[str]) -> tuple[ImageDataset, dict[str, int]]:
    """``dataset`` with its labels in ``class_names`` by ``mapping`` (multi-class), and {source class:
    images left out} for the classes mapped to nothing (unlabeled images are kept as they are)."""
    if dataset.task != "multiclass":
        raise DataError(f"--map-classes maps multi-class labels; {dataset.source or 'the split'} is {dataset.task}")
    unknown = sorted(set(mapping) - set(dataset.class_names) - {"*"})
    if unknown:
        raise ConfigError(f"--map-classes: {', '.join(map(repr, unknown))} not among the split's classes "
                          f"{dataset.class_names}")
    wrong = sorted({t for t in mapping.values() if t not in class_names})
    if wrong:
        raise ConfigError(f"--map-classes: {', '.join(map(repr, wrong))} not among the model's classes {class_names}")
    new_index = np.full(len(dataset.class_names), -2, np.int64)  # -2: left out
    for k, name in enumerate(dataset.class_names):
        target = mapping.get(name, mapping.get("*"))
        if target is not None:
            new_index[k] = class_names.index(target)
    targets = np.asarray(dataset.targets)
    mapped = np.where(targets >= 0, new_index[np.maximum(targets, 0)], targets)
    keep = mapped != -2
    left_out = {name: int(((targets == k) & ~keep).sum()) for k, name in enumerate(dataset.class_names)
                if new_index[k] == -2}
    out = dataset.subset(keep)
    out.targets = mapped[keep]
    out.class_names = list(class_names)
    out.extra = {**out.extra, "class_map": dict(mapping), "left_out": left_out}
    return out, left_out
