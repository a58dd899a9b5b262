"""Percentile bootstrap confidence intervals for any metric function of (y_true, y_prob).

Resamples are drawn with replacement, all at once; ``stratified=True`` resamples within each class
so every resample keeps the class counts (needs single-label targets). Each scalar the metric
function returns (nested dicts flattened to dotted keys, e.g. ``per_class.melanoma.auc``) gets the
(alpha/2, 1 - alpha/2) percentiles of its values over the resamples; a resample where a metric is
NaN (undefined, e.g. an AUC without positives) is skipped for that metric and counted.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping

import numpy as np


class BootstrapCI(dict):
    """{metric: (low, high)} with ``n_boot`` and ``skipped`` = {metric: resamples left out}."""

    def __init__(self, intervals: dict[str, tuple[float, float]], n_boot: int, skipped: dict[str, int]):
        super().__init__(intervals)
        self.n_boot = n_boot
        self.skipped = skipped


def flatten_scalars(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as {dotted.key: float}; strings, lists and bools are left out."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_scalars(value, name + "."))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _strata(y_true: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim == 1:
        return y
    if y.ndim == 2 and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
        return y.argmax(axis=1)
    raise ValueError("stratified bootstrap needs single-label targets ((N,) labels or (N, K) one-hot); "
                     "pass stratified=False for multi-label targets")


def resample_indices(y_true: np.ndarray, n_boot: int, seed: int = 0, stratified: bool = True) -> np.ndarray:
    """(n_boot, N) row indices of the resamples (within-class when ``stratified``)."""
    n = len(y_true)
    rng = np.random.default_rng(seed)
    if not stratified:
        return rng.integers(0, n, size=(n_boot, n))
    strata = _strata(y_true)
    out = np.empty((n_boot, n), dtype=np.int64)
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        out[:, members] = members[rng.integers(0, members.size, size=(n_boot, members.size))]
    return out


def bootstrap_ci(metric_fn: Callable[[np.ndarray, np.ndarray], Mapping], y_true: np.ndarray, y_prob: np.ndarray,
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, stratified: bool = True) -> BootstrapCI:
    """Percentile intervals {metric: (low, high)} of every scalar ``metric_fn(y_true, y_prob)`` returns.

    ``y_true`` and ``y_prob`` are indexed by row (N first). A metric undefined (NaN) in every
    resample gets (nan, nan). ``result.skipped[name]`` counts the resamples left out for ``name``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    if len(y_true) != len(y_prob) or len(y_true) == 0:
        raise ValueError(f"y_true ({len(y_true)} rows) and y_prob ({len(y_prob)} rows) must match and be non-empty")
    indices = resample_indices(y_true, n_boot, seed=seed, stratified=stratified)
    names = list(flatten_scalars(metric_fn(y_true, y_prob)))
    values = np.full((n_boot, len(names)), np.nan)
    for b, idx in enumerate(indices):
        flat = flatten_scalars(metric_fn(y_true[idx], y_prob[idx]))
        values[b] = [flat.get(name, np.nan) for name in names]
    intervals: dict[str, tuple[float, float]] = {}
    skipped: dict[str, int] = {}
    for j, name in enumerate(names):
        column = values[:, j]
        kept = column[~np.isnan(column)]
        skipped[name] = int(n_boot - kept.size)
        if kept.size:
            low, high = np.percentile(kept, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            intervals[name] = (float(low), float(high))
        else:
            intervals[name] = (float("nan"), float("nan"))
    return BootstrapCI(intervals, n_boot, skipped)
