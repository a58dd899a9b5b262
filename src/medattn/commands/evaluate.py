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
    p.add_argument("--threshold-split", default=None,
                   help="split on which per-class thresholds (and, multi-class, the temperature) are fitted "
                        "(default val; 'none' to skip)")
    p.add_argument("--map-classes", metavar="SRC=RUN_CLASS,...",
                   help="score another data set's classes as the run's, e.g. mel=melanoma,bkl=seborrheic_keratosis,"
                        "nv=nevus (classes not named are left out and counted; *=CLASS maps all the others)")
    p.add_argument("--threshold-rule", choices=["f1", "youden"], default="f1",
                   help="multi-class: each class's threshold maximises F1 (default) or Youden's J on that split")
    p.add_argument("--out", help="JSON file (default: RUN_DIR/eval_<split>.json, eval_<split>_tta-<mode>.json with --tta; "
                                 "on other data than the run's: eval_<split>_<format>-<folder>-<hash>.json)")


def run(args: argparse.Namespace) -> int:
    from ..engine.data import read_split
    from ..errors import ConfigError, DataError
    from ..engine.evaluate import evaluate_split, write_split_results
    from ..engine.precision import Precision
    from ..engine.run import run_precision
    from ..evaluation.ensemble import predictions_name
    from ._common import load_run_and_split, refuse_existing, results_stem, results_table

    run, cfg, dataset = load_run_and_split(args)
    name = predictions_name(results_stem(run, cfg, args.split, args.map_classes), args.tta)  # never replaces the run's plain results
    out = Path(args.out) if args.out else Path(args.run_dir) / f"eval_{name}.json"
    csv_path = out.with_name(f"predictions_{name}.csv")
    refuse_existing([out, csv_path], args.overwrite)
    device = next(run.model.parameters()).device
    precision = Precision.resolve(args.precision, device) if args.precision else run_precision(args.run_dir, run.config, device)
    fit_split = args.threshold_split or cfg.data.val_split
    fit_data = None
    if fit_split != "none":
        try:
            # Another data set's classes: the model's operating point comes from its own validation data.
            fit_data = read_split(run.config if args.map_classes else cfg, fit_split)
        except (DataError, ConfigError) as err:
            if args.threshold_split:  # asked for by name: its absence is an error
                raise
            print(f"medattn evaluate: no {fit_split!r} split to fit thresholds and temperature on ({err}); "
                  f"scored without them (choose one with --threshold-split)")
    metrics, probs = evaluate_split(run.model, dataset, run.class_names, run.task, precision=precision, tta=args.tta,
                                    n_boot=args.bootstrap, progress=f"evaluate {args.split}",
                                    threshold_data=fit_data, threshold_split=fit_split,
                                    threshold_rule=args.threshold_rule)
    metrics["data"] = {"format": cfg.data.format, "root": cfg.data.root, "options": cfg.data.options, "split": args.split}
    write_split_results(out, csv_path, dataset, probs, run.class_names, metrics)
    print(results_table({args.split: metrics}, run.task))
    print(f"wrote {out}")
    return 0
