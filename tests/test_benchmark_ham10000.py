"""benchmarks/ham10000.py end to end on small fake HAM10000 and ISIC 2017 trees: three methods train
(one epoch, tiny backbone), the table is computed from their predictions, the runs are scored on
ISIC 2017 test through medattn evaluate --map-classes."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from readers_testkit import make_ham, make_isic2017  # noqa: E402

from medattn.engine.run import read_run_classes  # noqa: E402
from medattn.evaluation.report import read_predictions  # noqa: E402
from medattn.metrics.classification import biigma_macro_metrics  # noqa: E402
from medattn.metrics.summary import compute_metrics  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # the script imports benchmarks/_machine.py and _runs.py
    spec = importlib.util.spec_from_file_location("bench_ham10000", BENCH / "ham10000.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ham10000_benchmark_table_and_isic2017_cross_scores(bench, tmp_path):
    make_ham(tmp_path / "ham", [(dx, 1 + (k % 2)) for k in range(70) for dx in [HAM[k % 7]]],
             mask_folder="HAM10000_segmentations")
    rng = np.random.default_rng(0)
    make_isic2017(tmp_path / "isic", {"Test_v2": [(int(r < 0.3), int(0.3 <= r < 0.6)) for r in rng.random(30)]})
    overrides = [f"data.root={tmp_path / 'ham'}", "data.image_size=160", "train.epochs=1", "train.batch_size=16",
                 "train.precision=fp32", "model.backbone=resnet10t", "model.pretrained=false"]
    out = tmp_path / "bench"
    methods = ["baseline", "soft_attention", "biigma"]
    bench.train(methods, [0], out, overrides, progress=False)
    results = tmp_path / "results"
    assert bench.write_tables(out, results, overrides, cross_root=str(tmp_path / "isic"), saliency=True) == 0
    runs = {r["method"]: r for r in json.loads((results / "ham10000.json").read_text())["runs"]}
    assert set(runs) == set(methods)

    run_dir = out / "runs" / "biigma" / "seed0"
    names, task = read_run_classes(run_dir)
    assert names == HAM
    pred = read_predictions(run_dir / "predictions_test.csv", names, task)
    y = np.argmax(pred.onehot, axis=1)
    archived = results / "predictions" / "ham10000" / "biigma" / "seed0" / "predictions_test.csv"
    assert archived.read_bytes() == (run_dir / "predictions_test.csv").read_bytes()
    m = compute_metrics(y, pred.probs, names, "multiclass")
    got = runs["biigma"]["values"]
    assert got["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"])
    assert got["macro_recall"] == pytest.approx(m["balanced_accuracy"])  # macro recall is balanced accuracy
    table1 = biigma_macro_metrics(y, pred.probs)  # Table 1's columns as BIIGMA-Net's code computes them
    assert got["macro_precision"] == pytest.approx(table1["macro_precision"])
    assert got["macro_f1"] == pytest.approx(table1["macro_f1"]) and np.isfinite(got["macro_precision"])
    assert got["recall.mel"] == pytest.approx(m["per_class"]["mel"]["recall_argmax"])
    low, high = runs["biigma"]["ci95"]["macro_auc"]
    assert low <= got["macro_auc"] <= high

    cross = json.loads((run_dir / "eval_isic2017_test.json").read_text())
    assert cross["n"] == 30 and runs["biigma"]["isic2017_test"]["mel_auc"] == cross["per_class"]["mel"]["auc"]
    md = (results / "ham10000.md").read_text()
    for line in ("| baseline | 1 |", "| soft_attention | 1 |", "| *BIIGMA-Net paper, ISIC 2018 (Table 1)* | | 0.822 |",
                 "**HAM10000-trained, scored on ISIC 2017 test**", "| biigma | 1 | 30 |"):
        assert line in md

    # every run's maps against the HAM10000 masks of its test split: the row holds medattn saliency's means
    summary = json.loads((run_dir / "saliency_ham10000_test.json").read_text())
    assert summary["n_scored"] == runs["biigma"]["n"]
    sal = runs["biigma"]["saliency_ham10000_test"]
    assert set(sal["maps"]) == set(summary["maps"]) and "gradcam" in sal["maps"] and len(sal["maps"]) > 1  # + native
    assert sal["maps"]["gradcam"]["convex_hull.dice"]["mean"] == summary["maps"]["gradcam"]["convex_hull"]["dice"]["mean"]
    assert "**Attention against the HAM10000 lesion masks**" in md
    assert md.count("| gradcam | 1 |") == len(methods)
