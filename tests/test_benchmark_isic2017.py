"""benchmarks/isic2017.py's table from finished run directories (fake runs: no training)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from medattn.engine.evaluate import write_prediction_rows
from medattn.metrics.summary import compute_metrics

CLASSES = ["melanoma", "seborrheic_keratosis", "nevus"]
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "isic2017.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports benchmarks/_runs.py
    spec = importlib.util.spec_from_file_location("bench_isic2017", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finished_run(run_dir: Path, labels: np.ndarray, probs: np.ndarray, epoch_seconds: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "classes.json").write_text(json.dumps({"class_names": CLASSES, "task": "multiclass"}))
    ids = [f"ISIC_{i:07d}" for i in range(len(labels))]
    write_prediction_rows(run_dir / "predictions_test.csv", ids, probs, np.eye(3)[labels], CLASSES)
    (run_dir / "eval_test.json").write_text(json.dumps(compute_metrics(labels, probs, CLASSES, "multiclass")))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "seconds": epoch_seconds,
                                                               "data_wait_seconds": 1.0}) + "\n" for e in range(2)))


def test_table_has_seed_statistics_and_ensemble_rows(bench, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    aucs = {}
    for method, seeds in (("baseline", 3), ("biigma", 2), ("se", 1)):
        for s in range(seeds):
            logits = np.eye(3)[labels] + rng.normal(0, 1.5, (300, 3))
            probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            _finished_run(tmp_path / "runs" / method / f"seed{s}", labels, probs, epoch_seconds=60.0)
            aucs.setdefault(method, []).append(compute_metrics(labels, probs, CLASSES, "multiclass")["isic2017"]["mean_auc"])
    (tmp_path / "runs" / "cbam" / "seed0").mkdir(parents=True)  # unfinished: no eval_test.json, not in the table

    rows = bench.finished_rows(tmp_path, list(bench.METHODS))
    assert sorted((r["cell"], r["seed"]) for r in rows) == [("baseline", 0), ("baseline", 1), ("baseline", 2),
                                                           ("biigma", 0), ("biigma", 1), ("se", 0)]
    assert all(r["train_seconds"] == 120.0 and r["data_wait_seconds"] == 2.0 for r in rows)
    assert all("isic2017.mean_auc" in r["ci95"] for r in rows)  # bootstrapped from the predictions

    ensembles = {e["cell"]: e for e in bench.ensemble_rows(rows, n_boot=50)}
    assert list(ensembles) == ["baseline, seed ensemble", "biigma, seed ensemble", "baseline + biigma, ensemble"]
    both = ensembles["baseline + biigma, ensemble"]
    assert len(both["members"]) == 5 and both["train_seconds"] == 600.0
    assert both["isic2017"]["mean_auc"] > max(aucs["baseline"] + aucs["biigma"])  # independent noise averages out

    md = bench.table(rows, list(ensembles.values()))
    b = np.array(aucs["baseline"])
    assert f"| baseline | 3 | {b.mean():.4f} ± {b.std(ddof=1):.4f} [" in md
    assert f"| se | 1 | {aucs['se'][0]:.4f} [" in md
    assert "| baseline + biigma, ensemble | 5 (mean) | " in md
    assert "cbam" not in md
    assert md.count("**Melanoma vs rest**") == 1 and md.count("**SK vs rest**") == 1


def test_tta_rows_read_the_tta_files(bench, tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 90)
    for s in range(2):
        run_dir = tmp_path / "runs" / "baseline" / f"seed{s}"
        plain, tta = (rng.dirichlet(np.ones(3), 90) for _ in range(2))
        _finished_run(run_dir, labels, plain, epoch_seconds=10.0)
        if s == 0:  # only seed 0 was scored with TTA
            ids = [f"ISIC_{i:07d}" for i in range(90)]
            write_prediction_rows(run_dir / "predictions_test_tta-dihedral.csv", ids, tta, np.eye(3)[labels], CLASSES)
            expected = compute_metrics(labels, tta, CLASSES, "multiclass")
            (run_dir / "eval_test_tta-dihedral.json").write_text(json.dumps(expected))
    rows = bench.finished_rows(tmp_path, ["baseline"], tta="dihedral")
    assert [r["seed"] for r in rows] == [0]  # seed 1 has no TTA scores and evaluate_missing is off
    assert rows[0]["isic2017"]["mean_auc"] == pytest.approx(expected["isic2017"]["mean_auc"])
    assert "isic2017.mean_auc" in rows[0]["ci95"]
