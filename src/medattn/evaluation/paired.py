"""Two runs on the same images: how much one changes the other's AUCs, with paired intervals.

An ablation cell and its full model, or two methods, scored on one test split share every image, so
the interval of their difference should come from resampling the images once for both (a paired
bootstrap), not from the two runs' separate intervals, which overlap far more often than the
difference is in doubt. This is the same statistic as a robustness condition (clean = the reference
run, perturbed = the other run), so it reuses those intervals.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.dataset import UNLABELED
from .ensemble import aligned_predictions
from .robustness_intervals import condition_intervals


def compare_runs(reference: str | Path, other: str | Path, split: str = "test", tta: str = "none",
                 n_boot: int = 1000, seed: int = 0) -> dict:
    """``other`` minus ``reference`` on ``split`` (rows matched by image id).

    Returns ``{"n": images, "disagreement": {...}, "delta.macro_auc": {...}}`` plus
    ``"delta.isic2017.mean_auc"`` for the ISIC 2017 classes, each ``{"value", "ci95": [low, high]}``
    (95% paired percentile bootstrap over images); ``disagreement`` is the share of images whose
    predicted class (multi-label: any label at 0.5) differs between the runs.
    """
    first, (ref, oth), class_names = aligned_predictions([reference, other], split, tta)
    if first.task == "multilabel":
        targets = first.onehot
    else:
        targets = np.where(first.labeled, first.onehot.argmax(axis=1), UNLABELED)
    stats = condition_intervals(targets, ref, oth, first.task, class_names, n_boot=n_boot, seed=seed)
    return {"n": int(first.labeled.sum()), "disagreement": stats.pop("flip_fraction"), **stats}
