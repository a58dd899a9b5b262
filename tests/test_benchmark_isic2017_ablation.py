"""benchmarks/isic2017_ablation.py: Table 2's layout from finished cells (fake runs, no training), the
default rows taken from benchmarks/isic2017.py's biigma runs, paired changes against them, and the
record kept when the run directories are gone."""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from medattn.engine.evaluate import write_prediction_rows
from medattn.metrics.summary import compute_metrics

CLASSES = ["melanoma", "seborrheic_keratosis", "nevus"]
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "isic2017_ablation.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_isic2017_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finished_run(run_dir: Path, labels: np.ndarray, probs: np.ndarray) -> dict:
    run_dir.mkdir(parents=True)
    (run_dir / "classes.json").write_text(json.dumps({"class_names": CLASSES, "task": "multiclass"}))
    ids = [f"ISIC_{i:07d}" for i in range(len(labels))]
    write_prediction_rows(run_dir / "predictions_test.csv", ids, probs, np.eye(3)[labels], CLASSES)
    metrics = compute_metrics(labels, probs, CLASSES, "multiclass")
    (run_dir / "eval_test.json").write_text(json.dumps(metrics))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "seconds": 30.0, "data_wait_seconds": 0.5}) + "\n")
    return metrics


def test_the_default_is_benchmarks_isic2017_biigma(bench):
    digests = bench.cell_digests([])
    assert digests["heads_3"] == digests["sigma_2.0"] == bench.method_digests([])["biigma"]
    assert len({digests[c] for c in bench.DEFAULT_CELLS}) == len(bench.DEFAULT_CELLS)  # every cell changes something


def test_table_pairs_each_cell_with_the_default_and_keeps_the_record(bench, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    noisy = lambda scale: np.exp(np.eye(3)[labels] + rng.normal(0, scale, (300, 3)))  # noqa: E731
    isic_out, out, results = tmp_path / "isic2017", tmp_path / "ablation", tmp_path / "results"
    default = {s: _finished_run(isic_out / "runs" / "biigma" / f"seed{s}", labels, p / p.sum(1, keepdims=True))
               for s, p in ((0, noisy(1.0)), (1, noisy(1.0)))}
    heads_1 = _finished_run(out / "runs" / "heads_1" / "seed0", labels, (p := noisy(3.0)) / p.sum(1, keepdims=True))
    _finished_run(out / "runs" / "heads_1" / "seed1", labels, (p := noisy(3.0)) / p.sum(1, keepdims=True))
    (out / "runs" / "sigma_4.0" / "seed0").mkdir(parents=True)  # unfinished: not in the table

    assert bench.write_tables(out, results, [], isic_out) == 0
    record = json.loads((results / "isic2017_ablation.json").read_text())
    assert [(r["cell"], r["seed"]) for r in record["runs"]] == [("heads_1", 0), ("heads_1", 1)]
    assert [(r["cell"], r["seed"]) for r in record["default"]] == [("biigma", 0), ("biigma", 1)]
    paired = record["runs"][0]["paired_vs_default"]
    assert paired["reference"] == "biigma/seed0"
    expected = heads_1["isic2017"]["mean_auc"] - default[0]["isic2017"]["mean_auc"]
    assert paired["delta.isic2017.mean_auc"]["value"] == pytest.approx(expected)
    low, high = paired["delta.isic2017.mean_auc"]["ci95"]
    assert high < 0  # noise 3 vs 1: worse on every resample's scale

    md = (results / "isic2017_ablation.md").read_text()
    lines = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    assert set(lines) == {"| Setting", "| Heads = 1", "| Heads = 3 (default)", "| Sigma = 2.0 (default)"}
    d = np.array([m["isic2017"]["mean_auc"] for m in default.values()])
    assert f"| {d.mean():.3f} ± {d.std(ddof=1):.3f} [" in lines["| Heads = 3 (default)"]
    assert lines["| Heads = 3 (default)"].endswith("| 0.7203 / 0.7921 / 0.7116 |")  # the paper's ISIC 17 row
    assert f"| {expected:+.3f} [{low:+.3f}, {high:+.3f}] |" in lines["| Heads = 1"]
    assert "| Heads = 1 | 2 |" in lines["| Heads = 1"] and "0.6896 / 0.7600 / 0.6956" in lines["| Heads = 1"]

    # every run directory gone: the record keeps the cells and their paired changes; nothing retrains
    shutil.rmtree(out)
    shutil.rmtree(isic_out)
    skip = bench.cells_to_skip(bench.recorded_runs(results, "isic2017_ablation", [], bench.cell_digests([]), key="cell"),
                               "cell", type("Args", (), {"ignore_recorded": False, "retrain": False})())
    assert skip == {("heads_1", 0), ("heads_1", 1)}
    assert bench.write_tables(out, results, [], isic_out) == 0
    again = (results / "isic2017_ablation.md").read_text()
    assert "| Heads = 1 | 2 |" in again and f"{expected:+.3f} [" in again
    assert "(default)" not in again  # the default rows come from isic2017.json, which this test never wrote


def test_a_new_cell_is_paired_with_the_archived_default_when_its_run_directory_is_gone(bench, tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    noisy = lambda scale: (p := np.exp(np.eye(3)[labels] + rng.normal(0, scale, (200, 3)))) / p.sum(1, keepdims=True)  # noqa: E731
    isic_out, out, results = tmp_path / "isic2017", tmp_path / "ablation", tmp_path / "results"
    default_dir = isic_out / "runs" / "biigma" / "seed0"
    default = _finished_run(default_dir, labels, noisy(1.0))
    archive = bench.archive_predictions(default_dir, results, "isic2017", "biigma", 0)
    assert archive == results / "predictions" / "isic2017" / "biigma" / "seed0"
    assert (archive / "predictions_test.csv").read_bytes() == (default_dir / "predictions_test.csv").read_bytes()
    record = {"machine": "m", "overrides": [], "runs": [{"cell": "biigma", "seed": 0, "isic2017": default["isic2017"],
                                                         "accuracy": default["accuracy"], "macro_auc": default["macro_auc"],
                                                         "balanced_accuracy": default["balanced_accuracy"]}]}
    (results / "isic2017.json").write_text(json.dumps(record))
    shutil.rmtree(isic_out)  # a later sitting on a fresh machine: only the results folder is left

    cell = _finished_run(out / "runs" / "sigma_4.0" / "seed0", labels, noisy(2.0))
    assert bench.write_tables(out, results, [], isic_out) == 0
    row = json.loads((results / "isic2017_ablation.json").read_text())["runs"][0]
    assert row["paired_vs_default"]["delta.isic2017.mean_auc"]["value"] == pytest.approx(
        cell["isic2017"]["mean_auc"] - default["isic2017"]["mean_auc"])
    assert (results / "predictions" / "isic2017_ablation" / "sigma_4.0" / "seed0" / "classes.json").is_file()

    shutil.rmtree(out)  # the cell's directory gone too: recomputed from both archives, the same numbers
    before = (results / "isic2017_ablation.md").read_text()
    assert bench.write_tables(out, results, [], isic_out) == 0
    assert (results / "isic2017_ablation.md").read_text() == before
