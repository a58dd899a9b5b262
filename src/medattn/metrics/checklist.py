"""The 7-point checklist as a clinician reads it (Argenziano et al. 1998), from predicted criteria.

Each of the seven criteria adds its points when present (2 per major criterion, 1 per minor), and a
score of at least 3 suggests melanoma. From a criteria model's probabilities (N, 7):
- the expected score, sum_i points_i * p_i, ranks the images for melanoma (its AUC needs no threshold);
- the decided score, sum_i points_i * [p_i >= t_i] (t_i: per-criterion thresholds, e.g. tuned on val),
  gives the checklist's own decision at score >= 3 (sensitivity, specificity);
- the same score from the annotated criteria is what a perfect criteria model would reach: the ceiling.
"""
from __future__ import annotations

import numpy as np

from ..data.derm7pt import SEVEN_POINT_THRESHOLD
from .classification import binary_task_metrics


def _score_metrics(score: np.ndarray, melanoma: np.ndarray, total: float, threshold: float) -> dict:
    # binary_task_metrics wants scores in [0, 1] and the rule score > t: scale by the maximum score and
    # put t just below threshold / total, so that "score >= threshold" is what is counted.
    scaled = np.asarray(score, dtype=np.float64) / total
    m = binary_task_metrics(melanoma, scaled, threshold=(threshold - 1e-9) / total)
    return {"auc": m["auc"], "ap": m["ap"], "sensitivity": m["recall"], "specificity": m["specificity"],
            "f1": m["f1"], "threshold_points": threshold}


def checklist_melanoma(criteria_prob: np.ndarray, melanoma: np.ndarray, weights: np.ndarray,
                       criteria_thresholds: np.ndarray | float = 0.5, criteria_truth: np.ndarray | None = None,
                       threshold: float = SEVEN_POINT_THRESHOLD) -> dict:
    """Melanoma from the checklist. ``criteria_prob`` (N, 7) probabilities, ``melanoma`` (N,) 0/1,
    ``weights`` (7,) points, ``criteria_thresholds`` (7,) or one value, ``criteria_truth`` (N, 7)
    annotated 0/1 criteria (the ceiling; rows with NaN are left out of it).

    Returns {"expected_score": {auc, ap, ...}, "decided_score": {auc, sensitivity, specificity, ...},
    "annotated_ceiling": {...} or None, "n", "n_melanoma"}."""
    p = np.asarray(criteria_prob, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    y = np.asarray(melanoma).astype(int)
    if p.ndim != 2 or p.shape[1] != w.size or y.shape != (p.shape[0],):
        raise ValueError(f"criteria_prob must be N x {w.size} with N melanoma labels; got {p.shape} and {y.shape}")
    total = float(w.sum())
    decided = (p >= np.broadcast_to(np.asarray(criteria_thresholds, dtype=np.float64), (w.size,))) @ w
    out = {"n": int(y.size), "n_melanoma": int(y.sum()),
           "expected_score": _score_metrics(p @ w, y, total, threshold),
           "decided_score": _score_metrics(decided, y, total, threshold), "annotated_ceiling": None}
    if criteria_truth is not None:
        t = np.asarray(criteria_truth, dtype=np.float64)
        ok = np.isfinite(t).all(axis=1)
        out["annotated_ceiling"] = _score_metrics(t[ok] @ w, y[ok], total, threshold)
    return out
