"""Decision thresholds chosen on another split, for the metrics that need a threshold.

F1, recall and precision of an imbalanced multi-class softmax at its argmax (or at 0.5) say little:
ISIC 2017's melanoma probability rarely tops the other two. As the BIIGMA-Net and ISIC papers report
them, each class is a "class vs rest" task whose threshold is chosen on the validation split, by F1
or by Youden's J (sensitivity + specificity - 1, the same argmax as balanced accuracy), then applied
unchanged to the test split. The threshold-free AUC and AP are unaffected.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .classification import as_labels, best_threshold, binary_tasks_metrics

RULES = {"f1": "f1", "youden": "balanced_accuracy"}


def class_thresholds(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str], rule: str = "f1") -> dict[str, float]:
    """{class: threshold} maximising ``rule`` ("f1" or "youden") of each class vs rest on these data
    (rule: positive if p(class) > threshold). A class without positives here keeps 0.5."""
    if rule not in RULES:
        raise ValueError(f"threshold rule must be one of {', '.join(RULES)}, got {rule!r}")
    p = np.asarray(y_prob, dtype=np.float64)
    y = as_labels(np.asarray(y_true), p.shape[1])
    out = {}
    for c, name in enumerate(class_names):
        truth = y == c
        out[name] = best_threshold(truth, p[:, c], metric=RULES[rule]) if truth.any() and not truth.all() else 0.5
    return out


def metrics_at_thresholds(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str],
                          thresholds: dict[str, float], rule: str, split: str) -> dict:
    """Each class vs rest at its chosen threshold (F1, recall, precision, specificity, ...), and their
    macro means: {"rule", "split", "per_class": {class: {...}}, "macro_f1", "macro_recall", "macro_precision"}."""
    p = np.asarray(y_prob, dtype=np.float64)
    y = as_labels(np.asarray(y_true), p.shape[1])
    names = list(class_names)
    per_class = binary_tasks_metrics(y[:, None] == np.arange(len(names)), p, names, thresholds)
    per_class.pop("mean_auc")
    out = {"rule": rule, "split": split, "per_class": per_class}
    for m in ("f1", "recall", "precision", "specificity"):
        out[f"macro_{m}"] = float(np.mean([per_class[c][m] for c in names]))
    return out
