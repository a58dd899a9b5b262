"""Train a model from a YAML config (a file or a preset name) into a run directory."""
from __future__ import annotations

import argparse

from ..config import load_config
from ..engine.trainer import Trainer
from ._common import new_run_dir, results_table

NAME = "train"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML file or preset name (see `medattn models --presets`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<config name>)")
    p.add_argument("--unlabeled", metavar="DIR_OR_CSV",
                   help="unlabeled images (a folder, or a CSV without labels) for semi-supervised terms (SIBnet)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation on the test splits")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    cfg = load_config(args.config, args.overrides + ([f"data.unlabeled={args.unlabeled}"] if args.unlabeled else []))
    if args.resume:
        if not args.out:
            raise SystemExit("--resume needs --out RUN_DIR")
        from ..engine.run import read_run_config

        cfg = read_run_config(args.out)
        run_dir = Path(args.out)
    else:
        run_dir = Path(args.out) if args.out else new_run_dir(Path("runs") / Path(str(args.config)).stem)
    trainer = Trainer(cfg, run_dir, resume=args.resume, progress=not args.quiet)
    print(f"training {cfg['model']['name']} ({cfg['model']['backbone']}) on {cfg['data']['format']} "
          f"[{len(trainer.data.train)} train / {len(trainer.data.val)} val, {trainer.precision.name}, "
          f"{trainer.device}] -> {run_dir}"
          + (f"; {len(trainer.data.unlabeled)} unlabeled images" if trainer.data.unlabeled is not None else ""))
    summary = trainer.fit()
    print(f"best {summary['select_metric']} = {summary['best_value']:.4f} at epoch {summary['best_epoch'] + 1} "
          f"({summary['seconds']:.0f} s)")
    if not args.no_eval:
        results = trainer.evaluate_splits(n_boot=args.bootstrap)
        print(results_table(results, trainer.task))
    return 0
