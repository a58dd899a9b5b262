"""Predict class probabilities for images and write an ISIC submission CSV, exactly as the challenge
scorers take it: `image` and one probability column per class; for an ISIC 2017 run the official
2017 layout `image_id,melanoma,seborrheic_keratosis` (nevus is "neither"). Beside it,
`<out>_labels.csv` gives each image's predicted class and its probability (multi-label: every label
with probability >= 0.5, joined by ';')."""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from ._common import add_max_pixels_argument, add_tta_argument

NAME = "predict"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by `medattn train`")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders (searched recursively)")
    p.add_argument("--out", default="predictions.csv", help="CSV to write (default predictions.csv)")
    add_tta_argument(p)
    add_max_pixels_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--batch-size", type=int, default=32)


def predicted_labels(probs, class_names: list[str], task: str, threshold: float = 0.5) -> list[str]:
    """The predicted class of each row (multi-class: argmax; multi-label: labels >= threshold, ';'-joined)."""
    if task == "multilabel":
        return [";".join(c for c, p in zip(class_names, row) if p >= threshold) for row in probs]
    return [class_names[int(i)] for i in probs.argmax(axis=1)]


def run(args: argparse.Namespace) -> int:
    from ..data.unlabeled import read_images
    from ..engine.inference import check_finite, predict_proba
    from ..engine.run import load_run
    from ..metrics.classification import ISIC2017_TASKS
    from ..metrics.summary import is_isic2017
    from ._common import refuse_existing

    out = Path(args.out)
    labels_path = out.with_name(f"{out.stem}_labels.csv")
    refuse_existing([out, labels_path], args.overwrite)
    run = load_run(args.run_dir, checkpoint=args.checkpoint)
    data = read_images(args.images, run.image_size, max_pixels=args.max_pixels)
    probs = predict_proba(run.model, data.images, batch_size=args.batch_size, task=run.task, progress="predict", tta=args.tta)
    check_finite(probs, data.ids)
    if is_isic2017(run.class_names):
        columns = [run.class_names.index(c) for c in ISIC2017_TASKS]
        header = ["image_id", *ISIC2017_TASKS]
    else:
        columns, header = list(range(len(run.class_names))), ["image", *run.class_names]
    labels = predicted_labels(probs, run.class_names, run.task)
    top = probs.max(axis=1)
    write_csv(out, [header] + [[i, *[f"{row[c]:.6f}" for c in columns]] for i, row in zip(data.ids, probs)])
    write_csv(labels_path, [["image", "predicted", "probability"]]
              + [[i, label, f"{p:.6f}"] for i, label, p in zip(data.ids, labels, top)])
    print(f"wrote {len(data)} predictions to {out} and the predicted classes to {labels_path}")
    return 0


def write_csv(path: Path, rows: list[list]) -> None:
    from ..files import atomic_write_text

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(path, buf.getvalue())
