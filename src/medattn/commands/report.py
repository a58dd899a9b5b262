"""Write the HTML report of a run: metrics with 95% intervals, curves, calibration, training, attention.

One self-contained page (inline CSS, no network resource) with its PNG figures beside it (default
RUN_DIR/report/index.html). Sections for robustness and saliency appear when `medattn robustness` /
`medattn saliency` have written their JSON into the run directory.
"""
from __future__ import annotations

import argparse

NAME = "report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by `medattn train` (and `medattn evaluate`)")
    p.add_argument("--out", help="HTML file (default RUN_DIR/report/index.html); the figures go beside it")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples for splits whose eval_<split>.json has no intervals (default 1000)")
    p.add_argument("--examples", type=int, default=3, help="right and wrong predictions shown per split (default 3)")
    p.add_argument("--no-overlays", action="store_true", help="leave out the attention overlays (no model run)")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.report import write_report

    out = write_report(args.run_dir, args.out, n_boot=args.bootstrap, overlays=not args.no_overlays,
                       n_examples=args.examples)
    print(f"wrote {out}")
    return 0
