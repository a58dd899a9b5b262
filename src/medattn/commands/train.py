"""Train a model from a YAML config (a file or a preset name) into a run directory.

`--resume --out RUN` continues an interrupted run from its last checkpoint with the run's own
config (no --config needed); --set may change only what keeps it the same run (more epochs, the
data's location, threads, device, evaluation batch size) and says so; anything else is refused.
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "train"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file or preset name (see `medattn models --presets`); not needed with --resume")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<config name>)")
    p.add_argument("--unlabeled", metavar="DIR_OR_CSV",
                   help="unlabeled images (a folder, or a CSV without labels) for semi-supervised terms (SIBnet)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation on the test splits")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def training_config(args: argparse.Namespace):
    """(config, run directory) of this call; with --resume the run's own config and its safe changes."""
    from ..config import load_config
    from ..engine.run import read_run_config, resume_config
    from ..errors import ConfigError
    from ._common import new_run_dir

    overrides = args.overrides + ([f"data.unlabeled={args.unlabeled}"] if args.unlabeled else [])
    if not args.resume:
        if not args.config:
            raise ConfigError("train needs --config FILE_OR_PRESET (or --resume --out RUN_DIR to continue a run)")
        cfg = load_config(args.config, overrides)
        return cfg, Path(args.out) if args.out else new_run_dir(Path("runs") / Path(str(args.config)).stem)
    if not args.out:
        raise ConfigError("--resume needs --out RUN_DIR, the run to continue")
    asked = None
    if args.config or overrides:
        base = load_config(args.config) if args.config else read_run_config(args.out)
        asked = load_config(None, overrides, base=base)
    cfg, notes = resume_config(args.out, asked)
    for note in notes:
        print(f"medattn train: --resume changes {note}")
    return cfg, Path(args.out)


def run(args: argparse.Namespace) -> int:
    from ..engine.trainer import Trainer

    cfg, run_dir = training_config(args)
    trainer = Trainer(cfg, run_dir, resume=args.resume, progress=not args.quiet)
    try:
        return _train(trainer, cfg, run_dir, args)
    finally:
        trainer.dist.shutdown()


def _train(trainer, cfg, run_dir: Path, args: argparse.Namespace) -> int:
    from ._common import results_table

    say = print if trainer.dist.is_main else (lambda *a, **k: None)
    say(f"training {cfg.model.name} ({cfg.model.backbone}) on {cfg.data.format} "
          f"[{len(trainer.data.train)} train / {len(trainer.data.val)} val, {trainer.precision.name}, "
          f"{trainer.device}, {trainer.dist.describe()}] -> {run_dir}"
          + (f"; {len(trainer.data.unlabeled)} unlabeled images" if trainer.data.unlabeled is not None else ""))
    summary = trainer.fit()
    say(f"best {summary['select_metric']} = {summary['best_value']:.4f} at epoch {summary['best_epoch'] + 1} "
          f"({summary['seconds']:.0f} s)")
    if not args.no_eval:
        results = trainer.evaluate_splits(n_boot=args.bootstrap)
        say(results_table(results, trainer.task))
    return 0
