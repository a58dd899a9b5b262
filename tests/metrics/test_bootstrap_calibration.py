"""Bootstrap intervals and top-label calibration."""
from __future__ import annotations

import numpy as np
import pytest

from medattn.metrics.bootstrap import bootstrap_ci, flatten_scalars, resample_indices
from medattn.metrics.calibration import expected_calibration_error, reliability_curve
from medattn.metrics.classification import classification_metrics


def test_percentile_interval_of_a_mean_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 200), rng.random((200, 2))
    ci = bootstrap_ci(lambda t, q: {"mean": q[:, 1].mean()}, y, p, n_boot=300, alpha=0.1, seed=3, stratified=False)
    means = p[resample_indices(y, 300, seed=3, stratified=False), 1].mean(axis=1)
    assert ci["mean"] == pytest.approx(tuple(np.percentile(means, [5, 95])), abs=1e-15)
    assert ci["mean"][0] < p[:, 1].mean() < ci["mean"][1]
    assert ci.n_boot == 300 and ci.skipped == {"mean": 0}


def test_stratified_resamples_keep_class_counts():
    y = np.repeat([0, 1, 2], [50, 30, 5])
    idx = resample_indices(y, 200, seed=1)
    assert idx.shape == (200, 85)
    assert (np.stack([np.bincount(y[i], minlength=3) for i in idx]) == [50, 30, 5]).all()
    ci = bootstrap_ci(lambda t, q: {"n_rare": float((t == 2).sum())}, y, np.zeros((85, 3)), n_boot=50)
    assert ci["n_rare"] == (5.0, 5.0)
    with pytest.raises(ValueError, match="stratified bootstrap needs single-label targets"):
        resample_indices(np.array([[1, 1], [0, 1]]), 10)


def test_undefined_resamples_are_skipped_and_counted():
    n = 20
    rows = np.arange(n, dtype=float)[:, None]  # the metric sees which rows were drawn

    def fn(t, q):
        return {"needs_row_0": 1.0 if (q[:, 0] == 0).any() else float("nan"), "always": 1.0}

    ci = bootstrap_ci(fn, np.zeros(n), rows, n_boot=400, seed=5, stratified=False)
    without_row_0 = int((~(resample_indices(np.zeros(n), 400, seed=5, stratified=False) == 0).any(axis=1)).sum())
    assert 50 < without_row_0 < 250  # (19/20)^20 = 36% of resamples miss row 0
    assert ci.skipped == {"needs_row_0": without_row_0, "always": 0}
    assert ci["needs_row_0"] == (1.0, 1.0)
    nan_ci = bootstrap_ci(lambda t, q: {"x": float("nan")}, np.zeros(5), np.zeros((5, 1)), n_boot=10, stratified=False)
    assert np.isnan(nan_ci["x"]).all() and nan_ci.skipped["x"] == 10


def test_flatten_uses_dotted_keys_and_keeps_only_numbers():
    flat = flatten_scalars({"a": 1, "b": {"c": 2.5, "d": {"e": np.float64(3)}}, "s": "x", "l": [1, 2], "flag": True})
    assert flat == {"a": 1.0, "b.c": 2.5, "b.d.e": 3.0}


def test_classification_bootstrap_on_isic2017_sized_test_set():
    rng = np.random.default_rng(0)
    y = rng.choice(3, size=600, p=[0.2, 0.65, 0.15])
    logits = rng.normal(size=(600, 3)) + 1.2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = ["melanoma", "nevus", "seborrheic_keratosis"]
    point = classification_metrics(y, p, names)
    ci = bootstrap_ci(lambda t, q: classification_metrics(t, q, names), y, p, n_boot=1000)
    assert "per_class.melanoma.auc" in ci and "confusion_matrix" not in ci
    for name in ("balanced_accuracy", "macro_auc", "macro_ap", "per_class.nevus.auc"):
        low, high = ci[name]
        value = flatten_scalars(point)[name]
        assert low < value < high and 0.01 < high - low < 0.2, name
    assert ci["n"] == (600.0, 600.0) and ci.skipped["macro_auc"] == 0


# ---- calibration ----

def test_calibrated_bins_give_zero_ece():
    # 10 rows at confidence 0.7 with 7 correct, 5 rows at confidence 0.8 with 4 correct
    p = np.array([[0.7, 0.3]] * 10 + [[0.2, 0.8]] * 5)
    y = np.array([0] * 7 + [1] * 3 + [1] * 4 + [0])
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)


def test_overconfident_model_hand_computed():
    # 10 rows at confidence 0.85 with 6 correct (gap 0.25), 20 rows at 0.65 with 13 correct (gap 0)
    p = np.array([[0.85, 0.15]] * 10 + [[0.35, 0.65]] * 20)
    y = np.array([0] * 6 + [1] * 4 + [1] * 13 + [0] * 7)
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(10 * 0.25 / 30)
    curve = reliability_curve(y, p, n_bins=10)
    assert curve["counts"].tolist() == [0, 0, 0, 0, 0, 0, 20, 0, 10, 0]
    assert curve["accuracy"][[6, 8]] == pytest.approx([0.65, 0.6])
    assert curve["confidence"][[6, 8]] == pytest.approx([0.65, 0.85])
    assert np.isnan(curve["accuracy"][0]) and curve["bin_centers"][0] == pytest.approx(0.05)
    # binary input as p(positive) is the same problem
    assert expected_calibration_error(y, p[:, 1], n_bins=10) == pytest.approx(10 * 0.25 / 30)


def test_bins_are_closed_on_the_right():
    p = np.array([[0.5, 0.5], [0.0, 1.0], [0.25, 0.75]])
    assert reliability_curve(np.array([0, 1, 1]), p, n_bins=2)["counts"].tolist() == [1, 2]


def test_ece_matches_a_loop_over_bins_on_random_data():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4), size=500)
    y = rng.integers(0, 4, 500)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    expected = 0.0
    for lo, hi in zip(np.linspace(0, 1, 16)[:-1], np.linspace(0, 1, 16)[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            expected += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        expected_calibration_error(y, p * 2)
