"""benchmarks/isic2017.py's table from finished run directories (fake runs: no training), and one tiny
trained run scored on real-layout lesion masks and on HAM10000, kept from the results file when its
directory is gone."""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from readers_testkit import make_ham, make_isic2017, write_mask  # noqa: E402

from medattn.engine.evaluate import write_prediction_rows  # noqa: E402
from medattn.metrics.summary import compute_metrics  # noqa: E402

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


def test_seed_ensembles_read_archived_predictions_once_run_directories_are_gone(bench, tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 120)
    results = tmp_path / "results"
    probs, tta_probs = {}, {}
    ids = [f"ISIC_{i:07d}" for i in range(120)]
    for method in ("baseline", "se"):
        for s in range(2):
            run_dir = tmp_path / "runs" / method / f"seed{s}"
            probs[method, s], tta_probs[method, s] = (rng.dirichlet(np.ones(3), 120) * 0.5 + np.eye(3)[labels] * 0.5
                                                      for _ in range(2))
            _finished_run(run_dir, labels, probs[method, s], epoch_seconds=30.0)
            if method == "baseline":  # only the baseline was scored with TTA
                write_prediction_rows(run_dir / "predictions_test_tta-dihedral.csv", ids, tta_probs[method, s],
                                      np.eye(3)[labels], CLASSES)
    rows = bench.finished_rows(tmp_path, list(bench.METHODS))
    for r in rows:  # what write_tables does for every run here, without and with TTA
        bench.archive_predictions(Path(r["run_dir"]), results, "isic2017", r["cell"], r["seed"])
        if r["cell"] == "baseline":
            bench.archive_predictions(Path(r["run_dir"]), results, "isic2017", r["cell"], r["seed"], tta="dihedral")
    recorded = [{k: v for k, v in r.items() if k != "run_dir"} for r in rows]  # as the results file keeps them
    shutil.rmtree(tmp_path / "runs" / "baseline")  # baseline's directories gone; SE seed 1's still here
    mixed = bench.merge_recorded([r for r in rows if (r["cell"], r["seed"]) == ("se", 1)], recorded, list(bench.METHODS), key="cell")
    ensembles = {e["cell"]: e for e in bench.ensemble_rows(mixed, n_boot=20, results=results)}
    assert list(ensembles) == ["baseline, seed ensemble", "se, seed ensemble", "baseline + se, ensemble"]
    expected = compute_metrics(labels, (probs["baseline", 0] + probs["baseline", 1]) / 2, CLASSES, "multiclass")
    assert ensembles["baseline, seed ensemble"]["isic2017"]["mean_auc"] == pytest.approx(expected["isic2017"]["mean_auc"], abs=1e-6)
    assert len(ensembles["baseline + se, ensemble"]["members"]) == 4
    # with TTA: the baseline's archives hold its TTA files, SE has none (its directories have none either)
    tta = {e["cell"]: e for e in bench.ensemble_rows(mixed, n_boot=20, results=results, tta="dihedral")}
    assert list(tta) == ["baseline, seed ensemble"]
    expected = compute_metrics(labels, (tta_probs["baseline", 0] + tta_probs["baseline", 1]) / 2, CLASSES, "multiclass")
    assert tta["baseline, seed ensemble"]["isic2017"]["mean_auc"] == pytest.approx(expected["isic2017"]["mean_auc"], abs=1e-6)
    # one baseline seed with neither a directory nor an archive: no baseline ensemble over the rest
    shutil.rmtree(results / "predictions" / "isic2017" / "baseline" / "seed1")
    assert [e["cell"] for e in bench.ensemble_rows(mixed, n_boot=20, results=results)] == ["se, seed ensemble"]
    assert bench.ensemble_rows(mixed, n_boot=20, results=results, tta="dihedral") == []


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


def test_run_on_lesion_masks_and_ham10000_is_kept_when_its_directory_is_gone(bench, tmp_path):
    rng = np.random.default_rng(2)
    parts = {part: [(int(r < 0.3), int(0.3 <= r < 0.6)) for r in rng.random(n)]
             for part, n in (("Training", 40), ("Validation", 16), ("Test_v2", 20))}
    ids = make_isic2017(tmp_path / "isic", parts)
    masks = tmp_path / "masks"  # Part 1 masks in their own folder, as ../shared/data/isic2017_256_masks
    for part, part_ids in ids.items():
        for i in part_ids[1:] if part == "Test_v2" else part_ids:  # one test image has no mask
            write_mask(masks / f"ISIC-2017_{part}_Part1_GroundTruth" / f"{i}_segmentation.png")
    ham = make_ham(tmp_path / "ham", [(dx, 1) for k in range(70) for dx in [["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"][k % 7]]])
    overrides = [f"data.root={tmp_path / 'isic'}", "data.image_size=32", "train.epochs=1", "train.batch_size=8",
                 "train.precision=fp32", "model.backbone=resnet10t", "model.pretrained=false"]
    out, results = tmp_path / "bench", tmp_path / "results"
    bench.train(["baseline"], [0], out, overrides, progress=False)
    assert bench.write_tables(out, results, overrides, masks=str(masks), cross_ham10000=str(tmp_path / "ham")) == 0
    row = json.loads((results / "isic2017.json").read_text())["runs"][0]
    run_dir = out / "runs" / "baseline" / "seed0"

    sal = row["saliency_isic2017_test"]
    assert (sal["n_images"], sal["n_scored"], sal["left_out"]) == (20, 19, 1)  # left out of the mask scores only
    summary = json.loads((run_dir / "saliency_isic2017_test.json").read_text())
    assert sal["maps"]["gradcam"]["continuous.pointing_game"]["mean"] == summary["maps"]["gradcam"]["continuous"]["pointing_game"]["mean"]

    rob = row["robustness_isic2017_test"]
    full = json.loads((run_dir / "robustness_isic2017_test.json").read_text())
    assert rob["n_images"] == 19 and rob["metric"] == "isic2017.mean_auc"
    assert rob["swap"]["flip_fraction"] == full["background"]["swap"]["flip_fraction"]
    assert rob["lesion_removed"]["delta"] == pytest.approx(
        full["background"]["lesion_removed"]["metrics"]["isic2017"]["mean_auc"] - full["background"]["swap"]["metrics"]["isic2017"]["mean_auc"]
        + rob["swap"]["delta"])  # both against the same clean predictions
    assert rob["swap"]["delta_ci95"][0] <= rob["swap"]["delta"] <= rob["swap"]["delta_ci95"][1]

    mapped = json.loads((run_dir / "eval_ham10000_test.json").read_text())
    vs_all = json.loads((run_dir / "eval_ham10000_test_mel.json").read_text())
    assert mapped["n"] < vs_all["n"]  # akiec, bcc, df, vasc left out of the 3-class mapping only
    assert row["ham10000_test_mel"]["melanoma_auc"] == vs_all["per_class"]["melanoma"]["auc"]
    assert row["ham10000_test"]["sk_auc"] == mapped["per_class"]["seborrheic_keratosis"]["auc"]
    md = (results / "isic2017.md").read_text()
    assert "**ISIC 2017-trained, scored on HAM10000 test**" in md and "| baseline | gradcam | 1 |" in md
    assert "**Background and mirror tests on the ISIC 2017 Part 1 lesion masks** (19 test images" in md
    assert len({r[2] for r in ham}) == 7

    # the run directory is gone (another machine, a cleaned disk): the record keeps the row and its
    # mask and cross scores, and the run is not trained again
    shutil.rmtree(out)
    recorded = {(r["cell"], r["seed"]) for r in bench.recorded_runs(results, "isic2017", overrides)}
    bench.train(["baseline"], [0], out, overrides, progress=False, recorded=recorded)
    assert not (out / "runs").exists()
    assert bench.write_tables(out, results, overrides) == 0
    assert (results / "isic2017.md").read_text() == md
    assert json.loads((results / "isic2017.json").read_text())["runs"][0] == row
    assert bench.write_tables(out, results, overrides, keep_recorded=False) == 1  # nothing here


def test_recorded_ensembles_stay_while_their_members_score_as_recorded(bench):
    row = lambda cell, seed, auc: {"cell": cell, "seed": seed, "isic2017": {"mean_auc": auc}}  # noqa: E731
    recorded_rows = [row("baseline", s, 0.8 + s / 100) for s in range(3)] + [row("se", 0, 0.85), row("se", 1, 0.86)]
    ens = [{"cell": "baseline, seed ensemble", "members": ["baseline/seed0", "baseline/seed1", "baseline/seed2"]},
           {"cell": "se, seed ensemble", "members": ["se/seed0", "se/seed1"]}]
    keep = lambda here, computed=(): [e["cell"] for e in bench.kept_ensembles(ens, list(computed), here, recorded_rows)]  # noqa: E731
    assert keep([]) == ["baseline, seed ensemble", "se, seed ensemble"]  # nothing here: both kept
    assert keep([row("baseline", 0, 0.8)]) == ["baseline, seed ensemble", "se, seed ensemble"]  # rerun, same scores
    assert keep([row("baseline", 0, 0.81)]) == ["se, seed ensemble"]  # a member changed: its ensemble goes
    assert keep([row("se", 1, 0.9)]) == ["baseline, seed ensemble"]  # a member retrained to other scores
    assert keep([row("se", 2, 0.9)]) == ["baseline, seed ensemble"]  # a new seed the ensemble lacks
    assert keep([], [{"cell": "se, seed ensemble"}]) == ["baseline, seed ensemble"]  # computed again here
    # a member here with no record at all cannot be the same run
    assert [e["cell"] for e in bench.kept_ensembles(ens, [], [row("se", 1, 0.86)], recorded_rows[:4])] == ["baseline, seed ensemble"]
    # a seed ensemble over only some of its method's seeds (written while the others had no predictions) goes
    two = [{"cell": "baseline, seed ensemble", "members": ["baseline/seed1", "baseline/seed2"]}]
    assert bench.kept_ensembles(two, [], [], recorded_rows) == []
    assert bench.kept_ensembles(two, [], [], recorded_rows[1:]) == two  # seed 0 no longer in the table
