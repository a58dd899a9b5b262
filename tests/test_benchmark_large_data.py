"""benchmarks/large_data.py end to end at a toy size: writes the images, decodes them into the
memory-mapped cache with 1 and 2 workers, trains on the mapped arrays in a fresh process, and writes
its results files (so the benchmark cannot silently rot while the library changes)."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "large_data.py"


def test_large_data_benchmark_runs_and_trains_on_the_mapped_cache(tmp_path):
    work, results = tmp_path / "work", tmp_path / "results"
    done = subprocess.run([sys.executable, str(SCRIPT), "--n", "48", "--val", "12", "--size", "32", "--source-size", "40",
                           "--rounds", "1", "--epochs", "1", "--steps", "2", "--batch", "8", "--work", str(work),
                           "--results", str(results), "--tag", "_toy"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((results / "large_data_toy.json").read_text())
    assert [r["workers"] for r in record["decode"]["runs"]] == [1, 2]
    assert all(r["images"] == 36 and r["img_per_s"] > 0 for r in record["decode"]["runs"])
    assert record["decoded_gb"] == round(36 * 32 * 32 * 3 / 1e9, 2)
    (train,) = record["train"]
    assert train["storage_option"] == "memmap" and train["arrays"] == {"train": "PagedArray", "val": "PagedArray"}
    assert train["arrays_in_ram_bytes"] == 0
    assert train["steps"] == 2 and train["train_images"] == 36 and train["val_images"] == 12
    assert 0 <= train["data_wait_share"] < 1
    assert "Speed-up of 2 workers over 1" in (results / "large_data_toy.md").read_text()
    assert not work.exists()  # removed without --keep
