"""Predict class probabilities for images and write an ISIC submission CSV (image, one column per
class)."""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from ._common import add_tta_argument

NAME = "predict"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by `medattn train`")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders (searched recursively)")
    p.add_argument("--out", default="predictions.csv", help="CSV to write (default predictions.csv)")
    add_tta_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--batch-size", type=int, default=32)


def run(args: argparse.Namespace) -> int:
    from ..data.unlabeled import read_images
    from ..files import atomic_write_text
    from ..engine.inference import predict_proba
    from ..engine.run import load_run

    if Path(args.out).exists() and not args.overwrite:
        raise SystemExit(f"medattn predict: {args.out} exists; pass --overwrite to replace it")
    run = load_run(args.run_dir, checkpoint=args.checkpoint)
    data = read_images(args.images, run.image_size)
    probs = predict_proba(run.model, data.images, batch_size=args.batch_size, task=run.task, progress="predict", tta=args.tta)
    rows = [["image", *run.class_names]] + [[i, *[f"{p:.6f}" for p in row]] for i, row in zip(data.ids, probs)]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(args.out, buf.getvalue())
    print(f"wrote {len(data)} predictions to {Path(args.out)}")
    return 0
