"""Run a named grid of model variants over seeds, resumably, and tabulate mean ± std.

A grid is a dict ``cell name -> {"model": registered name, "options": {...}}`` (plus optional
``"set"``: extra ``key=value`` overrides, and ``"label"``: its row in the table). Grids live next to
their method and register themselves (``@register_grid("biigma")`` in
``medattn.models.biigma_ablations``); ``load_grid(name)`` finds them. Every cell x seed
is a normal run directory ``OUT/<cell>/seed<k>``: a finished one (its ``eval_<split>.json`` exists) is
not rerun, an interrupted one is resumed from its last checkpoint.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import Config, apply_update, parse_override
from ..models._registry import load_grid

__all__ = ["cell_config", "load_grid", "run_grid", "summarise", "write_summary"]


def cell_config(base: Config, cell: dict, seed: int) -> Config:
    """The config of one (cell, seed) of a grid on top of ``base``."""
    cfg = base.to_dict()
    cfg["seed"] = int(seed)
    # A cell of the base config's own model adds its options on top of the base options (e.g. the
    # base config's adapter choice stays); a cell of another model (the baseline) starts from none.
    base_options = dict(cfg["model"]["options"]) if cell["model"] == cfg["model"]["name"] else {}
    cfg["model"]["name"] = cell["model"]
    cfg["model"]["options"] = {**base_options, **dict(cell.get("options") or {})}
    for item in cell.get("set", []):
        cfg = apply_update(cfg, parse_override(item))
    return Config.from_dict(cfg)


def run_grid(base: Config, grid: dict[str, dict], seeds: list[int], out: Path, splits: list[str] | str = "test",
             cells: list[str] | None = None, progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Train every (cell, seed) not finished yet and evaluate it on ``splits``; returns one row per
    (cell, seed, split) with the split's metrics and ``"split"``."""
    from .run import read_run_config
    from .trainer import Trainer

    splits = [splits] if isinstance(splits, str) else list(splits)
    rows = []
    for name in cells or list(grid):
        if name not in grid:
            raise KeyError(f"cell {name!r} is not in the grid ({', '.join(grid)})")
        for seed in seeds:
            run_dir = out / name / f"seed{seed}"
            results = {s: run_dir / f"eval_{s}.json" for s in splits}
            if not all(r.exists() for r in results.values()):
                resume = (run_dir / "last.safetensors").exists()
                log(f"[{name} seed {seed}] {'resuming' if resume else 'training'} -> {run_dir}")
                cfg = cell_config(base, grid[name], seed)
                if resume:
                    cfg = read_run_config(run_dir)
                trainer = Trainer(cfg, run_dir, resume=resume, progress=progress, log=log)
                trainer.fit()
                trainer.evaluate_splits(splits)
            else:
                log(f"[{name} seed {seed}] done already, skipped")
            for split, result in results.items():
                rows.append({"cell": name, "seed": seed, "split": split, "run_dir": str(run_dir),
                             **json.loads(result.read_text())})
    return rows


COLUMNS = {
    "multiclass": [("F1", "macro_f1"), ("Acc", "accuracy"), ("Rec", "balanced_accuracy"), ("AUC", "macro_auc")],
    "multilabel": [("mAP", "map"), ("CF1", "cf1"), ("OF1", "of1"), ("AUC", "macro_auc")],
}


LEGEND = {
    "multiclass": "F1: macro F1 of the argmax prediction; Acc: accuracy; Rec: balanced accuracy (mean per-class "
                  "recall, the paper's macro recall); AUC: macro one-vs-rest ROC AUC. Each cell: mean ± sample "
                  "standard deviation over the seeds (one seed: its value).",
    "multilabel": "mAP: mean average precision over labels; CF1 / OF1: per-class and overall F1 at 0.5; AUC: "
                  "macro ROC AUC. Each cell: mean ± sample standard deviation over the seeds (one seed: its value).",
}


def summarise(rows: list[dict], task: str = "multiclass", labels: dict[str, str] | None = None) -> tuple[list[dict], str]:
    """Mean and std over seeds per cell: (rows for CSV, markdown table in the layout of Table 2).

    ``labels`` maps a cell name to its row label (the grid's ``"label"``; default the cell name)."""
    labels = labels or {}
    cols = COLUMNS[task]
    cells: dict[str, list[dict]] = {}
    for r in rows:
        cells.setdefault(r["cell"], []).append(r)
    table_rows, lines = [], ["| Setting | " + " | ".join(c for c, _ in cols) + " | seeds |",
                             "|---" * (len(cols) + 2) + "|"]
    for name, runs in cells.items():
        row = {"cell": name, "n_seeds": len(runs)}
        cells_md = []
        for label, key in cols:
            values = np.array([float(r.get(key, math.nan)) for r in runs])
            mean, std = float(np.nanmean(values)), float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
            cells_md.append(f"{mean:.4f} ± {std:.4f}" if len(values) > 1 else f"{mean:.4f}")
        table_rows.append(row)
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells_md) + f" | {len(runs)} |")
    lines += ["", LEGEND[task]]
    return table_rows, "\n".join(lines)


def write_summary(rows: list[dict], out: Path, task: str = "multiclass",
                  labels: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Write ``OUT/ablation_runs.csv`` (one row per run and split), ``OUT/ablation.csv`` (per split and
    cell: mean and std over seeds) and ``OUT/ablation.md`` (one Table 2 per split)."""
    keys = [k for _, k in COLUMNS[task]]
    splits = list(dict.fromkeys(r.get("split", "test") for r in rows))
    with open(out / "ablation_runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell", "seed", "split", *keys])
        for r in rows:
            w.writerow([r["cell"], r["seed"], r.get("split", "test"), *[r.get(k, "") for k in keys]])
    all_rows, md = [], []
    for split in splits:
        table_rows, table_md = summarise([r for r in rows if r.get("split", "test") == split], task, labels)
        all_rows += [{"split": split, **r} for r in table_rows]
        md += [f"### {split}", "", table_md, ""]
    with open(out / "ablation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(all_rows[0]))
        w.writeheader()
        w.writerows(all_rows)
    (out / "ablation.md").write_text("\n".join(md))
    return out / "ablation.csv", out / "ablation.md"
