"""medattn ensemble: the mean of several runs' saved predictions, checked and scored."""
import json
import re

import numpy as np
import pytest

from medattn.cli import main
from medattn.engine.evaluate import write_prediction_rows
from medattn.metrics.summary import compute_metrics
from medattn.evaluation.ensemble import average_predictions
from medattn.evaluation.report import read_predictions

CLASSES = ["melanoma", "seborrheic_keratosis", "nevus"]


def _fake_run(path, ids, probs, labels, classes=CLASSES, task="multiclass", name="test"):
    path.mkdir(parents=True)
    (path / "classes.json").write_text(json.dumps({"class_names": classes, "task": task}))
    truth = np.eye(len(classes))[labels] if task == "multiclass" else labels
    write_prediction_rows(path / f"predictions_{name}.csv", ids, probs, truth, classes)
    return path


def _probs(rng, n, k=3):
    p = rng.random((n, k)) + 0.05
    return p / p.sum(1, keepdims=True)


@pytest.fixture
def three_runs(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    ids = [f"ISIC_{i:07d}" for i in range(n)]
    labels = np.arange(n) % 3
    probs = [_probs(rng, n) for _ in range(3)]
    order = rng.permutation(n)  # the third run lists its rows in another order
    runs = [_fake_run(tmp_path / "a", ids, probs[0], labels), _fake_run(tmp_path / "b", ids, probs[1], labels),
            _fake_run(tmp_path / "c", [ids[i] for i in order], probs[2][order], labels[order])]
    return runs, ids, labels, probs


def test_average_matches_by_image_id_and_scores_like_evaluate(three_runs):
    runs, ids, labels, probs = three_runs
    pred, classes = average_predictions(runs, "test")
    assert classes == CLASSES and pred.ids == ids
    # the rounding of the CSVs (6 decimals) is the only difference to the exact mean
    np.testing.assert_allclose(pred.probs, np.mean(probs, axis=0), atol=2e-6)
    np.testing.assert_array_equal(pred.targets, labels)
    ours = compute_metrics(pred.targets, pred.probs, CLASSES, "multiclass")
    direct = compute_metrics(labels, np.mean(probs, axis=0), CLASSES, "multiclass")
    assert ours["isic2017"]["mean_auc"] == pytest.approx(direct["isic2017"]["mean_auc"], abs=1e-4)


def test_ensemble_of_noisy_members_beats_each_member(tmp_path):
    # independent noise on a shared signal averages out: the ensemble's AUC must exceed every member's
    rng = np.random.default_rng(1)
    n = 600
    labels = rng.integers(0, 3, n)
    ids = [f"img{i}" for i in range(n)]
    runs, aucs = [], []
    for r in range(5):
        logits = np.eye(3)[labels] * 1.0 + rng.normal(0, 1.5, (n, 3))
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        runs.append(_fake_run(tmp_path / f"r{r}", ids, p, labels))
        aucs.append(compute_metrics(labels, p, CLASSES, "multiclass")["macro_auc"])
    pred, _ = average_predictions(runs, "test")
    assert compute_metrics(labels, pred.probs, CLASSES, "multiclass")["macro_auc"] > max(aucs) + 0.02


def test_cli_writes_files_refuses_to_overwrite_and_reads_tta_files(three_runs, tmp_path, capsys):
    runs, ids, labels, probs = three_runs
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, runs), "--bootstrap", "50", "--out", str(out)]) == 0
    metrics = json.loads((out / "eval_test.json").read_text())
    assert metrics["members"] == [str(r) for r in runs] and metrics["tta"] == "none"
    low, high = metrics["ci95"]["isic2017.mean_auc"]
    assert low <= metrics["isic2017"]["mean_auc"] <= high
    saved = read_predictions(out / "predictions_test.csv", CLASSES)
    np.testing.assert_allclose(saved.probs, np.mean(probs, axis=0), atol=3e-6)
    assert "test (3 runs)" in capsys.readouterr().out
    assert main(["ensemble", *map(str, runs), "--out", str(out)]) == 2
    assert "eval_test.json exists; pass --overwrite" in capsys.readouterr().err
    assert main(["ensemble", *map(str, runs), "--tta", "dihedral"]) == 2
    assert re.search(r"predictions_test_tta-dihedral.csv is missing: run `medattn evaluate .* --tta dihedral`",
                     capsys.readouterr().err)
    for r, p in zip(runs[:2], probs[:2]):
        write_prediction_rows(r / "predictions_test_tta-dihedral.csv", ids, p, np.eye(3)[labels], CLASSES)
    assert main(["ensemble", *map(str, runs[:2]), "--tta", "dihedral", "--bootstrap", "0", "--out", str(out)]) == 0
    assert json.loads((out / "eval_test_tta-dihedral.json").read_text())["tta"] == "dihedral"


@pytest.mark.parametrize("change, message", [
    ("classes", r"classes \['a', 'b', 'c'\] \(multiclass\) differ"),
    ("images", r"its test images differ from .*'ISIC_0000000' is missing \(1 missing, 1 extra\)"),
    ("truth", r"the truth of image 'ISIC_0000005' differs .* \(1 images differ\)"),
])
def test_disagreeing_members_are_refused_with_the_place(three_runs, tmp_path, change, message):
    runs, ids, labels, probs = three_runs
    ids2, labels2, classes = list(ids), labels.copy(), CLASSES
    if change == "classes":
        classes = ["a", "b", "c"]
    elif change == "images":
        ids2[0] = "ISIC_9999999"
    else:
        labels2[5] = (labels2[5] + 1) % 3
    odd = _fake_run(tmp_path / "odd", ids2, probs[0], labels2, classes=classes)
    with pytest.raises(ValueError, match=message):
        average_predictions([runs[0], odd], "test")


def test_one_run_is_not_an_ensemble(three_runs, capsys):
    with pytest.raises(ValueError, match="at least two runs, got 1"):
        average_predictions(three_runs[0][:1], "test")
    run = three_runs[0][0]
    assert main(["ensemble", str(run), str(run.parent / ".." / run.parent.name / run.name)]) == 2
    err = capsys.readouterr().err
    assert "is named more than once" in err and err.count("\n") == 1


def test_multilabel_members_keep_unlabeled_rows_out_of_the_score(tmp_path):
    rng = np.random.default_rng(2)
    n, classes = 40, ["x", "y"]
    truth = (rng.random((n, 2)) < 0.5).astype(float)
    truth[3] = np.nan  # an unlabeled image
    ids = [f"m{i}" for i in range(n)]
    runs = [_fake_run(tmp_path / f"m{r}", ids, rng.random((n, 2)), truth, classes=classes, task="multilabel")
            for r in range(2)]
    pred, _ = average_predictions(runs, "test")
    assert pred.task == "multilabel" and not pred.labeled[3] and pred.labeled.sum() == n - 1
    assert 0.0 <= compute_metrics(pred.targets, pred.probs, classes, "multilabel")["map"] <= 1.0
