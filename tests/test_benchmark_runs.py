"""benchmarks/_runs.py: runs recorded in a results file add up with the run directories of a sitting,
never across protocols, and are not trained again."""
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def runs():
    sys.path.insert(0, str(BENCH))
    import _runs
    return _runs


def _row(method: str, seed: int, value: float) -> dict:
    return {"method": method, "seed": seed, "values": {"map": value}}


def _write_record(results: Path, overrides: list[str], rows: list[dict]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench.json").write_text(json.dumps({"overrides": overrides, "runs": rows}))


def test_recorded_runs_only_under_the_same_overrides(runs, tmp_path):
    assert runs.recorded_runs(tmp_path, "bench", []) == []  # no results file yet
    rows = [_row("baseline", 0, 0.5)]
    _write_record(tmp_path, ["train.epochs=3"], rows)
    assert runs.recorded_runs(tmp_path, "bench", ["train.epochs=3"]) == rows
    assert runs.recorded_runs(tmp_path, "bench", []) == []
    assert runs.recorded_runs(tmp_path, "bench", ["train.epochs=4"]) == []


def test_recorded_runs_of_another_config_are_left_out(runs, tmp_path, capsys):
    rows = [{**_row("a", 0, 0.1), "config_digest": "old"}, {**_row("a", 1, 0.2), "config_digest": "new"},
            _row("a", 2, 0.3), {**_row("b", 0, 0.4), "config_digest": "old"}]  # seed 2: written before digests
    _write_record(tmp_path, [], rows)
    kept = runs.recorded_runs(tmp_path, "bench", [], digests={"a": "new", "b": "old"})
    assert [(r["method"], r["seed"]) for r in kept] == [("a", 1), ("a", 2), ("b", 0)]
    assert "left out 1 recorded run(s) trained with another config: a seed 0" in capsys.readouterr().out
    assert len(runs.recorded_runs(tmp_path, "bench", [])) == 4  # no digests given: every row


def test_protocol_digest_ignores_the_seed_only():
    sys.path.insert(0, str(BENCH))
    import _runs
    from medattn.config import load_config

    a, b = load_config("derm7pt_baseline"), load_config("derm7pt_baseline", ["seed=3"])
    assert _runs.protocol_digest(a) == _runs.protocol_digest(b)
    assert _runs.protocol_digest(a) != _runs.protocol_digest(load_config("derm7pt_baseline", ["train.epochs=3"]))


def test_merge_keeps_missing_records_and_a_run_directory_wins(runs, capsys):
    here = [_row("ibca", 1, 0.7), _row("baseline", 0, 0.9)]
    recorded = [_row("baseline", 0, 0.1), _row("retired", 0, 0.4), _row("baseline", 2, 0.2), _row("ibca", 0, 0.3)]
    merged = runs.merge_recorded(here, recorded, ["baseline", "ibca"])
    assert [(r["method"], r["seed"], r["values"]["map"]) for r in merged] == [
        ("baseline", 0, 0.9), ("baseline", 2, 0.2), ("ibca", 0, 0.3), ("ibca", 1, 0.7), ("retired", 0, 0.4)]
    assert "kept 3 recorded run(s)" in capsys.readouterr().out
    assert runs.merge_recorded(here, [], ["baseline", "ibca"]) == sorted(here, key=lambda r: r["method"])


def test_run_cells_skips_recorded_cells_and_rewrites_after_each(runs, capsys):
    trained, rewrites = [], []
    cells = [("baseline", 0), ("ibca", 0), ("baseline", 1)]
    runs.run_cells(cells, lambda m, s: trained.append((m, s)), recorded={("ibca", 0)},
                   after_each=lambda: rewrites.append(len(trained)))
    assert trained == [("baseline", 0), ("baseline", 1)]
    assert rewrites == [1, 2]
    assert "ibca seed 0: recorded in the results file, not trained again" in capsys.readouterr().out


def test_rows_keep_the_machine_that_measured_them(runs, tmp_path):
    here = runs.cpu_name()
    # an older file names one machine for all its rows; a new row is this machine's
    (tmp_path / "bench.json").write_text(json.dumps({"machine": "Other CPU", "overrides": [], "runs": [_row("a", 0, 0.1)]}))
    rows = runs.merge_recorded([_row("a", 1, 0.2)], runs.recorded_runs(tmp_path, "bench", []), ["a"])
    runs.write_results(tmp_path, "bench", "| table |", "protocol.yaml", [], rows)
    record = json.loads((tmp_path / "bench.json").read_text())
    assert [r["machine"] for r in record["runs"]] == ["Other CPU", here]
    assert record["machine"] == sorted({"Other CPU", here})


def test_cells_to_skip_follows_ignore_recorded_and_retrain(runs):
    import argparse

    recorded = [_row("baseline", 0, 0.1), _row("ibca", 2, 0.3)]
    args = lambda **kw: argparse.Namespace(**{"ignore_recorded": False, "retrain": False, **kw})  # noqa: E731
    assert runs.cells_to_skip(recorded, "method", args()) == {("baseline", 0), ("ibca", 2)}
    assert runs.cells_to_skip(recorded, "method", args(retrain=True)) == set()
    assert runs.cells_to_skip(recorded, "method", args(ignore_recorded=True)) == set()
    p = argparse.ArgumentParser()
    runs.add_table_arguments(p, "bench")
    parsed = p.parse_args(["--retrain"])
    assert parsed.retrain and not parsed.ignore_recorded
