"""ISIC-exact metrics: compared with isic-challenge-scoring (dev dependency) to 1e-9, by API and CLI."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from medattn.cli import main
from medattn.metrics.classification import (binary_task_metrics, best_threshold, biigma_macro_metrics,
                                            classification_metrics, isic2017_task_metrics)

isic = pytest.importorskip("isic_challenge_scoring")
from isic_challenge_scoring import metrics as isic_metrics  # noqa: E402
from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore  # noqa: E402
from isic_challenge_scoring.confusion import create_binary_confusion_matrix  # noqa: E402

PER_CATEGORY = ("accuracy", "sensitivity", "specificity", "dice", "ppv", "npv", "auc", "auc_sens_80", "ap")


def ids(n: int) -> list[str]:
    return [f"ISIC_{i:07d}" for i in range(n)]


def reference(onehot: np.ndarray, probs: np.ndarray, cats: list[str]) -> ClassificationScore:
    index = ids(len(onehot))
    weights = pd.DataFrame({"score_weight": 1.0, "validation_weight": 1.0}, index=index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ClassificationScore(pd.DataFrame(onehot, index=index, columns=cats),
                                   pd.DataFrame(probs, index=index, columns=cats), weights,
                                   ClassificationMetric.BALANCED_ACCURACY)


def reference_from_files(truth, pred, monkeypatch) -> ClassificationScore:
    """isic-challenge-scoring's own CSV path (its applymap call, removed in pandas 3, is aliased)."""
    monkeypatch.setattr(pd.DataFrame, "applymap", pd.DataFrame.map, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ClassificationScore.from_file(truth, pred, ClassificationMetric.BALANCED_ACCURACY)


def random_case(seed: int, k: int, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 400))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]  # informative, not perfect
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if decimals is not None:
        probs = probs.round(decimals)
    return y, probs, [f"class_{c}" for c in range(k)]


def assert_matches_reference(ours: dict, ref: ClassificationScore, cats: list[str]) -> None:
    for cat in cats:
        for name in PER_CATEGORY:
            assert ours["per_class"][cat][name] == pytest.approx(ref.per_category.loc[cat, name], abs=1e-9), (cat, name)
    for name in PER_CATEGORY:
        assert ours[f"macro_{name}"] == pytest.approx(ref.macro_average[name], abs=1e-9), name
    assert ours["balanced_accuracy"] == pytest.approx(ref.aggregate["balanced_accuracy"], abs=1e-9)


@pytest.mark.parametrize("k", [3, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_predictions_match_isic_scorer(seed, k):
    y, probs, cats = random_case(seed, k)
    ours = classification_metrics(y, probs, cats)
    assert_matches_reference(ours, reference(np.eye(k)[y], probs, cats), cats)
    assert ours == classification_metrics(np.eye(k)[y], probs, cats)  # one-hot input gives the same
    json.dumps(ours)


@pytest.mark.parametrize("k", [3, 7])
def test_ties_match_isic_scorer(k):
    y, probs, cats = random_case(10 + k, k, decimals=1)
    ours = classification_metrics(y, probs, cats)
    assert ours["n_undecided"] > 0  # argmax ties ("undecided") are exercised, as are score ties
    assert_matches_reference(ours, reference(np.eye(k)[y], probs, cats), cats)
    unique_max = (probs == probs.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert ours["n_undecided"] == int((~unique_max).sum())
    assert ours["accuracy"] == pytest.approx(np.mean((probs.argmax(axis=1) == y) & unique_max))


def test_category_without_positives_matches_scorer_functions():
    y, probs, cats = random_case(5, 4)
    y[y == 3] = 0
    onehot = np.eye(4)[y]
    with pytest.raises(ValueError):  # the whole scorer fails on auc_sens_80 for such a category
        reference(onehot, probs, cats)
    ours = classification_metrics(y, probs, cats)
    w = pd.Series(1.0, index=ids(len(y)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c, cat in enumerate(cats):
            t, p = pd.Series(onehot[:, c], index=w.index), pd.Series(probs[:, c], index=w.index)
            cm = create_binary_confusion_matrix(t.gt(0.5).to_numpy(), p.gt(0.5).to_numpy(), w.to_numpy(), cat)
            expected = {"accuracy": isic_metrics.binary_accuracy(cm),
                        "sensitivity": isic_metrics.binary_sensitivity(cm),
                        "specificity": isic_metrics.binary_specificity(cm), "dice": isic_metrics.binary_dice(cm),
                        "ppv": isic_metrics.binary_ppv(cm), "npv": isic_metrics.binary_npv(cm),
                        "auc": isic_metrics.auc(t, p, w), "ap": isic_metrics.average_precision(t, p, w)}
            if c < 3:
                expected["auc_sens_80"] = isic_metrics.auc_above_sensitivity(t, p, w, 0.8)
            for name, value in expected.items():
                np.testing.assert_allclose(ours["per_class"][cat][name], value, atol=1e-9, err_msg=f"{cat} {name}")
        bacc = isic_metrics.balanced_multiclass_accuracy(
            pd.DataFrame(onehot, columns=cats), pd.DataFrame(probs, columns=cats), pd.Series(1.0, index=range(len(y))))
    absent = ours["per_class"]["class_3"]
    assert np.isnan(absent["auc"]) and np.isnan(absent["auc_sens_80"]) and absent["ap"] == 0.0
    assert absent["sensitivity"] == 1.0  # the scorer's "freebie"
    assert ours["balanced_accuracy"] == pytest.approx(bacc, abs=1e-12)
    # macro values skip NaN as pandas' mean does
    assert ours["macro_auc"] == pytest.approx(np.mean([ours["per_class"][c]["auc"] for c in cats[:3]]), abs=1e-12)
    assert ours["macro_ap"] == pytest.approx(np.mean([ours["per_class"][c]["ap"] for c in cats]), abs=1e-12)


def write_csv(path, index, cats, values):
    pd.DataFrame(values, index=pd.Index(index, name="image"), columns=cats).to_csv(path)


def test_cli_json_matches_scorer_end_to_end(tmp_path, capsys, monkeypatch):
    y, probs, cats = random_case(7, 7, decimals=2)
    names = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC"]
    order = np.random.default_rng(0).permutation(len(y))
    write_csv(tmp_path / "truth.csv", ids(len(y)), names, np.eye(7)[y])
    pred_ids = [f"{i}.jpg" for i in np.array(ids(len(y)))[order]]  # shuffled rows, suffix, reordered columns
    write_csv(tmp_path / "pred.csv", pred_ids, names[::-1], probs[order][:, ::-1])
    assert main(["score", str(tmp_path / "truth.csv"), str(tmp_path / "pred.csv"), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    ref = reference_from_files(tmp_path / "truth.csv", tmp_path / "pred.csv", monkeypatch)
    assert_matches_reference(ours, ref, names)
    assert ours["n"] == len(y) and ours["format"] == "isic"


def test_cli_table_and_isic2017_layout(tmp_path, capsys):
    rng = np.random.default_rng(3)
    truth = np.zeros((60, 2))
    truth[:15, 0] = 1
    truth[15:30, 1] = 1  # rows 30.. are nevi: neither column set
    pred = np.clip(truth * 0.5 + rng.uniform(0, 0.5, size=truth.shape), 0, 1)
    write_csv(tmp_path / "t.csv", ids(60), ["melanoma", "seborrheic_keratosis"], truth)
    write_csv(tmp_path / "p.csv", ids(60), ["melanoma", "seborrheic_keratosis"], pred)
    assert main(["score", str(tmp_path / "t.csv"), str(tmp_path / "p.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "isic2017"
    for c, task in enumerate(["melanoma", "seborrheic_keratosis"]):
        assert out[task] == pytest.approx(binary_task_metrics(truth[:, c], pred[:, c]))
    assert out["mean_auc"] == pytest.approx((out["melanoma"]["auc"] + out["seborrheic_keratosis"]["auc"]) / 2)
    assert main(["score", str(tmp_path / "t.csv"), str(tmp_path / "p.csv")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["category", "auc", "auc_sens_80"]
    assert f"mean_auc              {out['mean_auc']:.4f}" in table


def _score_error(tmp_path, capsys, truth_rows, pred_rows, truth_header="image,A,B", pred_header="image,A,B"):
    (tmp_path / "t.csv").write_text("\n".join([truth_header, *truth_rows]) + "\n")
    (tmp_path / "p.csv").write_text("\n".join([pred_header, *pred_rows]) + "\n")
    assert main(["score", str(tmp_path / "t.csv"), str(tmp_path / "p.csv")]) == 2
    return capsys.readouterr().err.strip().replace(str(tmp_path) + "/", "")


TRUTH = ["ISIC_1,1,0", "ISIC_2,0,1", "ISIC_3,1,0"]
PRED = ["ISIC_1,0.9,0.1", "ISIC_2,0.2,0.8", "ISIC_3,0.6,0.4"]


@pytest.mark.parametrize("truth, pred, pred_header, message", [
    (TRUTH, [r + ",0" for r in PRED], "image,A,C,D",
     "p.csv: missing category columns ['B'] (truth categories: ['A', 'B']; its other columns: ['C', 'D'])"),
    (TRUTH, PRED[:1], "image,A,B", "p.csv: 2 images of the truth have no prediction, e.g. ['ISIC_2', 'ISIC_3']"),
    (TRUTH, PRED + ["ISIC_9,0.5,0.5"], "image,A,B", "p.csv: 1 images are not in the truth, e.g. ['ISIC_9']"),
    (TRUTH, PRED + ["ISIC_2.jpg,0.5,0.5", "ISIC_3,0.5,0.5"], "image,A,B",
     "p.csv row 5: image 'ISIC_2' appears again (first at row 3); 1 further duplicated rows"),
    (TRUTH, ["ISIC_1,1.5,0.1", "ISIC_2,0.2,-0.8", "ISIC_3,0.6,0.4"], "image,A,B",
     "p.csv row 2, column 'A': probability outside [0, 1]; 1 further"),
    (TRUTH, ["ISIC_1,0.9,0.1", "", "ISIC_2,1.2,0.8", "ISIC_3,0.6,0.4"], "image,A,B",  # a blank line: rows are file lines
     "p.csv row 4, column 'A': probability outside [0, 1]; 0 further"),
    (TRUTH, ["ISIC_1,0.9", "ISIC_2,0.2,0.8", "ISIC_3,0.6,0.4"], "image,A,B",
     "p.csv: line 2 has 2 cells, the header has 3"),
    (TRUTH, ["ISIC_1,0.9,x", "ISIC_2,0.2,nan", "ISIC_3,0.6,0.4"], "image,A,B",
     "p.csv row 2, column 'B': 'x' is not a number; 1 further bad values"),
    (["ISIC_1,1,0", "ISIC_2,1,1", "ISIC_3,0,0"], PRED, "image,A,B",
     "t.csv row 3: the truth row is not one-hot ([1.0, 1.0]); 1 further rows"),
    (TRUTH, PRED, "id,A,B", "p.csv: no 'image' column (columns: id, A, B)"),
])
def test_cli_rejects_bad_files_with_one_clear_message(tmp_path, capsys, truth, pred, pred_header, message):
    assert _score_error(tmp_path, capsys, truth, pred, pred_header=pred_header) == f"medattn score: error: {message}"


def test_binary_task_metrics_hand_computed():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.4, 0.7, 0.3, 0.2, 0.1, 0.55])
    m = binary_task_metrics(y, s)
    # > 0.5: positives 0.9, 0.6 (TP), 0.7, 0.55 (FP); 0.4 is a FN; TN = 3
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(4 / 7)
    assert m["accuracy"] == 5 / 8 and m["specificity"] == 3 / 5
    assert m["auc"] == pytest.approx(12 / 15)  # positives outrank 5 + 4 + 3 of the 15 pairs
    assert m["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)  # precision at ranks 1, 3, 5
    assert m["sensitivity_at_80_specificity"] == pytest.approx(2 / 3)  # at most 1 FP: top 3 (tp 2)
    assert m["specificity_at_80_sensitivity"] == pytest.approx(3 / 5)  # 3 TP first at top 5 (fp 2)
    assert m["auc_sens_80"] == pytest.approx(0.6)  # TPR = 1 from FPR 0.4 to 1
    # F1 over cut-offs: top-5 (tp 3, fp 2) gives 6/8, the best; "score > 0.3" selects it
    assert best_threshold(y, s) == 0.3
    assert binary_task_metrics(y, s, threshold=0.3)["f1"] == pytest.approx(0.75)
    # accuracy 6/8 at "> 0.7", "> 0.55" and "> 0.3": the tie goes to the threshold nearest 0.5
    assert best_threshold(y, s, metric="accuracy") == 0.55


def test_isic2017_tasks_from_three_classes():
    y, probs, _ = random_case(4, 3)
    names = ["melanoma", "nevus", "seborrheic_keratosis"]
    out = isic2017_task_metrics(y, probs, names, thresholds={"melanoma": 0.3, "seborrheic_keratosis": 0.6})
    assert out["melanoma"] == binary_task_metrics(y == 0, probs[:, 0], threshold=0.3)
    assert out["seborrheic_keratosis"] == binary_task_metrics(y == 2, probs[:, 2], threshold=0.6)
    assert out["mean_auc"] == pytest.approx((out["melanoma"]["auc"] + out["seborrheic_keratosis"]["auc"]) / 2)
    with pytest.raises(ValueError, match="lack \\['seborrheic_keratosis'\\]"):
        isic2017_task_metrics(y, probs, ["melanoma", "nevus", "bkl"])


def test_biigma_macro_metrics_hand_computed():
    # argmax [0, 1, 1, 2] vs truth [0, 0, 1, 2]: TP [1,1,1], FP [0,1,0], FN [1,0,0], TN [2,2,3]
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    m = biigma_macro_metrics(np.array([0, 0, 1, 2]), probs)
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-8)
    assert m["macro_recall"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-8)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, abs=1e-8)  # mean of per-class F1
    assert m["macro_specificity"] == pytest.approx((1 + 2 / 3 + 1) / 3, abs=1e-8)
    assert m["accuracy"] == 0.75


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="y_true\\[1\\] = -1 is not a class index"):
        classification_metrics(np.array([0, -1, 1]), np.full((3, 2), 0.5), ["a", "b"])
    with pytest.raises(ValueError, match="y_true row 1 is not one-hot"):
        classification_metrics(np.array([[1, 0], [1, 1]]), np.full((2, 2), 0.5), ["a", "b"])
    with pytest.raises(ValueError, match="y_prob has shape \\(2, 3\\), expected \\(2, 2\\)"):
        classification_metrics(np.array([0, 1]), np.full((2, 3), 0.5), ["a", "b"])


@pytest.mark.realdata
def test_real_isic2018_test_ids_match_scorer(shared_data, tmp_path, capsys, monkeypatch):
    """ISIC 2018 Task 3 test truth (1512 real ids, ISIC_0035068 among them, which the scorer drops)."""
    meta = pd.read_csv(shared_data / "ham10000_metadata" / "ISIC2018_Task3_Test_GroundTruth_HAMstyle.csv")
    cats = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    y = meta["dx"].str.upper().map({c: i for i, c in enumerate(cats)}).to_numpy()
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(y), 7)) + 2.0 * np.eye(7)[y]
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).round(3)
    write_csv(tmp_path / "t.csv", meta["image_id"], cats, np.eye(7)[y])
    write_csv(tmp_path / "p.csv", meta["image_id"], cats, probs)
    assert main(["score", str(tmp_path / "t.csv"), str(tmp_path / "p.csv"), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    ref = reference_from_files(tmp_path / "t.csv", tmp_path / "p.csv", monkeypatch)
    assert ours["n"] == len(y) - 1
    assert_matches_reference(ours, ref, cats)


@pytest.mark.realdata
def test_real_isic2017_truth_file_scores_two_binary_tasks(shared_data, tmp_path, capsys):
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth_csv = shared_data / "isic2017_256" / "ISIC-2017_Test_v2_Part3_GroundTruth.csv"
    truth = pd.read_csv(truth_csv)
    scores = (0.3 * truth[["melanoma", "seborrheic_keratosis"]].to_numpy()
              + 0.7 * np.random.default_rng(0).random((len(truth), 2)))
    pd.DataFrame({"image_id": truth["image_id"], "melanoma": scores[:, 0],
                  "seborrheic_keratosis": scores[:, 1]}).to_csv(tmp_path / "p.csv", index=False)
    assert main(["score", str(truth_csv), str(tmp_path / "p.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "isic2017" and out["n"] == 600 and out["melanoma"]["n_positive"] == 117
    for c, task in enumerate(["melanoma", "seborrheic_keratosis"]):
        assert out[task]["auc"] == pytest.approx(roc_auc_score(truth[task], scores[:, c]), abs=1e-12)
        assert out[task]["ap"] == pytest.approx(average_precision_score(truth[task], scores[:, c]), abs=1e-12)


def test_extra_prediction_columns_text_included_are_ignored_with_a_note(tmp_path, capsys):
    from medattn.cli import main

    (tmp_path / "t.csv").write_text("image,A,B\n" + "\n".join(TRUTH) + "\n")
    (tmp_path / "p.csv").write_text("image,A,B,nevus,predicted\n"
                                    + "\n".join(f"{r},0.0,{'A' if float(r.split(',')[1]) > 0.5 else 'B'}" for r in PRED) + "\n")
    (tmp_path / "plain.csv").write_text("image,A,B\n" + "\n".join(PRED) + "\n")
    assert main(["score", str(tmp_path / "t.csv"), str(tmp_path / "p.csv"), "--json"]) == 0
    out = capsys.readouterr()
    assert "prediction column(s) nevus, predicted are not categories of the truth and were not scored" in out.err
    with_extra = json.loads(out.out)
    assert main(["score", str(tmp_path / "t.csv"), str(tmp_path / "plain.csv"), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert with_extra.pop("ignored_columns") == ["nevus", "predicted"] and with_extra == plain


def test_an_isic2017_truth_row_that_is_both_melanoma_and_sk_is_refused(tmp_path, capsys):
    header = "image_id,melanoma,seborrheic_keratosis"
    err = _score_error(tmp_path, capsys, ["ISIC_1,1,0", "ISIC_2,1,1", "ISIC_3,0,0"], PRED, header, header)
    assert err == "medattn score: error: t.csv row 3: the image is marked both melanoma and seborrheic_keratosis; 0 further rows"
