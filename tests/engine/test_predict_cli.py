"""`medattn evaluate` on a trained run, and `medattn predict` writing an ISIC submission CSV that
isic-challenge-scoring accepts."""
import json
import warnings

import pandas as pd
import pytest

from medattn.cli import main

isic = pytest.importorskip("isic_challenge_scoring")
from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore  # noqa: E402


def test_predict_csv_is_scored_by_the_isic_scorer(tmp_path, capsys, monkeypatch):
    syn = tmp_path / "syn"
    assert main(["synth", "--out", str(syn), "--n", "24", "--n-val", "12", "--n-test", "16", "--size", "32",
                 "--quiet"]) == 0
    run = tmp_path / "run"
    sets = ["data.format=isic2018", f"data.root={syn}", "data.image_size=32", "model.backbone=resnet10t",
            "model.pretrained=false", "train.epochs=1", "train.batch_size=8", "train.precision=fp32",
            "data.test_splits=[val]"]
    assert main(["train", "--config", "demo", "--out", str(run), "--quiet", "--no-eval",
                 *sum((["--set", s] for s in sets), [])]) == 0
    assert main(["evaluate", str(run), "--split", "test", "--bootstrap", "50"]) == 0
    evaluated = json.loads((run / "eval_test.json").read_text())
    assert evaluated["n"] == 16 and 0.0 <= evaluated["balanced_accuracy"] <= 1.0 and "ci95" in evaluated
    assert main(["evaluate", str(run), "--split", "test", "--bootstrap", "0", "--tta", "flip"]) == 0
    assert json.loads((run / "eval_test_tta-flip.json").read_text())["tta"] == "flip"
    assert json.loads((run / "eval_test.json").read_text()) == evaluated  # the plain result is kept
    capsys.readouterr()  # data whose classes differ from the run's: one line, exit code 2
    assert main(["evaluate", str(run), "--data-format", "synthetic", "--set", "data.options.classes=nevus,melanoma"]) == 2
    assert "classes ['nevus', 'melanoma'] differ from the run's" in capsys.readouterr().err
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(syn / "ISIC2018_Task3_Test_Input"), "--out", str(pred)]) == 0
    table = pd.read_csv(pred)
    assert list(table.columns) == ["image", "nevus", "melanoma", "seborrheic_keratosis", "basal_cell_carcinoma"]
    assert len(table) == 16 and table.iloc[:, 1:].sum(axis=1).round(4).eq(1.0).all()
    labels = pd.read_csv(tmp_path / "pred_labels.csv")
    assert list(labels.columns) == ["image", "predicted", "probability"] and list(labels.image) == list(table.image)
    assert (labels.predicted == table.iloc[:, 1:].idxmax(axis=1)).all()
    assert labels.probability.round(6).eq(table.iloc[:, 1:].max(axis=1).round(6)).all()
    truth = syn / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv"
    monkeypatch.setattr(pd.DataFrame, "applymap", pd.DataFrame.map, raising=False)  # the scorer on pandas 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ClassificationScore.from_file(truth, pred, ClassificationMetric.BALANCED_ACCURACY)
    capsys.readouterr()
    assert main(["score", str(truth), str(pred), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert ours["balanced_accuracy"] == pytest.approx(ref.aggregate["balanced_accuracy"], abs=1e-9)
    assert main(["predict", str(run), str(syn / "ISIC2018_Task3_Test_Input"), "--out", str(pred)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
