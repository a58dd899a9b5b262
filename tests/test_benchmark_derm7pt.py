"""benchmarks/derm7pt.py end to end on a small fake derm7pt tree: every criteria method and the direct
melanoma classifier train (one epoch, tiny backbone), the tables are computed from their predictions."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from readers_testkit import make_derm7pt  # noqa: E402

from medattn.engine.run import read_run_classes  # noqa: E402
from medattn.evaluation.report import read_predictions  # noqa: E402
from medattn.metrics.classification import binary_task_metrics  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
DIAGNOSES = ["clark nevus", "melanoma", "seborrheic keratosis", "basal cell carcinoma"]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # the script imports benchmarks/_machine.py
    spec = importlib.util.spec_from_file_location("bench_derm7pt", BENCH / "derm7pt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_derm7pt(root: Path, n: int = 60) -> None:
    rng = np.random.default_rng(0)
    cases = []
    for k in range(n):
        diagnosis = DIAGNOSES[k % len(DIAGNOSES)]
        mel = diagnosis == "melanoma"
        cases.append({"diagnosis": diagnosis, "derm": f"F{k % 3}/im{k:03d}.jpg",
                      "pigment_network": "atypical" if mel or rng.random() < 0.2 else "typical",
                      "blue_whitish_veil": "present" if rng.random() < 0.4 else "absent",
                      "streaks": "irregular" if rng.random() < 0.3 else "absent",
                      "dots_and_globules": "irregular" if mel and rng.random() < 0.7 else "regular",
                      "vascular_structures": "dotted" if rng.random() < 0.3 else "absent",
                      "pigmentation": "diffuse irregular" if rng.random() < 0.3 else "absent",
                      "regression_structures": "blue areas" if rng.random() < 0.3 else "absent"})
    make_derm7pt(root, cases)


def test_derm7pt_benchmark_trains_every_method_and_scores_the_checklist(bench, tmp_path):
    data = tmp_path / "derm7pt"
    _fake_derm7pt(data)
    overrides = [f"data.root={data}", "data.image_size=32", "train.epochs=1", "train.batch_size=8",
                 "train.precision=fp32", "model.backbone=resnet10t", "model.pretrained=false"]
    out = tmp_path / "bench"
    bench.train(list(bench.METHODS), [0], out, overrides, progress=False)
    for method in bench.METHODS:
        assert (out / "runs" / method / "seed0" / "eval_test.json").is_file(), method
    results = tmp_path / "results"
    assert bench.write_tables(out, results, n_maps=4, overrides=overrides) == 0
    record = json.loads((results / "derm7pt.json").read_text())
    runs = {r["method"]: r for r in record["runs"]}
    assert set(runs) == set(bench.METHODS)
    assert {d.name for d in (results / "predictions" / "derm7pt").iterdir()} == set(bench.METHODS)
    n_test = runs["baseline"]["n"]
    assert n_test == 24  # 40 % of 60, stratified by diagnosis

    # the direct classifier's AUC is the melanoma column of its predictions; its interval holds it
    direct = out / "runs" / bench.DIRECT / "seed0"
    names, task = read_run_classes(direct)
    pred = read_predictions(direct / "predictions_test.csv", names, task)
    mel = names.index("melanoma")
    auc = binary_task_metrics((pred.onehot[:, mel] > 0.5).astype(int), pred.probs[:, mel])["auc"]
    assert runs[bench.DIRECT]["values"]["auc"] == pytest.approx(auc)
    low, high = runs[bench.DIRECT]["ci95"]["auc"]
    assert low <= auc <= high

    # the annotated ceiling does not depend on the model; the criteria metrics are eval_test.json's
    ceilings = {runs[m]["values"]["annotated_ceiling.auc"] for m in bench.CRITERIA_METHODS}
    assert len(ceilings) == 1 and ceilings.pop() > 0.7  # melanoma cases carry atypical network here
    for m in bench.CRITERIA_METHODS:
        tuned = json.loads((out / "runs" / m / "seed0" / "eval_test.json").read_text())["tuned"]
        assert runs[m]["values"]["cf1"] == pytest.approx(tuned["cf1"])
        assert "gradcam" in runs[m]["maps"]
    assert {"mha"} <= set(runs["class_query"]["maps"]) and {"mha"} <= set(runs["ibca"]["maps"])

    md = (results / "derm7pt.md").read_text()
    for line in ("| baseline | 1 |", "| 7-point score of ibca's criteria | 1 |",
                 "| direct classifier (baseline, melanoma vs rest) | 1 |", "| class_query | mha |"):
        assert line in md
    # finished runs are not trained again; their scores come from the cache
    before = (direct / "derm7pt_bench.json").stat().st_mtime_ns
    bench.train(list(bench.METHODS), [0], out, overrides, progress=False)
    assert bench.write_tables(out, results, n_maps=4, overrides=overrides) == 0
    assert (direct / "derm7pt_bench.json").stat().st_mtime_ns == before
