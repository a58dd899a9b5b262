"""Multi-label metrics with ML-GCN's definitions (Chen et al., CVPR 2019; megvii-research/ML-GCN
``util.py``, ``AveragePrecisionMeter``), as used by IBCA-style papers: CP, CR, CF1, OP, OR, OF1, mAP.

For class k, with the prediction "score >= threshold" (ML-GCN: logit >= 0, i.e. probability >= 0.5):
N^g_k ground-truth positives, N^p_k predicted positives (0 replaced by 1, as ML-GCN does), N^c_k
correct positives.
- OP = sum N^c / sum N^p, OR = sum N^c / sum N^g, OF1 = 2 OP OR / (OP + OR) (micro).
- CP = mean_k N^c_k / N^p_k, CR = mean_k N^c_k / N^g_k, CF1 = 2 CP CR / (CP + CR) (the harmonic mean of
  the macro scores, not the mean of per-class F1).
- AP_k = mean over the positives of the precision at their rank, scores sorted in descending order
  (tied scores keep sample order: a stable sort); mAP = mean_k AP_k. ML-GCN divides by
  (#positives + 1e-8); the exact mean is used here (a relative difference below 1e-8).

Classes without positives (N^g_k = 0): recall and AP are undefined (ML-GCN's CR becomes NaN). They
are left out of CP, CR, mAP and macro_auc (so CP and CR average over the same classes) and listed
in ``classes_without_positives``; they still count in OP and OR. Their per-class recall/AP/AUC are NaN.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import ranking


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"y_true {y.shape} and y_score {s.shape} must both be (N, K)")
    nan_rows = np.flatnonzero(np.isnan(y).any(axis=1))
    if nan_rows.size:
        raise ValueError(f"y_true row {nan_rows[0]} has NaN (unlabeled); drop unlabeled rows first "
                         f"({nan_rows.size} rows in all)")
    bad = np.argwhere((y != 0) & (y != 1))
    if bad.size:
        raise ValueError(f"y_true[{bad[0, 0]}, {bad[0, 1]}] = {y[tuple(bad[0])]} is not 0 or 1; "
                         f"{len(bad) - 1} further values")
    bad = np.argwhere(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"y_score[{bad[0, 0]}, {bad[0, 1]}] is not finite; {len(bad) - 1} further values")
    return y.astype(bool), s


def mlgcn_average_precision(y_true_bin: np.ndarray, score: np.ndarray) -> float:
    """ML-GCN AP of one class: mean over positives of precision at their rank (descending scores,
    stable order); NaN without positives."""
    y = np.asarray(y_true_bin).astype(bool).ravel()
    order = np.argsort(-np.asarray(score, dtype=np.float64).ravel(), kind="stable")
    hits = y[order]
    if not hits.any():
        return float("nan")
    precision_at_rank = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision_at_rank[hits].mean())


def _harmonic(a: float, b: float) -> float:
    if np.isnan(a) or np.isnan(b):
        return float("nan")
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def multilabel_metrics(y_true: np.ndarray, y_score: np.ndarray, thresholds: float | np.ndarray = 0.5,
                       class_names: Sequence[str] | None = None) -> dict:
    """CP, CR, CF1, OP, OR, OF1, mAP and per-class AP/AUC/precision/recall/F1.

    ``y_true`` (N, K) 0/1; ``y_score`` (N, K) probabilities; ``thresholds`` one value or (K,) per
    class (positive if score >= threshold). Keys: ``n``, ``cp``, ``cr``, ``cf1``, ``op``, ``or``,
    ``of1``, ``map``, ``macro_auc``, ``n_classes_scored``, ``classes_without_positives``, ``per_class``.
    """
    y, s = _check(y_true, y_score)
    n, k = y.shape
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} columns")
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (k,))
    pred = s >= thr
    n_g = y.sum(axis=0)
    n_p = np.maximum(pred.sum(axis=0), 1)  # ML-GCN: N^p = 0 -> 1
    n_c = (y & pred).sum(axis=0)
    scored = n_g > 0
    precision = n_c / n_p
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(scored, n_c / np.maximum(n_g, 1), np.nan)
    auc = ranking.roc_auc(ranking.sweep(y, s))
    per_class: dict[str, dict] = {}
    for c, name in enumerate(names):
        per_class[name] = {
            "n_positive": int(n_g[c]),
            "threshold": float(thr[c]),
            "ap": mlgcn_average_precision(y[:, c], s[:, c]),
            "auc": float(auc[c]),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": _harmonic(float(precision[c]), float(recall[c])),
        }
    nan = float("nan")
    cp = float(precision[scored].mean()) if scored.any() else nan
    cr = float(recall[scored].mean()) if scored.any() else nan
    op = float(n_c.sum() / n_p.sum())
    orr = float(n_c.sum() / n_g.sum()) if n_g.sum() else nan
    aucs = [m["auc"] for m in per_class.values() if not np.isnan(m["auc"])]
    return {
        "n": int(n),
        "cp": cp,
        "cr": cr,
        "cf1": _harmonic(cp, cr),
        "op": op,
        "or": orr,
        "of1": _harmonic(op, orr),
        "map": float(np.mean([per_class[names[c]]["ap"] for c in np.flatnonzero(scored)])) if scored.any() else nan,
        "macro_auc": float(np.mean(aucs)) if aucs else nan,
        "n_classes_scored": int(scored.sum()),
        "classes_without_positives": [names[c] for c in np.flatnonzero(~scored)],
        "per_class": per_class,
    }


def tune_thresholds(y_true: np.ndarray, y_score: np.ndarray, metric: str = "f1") -> np.ndarray:
    """(K,) per-class thresholds (rule: score >= threshold) that maximise ``metric`` (f1,
    balanced_accuracy or accuracy) of each class on these data, e.g. a validation split.

    A class without positives here keeps 0.5 (nothing to tune on); ties go to the threshold
    closest to 0.5 (see `ranking.best_threshold`).
    """
    y, s = _check(y_true, y_score)
    out = np.full(y.shape[1], 0.5)
    for c in range(y.shape[1]):
        if y[:, c].any():
            out[c] = ranking.best_threshold(y[:, c], s[:, c], metric=metric, inclusive=True)
    return out
