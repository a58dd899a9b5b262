"""Multi-label metrics (ML-GCN definitions) against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from medattn.metrics.multilabel import mlgcn_average_precision, multilabel_metrics, tune_thresholds

# 4 images x 3 classes; prediction at 0.5 (score >= 0.5):
#   pred = [[1,0,1],[0,1,0],[1,0,1],[1,0,0]]
# class 0: N^g 2, N^p 3, N^c 2 | class 1: N^g 2, N^p 1, N^c 1 | class 2: N^g 1, N^p 2, N^c 1
SCORES = np.array([[0.9, 0.2, 0.6],
                   [0.4, 0.8, 0.3],
                   [0.6, 0.4, 0.7],
                   [0.7, 0.1, 0.2]])
TRUTH = np.array([[1, 0, 1],
                  [0, 1, 0],
                  [1, 1, 0],
                  [0, 0, 0]])


def test_hand_computed_mlgcn_metrics():
    m = multilabel_metrics(TRUTH, SCORES, class_names=["a", "b", "c"])
    cp = (2 / 3 + 1 / 1 + 1 / 2) / 3  # = 13/18
    cr = (2 / 2 + 1 / 2 + 1 / 1) / 3  # = 5/6
    assert m["cp"] == pytest.approx(13 / 18) and m["cp"] == pytest.approx(cp)
    assert m["cr"] == pytest.approx(5 / 6) and m["cr"] == pytest.approx(cr)
    assert m["cf1"] == pytest.approx(65 / 84)  # 2 (13/18)(5/6) / (13/18 + 5/6): harmonic mean, not mean F1
    assert m["op"] == pytest.approx(4 / 6)  # sum N^c / sum N^p = (2+1+1) / (3+1+2)
    assert m["or"] == pytest.approx(4 / 5)  # sum N^c / sum N^g = 4 / (2+2+1)
    assert m["of1"] == pytest.approx(8 / 11)  # 2 (2/3)(4/5) / (2/3 + 4/5)
    # AP, scores descending: a = P N P N -> (1/1 + 2/3)/2 = 5/6; b = P P N N -> 1; c = N P N N -> 1/2
    assert [m["per_class"][c]["ap"] for c in "abc"] == pytest.approx([5 / 6, 1.0, 0.5])
    assert m["map"] == pytest.approx(7 / 9)
    # AUC: a: 0.9 > {0.7, 0.4}, 0.6 > {0.4} -> 3/4; b: 1; c: 0.6 > {0.3, 0.2}, < 0.7 -> 2/3
    assert [m["per_class"][c]["auc"] for c in "abc"] == pytest.approx([3 / 4, 1.0, 2 / 3])
    assert m["macro_auc"] == pytest.approx(29 / 36)
    assert m["per_class"]["b"]["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)  # P = 1/1, R = 1/2
    assert m["n"] == 4 and m["n_classes_scored"] == 3 and m["classes_without_positives"] == []


def test_no_predicted_positive_counts_as_one_and_per_class_thresholds():
    m = multilabel_metrics(TRUTH, SCORES, thresholds=[0.95, 0.5, 0.5], class_names=["a", "b", "c"])
    # class a predicts nothing: N^p = 0 -> 1, so its precision is 0/1 = 0 (not NaN)
    assert m["per_class"]["a"]["precision"] == 0.0 and m["per_class"]["a"]["recall"] == 0.0
    assert m["per_class"]["a"]["f1"] == 0.0
    assert m["op"] == pytest.approx((0 + 1 + 1) / (1 + 1 + 2))  # the 1 replacing N^p = 0 counts in OP
    assert m["cp"] == pytest.approx((0 + 1 + 0.5) / 3)
    assert [m["per_class"][c]["threshold"] for c in "abc"] == [0.95, 0.5, 0.5]


def test_class_without_positives_is_left_out_of_macro_scores():
    truth = np.c_[TRUTH, np.zeros(4, int)]
    scores = np.c_[SCORES, [0.6, 0.1, 0.1, 0.1]]  # class d: no positives, one false positive
    m = multilabel_metrics(truth, scores, class_names=["a", "b", "c", "d"])
    assert m["classes_without_positives"] == ["d"] and m["n_classes_scored"] == 3
    assert m["cp"] == pytest.approx(13 / 18) and m["cr"] == pytest.approx(5 / 6) and m["map"] == pytest.approx(7 / 9)
    assert m["op"] == pytest.approx(4 / 7)  # its false positive still counts in the micro scores
    assert m["or"] == pytest.approx(4 / 5)
    d = m["per_class"]["d"]
    assert np.isnan(d["ap"]) and np.isnan(d["auc"]) and np.isnan(d["recall"]) and d["precision"] == 0.0
    none = multilabel_metrics(np.zeros((3, 2)), np.full((3, 2), 0.7))
    assert np.isnan(none["cp"]) and np.isnan(none["map"]) and np.isnan(none["or"]) and none["op"] == 0.0


def test_ap_is_mean_precision_at_positive_ranks_with_stable_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):  # without ties it equals scikit-learn's (non-interpolated) AP
        y, s = rng.integers(0, 2, 50), rng.random(50)
        y[0] = 1
        assert mlgcn_average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    # tied scores keep sample order: N then P -> precision 1/2; P then N -> 1
    assert mlgcn_average_precision([0, 1], [0.5, 0.5]) == 0.5
    assert mlgcn_average_precision([1, 0], [0.5, 0.5]) == 1.0


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (80, 4))
    s = rng.random((80, 4)).round(1)
    m = multilabel_metrics(y, s)
    for c in range(4):
        assert m["per_class"][str(c)]["auc"] == pytest.approx(roc_auc_score(y[:, c], s[:, c]), abs=1e-12)


def test_tune_thresholds_hand_computed():
    # a: F1 at >=0.9: 2/3, >=0.7: 1/2, >=0.6: 4/5 (best), >=0.4: 2/3
    # b: >=0.8: 2/3, >=0.4: 1 (best); c: >=0.7: 0, >=0.6: 2/3 (best), >=0.3: 1/2
    thresholds = tune_thresholds(TRUTH, SCORES)
    assert thresholds.tolist() == [0.6, 0.4, 0.6]
    m = multilabel_metrics(TRUTH, SCORES, thresholds=thresholds, class_names=["a", "b", "c"])
    assert [m["per_class"][c]["f1"] for c in "abc"] == pytest.approx([0.8, 1.0, 2 / 3])
    assert tune_thresholds(np.c_[TRUTH, np.zeros(4)], np.c_[SCORES, np.ones(4)])[3] == 0.5  # no positives


def test_bad_inputs():
    with pytest.raises(ValueError, match="row 1 has NaN \\(unlabeled\\).*2 rows in all"):
        multilabel_metrics(np.array([[1, 0], [np.nan, np.nan], [np.nan, 0]]), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="y_true\\[0, 1\\] = 2.0 is not 0 or 1"):
        multilabel_metrics(np.array([[1, 2]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="must both be \\(N, K\\)"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)))
