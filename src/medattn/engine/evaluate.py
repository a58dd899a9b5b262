"""Metrics of a set of predictions, with the names design.md gives, and the prediction CSV."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..data.dataset import ImageDataset, labeled_mask
from ..metrics.bootstrap import bootstrap_ci
from ..metrics.classification import classification_metrics, isic2017_task_metrics
from ..metrics.multilabel import multilabel_metrics

_ISIC2017 = {"melanoma", "seborrheic_keratosis"}


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str], task: str,
                    thresholds: np.ndarray | float = 0.5) -> dict:
    """Every metric of one split. ``y_true``: (N,) class indices or (N, K) 0/1; ``probs``: (N, K).

    Multi-class sets get the ISIC challenge metrics; a 3-class ISIC 2017 set also gets the two binary
    tasks (melanoma vs rest, SK vs rest) under ``isic2017``. Multi-label sets get CP/CR/CF1/OP/OR/OF1
    and mAP. Unlabeled rows (target -1, or a row of NaN) are left out.
    """
    y_true, probs = _labeled_rows(y_true, probs, task)
    if task == "multilabel":
        return multilabel_metrics(y_true, probs, thresholds=thresholds, class_names=class_names)
    out = classification_metrics(y_true, probs, class_names)
    if _ISIC2017 <= set(class_names):
        out["isic2017"] = isic2017_task_metrics(y_true, probs, class_names)
    return out


def _labeled_rows(y_true: np.ndarray, probs: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    # A split may hold unlabeled images (a CSV with empty label cells); they have no truth to score.
    lab = labeled_mask(np.asarray(y_true))
    return (y_true, probs) if lab.all() else (np.asarray(y_true)[lab], np.asarray(probs)[lab])


def lookup_metric(metrics: dict, name: str):
    """The value of a (possibly dotted) metric name, e.g. ``isic2017.mean_auc``; None where a part is missing."""
    node = metrics
    for part in name.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def metric_value(metrics: dict, name: str) -> float:
    """``lookup_metric`` as a float; a KeyError naming the available metrics where it is missing."""
    value = lookup_metric(metrics, name)
    if value is None:
        raise KeyError(f"metric {name!r} not available; top-level metrics: {', '.join(sorted(metrics))}")
    return float(value)


HEADLINE = {
    "multiclass": ["balanced_accuracy", "accuracy", "macro_f1", "macro_auc", "macro_ap"],
    "multilabel": ["map", "cf1", "of1", "cp", "cr", "op", "or", "macro_auc"],
}


def with_confidence_intervals(metrics: dict, y_true: np.ndarray, probs: np.ndarray, class_names: list[str],
                              task: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Add ``ci95`` = {metric: [low, high]} for the headline metrics (percentile bootstrap)."""
    names = list(HEADLINE[task])
    if "isic2017" in metrics:
        names += ["isic2017.mean_auc", "isic2017.melanoma.auc", "isic2017.seborrheic_keratosis.auc"]

    def headline(t, p):
        m = compute_metrics(t, p, class_names, task)
        return {n: metric_value(m, n) for n in names}

    y_true, probs = _labeled_rows(y_true, probs, task)  # resample only rows that can be scored
    ci = bootstrap_ci(headline, y_true, probs, n_boot=n_boot, seed=seed, stratified=(task == "multiclass"))
    metrics = dict(metrics)
    metrics["ci95"] = {k: [float(v[0]), float(v[1])] for k, v in ci.items()}
    return metrics


def write_predictions_csv(path: str | Path, dataset: ImageDataset, probs: np.ndarray, class_names: list[str]) -> None:
    """ISIC-style CSV of a dataset's predictions (see ``write_prediction_rows``)."""
    write_prediction_rows(path, dataset.ids, probs, dataset.onehot(), class_names)


def write_prediction_rows(path: str | Path, ids: list[str], probs: np.ndarray, truth: np.ndarray,
                          class_names: list[str]) -> None:
    """``image``, one probability column per class, then ``true_<class>`` columns; written atomically."""
    from .checkpoint import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["image", *class_names, *[f"true_{c}" for c in class_names]])
    for i, image_id in enumerate(ids):
        w.writerow([image_id, *[f"{p:.6f}" for p in probs[i]], *[f"{t:g}" for t in truth[i]]])
    atomic_write_text(path, buf.getvalue())
