"""Score the mean of several runs' saved predictions on a split (a seed or method ensemble).

  medattn evaluate RUN_A --split test; medattn evaluate RUN_B --split test   # once per run
  medattn ensemble RUN_A RUN_B RUN_C --split test --out runs/ensemble_abc

Reads ``predictions_<split>.csv`` of every run (``--tta dihedral``: the ``_tta-dihedral`` files that
``medattn evaluate --tta dihedral`` wrote), checks that the runs share classes, images and truth,
averages the probabilities and scores them as ``medattn evaluate`` does. With ``--out`` it writes
``eval_<split>.json`` (with the member list), and ``predictions_<split>.csv`` there.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_tta_argument

NAME = "ensemble"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="two or more evaluated run directories")
    p.add_argument("--split", default="test", help="split whose predictions are averaged (default test)")
    add_tta_argument(p)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    p.add_argument("--out", help="directory for eval_<split>.json and predictions_<split>.csv (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out (default: refuse)")


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluate import write_prediction_rows
    from ..evaluation.ensemble import average_predictions, predictions_name
    from ..evaluation.report import split_metrics
    from ..errors import DataError
    from ._common import dump_json, refuse_existing, results_table

    name = predictions_name(args.split, args.tta)
    out = Path(args.out) if args.out else None
    if out is not None:
        refuse_existing([out / f"eval_{name}.json", out / f"predictions_{name}.csv"], args.overwrite)
    pred, class_names = average_predictions(args.run_dirs, args.split, args.tta)
    if not pred.labeled.any():
        raise DataError(f"no image of {args.split} has a label to score against")
    metrics = split_metrics(pred, None, class_names, pred.task, args.bootstrap)
    metrics.update(tta=args.tta, members=[str(d) for d in args.run_dirs])
    print(results_table({f"{args.split} ({len(args.run_dirs)} runs)": metrics}, pred.task))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        dump_json(metrics, out / f"eval_{name}.json")
        write_prediction_rows(out / f"predictions_{name}.csv", pred.ids, pred.probs, pred.onehot, class_names)
        print(f"wrote {out / f'eval_{name}.json'} and {out / f'predictions_{name}.csv'}")
    return 0
