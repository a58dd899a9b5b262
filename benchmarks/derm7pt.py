"""derm7pt 7-point checklist benchmark: every multi-label method on the seven criteria, the checklist's
melanoma decision from their predictions, and a direct melanoma classifier beside it; resumable.

Protocol (configs/derm7pt_baseline.yaml, which every criteria preset inherits): derm7pt_384's 1011
dermoscopic images, split stratified by diagnosis 40 / 20 / 40 % (seed 0: 408 / 204 / 399), the seven
criteria as binary labels (melanoma-indicative level present), tf_efficientnet_lite0 with its offline
ImageNet weights at 224 px, 20 epochs, the epoch selected on val mAP, per-criterion thresholds tuned
on val (F1), reported on test once. Methods: the plain backbone with BCE, ``class_query``, the
IBCA-style model, and SIBnet's saliency losses on the baseline (Mahapatra & Reyes' multi-label
setting). ``melanoma_direct`` is ``derm7pt_melanoma``: the same images and split, the baseline trained
on melanoma vs the rest.

Each (method, seed) is a normal run directory ``OUT/runs/<method>/seed<k>``: finished runs are skipped,
interrupted ones resume from their last checkpoint.

    python benchmarks/derm7pt.py                               # every method, seeds 0 1 2 (hours on 2 CPU cores)
    python benchmarks/derm7pt.py --methods baseline ibca --seeds 0
    python benchmarks/derm7pt.py --table-only                  # rebuild the tables from finished runs

The results file is also the record of runs done elsewhere: a (method, seed) recorded in
``results/derm7pt.json`` (under the same ``--set`` overrides) that has no run directory under ``--out``
stays in the tables and is not trained again, so that seeds run on different machines or sittings
add up (``--ignore-recorded`` uses only the run directories here). The tables are rewritten after
every finished run.

Writes ``benchmarks/results/derm7pt.json`` and ``derm7pt.md``: the criteria table (CP, CR, CF1, OP,
OR, OF1 at the val thresholds, mAP, macro AUC; mean ± std over seeds, the first seed's 95% bootstrap
interval), per-criterion test AUC, the melanoma rows (checklist from each method's predicted
criteria: expected-score AUC and the decision at score >= 3; the direct classifier; the score of the
annotated criteria, the ceiling), and the distinctness of each method's per-criterion maps.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# benchmarks/ is on sys.path when a script runs
from _runs import (add_table_arguments, archive_predictions, cells_to_skip, finished_runs, mean_std, merge_recorded,
                   protocol_digest, recorded_runs, run_cells, run_digest, training_seconds, write_results)
from medattn.config import load_config
from medattn.engine.ablation import cell_config, run_grid

CRITERIA_METHODS = {  # method -> preset; they differ from derm7pt_baseline only in their model section
    "baseline": "derm7pt_baseline",
    "class_query": "derm7pt_class_query",
    "ibca": "derm7pt_ibca",
    "sibnet": "derm7pt_sibnet",
}
DIRECT = "melanoma_direct"
METHODS = [*CRITERIA_METHODS, DIRECT]
HEADLINE = [("CP", "cp"), ("CR", "cr"), ("CF1", "cf1"), ("OP", "op"), ("OR", "or"), ("OF1", "of1")]


def _bases_and_grid(overrides: list[str]):
    """The protocol of every method: its base config and its grid cell (model and options)."""
    criteria_base = load_config("derm7pt_baseline", overrides)
    direct_base = load_config("derm7pt_melanoma", overrides)
    grid = {m: {"model": load_config(p).model.name, "options": dict(load_config(p).model.options)}
            for m, p in CRITERIA_METHODS.items()}
    grid[DIRECT] = {"model": direct_base.model.name, "options": dict(direct_base.model.options)}
    return {m: direct_base if m == DIRECT else criteria_base for m in METHODS}, grid


def method_digests(overrides: list[str]) -> dict[str, str]:
    """method -> ``protocol_digest`` of the config its runs are trained with now."""
    bases, grid = _bases_and_grid(overrides)
    return {m: protocol_digest(cell_config(bases[m], grid[m], 0)) for m in METHODS}


def train(methods: list[str], seeds: list[int], out: Path, overrides: list[str], progress: bool,
          recorded: set[tuple[str, int]] = frozenset(), after_each=None) -> None:
    """Train and evaluate on test every (method, seed) not finished yet and not in ``recorded``; seeds
    outermost, so that a short sitting gives every method its first seed."""
    bases, grid = _bases_and_grid(overrides)

    def train_cell(method: str, seed: int) -> None:
        run_grid(bases[method], grid, [seed], out / "runs", splits=["test"], cells=[method], progress=progress)

    run_cells([(m, s) for s in seeds for m in methods], train_cell, recorded, after_each)


def _mean_std(values, ci: list | None = None) -> str:
    return mean_std(values, 3, ci)


def _criteria_scores(names: list[str], weights: np.ndarray, thresholds: np.ndarray, threshold_points: float):
    """The bootstrapped statistics of a criteria run: y is N x 8 (the 7 criteria, then melanoma)."""
    from medattn.metrics.checklist import checklist_melanoma
    from medattn.metrics.summary import compute_metrics

    def scores(y: np.ndarray, p: np.ndarray) -> dict:
        m = compute_metrics(y[:, :-1], p, names, "multilabel", thresholds=thresholds)
        c = checklist_melanoma(p, y[:, -1], weights, thresholds, criteria_truth=y[:, :-1], threshold=threshold_points)
        out = {k: m[k] for k in ("map", "macro_auc", *(key for _, key in HEADLINE))}
        out.update({f"auc.{n}": m["per_class"][n]["auc"] for n in names})
        for source in ("expected_score", "decided_score", "annotated_ceiling"):
            out.update({f"{source}.{k}": c[source][k] for k in ("auc", "sensitivity", "specificity")})
        return out
    return scores


def _direct_scores(threshold: float):
    from medattn.metrics.classification import binary_task_metrics

    def scores(y: np.ndarray, p: np.ndarray) -> dict:
        m = binary_task_metrics(y, p, threshold=threshold)
        return {"auc": m["auc"], "sensitivity": m["recall"], "specificity": m["specificity"]}
    return scores


def score_run(run_dir: Path, method: str, n_maps: int, n_boot: int = 1000) -> dict:
    """Point values and 95% bootstrap intervals of a finished run on test, and (criteria methods) the
    distinctness of its per-criterion maps on the first ``n_maps`` test images. Cached in the run
    directory as ``derm7pt_bench.json``."""
    from medattn.engine.data import read_split
    from medattn.engine.run import load_run, read_run_classes
    from medattn.evaluation.report import read_predictions
    from medattn.explain.label_maps import label_map_distinctness
    from medattn.metrics.bootstrap import bootstrap_ci

    cache = run_dir / "derm7pt_bench.json"
    if cache.is_file():
        return {**json.loads(cache.read_text()), "config_digest": run_digest(run_dir)}
    names, task = read_run_classes(run_dir)
    metrics = json.loads((run_dir / "eval_test.json").read_text())
    pred = read_predictions(run_dir / "predictions_test.csv", names, task)
    run = load_run(run_dir)
    test = read_split(run.config, "test")
    if list(test.ids) != list(pred.ids):
        raise RuntimeError(f"{run_dir}: predictions_test.csv does not list the test split's images in order")
    if method == DIRECT:
        mel = names.index("melanoma")
        threshold = float(metrics["at_val_thresholds"]["thresholds"]["melanoma"])
        y, p, fn = (pred.onehot[:, mel] > 0.5).astype(int), pred.probs[:, mel], _direct_scores(threshold)
        maps = {}
    else:
        thresholds = np.asarray(metrics["tuned"]["thresholds"])
        y = np.column_stack([pred.onehot, np.asarray(test.extra["melanoma"], dtype=np.float64)])
        p = pred.probs
        fn = _criteria_scores(names, np.asarray(test.extra["seven_point_weights"]), thresholds,
                              float(test.extra.get("seven_point_threshold", 3)))
        maps = label_map_distinctness(run.model, test.images[:n_maps], names)
    ci = bootstrap_ci(fn, y, p, n_boot=n_boot, stratified=False)
    result = {"method": method, "seed": int(run_dir.name[4:]), "n": int(len(y)), "values": fn(y, p),
              "ci95": {k: [float(a), float(b)] for k, (a, b) in ci.items()}, "maps": maps,
              "train_seconds": training_seconds(run_dir)[0]}
    cache.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return {**result, "config_digest": run_digest(run_dir)}


def tables(rows: list[dict], criteria: list[str]) -> str:
    """Markdown: criteria metrics, per-criterion AUC, melanoma rows, map distinctness."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    crit = {m: runs for m, runs in by.items() if m != DIRECT}
    n = rows[0]["n"]
    cell = lambda runs, key: _mean_std([r["values"][key] for r in runs], runs[0]["ci95"].get(key))  # noqa: E731
    lines = [f"**Criteria** (test, n = {n}; per-criterion thresholds tuned on val by F1; mean ± std over seeds, "
             "[95% bootstrap interval of the first seed])", "",
             "| Method | seeds | mAP | macro AUC | " + " | ".join(c for c, _ in HEADLINE) + " | train min |",
             "|---|---|---|---|" + "---|" * len(HEADLINE) + "---|"]
    for m, runs in crit.items():
        lines.append(f"| {m} | {len(runs)} | {cell(runs, 'map')} | {cell(runs, 'macro_auc')} | "
                     + " | ".join(cell(runs, k) for _, k in HEADLINE)
                     + f" | {np.mean([r['train_seconds'] for r in runs]) / 60:.1f} |")
    lines += ["", "**Per-criterion test AUC** (mean over seeds)", "",
              "| Method | " + " | ".join(criteria) + " |", "|---|" + "---|" * len(criteria)]
    for m, runs in crit.items():
        lines.append(f"| {m} | " + " | ".join(_mean_std([r["values"][f"auc.{c}"] for r in runs]).split(" ±")[0]
                                             for c in criteria) + " |")
    lines += ["", f"**Melanoma** (test, n = {n}): the 7-point checklist (score >= 3) from each method's predicted "
              "criteria (AUC of the expected score; sensitivity / specificity of the score of the criteria decided "
              "at their val thresholds), the direct classifier (melanoma vs rest, its threshold chosen on val by F1), "
              "and the score of the annotated criteria (the ceiling of a perfect criteria model)", "",
              "| From | seeds | melanoma AUC | sensitivity | specificity |", "|---|---|---|---|---|"]
    for m, runs in crit.items():
        lines.append(f"| 7-point score of {m}'s criteria | {len(runs)} | {cell(runs, 'expected_score.auc')} | "
                     f"{cell(runs, 'decided_score.sensitivity')} | {cell(runs, 'decided_score.specificity')} |")
    if DIRECT in by:
        runs = by[DIRECT]
        lines.append(f"| direct classifier (baseline, melanoma vs rest) | {len(runs)} | {cell(runs, 'auc')} | "
                     f"{cell(runs, 'sensitivity')} | {cell(runs, 'specificity')} |")
    if crit:
        first = next(iter(crit.values()))[:1]
        lines.append(f"| 7-point score of the annotated criteria (ceiling) | - | {cell(first, 'annotated_ceiling.auc')} | "
                     f"{cell(first, 'annotated_ceiling.sensitivity')} | {cell(first, 'annotated_ceiling.specificity')} |")
    lines += ["", "**Per-criterion maps** (first test images, every criterion explained on every image): mean "
              "pairwise Pearson correlation of an image's 7 maps and mean IoU of their top-20% regions; lower is "
              "more distinct (1 / 1: one map for every criterion)", "",
              "| Method | maps | correlation | top-20% IoU | images |", "|---|---|---|---|---|"]
    for m, runs in crit.items():
        for fam in sorted({f for r in runs for f in r["maps"]}):
            got = [r["maps"][fam] for r in runs if fam in r["maps"]]
            lines.append(f"| {m} | {fam} | {_mean_std([g['correlation'] for g in got])} | "
                         f"{_mean_std([g['top_iou'] for g in got])} | {got[0]['n_images']} |")
    return "\n".join(lines)


def write_tables(out: Path, results: Path, n_maps: int, overrides: list[str], keep_recorded: bool = True) -> int:
    """Score the finished runs under ``out`` (plus, with ``keep_recorded``, the runs recorded in the
    results file that have no directory here) and write derm7pt.json/.md."""
    from medattn.data.derm7pt import CRITERIA

    finished = finished_runs(out, METHODS)
    for method, seed, run_dir in finished:
        archive_predictions(run_dir, results, "derm7pt", method, seed)
    rows = [score_run(run_dir, method, n_maps) for method, _, run_dir in finished]
    if keep_recorded:
        rows = merge_recorded(rows, recorded_runs(results, "derm7pt", overrides, method_digests(overrides)), METHODS)
    if not rows:
        print("no finished runs yet")
        return 1
    md = tables(rows, [c.label for c in CRITERIA])
    write_results(results, "derm7pt", md, "configs/derm7pt_baseline.yaml", overrides, rows)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    add_table_arguments(p, "derm7pt")
    p.add_argument("--n-maps", type=int, default=100, help="test images whose per-criterion maps are compared")
    args = p.parse_args()
    keep = not args.ignore_recorded
    tables_now = lambda: write_tables(args.out, args.results, args.n_maps, args.overrides, keep)  # noqa: E731
    if not args.table_only:
        recorded = cells_to_skip(recorded_runs(args.results, "derm7pt", args.overrides, method_digests(args.overrides)),
                                 "method", args)
        train(args.methods, args.seeds, args.out, args.overrides, progress=not args.quiet,
              recorded=recorded, after_each=tables_now)
    return tables_now()


if __name__ == "__main__":
    raise SystemExit(main())
