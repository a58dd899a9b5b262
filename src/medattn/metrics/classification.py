"""Multi-class metrics with the ISIC challenge's definitions (isic-challenge-scoring 5.6.0), the
ISIC 2017 binary tasks in the BIIGMA-Net Table 1 layout, and the BIIGMA code's macro metrics.

ISIC definitions (reproduced to 1e-9; the package itself is only used by the tests):
- Argmax labels: a row whose largest probability is shared by several classes is "undecided" and
  counts as a prediction of no class (wrong for every class).
- ``balanced_accuracy``: mean over classes that have positives of the recall of the argmax label.
- Per category, with truth > 0.5 and prediction > 0.5 (strict): accuracy, sensitivity,
  specificity, PPV, NPV and dice from the confusion counts; an undefined ratio (0/0) scores 1.0,
  the scorer's "freebie". ``auc`` (ROC AUC), ``auc_sens_80`` (partial AUC above 80% sensitivity,
  see `ranking.auc_above_sensitivity`) and ``ap`` (average precision) from the probabilities.
- ``macro_<metric>``: the mean over categories, skipping NaN as pandas does.
- A category with no positives: auc and auc_sens_80 are NaN (the scorer raises on auc_sens_80),
  ap is 0.0 (scikit-learn's value), sensitivity 1.0; it is left out of ``balanced_accuracy``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import ranking

ISIC2017_TASKS = ("melanoma", "seborrheic_keratosis")
_EPS_BIIGMA = 1e-10


def _nanmean(values) -> float:
    kept = [float(v) for v in values if v == v]  # NaN != NaN
    return sum(kept) / len(kept) if kept else float("nan")


def _ratio(num, den, undefined: float) -> float:
    return float(num) / float(den) if den else float(undefined)


def as_labels(y_true: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) int class indices from (N,) ints or (N, K) one-hot rows; raises ValueError naming the
    first bad row and the count of further offenders."""
    y = np.asarray(y_true)
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise ValueError(f"y_true has {y.shape[1]} columns, expected {num_classes} classes")
        ok = np.isin(y, (0, 1)).all(axis=1) & ((y == 1).sum(axis=1) == 1)
        bad = np.flatnonzero(~ok)
        if bad.size:
            raise ValueError(f"y_true row {bad[0]} is not one-hot ({y[bad[0]].tolist()}); "
                             f"{bad.size - 1} further rows are not either")
        return np.argmax(y, axis=1)
    if y.ndim != 1:
        raise ValueError(f"y_true must be (N,) class indices or (N, K) one-hot, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise ValueError("y_true class indices must be integers")
        y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise ValueError(f"y_true[{bad[0]}] = {y[bad[0]]} is not a class index in [0, {num_classes}) "
                         f"(-1 marks unlabeled rows: drop them first); {bad.size - 1} further rows")
    return y.astype(np.int64)


def _check_probs(y_prob: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    p = np.asarray(y_prob, dtype=np.float64)
    if p.shape != (n, num_classes):
        raise ValueError(f"y_prob has shape {p.shape}, expected ({n}, {num_classes})")
    bad = np.argwhere(~np.isfinite(p))
    if bad.size:
        raise ValueError(f"y_prob[{bad[0, 0]}, {bad[0, 1]}] is not finite; {len(bad) - 1} further values")
    return p


def argmax_labels(y_prob: np.ndarray) -> np.ndarray:
    """(N,) argmax class per row, -1 where the maximum is shared (ISIC's "undecided")."""
    p = np.asarray(y_prob, dtype=np.float64)
    labels = np.argmax(p, axis=1)
    ties = (p == p.max(axis=1, keepdims=True)).sum(axis=1) > 1
    labels[ties] = -1
    return labels


def _threshold_counts(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """TP, FP, FN, TN per column of boolean (N,) or (N, K) arrays."""
    tp = np.sum(truth & pred, axis=0)
    fp = np.sum(~truth & pred, axis=0)
    fn = np.sum(truth & ~pred, axis=0)
    return tp, fp, fn, truth.shape[0] - tp - fp - fn


def classification_metrics(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str]) -> dict:
    """ISIC challenge metrics of a multi-class prediction.

    ``y_true``: (N,) class indices or (N, K) one-hot; ``y_prob``: (N, K) scores in any range (ISIC
    wants probabilities). Returns flat lower_snake_case names: ``n``, ``balanced_accuracy``,
    ``accuracy`` (argmax), ``macro_f1`` (mean per-class F1 of the argmax), ``macro_<m>`` for every
    per-category ISIC metric m, ``n_undecided``, ``confusion_matrix`` (rows truth, columns argmax;
    undecided rows are not in it) and ``per_class`` = {name: {...}}. Python floats, NaN where undefined.
    """
    names = list(class_names)
    k = len(names)
    y = as_labels(y_true, k)
    p = _check_probs(y_prob, y.size, k)
    if y.size == 0:
        raise ValueError("no samples to score")
    pred = argmax_labels(p)
    decided = pred >= 0
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y[decided], pred[decided]), 1)
    support = np.bincount(y, minlength=k)
    truth = y[:, None] == np.arange(k)
    tp, fp, fn, tn = _threshold_counts(truth, p > 0.5)
    sw = ranking.sweep(truth, p)
    auc, pauc, ap = ranking.roc_auc(sw), ranking.auc_above_sensitivity(sw, 0.8), ranking.average_precision(sw)
    tp_a = np.diag(cm)
    fp_a, fn_a = cm.sum(axis=0) - tp_a, support - tp_a
    per_class: dict[str, dict] = {}
    for c, name in enumerate(names):
        per_class[name] = {
            "n_positive": int(support[c]),
            "accuracy": float((tp[c] + tn[c]) / y.size),
            "sensitivity": _ratio(tp[c], tp[c] + fn[c], 1.0),
            "specificity": _ratio(tn[c], tn[c] + fp[c], 1.0),
            "dice": _ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c], 1.0),
            "ppv": _ratio(tp[c], tp[c] + fp[c], 1.0),
            "npv": _ratio(tn[c], tn[c] + fn[c], 1.0),
            "auc": float(auc[c]),
            "auc_sens_80": float(pauc[c]),
            "ap": float(ap[c]),
            "precision_argmax": _ratio(tp_a[c], tp_a[c] + fp_a[c], float("nan")),
            "recall_argmax": _ratio(tp_a[c], tp_a[c] + fn_a[c], float("nan")),
            "f1_argmax": _ratio(2 * tp_a[c], 2 * tp_a[c] + fp_a[c] + fn_a[c], float("nan")),
        }
    out: dict = {
        "n": int(y.size),
        "balanced_accuracy": _nanmean(m["recall_argmax"] for m in per_class.values()),
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": _nanmean(m["f1_argmax"] for m in per_class.values()),
    }
    for metric in ("auc", "auc_sens_80", "ap", "sensitivity", "specificity", "ppv", "npv", "dice", "accuracy"):
        out[f"macro_{metric}"] = _nanmean(m[metric] for m in per_class.values())
    out["n_undecided"] = int((~decided).sum())
    out["confusion_matrix"] = cm.tolist()
    out["per_class"] = per_class
    return out


def binary_task_metrics(y_true_bin: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict:
    """One "X vs rest" task (BIIGMA-Net Table 1 layout: F1, Acc, Rec, Prec) plus AUC and AP.

    ``y_true_bin`` (N,) 0/1, ``score`` (N,) in [0, 1]; positive if ``score > threshold``. A ratio
    with nothing to count (e.g. precision without predicted positives) is 0.0, the limit of the
    BIIGMA code's epsilon formula. ``sensitivity_at_80_specificity`` is the best sensitivity of a
    threshold with specificity >= 0.8 (and vice versa); AUC values are NaN with a single class.
    """
    truth = np.asarray(y_true_bin).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    tp, fp, fn, tn = (int(v) for v in _threshold_counts(truth, s > threshold))
    precision, recall = _ratio(tp, tp + fp, 0.0), _ratio(tp, tp + fn, 0.0)
    specificity = _ratio(tn, tn + fp, 0.0)
    sw = ranking.sweep(truth, s)
    return {
        "n": int(truth.size),
        "n_positive": int(truth.sum()),
        "threshold": float(threshold),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, 0.0),
        "accuracy": (tp + tn) / truth.size,
        "recall": recall,
        "precision": precision,
        "specificity": specificity,
        "balanced_accuracy": (recall + specificity) / 2.0,
        "auc": float(ranking.roc_auc(sw)[0]),
        "ap": float(ranking.average_precision(sw)[0]),
        "auc_sens_80": float(ranking.auc_above_sensitivity(sw, 0.8)[0]),
        "sensitivity_at_80_specificity": float(ranking.sensitivity_at_specificity(sw, 0.8)[0]),
        "specificity_at_80_sensitivity": float(ranking.specificity_at_sensitivity(sw, 0.8)[0]),
    }


def isic2017_task_metrics(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str],
                          thresholds: float | Mapping[str, float] = 0.5) -> dict:
    """The ISIC 2017 challenge's two binary tasks from a 3-class prediction.

    Task "melanoma": truth = melanoma, score = p(melanoma); task "seborrheic_keratosis" likewise.
    ``thresholds``: one value or {task: value} (e.g. chosen on validation with `best_threshold`).
    Returns {"melanoma": {...}, "seborrheic_keratosis": {...}, "mean_auc": ...} (the challenge's
    ranking score is the mean of the two AUCs).
    """
    names = list(class_names)
    missing = [t for t in ISIC2017_TASKS if t not in names]
    if missing:
        raise ValueError(f"class_names {names} lack {missing} needed for the ISIC 2017 tasks")
    y = as_labels(y_true, len(names))
    p = _check_probs(y_prob, y.size, len(names))
    cols = [names.index(t) for t in ISIC2017_TASKS]
    return binary_tasks_metrics(y[:, None] == np.array(cols), p[:, cols], ISIC2017_TASKS, thresholds)


def binary_tasks_metrics(truth: np.ndarray, scores: np.ndarray, tasks: Sequence[str],
                         thresholds: float | Mapping[str, float] = 0.5) -> dict:
    """Several "X vs rest" tasks scored side by side: ``truth`` (N, T) 0/1 and ``scores`` (N, T), one
    column per name of ``tasks``. Returns {task: `binary_task_metrics`, ..., "mean_auc": mean of the AUCs}."""
    out: dict = {}
    for j, task in enumerate(tasks):
        thr = thresholds[task] if isinstance(thresholds, Mapping) else thresholds
        out[task] = binary_task_metrics(truth[:, j], scores[:, j], threshold=thr)
    out["mean_auc"] = float(np.mean([out[t]["auc"] for t in tasks]))
    return out


def best_threshold(y_true_bin: np.ndarray, score: np.ndarray, metric: str = "f1") -> float:
    """Threshold (rule: positive if score > threshold) that maximises ``metric`` (f1,
    balanced_accuracy or accuracy) on these data, e.g. a validation split; see
    `ranking.best_threshold`."""
    return ranking.best_threshold(y_true_bin, score, metric=metric, inclusive=False)


def biigma_macro_metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict:
    """Macro precision / recall / F1 / specificity as the official BIIGMA-Net code computes them.

    Argmax (first index on ties) confusion matrix over the split; per class, with eps = 1e-10:
    P = TP/(TP+FP+eps), R = TP/(TP+FN+eps), F1 = 2PR/(P+R+eps), S = TN/(TN+FP+eps); macro = the
    mean over all K classes (F1 is the mean of per-class F1). ``accuracy`` = mean(argmax p = y).
    """
    p = np.asarray(y_prob, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"y_prob must be (N, K), got shape {p.shape}")
    k = p.shape[1]
    y = as_labels(y_true, k)
    p = _check_probs(p, y.size, k)
    pred = np.argmax(p, axis=1)
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (y, pred), 1.0)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    precision = tp / (tp + fp + _EPS_BIIGMA)
    recall = tp / (tp + fn + _EPS_BIIGMA)
    f1 = 2 * precision * recall / (precision + recall + _EPS_BIIGMA)
    specificity = tn / (tn + fp + _EPS_BIIGMA)
    return {
        "accuracy": float(np.mean(pred == y)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "macro_specificity": float(specificity.mean()),
    }
