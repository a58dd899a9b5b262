"""HAM10000 / ISIC 2018 Task 3 results table in the layout of BIIGMA-Net's Table 1, every method, resumable.

Protocol (configs/ham10000_baseline.yaml; each method's preset ``ham10000_<method>`` changes only its
model, and Soft-Attention's class weight): the 10,015 HAM10000 images of ../shared/data/ham10000_200x150,
7 classes, lesion-grouped stratified train / val / test 70 / 10 / 20 % (split seed 0; no lesion in
two splits), tf_efficientnet_lite0 with its offline ImageNet weights at 160 px, 6 epochs, the epoch
selected on val balanced accuracy (the ISIC 2018 metric), reported on test once. Each (method, seed)
is a normal run directory ``OUT/runs/<method>/seed<k>``: finished runs are skipped, interrupted ones
resume from their last checkpoint.

    python benchmarks/ham10000.py                                # every method (hours on 2 CPU cores)
    python benchmarks/ham10000.py --methods baseline biigma --seeds 0
    python benchmarks/ham10000.py --table-only                   # rebuild the table from finished runs
    python benchmarks/ham10000.py --table-only --cross-isic2017 ../shared/data/isic2017_256
                                                                 # also score every run on ISIC 2017 test
    python benchmarks/ham10000.py --saliency --cross-isic2017 ../shared/data/isic2017_256
                                                                 # train, then maps vs lesion masks and ISIC 2017

As in benchmarks/derm7pt.py, a run recorded in ``results/ham10000.json`` (same overrides) with no
directory under ``--out`` stays in the table and is not trained again (``--ignore-recorded``: only
the directories here); the table is rewritten after every finished run.

Writes ``benchmarks/results/ham10000.json`` and ``ham10000.md``: macro F1, accuracy, macro recall,
macro precision (Table 1's columns, argmax decisions, as BIIGMA-Net's code computes them), balanced accuracy, macro AUC and per-class
recall on test, mean ± std over seeds with the first seed's 95% bootstrap interval (stratified by
class), the papers' numbers beside them; with ``--cross-isic2017``, each run's melanoma and
seborrheic-keratosis AUC on ISIC 2017 test (mel, bkl, nv mapped to ISIC 2017's classes); with
``--saliency``, the attention table against the HAM10000 lesion masks (benchmarks/_real_masks.py).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# benchmarks/ is on sys.path when a script runs
from _real_masks import saliency_scores, saliency_table
from _runs import (add_table_arguments, archive_predictions, cells_to_skip, finished_runs, mean_std, merge_recorded,
                   protocol_digest, recorded_runs, run_cells, run_digest, training_seconds, write_results)
from medattn.config import load_config
from medattn.engine.ablation import cell_config, run_grid

METHODS = {  # method -> preset
    "baseline": "ham10000_baseline",
    "se": "ham10000_se",
    "cbam": "ham10000_cbam",
    "soft_attention": "ham10000_softattn",
    "sibnet": "ham10000_sibnet",
    "biigma": "ham10000_biigma",
    "soft_attention_irv2": "ham10000_softattn_irv2",  # the paper's IRv2 recipe: a GPU preset, not run by default
}
DEFAULT_METHODS = [m for m in METHODS if m != "soft_attention_irv2"]
DEFAULT_SEEDS = {"baseline": [0, 1, 2], "biigma": [0, 1, 2]}  # the rest: [0]
COLUMNS = [("F1", "macro_f1"), ("Acc", "accuracy"), ("Rec", "macro_recall"), ("Prec", "macro_precision"),
           ("bal. acc.", "balanced_accuracy"), ("macro AUC", "macro_auc")]
# Published numbers, for the table's reference rows (sources in docs/benchmarks.md and methods.md).
PAPERS = [
    ("BIIGMA-Net paper, ISIC 2018 (Table 1)", {"macro_f1": 0.8220, "accuracy": 0.8833, "macro_recall": 0.8094,
                                               "macro_precision": 0.8351}),
    ("BIIGMA-Net official notebook, HAM10000 (best epoch chosen on its test split)",
     {"macro_f1": 0.7887, "accuracy": 0.8793, "macro_recall": 0.7525, "macro_precision": 0.8419}),
    ("Soft-Attention paper, HAM10000, IRv2+SA", {"macro_precision": 0.937}),
]
CROSS_MAP = "melanoma=mel,seborrheic_keratosis=bkl,nevus=nv"  # ISIC 2017 class -> HAM10000 class
SALIENCY_TAG, SALIENCY_KEY = "ham10000_test", "saliency_ham10000_test"


def _base_and_cell(method: str, overrides: list[str]):
    base = load_config(METHODS[method], overrides)
    return base, {"model": base.model.name, "options": dict(base.model.options)}


def method_digests(overrides: list[str]) -> dict[str, str]:
    """method -> ``protocol_digest`` of the config its runs are trained with now."""
    return {m: protocol_digest(cell_config(*_base_and_cell(m, overrides), 0)) for m in METHODS}


def train(methods: list[str], seeds: list[int] | None, out: Path, overrides: list[str], progress: bool,
          recorded: set[tuple[str, int]] = frozenset(), after_each=None) -> None:
    """Train and evaluate on test every (method, seed) not finished yet and not in ``recorded``; seeds
    outermost."""
    plan = {m: seeds if seeds is not None else DEFAULT_SEEDS.get(m, [0]) for m in methods}

    def train_cell(method: str, seed: int) -> None:
        base, cell = _base_and_cell(method, overrides)
        run_grid(base, {method: cell}, [seed], out / "runs", splits=["test"], progress=progress)

    cells = [(m, s) for s in sorted({s for v in plan.values() for s in v}) for m in methods if s in plan[m]]
    run_cells(cells, train_cell, recorded, after_each)


def table_scores(class_names: list[str]):
    """The table's statistics of (N,) class indices and (N, K) probabilities."""
    from medattn.metrics.classification import biigma_macro_metrics
    from medattn.metrics.summary import compute_metrics

    def scores(y: np.ndarray, p: np.ndarray) -> dict:
        m = compute_metrics(y, p, class_names, "multiclass")
        table1 = biigma_macro_metrics(y, p)  # Table 1's columns as BIIGMA-Net's code computes them
        out = {k: table1[k] for k in ("macro_f1", "accuracy", "macro_recall", "macro_precision")}
        out.update({"balanced_accuracy": m["balanced_accuracy"], "macro_auc": m["macro_auc"]})
        out.update({f"recall.{c}": m["per_class"][c]["recall_argmax"] for c in class_names})
        return out
    return scores


def score_run(run_dir: Path, method: str, n_boot: int = 1000, cross_root: str | None = None,
              saliency: bool = False) -> dict:
    """A finished run's table statistics on test with 95% bootstrap intervals (cached in
    ``ham10000_bench.json``); with ``cross_root``, also its scores on ISIC 2017 test
    (``medattn evaluate RUN --data-format isic2017 ... --map-classes``, written once); with
    ``saliency``, its native maps and Grad-CAM against the HAM10000 lesion masks of its test split
    (``medattn saliency``, written once)."""
    from medattn.cli import main as medattn
    from medattn.engine.run import read_run_classes
    from medattn.evaluation.report import read_predictions
    from medattn.metrics.bootstrap import bootstrap_ci

    cache = run_dir / "ham10000_bench.json"
    if cache.is_file():
        result = json.loads(cache.read_text())
    else:
        names, task = read_run_classes(run_dir)
        pred = read_predictions(run_dir / "predictions_test.csv", names, task)
        y = np.argmax(pred.onehot, axis=1)
        fn = table_scores(names)
        ci = bootstrap_ci(fn, y, pred.probs, n_boot=n_boot, stratified=True)
        train_s, wait_s = training_seconds(run_dir)
        result = {"method": method, "seed": int(run_dir.name[4:]), "n": int(len(y)), "classes": names,
                  "values": fn(y, pred.probs), "ci95": {k: [float(a), float(b)] for k, (a, b) in ci.items()},
                  "train_seconds": train_s, "data_wait_seconds": wait_s}
        cache.write_text(json.dumps(result, indent=1, default=float) + "\n")
    result["config_digest"] = run_digest(run_dir)
    cross = run_dir / "eval_isic2017_test.json"
    if cross_root and not cross.is_file():
        args = ["evaluate", str(run_dir), "--data-format", "isic2017", "--data-root", cross_root, "--split", "test",
                "--map-classes", CROSS_MAP, "--out", str(cross)]
        if medattn(args) != 0:
            raise RuntimeError(f"medattn {' '.join(args)} failed")
    if cross.is_file():
        m = json.loads(cross.read_text())
        result["isic2017_test"] = {"n": m["n"], "mel_auc": m["per_class"]["mel"]["auc"],
                                   "bkl_auc": m["per_class"]["bkl"]["auc"]}
    if saliency or (run_dir / f"saliency_{SALIENCY_TAG}.json").is_file():
        result[SALIENCY_KEY] = saliency_scores(run_dir, SALIENCY_TAG, ["--set", "data.options.masks=true"])
    return result


def tables(rows: list[dict]) -> str:
    """Markdown: Table 1's columns (and balanced accuracy, macro AUC), per-class recall, ISIC 2017 test."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    classes = rows[0]["classes"]
    cell = lambda runs, key: mean_std([r["values"][key] for r in runs], 3, runs[0]["ci95"].get(key))  # noqa: E731
    lines = [f"**HAM10000 test** (n = {rows[0]['n']}, lesion-grouped; mean ± std over seeds, [95% bootstrap "
             "interval of the first seed]; F1, Acc, Rec, Prec of the argmax decisions as BIIGMA-Net's code computes them: "
             "macro means over the 7 classes, a class never predicted has precision 0)", "",
             "| Method | seeds | " + " | ".join(c for c, _ in COLUMNS) + " | train min | data wait |",
             "|---|---|" + "---|" * len(COLUMNS) + "---|---|"]
    for m, runs in by.items():
        wait = sum(r["data_wait_seconds"] for r in runs) / max(sum(r["train_seconds"] for r in runs), 1e-9)
        lines.append(f"| {m} | {len(runs)} | " + " | ".join(cell(runs, k) for _, k in COLUMNS)
                     + f" | {np.mean([r['train_seconds'] for r in runs]) / 60:.1f} | {100 * wait:.1f}% |")
    for label, values in PAPERS:
        lines.append(f"| *{label}* | | " + " | ".join(f"{values[k]:.3f}" if k in values else "" for _, k in COLUMNS)
                     + " | | |")
    lines += ["", "**Per-class recall** (test, mean over seeds)", "",
              "| Method | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for m, runs in by.items():
        lines.append(f"| {m} | " + " | ".join(f"{np.mean([r['values'][f'recall.{c}'] for r in runs]):.3f}"
                                             for c in classes) + " |")
    cross = {m: [r for r in runs if "isic2017_test" in r] for m, runs in by.items()}
    if any(cross.values()):
        lines += ["", "**HAM10000-trained, scored on ISIC 2017 test** (melanoma -> mel, seborrheic keratosis -> "
                  "bkl, nevus -> nv; AUC of the class's probability, mean ± std over seeds)", "",
                  "| Method | seeds | images | melanoma AUC | SK (bkl) AUC |", "|---|---|---|---|---|"]
        for m, runs in cross.items():
            if runs:
                lines.append(f"| {m} | {len(runs)} | {runs[0]['isic2017_test']['n']} | "
                             f"{mean_std([r['isic2017_test']['mel_auc'] for r in runs])} | "
                             f"{mean_std([r['isic2017_test']['bkl_auc'] for r in runs])} |")
    masks = saliency_table(rows, SALIENCY_KEY, "Attention against the HAM10000 lesion masks")
    return "\n".join(lines + ([""] + masks if masks else []))


def write_tables(out: Path, results: Path, overrides: list[str], cross_root: str | None = None,
                 keep_recorded: bool = True, saliency: bool = False) -> int:
    """Score the finished runs under ``out`` (plus, with ``keep_recorded``, the runs recorded in the
    results file that have no directory here) and write ham10000.json/.md."""
    finished = finished_runs(out, list(METHODS))
    for method, seed, run_dir in finished:
        archive_predictions(run_dir, results, "ham10000", method, seed)
    rows = [score_run(run_dir, method, cross_root=cross_root, saliency=saliency) for method, _, run_dir in finished]
    if keep_recorded:
        rows = merge_recorded(rows, recorded_runs(results, "ham10000", overrides, method_digests(overrides)), list(METHODS))
    if not rows:
        print("no finished runs yet")
        return 1
    md = tables(rows)
    write_results(results, "ham10000", md, "configs/ham10000_baseline.yaml", overrides, rows)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="seeds for every chosen method (default: 0 1 2 for baseline and BIIGMA-Net, 0 for the rest)")
    add_table_arguments(p, "ham10000")
    p.add_argument("--cross-isic2017", metavar="ISIC2017_ROOT", default=None,
                   help="also score every finished run on ISIC 2017 test (e.g. ../shared/data/isic2017_256)")
    p.add_argument("--saliency", action="store_true",
                   help="also score every finished run's native maps and Grad-CAM against the HAM10000 lesion masks "
                        "of its test split (medattn saliency, once per run)")
    args = p.parse_args()
    keep = not args.ignore_recorded
    tables_now = lambda: write_tables(args.out, args.results, args.overrides, args.cross_isic2017, keep,  # noqa: E731
                                      args.saliency)
    if not args.table_only:
        recorded = cells_to_skip(recorded_runs(args.results, "ham10000", args.overrides, method_digests(args.overrides)),
                                 "method", args)
        train(args.methods, args.seeds, args.out, args.overrides, progress=not args.quiet,
              recorded=recorded, after_each=tables_now)
    return tables_now()


if __name__ == "__main__":
    raise SystemExit(main())
