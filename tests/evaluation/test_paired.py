"""compare_runs: two runs on the same images, rows matched by id, paired intervals of the change."""
import json

import numpy as np
import pytest

from medattn.engine.evaluate import write_prediction_rows
from medattn.errors import DataError
from medattn.evaluation.paired import compare_runs
from medattn.metrics.summary import compute_metrics

CLASSES = ["melanoma", "seborrheic_keratosis", "nevus"]


def _run(run_dir, ids, labels, probs):
    run_dir.mkdir(parents=True)
    (run_dir / "classes.json").write_text(json.dumps({"class_names": CLASSES, "task": "multiclass"}))
    write_prediction_rows(run_dir / "predictions_test.csv", ids, probs, np.eye(3)[labels], CLASSES)


def _softmax(x):
    return np.exp(x) / np.exp(x).sum(1, keepdims=True)


def test_change_of_the_aucs_with_rows_in_another_order(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 3, n)
    ids = [f"ISIC_{i:07d}" for i in range(n)]
    weak = _softmax(np.eye(3)[labels] + rng.normal(0, 2.0, (n, 3)))
    strong = _softmax(2 * np.eye(3)[labels] + rng.normal(0, 1.0, (n, 3)))
    _run(tmp_path / "a", ids, labels, weak)
    order = rng.permutation(n)  # the other run wrote its rows in another order
    _run(tmp_path / "b", [ids[i] for i in order], labels[order], strong[order])

    got = compare_runs(tmp_path / "a", tmp_path / "b", n_boot=300)
    expected = (compute_metrics(labels, strong, CLASSES, "multiclass")["isic2017"]["mean_auc"]
                - compute_metrics(labels, weak, CLASSES, "multiclass")["isic2017"]["mean_auc"])
    delta = got["delta.isic2017.mean_auc"]
    assert got["n"] == n
    assert delta["value"] == pytest.approx(expected, abs=1e-9)
    assert 0 < delta["ci95"][0] <= delta["value"] <= delta["ci95"][1]  # a clear improvement: interval above 0
    assert got["disagreement"]["value"] == pytest.approx(np.mean(weak.argmax(1) != strong.argmax(1)))

    same = compare_runs(tmp_path / "a", tmp_path / "a", n_boot=50)
    assert same["delta.macro_auc"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert same["disagreement"]["value"] == 0.0


def test_runs_on_other_images_are_refused(tmp_path):
    labels = np.array([0, 1, 2, 0])
    probs = np.full((4, 3), 1 / 3)
    _run(tmp_path / "a", ["x1", "x2", "x3", "x4"], labels, probs)
    _run(tmp_path / "b", ["x1", "x2", "x3", "x5"], labels, probs)
    with pytest.raises(DataError, match="'x4' is missing"):
        compare_runs(tmp_path / "a", tmp_path / "b")
