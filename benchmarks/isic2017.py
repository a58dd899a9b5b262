"""ISIC 2017 Part 3 results table: every registered method under one protocol, resumable.

Protocol (configs/isic2017_baseline.yaml, which every method preset inherits): tf_efficientnet_lite0
with its offline ImageNet weights, 224 px from ../shared/data/isic2017_256, the same augmentation,
epochs, AdamW schedule and batch size; train on train, select the epoch on val (mean AUC of the two
ISIC 2017 tasks), report on test once. Each (method, seed) is a normal run directory
``OUT/runs/<method>/seed<k>``: finished runs are skipped, interrupted ones resume from their last
checkpoint, so the table can be built over several sittings.

    python benchmarks/isic2017.py                                   # everything (hours on 2 CPU cores)
    python benchmarks/isic2017.py --methods baseline biigma --seeds 0
    python benchmarks/isic2017.py --table-only                      # rebuild the table from finished runs
    python benchmarks/isic2017.py --table-only --tta dihedral       # the same, scored with 8-view TTA

Writes ``benchmarks/results/isic2017.json`` (per-run metrics, training time, test bootstrap CIs) and
``benchmarks/results/isic2017.md`` (the paper's Table 1 layout: per task F1 / accuracy / recall /
precision, plus AUC, AP, sensitivity at 80% specificity; then 3-class balanced accuracy and macro AUC),
with one more row per ensemble: the mean prediction of a method's seeds, and of all runs of the methods
that have several seeds. ``--tta MODE`` writes ``isic2017_tta-<MODE>.json/.md`` instead, every run
scored with test-time augmentation (``medattn evaluate RUN --tta MODE`` where it was not yet).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# benchmarks/ is on sys.path when a script runs
from _real_masks import robustness_scores, robustness_table, saliency_scores, saliency_table
from _runs import (add_table_arguments, archive_predictions, cells_to_skip, mean_std, merge_recorded,
                   predictions_source, protocol_digest, recorded_runs, run_cells, run_digest, training_seconds, write_results)
from medattn.config import load_config
from medattn.engine.ablation import cell_config, run_grid
from medattn.engine.inference import TTA_VIEWS

METHODS = {  # method -> preset; the presets differ from isic2017_baseline only in their model section
    "baseline": "isic2017_baseline",
    "se": "isic2017_se",
    "cbam": "isic2017_cbam",
    "soft_attention": "isic2017_softattn",
    "sibnet": "isic2017_sibnet",
    "biigma": "isic2017_biigma",
}
DEFAULT_SEEDS = {"baseline": [0, 1, 2], "se": [0, 1, 2], "cbam": [0, 1, 2], "biigma": [0, 1, 2]}  # the rest: [0]
TASKS = {"melanoma": "Melanoma", "seborrheic_keratosis": "SK"}
SEED_ENSEMBLE = ", seed ensemble"  # a method's seed ensemble row is "<method>, seed ensemble"
SALIENCY_TAG, SALIENCY_KEY = "isic2017_test", "saliency_isic2017_test"
ROBUSTNESS_KEY = "robustness_isic2017_test"  # background and mirror tests, RUN/robustness_isic2017_test.json
# HAM10000 test as the ham10000_* presets split it; HAM10000 class -> ISIC 2017 class
HAM10000_SPLIT = ["--set", "data.options.val_fraction=0.1", "--set", "data.options.test_fraction=0.2",
                  "--set", "data.options.seed=0"]
CROSS_HAM10000 = {"ham10000_test": "mel=melanoma,bkl=seborrheic_keratosis,nv=nevus",
                  "ham10000_test_mel": "mel=melanoma,*=nevus"}
TASK_COLUMNS = [("F1", "f1"), ("Acc", "accuracy"), ("Rec", "recall"), ("Prec", "precision"), ("AUC", "auc"),
                ("AP", "ap"), ("Sens@80%Spec", "sensitivity_at_80_specificity")]


def method_cell(method: str) -> dict:
    model = load_config(METHODS[method]).model
    return {"model": model.name, "options": dict(model.options)}


def _mean_std(values: list[float]) -> str:
    return mean_std(values, digits=4)


def _ci(run: dict, key: str) -> str:
    ci = run.get("ci95", {}).get(key)
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def table(rows: list[dict], ensembles: list[dict] = ()) -> str:
    """Markdown: Table 1 layout per task (mean ± std over seeds), then the 3-class and cost columns.
    Each ensemble is one more row (one evaluation, so no spread; its cost is its members' sum)."""
    groups = _by_cell(rows)
    for e in ensembles:
        groups[e["cell"]] = [e]
    lines = []
    for task, label in TASKS.items():
        lines += [f"**{label} vs rest** (test, n = 600)", "",
                  "| Method | seeds | " + " | ".join(c for c, _ in TASK_COLUMNS) + " |",
                  "|---|---|" + "---|" * len(TASK_COLUMNS)]
        for method, runs in groups.items():
            cells = [_mean_std([r["isic2017"][task][k] for r in runs]) for _, k in TASK_COLUMNS]
            lines.append(f"| {method} | {_seeds(runs)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["**3-class and cost** (test; CI: 95% bootstrap interval of the first seed's run, or of the ensemble)", "",
              "| Method | seeds | mean AUC (2 tasks) | balanced accuracy | macro AUC | train min | data wait |",
              "|---|---|---|---|---|---|---|"]
    for method, runs in groups.items():
        first = runs[0]
        wait = sum(r["data_wait_seconds"] for r in runs) / max(sum(r["train_seconds"] for r in runs), 1e-9)
        lines.append(f"| {method} | {_seeds(runs)} | {_mean_std([r['isic2017']['mean_auc'] for r in runs])}"
                     f"{_ci(first, 'isic2017.mean_auc')} | "
                     f"{_mean_std([r['balanced_accuracy'] for r in runs])}{_ci(first, 'balanced_accuracy')} | "
                     f"{_mean_std([r['macro_auc'] for r in runs])}{_ci(first, 'macro_auc')} | "
                     f"{np.mean([r['train_seconds'] for r in runs]) / 60:.1f} | {100 * wait:.1f}% |")
    return "\n".join(lines)


def _by_cell(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["cell"], []).append(r)
    return groups


def _seeds(runs: list[dict]) -> str:
    return f"{len(runs[0]['members'])} (mean)" if "members" in runs[0] else str(len(runs))


def ensemble_rows(rows: list[dict], n_boot: int = 1000, tta: str = "none", results: Path | None = None) -> list[dict]:
    """The mean prediction of each method's seeds (methods with 2+ seeds, every one of which has its test
    predictions, of ``tta`` where given: its run directory here or its archive under ``results``), and of every
    such run together; scored as one run, with bootstrap CIs. A method with a seed whose predictions
    are gone gets no ensemble here (one over the rest would not be the ensemble of the table's rows)."""
    from medattn.evaluation.ensemble import average_predictions
    from medattn.evaluation.report import split_metrics

    def source(row: dict) -> Path | None:
        if "run_dir" in row:
            return Path(row["run_dir"])
        return predictions_source(row, results, "isic2017", tta=tta) if results is not None else None

    seeded: dict[str, list[tuple[dict, Path]]] = {}  # method -> (row, predictions folder) of each seed
    for method, runs in _by_cell(rows).items():
        sources = [source(r) for r in runs]
        if len(runs) >= 2 and None not in sources:
            seeded[method] = list(zip(runs, sources))
    groups = {f"{m}{SEED_ENSEMBLE}": members for m, members in seeded.items()}
    if len(seeded) >= 2:
        groups[f"{' + '.join(seeded)}, ensemble"] = [member for members in seeded.values() for member in members]
    out = []
    for cell, members in groups.items():
        pred, classes = average_predictions([folder for _, folder in members], "test", tta)
        metrics = split_metrics(pred, None, classes, pred.task, n_boot)
        out.append({"cell": cell, "members": [f"{r['cell']}/seed{r['seed']}" for r, _ in members],
                    "train_seconds": sum(r["train_seconds"] for r, _ in members),
                    "data_wait_seconds": sum(r["data_wait_seconds"] for r, _ in members), **metrics})
    return out


def test_intervals(run_dir: Path, metrics: dict, n_boot: int = 1000, name: str = "test") -> dict:
    """95% bootstrap intervals of the headline test metrics from ``predictions_<name>.csv`` (for runs
    evaluated without them)."""
    from medattn.engine.run import read_run_classes
    from medattn.evaluation.report import read_predictions, split_metrics

    classes, task = read_run_classes(run_dir)
    pred = read_predictions(run_dir / f"predictions_{name}.csv", classes, task)
    return split_metrics(pred, metrics, classes, task, n_boot)["ci95"]


def finished_rows(out: Path, methods: list[str], tta: str = "none", evaluate_missing: bool = False) -> list[dict]:
    """One row per finished run (``eval_test.json`` present) of ``methods`` under ``out/runs``. With
    ``tta``, the row holds the run's ``eval_test_tta-<tta>.json``; ``evaluate_missing`` first writes it
    (``medattn evaluate RUN --tta <tta>``, about a minute per run on 2 cores) where it is missing."""
    from medattn.cli import main as medattn
    from medattn.evaluation.ensemble import predictions_name

    name = predictions_name("test", tta)
    rows = []
    for method in methods:
        for run_dir in sorted((out / "runs" / method).glob("seed*")):
            result = run_dir / f"eval_{name}.json"
            if not (run_dir / "eval_test.json").is_file():
                continue  # not finished
            if not result.is_file() and evaluate_missing:
                if medattn(["evaluate", str(run_dir), "--split", "test", "--tta", tta]) != 0:
                    raise RuntimeError(f"medattn evaluate {run_dir} --tta {tta} failed")
            if result.is_file():
                train_s, wait_s = training_seconds(run_dir)
                metrics = json.loads(result.read_text())
                if "ci95" not in metrics:
                    metrics["ci95"] = test_intervals(run_dir, metrics, name=name)
                rows.append({"cell": method, "seed": int(run_dir.name[4:]), "run_dir": str(run_dir),
                             "config_digest": run_digest(run_dir) if (run_dir / "config.yaml").is_file() else None,
                             "train_seconds": train_s, "data_wait_seconds": wait_s, **metrics})
    return rows


def method_digests(overrides: list[str]) -> dict[str, str]:
    """method -> ``protocol_digest`` of the config its runs are trained with now."""
    base = load_config("isic2017_baseline", overrides)
    return {m: protocol_digest(cell_config(base, method_cell(m), 0)) for m in METHODS}


def train(methods: list[str], seeds: list[int] | None, out: Path, overrides: list[str], progress: bool,
          recorded: set[tuple[str, int]] = frozenset(), after_each=None) -> None:
    """Train and evaluate on test every (method, seed) not finished yet and not in ``recorded``."""
    base = load_config("isic2017_baseline", overrides)
    grid = {m: method_cell(m) for m in methods}
    cells = [(m, s) for m in methods for s in (seeds if seeds is not None else DEFAULT_SEEDS.get(m, [0]))]
    run_cells(cells, lambda m, s: run_grid(base, grid, [s], out / "runs", splits=["test"], cells=[m], progress=progress),
              recorded, after_each)


def cross_scores(run_dir: Path, ham_root: str) -> dict:
    """The run on HAM10000 test (the ``ham10000_*`` presets' lesion-grouped split): mel / bkl / nv mapped
    to the ISIC 2017 classes (the other 4 classes left out), and melanoma against every other class
    (``medattn evaluate --map-classes``, each written once into the run directory)."""
    from medattn.cli import main as medattn

    out = {}
    for name, mapping in CROSS_HAM10000.items():
        path = run_dir / f"eval_{name}.json"
        if not path.is_file():
            args = ["evaluate", str(run_dir), "--data-format", "ham10000", "--data-root", ham_root, "--split", "test",
                    *HAM10000_SPLIT, "--map-classes", mapping, "--out", str(path)]
            if medattn(args) != 0:
                raise RuntimeError(f"medattn {' '.join(args)} failed")
        m = json.loads(path.read_text())
        out[name] = {"n": m["n"], "melanoma_auc": m["per_class"]["melanoma"]["auc"]}
        if "bkl" in mapping:  # melanoma against the rest has no SK images
            out[name]["sk_auc"] = m["per_class"]["seborrheic_keratosis"]["auc"]
    return out


def real_data_tables(rows: list[dict]) -> list[str]:
    """Markdown lines: the cross-data-set rows and the attention table, where rows hold them."""
    lines = []
    cross = [r for r in rows if "ham10000_test" in r]
    if cross:
        first = cross[0]
        lines += ["", f"**ISIC 2017-trained, scored on HAM10000 test** (the ham10000 presets' lesion-grouped test split; "
                  f"mel / bkl / nv mapped to melanoma / SK / nevus: {first['ham10000_test']['n']} images; melanoma "
                  f"against all 7 HAM10000 classes: {first['ham10000_test_mel']['n']} images; mean ± std over seeds)", "",
                  "| Method | seeds | melanoma AUC (3 classes) | SK (bkl) AUC | melanoma AUC (vs all) |", "|---|---|---|---|---|"]
        by: dict[str, list[dict]] = {}
        for r in cross:
            by.setdefault(r["cell"], []).append(r)
        for method, got in by.items():
            lines.append(f"| {method} | {len(got)} | {_mean_std([g['ham10000_test']['melanoma_auc'] for g in got])} | "
                         f"{_mean_std([g['ham10000_test']['sk_auc'] for g in got])} | "
                         f"{_mean_std([g['ham10000_test_mel']['melanoma_auc'] for g in got])} |")
    named = [{**r, "method": r["cell"]} for r in rows]
    for block in (saliency_table(named, SALIENCY_KEY, "Attention against the ISIC 2017 Part 1 lesion masks"),
                  robustness_table(named, ROBUSTNESS_KEY, "Background and mirror tests on the ISIC 2017 Part 1 lesion masks")):
        lines += [""] + block if block else []
    return lines


def write_tables(out: Path, results: Path, overrides: list[str], tta: str = "none", keep_recorded: bool = True,
                 masks: str | None = None, cross_ham10000: str | None = None) -> int:
    """Score the finished runs under ``out`` (and with ``keep_recorded`` keep the runs and ensembles
    recorded in the results file that have no directory here) and write the results files."""
    stem = "isic2017" if tta == "none" else f"isic2017_tta-{tta}"
    rows = finished_rows(out, list(METHODS), tta, evaluate_missing=True)
    for r in rows:  # the scores that need the checkpoint: while the run directory is here
        run_dir = Path(r["run_dir"])
        archive_predictions(run_dir, results, "isic2017", r["cell"], r["seed"], tta)
        mask_args = ["--set", "data.options.masks=available", "--set", f"data.options.mask_dir={masks}"] if masks else []
        if masks or (run_dir / f"saliency_{SALIENCY_TAG}.json").is_file():
            r[SALIENCY_KEY] = saliency_scores(run_dir, SALIENCY_TAG, [*mask_args, "--only-with-masks"])
        if masks or (run_dir / f"robustness_{SALIENCY_TAG}.json").is_file():
            r[ROBUSTNESS_KEY] = robustness_scores(run_dir, SALIENCY_TAG, mask_args)
        if cross_ham10000 or all((run_dir / f"eval_{n}.json").is_file() for n in CROSS_HAM10000):
            r.update(cross_scores(run_dir, cross_ham10000 or ""))
    here = rows
    if keep_recorded:
        recorded = recorded_runs(results, stem, overrides, method_digests(overrides), key="cell")
        rows = merge_recorded(rows, recorded, list(METHODS), key="cell")
    ensembles = ensemble_rows(rows, tta=tta, results=results)
    if keep_recorded:
        ensembles += kept_ensembles(recorded_ensembles(results, stem, overrides), ensembles, here, recorded)
    if not rows:
        print("no finished runs yet")
        return 1
    md = "\n".join([table(rows, ensembles), *real_data_tables(rows)])
    if tta != "none":
        md = f"Test-time augmentation: `{tta}` (every row, ensembles included)\n\n{md}"
    keep = ("cell", "seed", "machine", "config_digest", "train_seconds", "data_wait_seconds", "isic2017", "balanced_accuracy", "macro_auc",
            "macro_ap", "macro_f1", "accuracy", "ci95", SALIENCY_KEY, ROBUSTNESS_KEY, *CROSS_HAM10000)
    write_results(results, stem, md, "configs/isic2017_baseline.yaml", overrides,
                  [{k: r[k] for k in keep if k in r} for r in rows],
                  extra={"tta": tta, "ensembles": [{k: e[k] for k in ("members", *keep) if k in e} for e in ensembles]})
    return 0


def kept_ensembles(recorded: list[dict], computed: list[dict], here: list[dict], recorded_rows: list[dict]) -> list[dict]:
    """The recorded ensembles to keep: those not computed again from the predictions here, none of
    whose members here scores differently from its record (a member retrained to the same predictions,
    as a deterministic rerun of one protocol is, leaves the ensemble valid), and, for a method's seed
    ensemble, whose members are still all of that method's seeds."""
    name = lambda r: f"{r['cell']}/seed{r['seed']}"  # noqa: E731
    before = {name(r): r.get("isic2017") for r in recorded_rows}
    now = {name(r): r.get("isic2017") for r in here}
    seeds = _by_cell([*here, *(r for r in recorded_rows if name(r) not in now)])
    cells = {e["cell"] for e in computed}

    def covers_its_method(e: dict) -> bool:
        method = e["cell"].removesuffix(SEED_ENSEMBLE)
        return method == e["cell"] or sorted(e["members"]) == sorted(name(r) for r in seeds.get(method, []))

    return [e for e in recorded if e["cell"] not in cells and covers_its_method(e)
            and all(m not in now or (m in before and before[m] == now[m]) for m in e["members"])]


def recorded_ensembles(results: Path, stem: str, overrides: list[str]) -> list[dict]:
    """The ensemble rows of the results file written under the same overrides."""
    path = results / f"{stem}.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    return list(record.get("ensembles", [])) if list(record.get("overrides", [])) == list(overrides) else []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="seeds for every chosen method (default: 0 1 2 for baseline, SE, CBAM and BIIGMA-Net, 0 for the rest)")
    add_table_arguments(p, "isic2017")
    p.add_argument("--tta", default="none", choices=list(TTA_VIEWS),
                   help="score the finished runs with test-time augmentation (evaluating the ones not yet "
                        "scored so, about a minute each) and write isic2017_tta-<mode>.json/.md; default none")
    p.add_argument("--masks", metavar="MASK_DIR", default=None,
                   help="ISIC 2017 Part 1 lesion masks below MASK_DIR (e.g. ../shared/data/isic2017_256_masks): also "
                        "score every finished run's native maps and Grad-CAM against them (medattn saliency) and run the "
                        "background and mirror tests (medattn robustness); test images without a mask are left out of "
                        "these scores only")
    p.add_argument("--cross-ham10000", metavar="HAM10000_ROOT", default=None,
                   help="also score every finished run on HAM10000 test (e.g. ../shared/data/ham10000_200x150)")
    args = p.parse_args()
    keep = not args.ignore_recorded
    tables_now = lambda: write_tables(args.out, args.results, args.overrides, args.tta, keep,  # noqa: E731
                                      args.masks, args.cross_ham10000)
    if not args.table_only:
        stem = "isic2017" if args.tta == "none" else f"isic2017_tta-{args.tta}"
        recorded = cells_to_skip(recorded_runs(args.results, stem, args.overrides, method_digests(args.overrides),
                                               key="cell"), "cell", args)
        train(args.methods, args.seeds, args.out, args.overrides, progress=not args.quiet,
              recorded=recorded, after_each=tables_now)
    return tables_now()  # every finished run, not only this call's


if __name__ == "__main__":
    raise SystemExit(main())
