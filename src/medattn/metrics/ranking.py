"""Ranking metrics of binary problems (one per column), all from a single sort of the scores.

The ROC curve, ROC AUC and average precision follow scikit-learn's definitions (`roc_curve` with
``drop_intermediate=False``, `roc_auc_score`, `average_precision_score`), which the ISIC challenge
scorer (isic-challenge-scoring) calls. They are computed here for all columns at once from one sort,
so that 1000 bootstrap resamples stay fast; the tests check them against scikit-learn and the ISIC
scorer to 1e-9.

Tied scores form one ROC point (one threshold), so every value is independent of sample order.
Functions take a `Sweep` and return (K,) float arrays, one value per column.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD_METRICS = ("f1", "balanced_accuracy", "accuracy")


@dataclass(frozen=True)
class Sweep:
    """Cumulative counts over the samples sorted by descending score, per column.

    ``tps[j, k]`` / ``fps[j, k]`` (shape (N + 1, K)): positives / negatives of column k whose score is
    >= the j-th highest score (row 0: none). Inside a run of tied scores every row holds the run's
    final counts, so a tie is one ROC point and the repeated rows add nothing to any area.
    ``scores`` (N, K): the sorted scores; ``run_end`` (N, K): True at the last row of each run.
    """

    scores: np.ndarray
    tps: np.ndarray
    fps: np.ndarray
    run_end: np.ndarray
    n_pos: np.ndarray
    n_neg: np.ndarray


def sweep(y_true: np.ndarray, score: np.ndarray) -> Sweep:
    """Sweep of binary labels ``y_true`` over ``score``, both (N,) or (N, K)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if y.shape != s.shape or y.shape[0] == 0:
        raise ValueError(f"y_true {y.shape} and score {s.shape} must have the same non-empty shape")
    n = y.shape[0]
    order = np.argsort(-s, axis=0, kind="stable")
    s = np.take_along_axis(s, order, axis=0)
    hits = np.take_along_axis(y, order, axis=0)
    run_end = np.ones_like(hits)
    run_end[:-1] = s[1:] != s[:-1]
    rows = np.where(run_end, np.arange(n)[:, None], n)
    last = np.minimum.accumulate(rows[::-1], axis=0)[::-1]  # last row of each row's run
    cum = np.cumsum(hits, axis=0)
    tps = np.take_along_axis(cum, last, axis=0)
    fps = last + 1 - tps
    zero = np.zeros((1, y.shape[1]), dtype=tps.dtype)
    tps, fps = np.concatenate((zero, tps)), np.concatenate((zero, fps))
    return Sweep(s, tps, fps, run_end, tps[-1].copy(), fps[-1].copy())


def _one_class(sw: Sweep) -> np.ndarray:
    return (sw.n_pos == 0) | (sw.n_neg == 0)


def roc_points(sw: Sweep) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr), each (N + 1, K), starting at (0, 0) like scikit-learn's ``roc_curve``; fpr is NaN
    without negatives and tpr is NaN without positives."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sw.fps / sw.n_neg, sw.tps / sw.n_pos


def _trapezoid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]), axis=0) / 2.0


def roc_auc(sw: Sweep) -> np.ndarray:
    """Area under the ROC curve (ties count one half); NaN when only one class is present."""
    fpr, tpr = roc_points(sw)
    return np.where(_one_class(sw), np.nan, _trapezoid(fpr, tpr))


def average_precision(sw: Sweep) -> np.ndarray:
    """Sum over thresholds (descending) of (recall gain) x precision, without interpolation.

    Without positives it is 0.0, the value scikit-learn (and so the ISIC scorer) returns.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = sw.tps[1:] / (sw.tps[1:] + sw.fps[1:])
        gain = np.diff(sw.tps, axis=0) / sw.n_pos
        ap = np.sum(gain * precision, axis=0)
    return np.where(sw.n_pos == 0, 0.0, ap)


def auc_above_sensitivity(sw: Sweep, min_sensitivity: float = 0.8) -> np.ndarray:
    """Partial ROC AUC where TPR >= ``min_sensitivity`` (the ISIC "AUC above 80% sensitivity").

    The ROC curve is cut at the first point whose TPR reaches the bound, a point is added at
    exactly TPR = bound (FPR linearly interpolated from the point before), and the area under the
    curve from there to (1, 1) is integrated over FPR. Not McClish-normalised: a perfect ranking
    scores 1.0, a random one about 0.18 at 80%. NaN when only one class is present (the ISIC
    scorer raises there).
    """
    if not 0.0 < min_sensitivity <= 1.0:
        raise ValueError(f"min_sensitivity must be in (0, 1], got {min_sensitivity}")
    fpr, tpr = roc_points(sw)
    out = np.full(fpr.shape[1], np.nan)
    for k in np.flatnonzero(~_one_class(sw)):
        f, t = fpr[:, k], tpr[:, k]
        i = int(np.searchsorted(t, min_sensitivity, side="left"))  # >= 1 since t[0] = 0
        f0, f1, t0, t1 = f[i - 1], f[i], t[i - 1], t[i]
        cut = f1 if t1 == min_sensitivity else f0 + (min_sensitivity - t0) * (f1 - f0) / (t1 - t0)
        out[k] = _trapezoid(np.append(cut, f[i:]), np.append(min_sensitivity, t[i:]))
    return out


def sensitivity_at_specificity(sw: Sweep, min_specificity: float = 0.8) -> np.ndarray:
    """Highest sensitivity of any threshold whose specificity is >= ``min_specificity`` (an
    operating point that exists, no interpolation); NaN when a class is missing."""
    ok = sw.fps <= sw.n_neg * (1.0 - min_specificity) + 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.where(ok, sw.tps, 0).max(axis=0) / sw.n_pos
    return np.where(_one_class(sw), np.nan, best)


def specificity_at_sensitivity(sw: Sweep, min_sensitivity: float = 0.8) -> np.ndarray:
    """Highest specificity of any threshold whose sensitivity is >= ``min_sensitivity``; NaN when a
    class is missing."""
    ok = sw.tps >= sw.n_pos * min_sensitivity - 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.where(ok, sw.n_neg - sw.fps, 0).max(axis=0) / sw.n_neg
    return np.where(_one_class(sw), np.nan, best)


def metric_from_counts(metric: str, tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int) -> np.ndarray:
    """f1, balanced_accuracy or accuracy of the predictions with ``tp`` / ``fp`` counts."""
    fn, tn = n_pos - tp, n_neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "f1":
            return np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        if metric == "accuracy":
            return (tp + tn) / (n_pos + n_neg)
        if metric == "balanced_accuracy":
            sens = tp / n_pos if n_pos else np.ones_like(tp, dtype=float)
            spec = tn / n_neg if n_neg else np.ones_like(tp, dtype=float)
            return (sens + spec) / 2.0
    raise ValueError(f"unknown threshold metric {metric!r}; choose one of {', '.join(THRESHOLD_METRICS)}")


def best_threshold(y_true_bin: np.ndarray, score: np.ndarray, metric: str = "f1", inclusive: bool = False) -> float:
    """The threshold that maximises ``metric`` (f1, balanced_accuracy or accuracy) on (N,) data.

    ``inclusive=False`` means "positive if score > threshold" (the ISIC rule), ``True`` means
    "score >= threshold" (ML-GCN's rule). Candidates are the observed scores plus one value just
    outside their range (everything or nothing positive), so the chosen threshold reproduces exactly
    the predictions it was chosen for. Ties in the metric go to the threshold closest to 0.5.
    """
    if metric not in THRESHOLD_METRICS:
        raise ValueError(f"unknown threshold metric {metric!r}; choose one of {', '.join(THRESHOLD_METRICS)}")
    sw = sweep(np.ravel(y_true_bin), np.ravel(score))
    ends = sw.run_end[:, 0]
    distinct = sw.scores[ends, 0]  # descending
    # candidate j predicts tp[j] / fp[j] positives: j = 0 none, j = i + 1 "score >= distinct[i]"
    tp = np.append(0, sw.tps[1:][ends, 0]).astype(np.float64)
    fp = np.append(0, sw.fps[1:][ends, 0]).astype(np.float64)
    if inclusive:
        thresholds = np.append(np.nextafter(distinct[0], np.inf), distinct)
    else:  # "score >= distinct[i]" is "score > distinct[i + 1]"
        thresholds = np.append(distinct, np.nextafter(distinct[-1], -np.inf))
    values = metric_from_counts(metric, tp, fp, int(sw.n_pos[0]), int(sw.n_neg[0]))
    best = np.flatnonzero(values >= values.max() - 1e-12)
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - 0.5))]])
