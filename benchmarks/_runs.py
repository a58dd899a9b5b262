"""What the results-table benchmarks share: the finished run directories of a benchmark, their
training cost, and mean ± std cells."""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from _machine import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"


def archived_files(tta: str = "none") -> tuple[str, str]:
    """What a paired comparison or an ensemble of runs reads from each: its class names and its test
    predictions (``predictions_test.csv``, or ``predictions_test_tta-<tta>.csv``)."""
    from medattn.evaluation.ensemble import predictions_name

    return "classes.json", f"predictions_{predictions_name('test', tta)}.csv"


def finished_runs(out: Path, methods: list[str]) -> list[tuple[str, int, Path]]:
    """(method, seed, run directory) of every finished run (``eval_test.json`` present) under
    ``out/runs/<method>/seed<k>``, in the order of ``methods`` then seed."""
    found = []
    for method in methods:
        for run_dir in sorted((out / "runs" / method).glob("seed*"), key=lambda p: int(p.name[4:])):
            if (run_dir / "eval_test.json").is_file():
                found.append((method, int(run_dir.name[4:]), run_dir))
    return found


def archive_folder(results: Path, name: str, cell: str, seed: int) -> Path:
    """``results/predictions/<name>/<cell>/seed<k>/``: where `archive_predictions` keeps a run's files."""
    return results / "predictions" / name / cell / f"seed{seed}"


def archive_predictions(run_dir: Path, results: Path, name: str, cell: str, seed: int, tta: str = "none") -> Path:
    """Copy a finished run's class names and test predictions (with ``tta``, those of that TTA mode) to
    ``results/predictions/<name>/<cell>/seed<k>/``.

    Run directories live on scratch disks that do not outlast a machine; these two small files (about
    40 KB for the 600 ISIC 2017 test images) are all that ``medattn.evaluation.paired.compare_runs``
    needs, so a later sitting can still compare a new run with this one image by image. Returns the
    archive folder; files are written atomically and only where they changed.
    """
    from medattn.files import atomic_write

    folder = archive_folder(results, name, cell, seed)
    for file in archived_files(tta):
        source, target = run_dir / file, folder / file
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            atomic_write(target, lambda tmp, source=source: shutil.copyfile(source, tmp))
    return folder


def predictions_source(row: dict, results: Path, name: str, key: str = "cell", tta: str = "none") -> Path | None:
    """Where a row's test predictions (with ``tta``, those of that TTA mode) can be read: its run
    directory when it is here, else its archive (`archive_predictions`), else None."""
    if "run_dir" in row:
        return Path(row["run_dir"])
    folder = archive_folder(results, name, row[key], row["seed"])
    return folder if all((folder / f).is_file() for f in archived_files(tta)) else None


def protocol_digest(cfg) -> str:
    """A short hash of everything in a run's config but its seed: two runs of one protocol share it."""
    settings = cfg.to_dict()
    settings.pop("seed", None)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_digest(run_dir: Path) -> str:
    """``protocol_digest`` of the config a run directory was trained with."""
    from medattn.engine.run import read_run_config

    return protocol_digest(read_run_config(run_dir))


def recorded_runs(results: Path, name: str, overrides: list[str], digests: dict[str, str] | None = None,
                  key: str = "method") -> list[dict]:
    """The per-run rows of ``results/<name>.json`` written under the same overrides: the record of runs
    whose directories may no longer exist (another machine, a cleaned scratch disk). Rows of other
    overrides are a different protocol and are never mixed in; nor, given ``digests`` (method ->
    ``protocol_digest`` of its config now), are rows whose ``config_digest`` differs (a preset
    changed since). Rows written before rows carried a digest are kept."""
    path = results / f"{name}.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    if list(record.get("overrides", [])) != list(overrides):
        return []
    machine = record.get("machine")  # files written before rows named their machine: the file's one
    rows = [{"machine": machine, **row} if isinstance(machine, str) else row for row in record.get("runs", [])]
    if digests is None:
        return rows
    stale = [r for r in rows if r.get("config_digest") and r["config_digest"] != digests.get(r[key], r["config_digest"])]
    if stale:
        print(f"left out {len(stale)} recorded run(s) trained with another config: "
              + ", ".join(f"{r[key]} seed {r['seed']}" for r in stale))
    return [r for r in rows if not any(r is s for s in stale)]


def merge_recorded(rows: list[dict], recorded: list[dict], methods: list[str], key: str = "method") -> list[dict]:
    """``rows`` (scored from run directories here) plus every recorded row of a (method, seed) they
    lack, ordered by ``methods`` then seed (recorded methods not in ``methods``, e.g. a retired
    variant kept under its own name, after them); ``key`` names the method field of a row. A run
    directory here always wins over its record."""
    have = {(r[key], r["seed"]) for r in rows}
    kept = [r for r in recorded if (r[key], r["seed"]) not in have]
    if kept:
        print(f"kept {len(kept)} recorded run(s) with no run directory here: "
              + ", ".join(f"{r[key]} seed {r['seed']}" for r in kept))
    order = list(dict.fromkeys([*methods, *(r[key] for r in kept)]))
    return sorted(rows + kept, key=lambda r: (order.index(r[key]), r["seed"]))


def cells_to_skip(recorded: list[dict], key: str, args: argparse.Namespace) -> set[tuple[str, int]]:
    """The (method, seed) pairs not to train because the results file records them: none with
    ``--ignore-recorded`` or ``--retrain``."""
    if args.ignore_recorded or args.retrain:
        return set()
    return {(r[key], r["seed"]) for r in recorded}


def run_cells(cells: list[tuple[str, int]], train_cell, recorded: set[tuple[str, int]] = frozenset(),
              after_each=None) -> None:
    """Train every (method, seed) of ``cells`` in order with ``train_cell(method, seed)``, except those in
    ``recorded`` (finished elsewhere, kept in the results file); ``after_each()`` after every trained
    cell, so that the results file holds each run as soon as it has finished."""
    for method, seed in cells:
        if (method, seed) in recorded:
            print(f"{method} seed {seed}: recorded in the results file, not trained again (--ignore-recorded to train it)")
            continue
        train_cell(method, seed)
        if after_each is not None:
            after_each()


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
    p.add_argument("--ignore-recorded", action="store_true",
                   help=f"use only the run directories under --out: neither keep the runs recorded in {name}.json "
                        "that have no directory here nor skip training them")
    p.add_argument("--retrain", action="store_true",
                   help="train the chosen methods and seeds again even where the results file records them (each new "
                        "run replaces its record; the other recorded runs stay in the tables)")


def write_results(results: Path, name: str, md: str, protocol: str, overrides: list[str], rows: list[dict],
                  extra: dict | None = None) -> None:
    """``results/<name>.json`` (machines, date, protocol, overrides, rows, then ``extra``) and
    ``results/<name>.md``. A row without a ``machine`` was measured here; the record's ``machine``
    lists every row's machine."""
    results.mkdir(parents=True, exist_ok=True)
    rows = [row if row.get("machine") else {**row, "machine": cpu_name()} for row in rows]
    machines = sorted({row["machine"] for row in rows})
    record = {"machine": machines[0] if len(machines) == 1 else machines, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "protocol": protocol, "overrides": overrides, "runs": rows, **(extra or {})}
    (results / f"{name}.json").write_text(json.dumps(record, indent=1, default=float) + "\n")
    (results / f"{name}.md").write_text(md + "\n")
    print(md)
    print(f"\nwrote {results / f'{name}.json'} and {results / f'{name}.md'}")
