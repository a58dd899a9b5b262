"""The metrics of one split and the names of its headline metrics: the one place that knows which
metrics a task reports, including the ISIC 2017 special case (two binary tasks, melanoma vs rest and
seborrheic keratosis vs rest, scored on a 3-class prediction).

Metric names are dotted paths into the nested result (``isic2017.melanoma.auc``); ``lookup_metric``
reads them. Commands, the trainer, the report and the benchmarks take their column names from here.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.dataset import labeled_mask
from .bootstrap import bootstrap_ci
from .classification import ISIC2017_TASKS, classification_metrics, isic2017_task_metrics
from .multilabel import multilabel_metrics

HEADLINE = {
    "multiclass": ["balanced_accuracy", "accuracy", "macro_f1", "macro_auc", "macro_ap"],
    "multilabel": ["map", "cf1", "of1", "cp", "cr", "op", "or", "macro_auc"],
}
"""Headline metrics of a split by task, in table order."""

ISIC2017_HEADLINE = ["melanoma.auc", "seborrheic_keratosis.auc", "mean_auc"]
"""Headline of the ISIC 2017 tasks, inside ``isic2017`` (``compute_metrics``) or at the top level
(``medattn score`` of an ISIC 2017 file)."""

ISIC_SCORE_HEADLINE = ["balanced_accuracy", "accuracy", "macro_f1", "macro_auc", "macro_ap", "macro_auc_sens_80"]
"""Headline of ``medattn score`` on the ISIC 2018/2019 layout (one column per category)."""


ISIC2017_CLASSES = (*ISIC2017_TASKS, "nevus")


def is_isic2017(class_names: Sequence[str]) -> bool:
    """Whether a multi-class set is the ISIC 2017 Part 3 problem (exactly melanoma, seborrheic keratosis
    and nevus), which also gets the challenge's two binary tasks. Other sets that merely contain
    melanoma and SK (the synthetic set, HAM10000 mapped classes) do not."""
    return set(class_names) == set(ISIC2017_CLASSES)


def headline_names(task: str, metrics: dict | Sequence[dict] = ()) -> list[str]:
    """Headline metric names of ``task``, plus the ISIC 2017 task names when (any of) ``metrics`` has them."""
    many = [metrics] if isinstance(metrics, dict) else list(metrics)
    extra = [f"isic2017.{n}" for n in ISIC2017_HEADLINE] if any("isic2017" in m for m in many) else []
    return list(HEADLINE[task]) + extra


def default_select_metric(task: str) -> str:
    """The validation metric that selects the best epoch when ``train.select_metric`` is "auto"."""
    return "balanced_accuracy" if task == "multiclass" else "map"


def labeled_rows(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(truth, probabilities) of the rows that carry a label (unlabeled: target -1, or a row of NaN)."""
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    lab = labeled_mask(y_true)
    return (y_true, probs) if lab.all() else (y_true[lab], probs[lab])


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: list[str], task: str,
                    thresholds: np.ndarray | float = 0.5) -> dict:
    """Every metric of one split. ``y_true``: (N,) class indices or (N, K) 0/1; ``probs``: (N, K).

    Multi-class sets get the ISIC challenge metrics; a set with the ISIC 2017 classes also gets the two
    binary tasks (melanoma vs rest, SK vs rest) under ``isic2017``. Multi-label sets get
    CP/CR/CF1/OP/OR/OF1 and mAP. Unlabeled rows (target -1, or a row of NaN) are left out.
    """
    y_true, probs = labeled_rows(y_true, probs)
    if task == "multilabel":
        return multilabel_metrics(y_true, probs, thresholds=thresholds, class_names=class_names)
    out = classification_metrics(y_true, probs, class_names)
    if is_isic2017(class_names):
        out["isic2017"] = isic2017_task_metrics(y_true, probs, class_names)
    return out


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


def with_confidence_intervals(metrics: dict, y_true: np.ndarray, probs: np.ndarray, class_names: list[str],
                              task: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Add ``ci95`` = {metric: [low, high]} for the headline metrics (percentile bootstrap over images,
    stratified by class for multi-class sets)."""
    names = headline_names(task, metrics)

    def headline(t, p):
        m = compute_metrics(t, p, class_names, task)
        return {n: metric_value(m, n) for n in names}

    y_true, probs = labeled_rows(y_true, probs)  # resample only rows that can be scored
    ci = bootstrap_ci(headline, y_true, probs, n_boot=n_boot, seed=seed, stratified=(task == "multiclass"))
    metrics = dict(metrics)
    metrics["ci95"] = {k: [float(v[0]), float(v[1])] for k, v in ci.items()}
    return metrics
