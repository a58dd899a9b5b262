"""benchmarks/saliency_speed.py end to end on a tiny saved run (conftest.py): two real worker processes, the old code
exported from git, alternating chunks, the rows compared, the timings broken down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "saliency_speed.py"


def test_benchmark_times_both_implementations_and_compares_their_rows(run_dir, tmp_path):
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: the reference code is exported with git archive")
    result = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run_dir), "--data-format", "synthetic", "--limit", "4",
                           "--split", "test", "--batch-size", "2", "--chunk", "2", "--bootstrap", "20", "--reference-commit", "HEAD",
                           "--result", str(result)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(result.read_text())
    assert out["rows_equal"] == {"identical": True, "max_abs_diff": 0.0}  # HEAD against the checkout
    assert out["reference_commit"] == "HEAD" and out["machine"]["cores"] == os.cpu_count()
    for name in ("old", "new"):
        r = out["results"][name]
        assert r["images"] == 4 and len(r["chunk_seconds"]) == 2 and r["seconds_per_image"] > 0
        assert r["projected_600_image_run_s"] == pytest.approx(r["startup_s"] + 600 * r["seconds_per_image"]
                                                               + r["summary_s"])
        parts = r["breakdown_seconds_per_image"]
        assert 0 < parts["metrics: ssim (3 per map)"] < parts["metrics: score_rows (all metrics)"]
        assert parts["model: explain_batch (all passes + CAM maps)"] <= r["seconds_per_image"]
    assert "speed-up" in proc.stdout and "rows identical: True" in proc.stdout


def test_benchmark_refuses_chunks_that_split_batches(run_dir):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run_dir), "--batch-size", "4", "--chunk", "6"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert proc.returncode == 2 and "--chunk 6 must be a multiple of --batch-size 4" in proc.stderr
