"""Run an ablation grid (BIIGMA-Net's Table 2 rows, IBCA parts) over seeds; resumable; writes CSV and
a markdown table of mean ± std."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "ablate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", default="biigma", help="grid name: biigma or ibca")
    p.add_argument("--config", default="synthetic_biigma", help="base config (file or preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config value (repeatable), e.g. --set train.epochs=3")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", help="only these cells of the grid (default: all)")
    p.add_argument("--splits", nargs="+", default=None,
                   help="splits to report (default: the base config's data.test_splits)")
    p.add_argument("--out", default=None, help="output folder (default runs/ablate_<grid>); rerun to resume")
    p.add_argument("--list", action="store_true", help="print the grid and exit")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..engine.ablation import load_grid, run_grid, write_summary

    grid = load_grid(args.grid)
    if args.list:
        for name, cell in grid.items():
            print(f"{name:<28} {cell['model']:<12} {cell.get('options', {})}")
        return 0
    base = load_config(args.config, args.overrides)
    out = Path(args.out or f"runs/ablate_{args.grid}")
    out.mkdir(parents=True, exist_ok=True)
    rows = run_grid(base, grid, args.seeds, out, splits=args.splits or base.data.test_splits, cells=args.cells, progress=not args.quiet)
    task = "multilabel" if "map" in rows[0] else "multiclass"
    labels = {name: cell.get("label", name) for name, cell in grid.items()}
    csv_path, md_path = write_summary(rows, out, task, labels)
    print(md_path.read_text())
    print(f"wrote {csv_path} and {md_path}")
    return 0
