"""Top-label calibration: expected calibration error and the reliability curve (Guo et al., "On
Calibration of Modern Neural Networks", ICML 2017).

Confidence = the largest probability of a row, correct = its argmax equals the truth (first index on
ties). Bins are equal-width over [0, 1], bin b = (b/B, (b+1)/B], the first bin also holding 0.
ECE = sum_b (n_b / N) |accuracy_b - confidence_b|, in [0, 1].
"""
from __future__ import annotations

import numpy as np

from .classification import as_labels


def _top_label(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(y_prob, dtype=np.float64)
    if p.ndim == 1:  # binary: p(positive)
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"y_prob must be (N,) or (N, K) with N > 0, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("y_prob must hold finite probabilities in [0, 1]")
    y = as_labels(np.asarray(y_true), p.shape[1])
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"{y.shape[0]} labels for {p.shape[0]} rows of probabilities")
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def reliability_curve(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per bin: ``bin_centers``, ``accuracy`` and mean ``confidence`` (NaN for an empty bin),
    ``counts`` (int), and ``bin_edges`` (n_bins + 1). ``y_true`` (N,) labels or (N, K) one-hot;
    ``y_prob`` (N, K) probabilities, or (N,) p(positive) for a binary problem."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, correct = _top_label(y_true, y_prob)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
        confidence = np.bincount(bins, weights=conf, minlength=n_bins) / counts
    return {
        "bin_edges": edges,
        "bin_centers": (edges[:-1] + edges[1:]) / 2.0,
        "accuracy": np.where(counts > 0, accuracy, np.nan),
        "confidence": np.where(counts > 0, confidence, np.nan),
        "counts": counts,
    }


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with ``n_bins`` equal-width bins (0 = calibrated, 1 = worst)."""
    curve = reliability_curve(y_true, y_prob, n_bins)
    used = curve["counts"] > 0
    gaps = np.abs(curve["accuracy"][used] - curve["confidence"][used])
    return float(np.sum(curve["counts"][used] * gaps) / curve["counts"].sum())
