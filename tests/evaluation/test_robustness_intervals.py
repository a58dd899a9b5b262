"""Paired bootstrap intervals of a robustness condition: their point is the condition's own change,
they hold it, and pairing makes a consistent change's interval narrow."""
from __future__ import annotations

import numpy as np
import pytest

from sklearn.metrics import roc_auc_score

from medattn.evaluation.robustness_intervals import condition_intervals, resampled_aucs
from medattn.metrics.summary import compute_metrics

ISIC = ["melanoma", "seborrheic_keratosis", "nevus"]


def _probs(rng, targets, noise):
    logits = 2.0 * np.eye(3)[targets] + rng.normal(0, noise, (len(targets), 3))
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_points_are_the_metric_changes_and_intervals_hold_them():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    clean, perturbed = _probs(rng, y, 1.0), _probs(rng, y, 2.0)
    got = condition_intervals(y, clean, perturbed, "multiclass", ISIC, n_boot=300)
    before, after = compute_metrics(y, clean, ISIC, "multiclass"), compute_metrics(y, perturbed, ISIC, "multiclass")
    assert got["delta.macro_auc"]["value"] == pytest.approx(after["macro_auc"] - before["macro_auc"], abs=1e-12)
    assert got["delta.isic2017.mean_auc"]["value"] == pytest.approx(
        after["isic2017"]["mean_auc"] - before["isic2017"]["mean_auc"], abs=1e-12)
    flips = np.mean(np.argmax(clean, 1) != np.argmax(perturbed, 1))
    assert got["flip_fraction"]["value"] == pytest.approx(flips)
    for node in got.values():
        low, high = node["ci95"]
        assert low <= node["value"] <= high and low < high
    assert got["delta.macro_auc"]["ci95"][1] < 0  # more noise: a clear loss


def test_pairing_narrows_a_consistent_change():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    clean = _probs(rng, y, 1.5)
    shifted = 0.9 * clean + 0.1 / 3  # the same ranking per class: AUC unchanged on every resample
    got = condition_intervals(y, clean, shifted, "multiclass", ["a", "b", "c"], n_boot=200)
    assert got["delta.macro_auc"]["ci95"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert "delta.isic2017.mean_auc" not in got  # not the ISIC 2017 classes
    # unpaired, the spread of one AUC alone is far wider than that
    idx = rng.integers(0, len(y), (100, len(y)))
    aucs = resampled_aucs((y == 0)[idx], clean[idx, 0], np.ones_like(idx, bool))
    assert np.ptp(aucs) > 0.01


def test_resampled_aucs_equal_sklearn_with_ties_and_left_out_entries():
    rng = np.random.default_rng(3)
    truth = rng.random((5, 50)) < 0.3
    scores = np.round(rng.random((5, 50)), 1)  # many ties
    valid = rng.random((5, 50)) < 0.8
    got = resampled_aucs(truth, scores, valid)
    for b in range(5):
        assert got[b] == pytest.approx(roc_auc_score(truth[b][valid[b]], scores[b][valid[b]]), abs=1e-12)
    one_level = resampled_aucs(np.zeros((1, 10), bool), scores[:1, :10], np.ones((1, 10), bool))
    assert np.isnan(one_level[0])


def test_multilabel_and_unlabeled_rows():
    rng = np.random.default_rng(2)
    y = (rng.random((120, 4)) < 0.4).astype(np.float64)
    y[:10] = np.nan  # unlabeled: in the flips, not in the AUCs
    clean = np.clip(np.nan_to_num(y, nan=0.5) * 0.6 + rng.random((120, 4)) * 0.4, 0, 1)
    perturbed = clean.copy()
    perturbed[:10] = 1 - perturbed[:10]  # only the unlabeled images change
    got = condition_intervals(y, clean, perturbed, "multilabel", list("abcd"), n_boot=100)
    assert got["delta.macro_auc"]["value"] == 0.0
    flips = ((clean >= 0.5) != (perturbed >= 0.5)).any(1).mean()
    assert got["flip_fraction"]["value"] == pytest.approx(flips) and flips > 0
