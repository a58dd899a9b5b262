"""Score a trained run on a split (default: the run's own data) and write the metrics as JSON."""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_run_data_arguments, add_tta_argument

NAME = "evaluate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_data_arguments(p, "score", "", "data.options.task=melanoma")
    p.add_argument("--precision", default=None, choices=("auto", "bf16", "fp16", "fp32"),
                   help="inference precision (default: the run's train.precision, as its own evaluation)")
    add_tta_argument(p)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    p.add_argument("--threshold-split", default="val",
                   help="multi-label: split on which per-class thresholds are tuned (default val; 'none' to skip)")
    p.add_argument("--out", help="JSON file (default: RUN_DIR/eval_<split>.json, eval_<split>_tta-<mode>.json with --tta)")


def run(args: argparse.Namespace) -> int:
    from ..engine.data import read_split
    from ..engine.evaluate import write_predictions_csv
    from ..metrics.summary import compute_metrics, with_confidence_intervals
    from ..engine.inference import predict_proba
    from ..engine.precision import Precision
    from ..evaluation.ensemble import predictions_name
    from ._common import dump_json, load_run_and_split, results_table

    run, cfg, dataset = load_run_and_split(args)
    device = next(run.model.parameters()).device
    precision = Precision.resolve(args.precision or run.config["train"].get("precision", "auto"), device)
    probs = predict_proba(run.model, dataset, task=run.task, progress=f"evaluate {args.split}", tta=args.tta,
                          precision=precision)
    metrics = compute_metrics(dataset.targets, probs, run.class_names, run.task)
    if run.task == "multilabel" and args.threshold_split != "none":
        from ..metrics.multilabel import tune_thresholds

        val = read_split(cfg, args.threshold_split)
        val_probs = predict_proba(run.model, val, task=run.task, tta=args.tta, precision=precision)
        lab = val.labeled
        thresholds = tune_thresholds(val.targets[lab], val_probs[lab])
        metrics["tuned"] = compute_metrics(dataset.targets, probs, run.class_names, run.task, thresholds=thresholds)
        metrics["tuned"]["thresholds"] = [float(t) for t in thresholds]
        metrics["tuned"]["threshold_split"] = args.threshold_split
    if args.bootstrap:
        metrics = with_confidence_intervals(metrics, dataset.targets, probs, run.class_names, run.task, n_boot=args.bootstrap)
    metrics["tta"] = args.tta
    name = predictions_name(args.split, args.tta)  # with --tta, never replaces the plain results
    out = Path(args.out) if args.out else Path(args.run_dir) / f"eval_{name}.json"
    dump_json(metrics, out)
    write_predictions_csv(out.with_name(f"predictions_{name}.csv"), dataset, probs, run.class_names)
    print(results_table({args.split: metrics}, run.task))
    print(f"wrote {out}")
    return 0
