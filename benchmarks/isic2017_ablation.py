"""BIIGMA-Net's Table 2 ablation on ISIC 2017 Part 3, under benchmarks/isic2017.py's protocol; resumable.

Each cell of ``medattn ablate --grid biigma`` (medattn/models/biigma_ablations.py) changes one option of
the default BIIGMA-Net that benchmarks/isic2017.py trains (``isic2017_biigma``: 3 heads, sigma 2 relative
to the median distance, vector sampling, the independence term): heads 1 / 2 / 4, sigma 0.5 / 1 / 4,
without L_indep, without vector sampling (the default cells; ``--cells`` adds W/O MICA, the cosine
L_indep or the Table 2 baseline). Heads = 3 and Sigma = 2.0 are the default model itself: their rows are
the ``biigma`` runs of benchmarks/isic2017.py (its run directories under ``--isic2017-out``, else the
runs its results file records), so the default is trained once for both tables.

Every cell is compared with the default run of the same seed on the same 600 test images: the change of
the mean AUC of the two ISIC 2017 tasks and of the 3-class macro AUC, with 95% paired bootstrap
intervals (``medattn.evaluation.paired.compare_runs``), and the share of images whose predicted class
differs. The paper's ISIC 2017 column of Table 2 (F1 / accuracy / recall) stands beside each row.

    python benchmarks/isic2017_ablation.py                        # every default cell, seed 0 (hours on 2 cores)
    python benchmarks/isic2017_ablation.py --cells heads_1 --seeds 0 1
    python benchmarks/isic2017_ablation.py --table-only

Writes ``benchmarks/results/isic2017_ablation.json/.md``; as in the other results-table benchmarks a
recorded (cell, seed) with no directory under ``--out`` stays in the table and is not trained again.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from _runs import (add_table_arguments, archive_predictions, cells_to_skip, mean_std, merge_recorded,
                   predictions_source, protocol_digest, recorded_runs, run_cells, write_results)
from isic2017 import _by_cell, finished_rows, method_cell, method_digests
from medattn.config import Config, load_config
from medattn.engine.ablation import cell_config, load_grid, run_grid

NAME = "isic2017_ablation"
DEFAULT = "biigma"  # benchmarks/isic2017.py's method: Heads = 3 and Sigma = 2.0
DEFAULT_CELLS = ["wo_vector_sampling", "wo_indep", "heads_1", "heads_2", "heads_4", "sigma_0.5", "sigma_1.0",
                 "sigma_4.0"]
SAME_AS_DEFAULT = ("heads_3", "sigma_2.0")  # cells whose options equal the default's
ORDER = ["baseline", "wo_mica", "wo_vector_sampling", "wo_indep", "heads_1", "heads_2", "heads_3", "heads_4",
         "sigma_0.5", "sigma_1.0", "sigma_2.0", "sigma_4.0", "cosine_indep"]  # Table 2's rows
# Paper Table 2, ISIC 17 columns (F1, Acc, Rec), read from the authors' figs/results.png (methods.md A.5)
PAPER = {"baseline": (0.6408, 0.7187, 0.6311), "wo_mica": (0.6957, 0.7684, 0.6947),
         "wo_vector_sampling": (0.6994, 0.7633, 0.7984), "wo_indep": (0.6860, 0.7450, 0.7094),
         "heads_1": (0.6896, 0.7600, 0.6956), "heads_2": (0.6943, 0.7733, 0.6872), "heads_3": (0.7203, 0.7921, 0.7116),
         "heads_4": (0.7153, 0.7867, 0.7160), "sigma_0.5": (0.6700, 0.7400, 0.6908),
         "sigma_1.0": (0.6858, 0.7567, 0.6979), "sigma_2.0": (0.7203, 0.7921, 0.7116),
         "sigma_4.0": (0.6579, 0.7381, 0.6606), "cosine_indep": (0.7133, 0.7883, 0.7063)}
PAIRED_KEY = "paired_vs_default"
KEEP = ("cell", "seed", "machine", "config_digest", "train_seconds", "data_wait_seconds", "isic2017", "macro_f1",
        "balanced_accuracy", "macro_auc", "accuracy", "ci95", PAIRED_KEY)


def base_config(overrides: list[str]) -> Config:
    """The default BIIGMA-Net exactly as benchmarks/isic2017.py trains it (seed 0)."""
    return cell_config(load_config("isic2017_baseline", overrides), method_cell(DEFAULT), 0)


def cell_digests(overrides: list[str]) -> dict[str, str]:
    """cell -> ``protocol_digest`` of the config its runs are trained with now."""
    base, grid = base_config(overrides), load_grid("biigma")
    return {c: protocol_digest(cell_config(base, grid[c], 0)) for c in grid}


def train(cells: list[str], seeds: list[int], out: Path, overrides: list[str], progress: bool,
          skip: set[tuple[str, int]] = frozenset(), after_each=None) -> None:
    """Train and evaluate on test every (cell, seed) not finished yet and not in ``skip``."""
    base, grid = base_config(overrides), load_grid("biigma")
    run_cells([(c, s) for c in cells for s in seeds],
              lambda c, s: run_grid(base, grid, [s], out / "runs", splits=["test"], cells=[c], progress=progress),
              skip, after_each)


def default_rows(isic2017_out: Path, results: Path, overrides: list[str]) -> list[dict]:
    """The default model's runs: benchmarks/isic2017.py's ``biigma`` run directories, then its recorded rows."""
    here = finished_rows(isic2017_out, [DEFAULT])
    recorded = [r for r in recorded_runs(results, "isic2017", overrides, method_digests(overrides), key="cell")
                if r["cell"] == DEFAULT]
    return merge_recorded(here, recorded, [DEFAULT], key="cell")


def add_paired(rows: list[dict], defaults: list[dict], results: Path, n_boot: int = 1000) -> None:
    """Each row whose test predictions are here (its run directory or their archive) gets its paired
    comparison with the default run of its seed, where that run's predictions are here too; otherwise a
    recorded comparison stays."""
    from medattn.evaluation.paired import compare_runs

    reference = {r["seed"]: source for r in defaults if (source := predictions_source(r, results, "isic2017"))}
    for row in rows:
        source = predictions_source(row, results, NAME)
        if source is not None and row["seed"] in reference:
            row[PAIRED_KEY] = {"reference": f"{DEFAULT}/seed{row['seed']}",
                               **compare_runs(reference[row["seed"]], source, "test", n_boot=n_boot)}


def _interval(node: dict | None) -> str:
    if not node:
        return "-"
    low, high = node["ci95"]
    return f"{node['value']:+.3f} [{low:+.3f}, {high:+.3f}]"


def table(rows: list[dict], defaults: list[dict]) -> str:
    """Markdown in Table 2's layout (ISIC 17): ours as mean ± std over seeds, the paired change of the
    mean AUC against the default (first seed), and the paper's F1 / Acc / Rec."""
    grid = load_grid("biigma")
    by_cell = _by_cell(rows)
    for cell in SAME_AS_DEFAULT:
        by_cell.setdefault(cell, defaults)
    lines = ["| Setting | seeds | F1 | Acc | Rec | mean AUC (2 tasks) | macro AUC | Δ mean AUC vs default "
             "[paired 95% CI] | Δ macro AUC | differing predictions | paper F1 / Acc / Rec |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in [c for c in ORDER if by_cell.get(c)]:
        runs = by_cell[cell]
        first = runs[0]
        ci = first.get("ci95", {}).get("isic2017.mean_auc")
        label = grid[cell]["label"] + (" (default)" if cell in SAME_AS_DEFAULT else "")
        paired = first.get(PAIRED_KEY, {})
        differ = paired.get("disagreement")
        lines.append(
            f"| {label} | {len(runs)} | {mean_std([r.get('macro_f1') for r in runs])} | "
            f"{mean_std([r['accuracy'] for r in runs])} | {mean_std([r['balanced_accuracy'] for r in runs])} | "
            f"{mean_std([r['isic2017']['mean_auc'] for r in runs], ci=ci)} | {mean_std([r['macro_auc'] for r in runs])} | "
            + ("0 (reference)" if cell in SAME_AS_DEFAULT else _interval(paired.get("delta.isic2017.mean_auc"))) + " | "
            + ("-" if cell in SAME_AS_DEFAULT else _interval(paired.get("delta.macro_auc"))) + " | "
            + (f"{differ['value']:.1%}" if differ else "-") + " | "
            + " / ".join(f"{v:.4f}" for v in PAPER[cell]) + " |")
    return "\n".join(lines + ["", "F1: 3-class macro F1 of the argmax; Acc: accuracy; Rec: balanced accuracy (mean "
                              "per-class recall); the AUC interval is the first seed's 95% bootstrap interval; the "
                              "paired change is the cell's first seed minus the default run of that seed on the same "
                              "test images, resampled together (1000 resamples)."])


def write_tables(out: Path, results: Path, overrides: list[str], isic2017_out: Path, keep_recorded: bool = True) -> int:
    """Score the finished cells under ``out`` against the default runs and write the results files."""
    grid = load_grid("biigma")
    cells = [c for c in ORDER if c in grid and c not in SAME_AS_DEFAULT]
    rows = finished_rows(out, cells)
    for r in rows:
        archive_predictions(Path(r["run_dir"]), results, NAME, r["cell"], r["seed"])
    defaults = default_rows(isic2017_out, results, overrides)
    if keep_recorded:
        rows = merge_recorded(rows, recorded_runs(results, NAME, overrides, cell_digests(overrides), key="cell"),
                              cells, key="cell")
    add_paired(rows, defaults, results)
    if not rows and not defaults:
        print("no finished runs yet")
        return 1
    md = table(rows, defaults)
    write_results(results, NAME, md, "configs/isic2017_biigma.yaml (+ each cell's options)", overrides,
                  [{k: r[k] for k in KEEP if k in r} for r in rows],
                  extra={"default": [{k: r[k] for k in KEEP if k in r} for r in defaults]})
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    choices = [c for c in ORDER if c not in SAME_AS_DEFAULT]
    p.add_argument("--cells", nargs="+", default=DEFAULT_CELLS, choices=choices,
                   help="cells to train (default: heads 1/2/4, sigma 0.5/1/4, without L_indep, without vector "
                        "sampling); heads_3 and sigma_2.0 are benchmarks/isic2017.py's biigma runs")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--isic2017-out", type=Path, default=Path("runs/benchmark_isic2017"),
                   help="benchmarks/isic2017.py's --out, where the default model's run directories are")
    add_table_arguments(p, NAME)
    args = p.parse_args()
    keep = not args.ignore_recorded
    tables_now = lambda: write_tables(args.out, args.results, args.overrides, args.isic2017_out, keep)  # noqa: E731
    if not args.table_only:
        skip = cells_to_skip(recorded_runs(args.results, NAME, args.overrides, cell_digests(args.overrides), key="cell"),
                             "cell", args)
        train(args.cells, args.seeds, args.out, args.overrides, progress=not args.quiet, skip=skip,
              after_each=tables_now)
    return tables_now()


if __name__ == "__main__":
    raise SystemExit(main())
