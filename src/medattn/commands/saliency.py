"""Score the model's attention maps and CAMs against lesion masks (Dice, IoU, HD95, SSIM, pointing game).

Every map the model shows (native attention maps and the chosen CAMs) is compared with the lesion mask
of each image of a split: binarised by Otsu and by the convex hull of its region >= --hull-threshold
(as in the SIBnet evaluation) for Dice, IoU, HD95 (pixels and % of the image diagonal) and SSIM of the
binary map; continuous: SSIM, pointing game, share of the map's energy on the lesion. Writes a CSV with
one row per image x map x binarisation and a JSON summary with means and 95% bootstrap intervals.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from .explain import cam_list

from ..errors import DataError
from ..metrics.saliency import summary_table
from ._common import add_run_data_arguments

NAME = "saliency"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_data_arguments(p, "score", "; the data must have lesion masks", "data.options.masks=true")
    p.add_argument("--cams", default="gradcam,gradcam++,eigencam", type=cam_list,
                   help="comma-separated CAM methods (default gradcam,gradcam++,eigencam; '' for none)")
    p.add_argument("--no-native", action="store_true", help="leave out the model's native attention maps")
    p.add_argument("--only-with-masks", action="store_true",
                   help="score only the images that have a lesion mask (e.g. 529 of the 600 ISIC 2017 test images): the "
                        "reader's masks option becomes 'available' and the count left out is reported")
    p.add_argument("--explain-class", choices=("predicted", "true"), default="predicted",
                   help="class the CAMs explain: the predicted one (default) or the true label(s)")
    p.add_argument("--hull-threshold", type=float, default=0.5,
                   help="convex-hull binarisation: hull of the pixels with map >= this (maps are in [0, 1])")
    p.add_argument("--pointing-tolerance", type=float, default=0.0,
                   help="pointing game: a hit may lie this many pixels outside the mask (default 0)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, help="score only the first N images")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "auto"))
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--out", help="summary JSON (default RUN_DIR/saliency_<split>.json)")
    p.add_argument("--csv", help="per-image CSV (default: the summary's name with .csv)")


def reference_masks(masks: np.ndarray, index: int, map_classes: dict[str, int | None]) -> dict[str, np.ndarray]:
    """The mask each map of image ``index`` is scored against: the lesion mask (N x H x W masks), or
    with per-class masks (N x K x H x W) the mask of the map's class, the union for class-agnostic maps."""
    m = masks[index]
    if m.ndim == 2:
        return {name: m for name in map_classes}
    union = m.max(axis=0)
    return {name: union if k is None else m[k] for name, k in map_classes.items()}


def explain_targets(dataset, explain_class: str) -> list[list[int]] | None:
    """Per image, the classes to explain (None: the predicted ones)."""
    if explain_class == "predicted":
        return None
    if dataset.task == "multilabel":
        t = np.nan_to_num(dataset.targets, nan=0.0)
        rows = [list(map(int, np.flatnonzero(r > 0.5))) for r in t]
    else:
        rows = [[int(c)] if c >= 0 else [] for c in dataset.targets]
    missing = [dataset.ids[i] for i, r in enumerate(rows) if not r]
    if missing:
        raise DataError(f"--explain-class true needs a positive label for every image; image {missing[0]!r} has "
                        f"none ({len(missing) - 1} more)")
    return rows


def check_masks(dataset) -> None:
    """One clear error when the split has no masks or masks of the wrong size."""
    if dataset.masks is None:
        raise DataError(f"{dataset.source or 'the data'} has no lesion masks; `medattn saliency` needs a data set "
                        f"with masks (e.g. isic2017/isic2018 with masks, or synthetic)")
    if dataset.masks.shape[0] != len(dataset) or dataset.masks.shape[-2:] != dataset.images.shape[1:3]:
        raise DataError(f"{dataset.source}: masks of shape {dataset.masks.shape} do not match images of shape "
                        f"{dataset.images.shape}")


def run(args: argparse.Namespace) -> int:
    from ..engine.precision import Precision, resolve_device
    from ..explain import iter_explanations
    from ..metrics.saliency import score_rows, summarize_rows
    from ..engine.run import read_run_config
    from ._common import dump_json, load_run_and_split, refuse_existing, results_stem

    methods = args.cams
    device = resolve_device(args.device)
    if args.only_with_masks and ("masks" in read_run_config(args.run_dir).data.options
                                 or any(o.startswith("data.options.masks=") for o in args.overrides)):
        args.overrides = [*args.overrides, "data.options.masks=available"]
    run, cfg, dataset = load_run_and_split(args, device)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"saliency_{results_stem(run, cfg, args.split)}.json"
    csv_path = Path(args.csv) if args.csv else out.with_suffix(".csv")
    refuse_existing([out, csv_path], args.overwrite)
    if args.limit:
        dataset = dataset.subset(np.arange(min(args.limit, len(dataset))))
    check_masks(dataset)
    without = [dataset.ids[i] for i in np.flatnonzero(~dataset.has_mask)]
    if without and not args.only_with_masks:
        raise DataError(f"{len(without)} of {len(dataset)} images have no lesion mask (e.g. {without[0]!r}); pass "
                        f"--only-with-masks to score the others")
    if without:
        print(f"medattn saliency: {len(without)} of {len(dataset)} images have no lesion mask and are left out of "
              f"the scores, e.g. {without[0]!r}", file=sys.stderr)
        dataset = dataset.subset(dataset.has_mask)
    targets = explain_targets(dataset, args.explain_class)
    empty = [i for i in range(len(dataset)) if not dataset.masks[i].any()]
    keep = np.setdiff1d(np.arange(len(dataset)), empty)
    if empty:
        print(f"medattn saliency: {len(empty)} image(s) with an empty mask are not scored, e.g. "
              f"{dataset.ids[empty[0]]!r}", file=sys.stderr)
    scored = dataset.subset(keep)
    targets = None if targets is None else [targets[i] for i in keep]

    rows = []
    explanations = iter_explanations(
        run.model, scored.images, scored.ids, batch_size=args.batch_size, targets=targets, task=run.task, desc="saliency",
        class_names=run.class_names, methods=methods, native=not args.no_native,
        precision=Precision.resolve(args.precision, device))
    for i, e in enumerate(explanations):
        refs = reference_masks(scored.masks, i, e.map_classes)
        rows.extend(score_rows(e.image_id, e.maps, refs, args.hull_threshold, args.pointing_tolerance))

    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["image_id", "map", "binarization"])
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "run_dir": str(args.run_dir), "split": args.split, "n_images": len(dataset) + len(without),
        "n_scored": len(scored), "left_out_without_mask": without,
        "skipped_empty_mask": [dataset.ids[i] for i in empty], "explain_class": args.explain_class,
        "hull_threshold": args.hull_threshold, "pointing_tolerance": args.pointing_tolerance,
        "bootstrap": args.bootstrap, "maps": summarize_rows(rows, args.bootstrap, args.seed),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    dump_json(summary, out)
    print(summary_table(summary["maps"]))
    print(f"wrote {out} and {csv_path}")
    return 0
