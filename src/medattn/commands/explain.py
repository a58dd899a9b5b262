"""Explain predictions: class probabilities, native attention maps and CAM overlays for images.

For every image (files, or folders of png/jpg/...): the predicted class and probabilities, the model's
own attention maps (BIIGMA: M and the per-head maps; Soft-Attention: its maps; ...) and Grad-CAM,
Grad-CAM++ and EigenCAM (gradient-free) through pytorch-grad-cam, for the predicted class (multi-label:
every label at or above --threshold) or the classes given with --class. Writes OUT/<id>.png (the image,
each map over it, probabilities in the title), OUT/<id>.npz (the arrays, see medattn.explain.overlay)
and OUT/predictions.csv. --resume skips images whose outputs are already there.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from ._common import add_max_pixels_argument

NAME = "explain"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by `medattn train`")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default="best", help="best (default) or last")
    p.add_argument("--cams", default="gradcam,gradcam++,eigencam", type=cam_list,
                   help="comma-separated CAM methods (gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, "
                        "ablationcam, scorecam; default gradcam,gradcam++,eigencam; '' for none)")
    p.add_argument("--no-native", action="store_true", help="leave out the model's native attention maps")
    p.add_argument("--class", dest="classes", action="append", metavar="NAME_OR_INDEX",
                   help="explain this class instead of the predicted one (repeat for several)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="multi-label: explain every label with probability >= this (default 0.5)")
    p.add_argument("--recursive", action="store_true", help=argparse.SUPPRESS)  # folders are always searched recursively
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-png", action="store_true", help="write no PNG overlays")
    p.add_argument("--no-npz", action="store_true", help="write no .npz arrays")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the heat map over the image")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "auto"))
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--resume", action="store_true", help="skip images whose outputs already exist in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the explanations already in --out")
    add_max_pixels_argument(p)


def cam_list(text: str) -> list[str]:
    """argparse type: comma-separated CAM method names, checked against ``CAM_METHODS``."""
    from ..explain.cams import check_methods

    try:
        return check_methods([m.strip() for m in text.split(",") if m.strip()])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_classes(values: list[str] | None, class_names: list[str]) -> list[int] | None:
    """--class values (names or indices) as class indices; `DataError` for an unknown one."""
    if not values:
        return None
    from ..data import DataError

    out = []
    for v in values:
        if v in class_names:
            out.append(class_names.index(v))
        elif v.isdigit() and int(v) < len(class_names):
            out.append(int(v))
        else:
            raise DataError(f"--class {v!r} is not one of the run's classes: {', '.join(class_names)}")
    return list(dict.fromkeys(out))


MANIFEST = "explain.json"
"""Written into --out: which run and checkpoint made its outputs."""


def check_output_folder(out: Path, run_dir: Path, checkpoint: str, resume: bool, overwrite: bool) -> None:
    """Refuse an --out that already holds explanations, unless --overwrite, or --resume of the same run."""
    from ..errors import OutputExistsError

    if overwrite or not out.is_dir():
        return
    held = [p for p in out.iterdir() if p.name == "predictions.csv" or p.suffix in (".png", ".npz")]
    if not held:
        return
    made_by = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else {}
    same = made_by.get("run_dir") == str(run_dir.resolve()) and made_by.get("checkpoint") == checkpoint
    if resume and same:
        return
    who = f"run {made_by['run_dir']} ({made_by.get('checkpoint')})" if made_by else "an unknown run"
    hint = "--resume to continue it" if same else "another --out"
    raise OutputExistsError(f"{out} already holds {len(held)} explanation file(s) of {who}; choose {hint}, or "
                            f"pass --overwrite to replace them")


class LazyImages:
    """A sequence of image files decoded on access to ``size`` x ``size`` uint8 RGB (EXIF applied)."""

    def __init__(self, files: list[Path], size: int, max_pixels: int | None = None):
        self.files, self.size, self.max_pixels = files, size, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        from ..data import DataError
        from ..data.io import ImageReadError, read_image

        try:
            return read_image(self.files[i], self.size, self.max_pixels)[0]
        except ImageReadError as err:
            raise DataError(f"{self.files[i]}: {err}") from None


def run(args: argparse.Namespace) -> int:
    from ..engine.precision import Precision, resolve_device
    from ..engine.run import load_run
    from ..data.unlabeled import collect_image_files
    from ..explain import iter_explanations, save_npz, save_overlay
    from ..files import atomic_write_text

    methods = args.cams
    files = collect_image_files(args.inputs, args.max_pixels, source="medattn explain")
    out = Path(args.out)
    check_output_folder(out, Path(args.run_dir), args.checkpoint, args.resume, args.overwrite)
    device = resolve_device(args.device)
    run = load_run(args.run_dir, checkpoint=args.checkpoint, device=device)
    classes = parse_classes(args.classes, run.class_names)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MANIFEST, json.dumps({"run_dir": str(Path(args.run_dir).resolve()),
                                                  "checkpoint": args.checkpoint}, indent=1))
    csv_path = out / "predictions.csv"
    header = ["image_id", "path", "predicted", "explained", *run.class_names]

    done: dict[str, dict] = {}
    if args.resume and csv_path.is_file():
        with open(csv_path, newline="") as f:
            done = {r["image_id"]: r for r in csv.DictReader(f) if _outputs_exist(out, r["image_id"], args)}
    todo = [f for f in files if f.stem not in done]
    if done:
        print(f"medattn explain: {len(files) - len(todo)} image(s) already explained in {out}, {len(todo)} to go")

    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(r for r in done.values() if r["image_id"] in {p.stem for p in files})
        paths = {p.stem: p for p in todo}
        for e in iter_explanations(run.model, LazyImages(todo, run.image_size, args.max_pixels), [p.stem for p in todo],
                                   batch_size=args.batch_size, task=run.task, class_names=run.class_names,
                                   methods=methods, classes=classes, native=not args.no_native,
                                   precision=Precision.resolve(args.precision, device), threshold=args.threshold):
            if not args.no_npz:
                save_npz(e, out / f"{e.image_id}.npz", run.class_names)
            if not args.no_png:
                save_overlay(e, out / f"{e.image_id}.png", run.class_names, alpha=args.alpha)
            writer.writerow({"image_id": e.image_id, "path": str(paths[e.image_id]),
                             "predicted": run.class_names[e.predicted],
                             "explained": ";".join(run.class_names[c] for c in e.explained),
                             **{c: f"{p:.6f}" for c, p in zip(run.class_names, e.probabilities)}})
            f.flush()  # a crash leaves the rows of the images already written, for --resume
    print(f"explained {len(todo)} image(s); wrote {out}")
    return 0


def _outputs_exist(out: Path, image_id: str, args: argparse.Namespace) -> bool:
    return (args.no_png or (out / f"{image_id}.png").is_file()) and (args.no_npz or (out / f"{image_id}.npz").is_file())
