"""What the results-table benchmarks share: the finished run directories of a benchmark, their
training cost, and mean ± std cells."""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from _machine import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"


def finished_runs(out: Path, methods: list[str]) -> list[tuple[str, int, Path]]:
    """(method, seed, run directory) of every finished run (``eval_test.json`` present) under
    ``out/runs/<method>/seed<k>``, in the order of ``methods`` then seed."""
    found = []
    for method in methods:
        for run_dir in sorted((out / "runs" / method).glob("seed*"), key=lambda p: int(p.name[4:])):
            if (run_dir / "eval_test.json").is_file():
                found.append((method, int(run_dir.name[4:]), run_dir))
    return found


def training_seconds(run_dir: Path) -> tuple[float, float]:
    """(training seconds, seconds spent waiting for data), summed over the epochs of metrics.jsonl."""
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return sum(e.get("seconds", 0.0) for e in log), sum(e.get("data_wait_seconds", 0.0) for e in log)


def mean_std(values, digits: int = 3, ci: list | None = None) -> str:
    """``mean ± sample std`` of the finite values (one value: itself; none: "-"), then `` [low, high]``
    when ``ci`` is given."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "-"
    text = f"{v[0]:.{digits}f}" if v.size == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
    if ci and all(c is not None and math.isfinite(c) for c in ci):
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def add_table_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """The options every results-table benchmark has: --set, --out, --results, --table-only, --quiet."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the shared protocol (every method), e.g. data.root=DIR")
    p.add_argument("--out", type=Path, default=Path(f"runs/benchmark_{name}"),
                   help=f"where the run directories go (default runs/benchmark_{name})")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"where {name}.json/.md go")
    p.add_argument("--table-only", action="store_true", help="no training: rebuild the tables from finished runs")
    p.add_argument("--quiet", action="store_true")


def write_results(results: Path, name: str, md: str, protocol: str, overrides: list[str], rows: list[dict]) -> None:
    """``results/<name>.json`` (machine, date, protocol, overrides, rows) and ``results/<name>.md``."""
    results.mkdir(parents=True, exist_ok=True)
    record = {"machine": cpu_name(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "protocol": protocol, "overrides": overrides, "runs": rows}
    (results / f"{name}.json").write_text(json.dumps(record, indent=1, default=float) + "\n")
    (results / f"{name}.md").write_text(md + "\n")
    print(md)
    print(f"\nwrote {results / f'{name}.json'} and {results / f'{name}.md'}")
