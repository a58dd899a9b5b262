"""Write the synthetic dermoscopy set to disk in the ISIC 2018 Task 3 layout (images, labels, masks).

The folder reads back with `--data-format isic2018` (same pixels as `--data-format synthetic`), so
every reader and command path can run on real files. Same options and seed give the same bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

NAME = "synth"

FOLDERS = {"train": "Training", "val": "Validation", "test": "Test", "test_shifted": "TestShifted"}
"""Split name -> the ``{Split}`` part of the ISIC 2018 folder names."""

MANIFEST = "synth.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty, see --overwrite)")
    p.add_argument("--n", type=int, default=1200, help="training images (default 1200)")
    p.add_argument("--n-val", type=int, default=300, help="validation images (default 300)")
    p.add_argument("--n-test", type=int, default=600, help="test images, and as many shifted test images (default 600)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--spurious", type=float, default=0.9,
                   help="P(an image carries its class's shortcut artifact) in train/val/test (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--artifact-rate", type=float, default=0.05,
                   help="P(an image carries another class's shortcut artifact) (default 0.05)")
    p.add_argument("--shift-mode", choices=("reversed", "random"), default="reversed",
                   help="how TestShifted breaks the association (default reversed)")
    p.add_argument("--classes", help="comma-separated classes (default nevus,melanoma,seborrheic_keratosis,"
                                     "basal_cell_carcinoma)")
    p.add_argument("--proportions", help="comma-separated class shares, one per class (default 0.55,0.2,0.15,0.1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it holds a data set written by `medattn synth` (never anything else)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    classes = args.classes.split(",") if args.classes else None
    proportions = [float(v) for v in args.proportions.split(",")] if args.proportions else None
    counts = write_synthetic_dataset(args.out, n_train=args.n, n_val=args.n_val, n_test=args.n_test, size=args.size,
                                     spurious=args.spurious, seed=args.seed, class_names=classes,
                                     proportions=proportions, artifact_rate=args.artifact_rate,
                                     shift_mode=args.shift_mode, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {sum(counts.values())} images ({', '.join(f'{k} {v}' for k, v in counts.items())}) to {args.out}")
    return 0


def write_synthetic_dataset(out: str | Path, n_train: int = 1200, n_val: int = 300, n_test: int = 600, size: int = 128,
                            spurious: float = 0.9, seed: int = 0, class_names=None, proportions=None,
                            artifact_rate: float = 0.05, shift_mode: str = "reversed", overwrite: bool = False,
                            progress: bool = True, chunk: int = 64) -> dict[str, int]:
    """Write all four splits under ``out`` (see `README_TEXT` for the layout); returns images per split.

    Writes into a temporary sibling folder and renames it to ``out`` at the end, so ``out`` is either
    complete or untouched. Refuses a non-empty ``out`` unless ``overwrite`` and ``out`` holds a
    ``synth.json`` written by this command."""
    from tqdm.auto import tqdm

    from ..data import DataError
    from ..data.synthetic import ARTIFACTS, generate_synthetic

    out = Path(out)
    sizes = {"train": n_train, "val": n_val, "test": n_test, "test_shifted": n_test}
    if min(sizes.values()) < 0:
        raise DataError(f"image counts must be non-negative, got {sizes}")
    options = dict(spurious=spurious, seed=seed, class_names=class_names, proportions=proportions,
                   artifact_rate=artifact_rate, shift_mode=shift_mode)
    probe = generate_synthetic(0, size=size, **options)  # validates every option before any work
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        bar = tqdm(total=sum(sizes.values()), desc="synth", unit="img", disable=not progress)
        for split, n in sizes.items():
            folder = FOLDERS[split]
            images_dir = tmp / f"ISIC2018_Task3_{folder}_Input"
            truth_dir = tmp / f"ISIC2018_Task3_{folder}_GroundTruth"
            masks_dir = tmp / f"ISIC2018_Task1_{folder}_GroundTruth"
            for d in (images_dir, truth_dir, masks_dir):
                d.mkdir(parents=True)
            truth = ["image," + ",".join(probe.class_names)]
            flags = ["image," + ",".join(ARTIFACTS)]
            for start in range(0, n, chunk):
                part = generate_synthetic(min(chunk, n - start), size=size, split=split, start=start, **options)
                for i, image_id in enumerate(part.ids):
                    _save_png(part.images[i], images_dir / f"{image_id}.png")
                    _save_png(part.masks[i], masks_dir / f"{image_id}_segmentation.png")
                    truth.append(image_id + "," + ",".join("1.0" if k == part.targets[i] else "0.0"
                                                           for k in range(len(part.class_names))))
                    flags.append(image_id + "," + ",".join(str(int(part.extra["artifacts"][a][i])) for a in ARTIFACTS))
                bar.update(len(part))
            (truth_dir / f"ISIC2018_Task3_{folder}_GroundTruth.csv").write_text("\n".join(truth) + "\n")
            (tmp / f"artifacts_{split}.csv").write_text("\n".join(flags) + "\n")
        bar.close()
        manifest = {"generator": "medattn synth", "format": "isic2018", "size": size, "seed": seed,
                    "spurious": spurious, "artifact_rate": artifact_rate, "shift_mode": shift_mode,
                    "classes": probe.class_names, "proportions": probe.extra["proportions"],
                    "shortcuts": probe.extra["shortcuts"],
                    "splits": {s: {"folder": FOLDERS[s], "images": n} for s, n in sizes.items()}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / "README.md").write_text(README_TEXT.format(**manifest, shortcut_lines="\n".join(
            f"- {c}: {a}" for c, a in probe.extra["shortcuts"].items()), artifacts=", ".join(ARTIFACTS)))
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sizes


def _save_png(array, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def _check_target(out: Path, overwrite: bool) -> None:
    from ..data import DataError

    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out} is not empty; pass --overwrite to replace a data set written by "
                            f"`medattn synth`, or choose another --out")
        if not (out / MANIFEST).is_file():
            raise DataError(f"refusing to replace {out}: it was not written by `medattn synth` "
                            f"(no {MANIFEST}); remove it yourself or choose another --out")


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an existing ``out`` is removed only after the move."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old)


README_TEXT = """# Synthetic dermoscopy data set

Written by `medattn synth` (image side {size} px, seed {seed}, spurious {spurious}, artifact rate
{artifact_rate}, shift mode {shift_mode}). Procedural dermoscopy-like images: the class is carried by
the lesion's shape, colour and texture; every image has a lesion mask; background artifacts
({artifacts}) are painted with a class association set by `spurious`.

## Layout (ISIC 2018 Task 3, plus masks)
- `ISIC2018_Task3_{{Split}}_Input/<id>.png`: images (PNG, lossless).
- `ISIC2018_Task3_{{Split}}_GroundTruth/ISIC2018_Task3_{{Split}}_GroundTruth.csv`: `image,<classes>`,
  one-hot rows (1.0/0.0).
- `ISIC2018_Task1_{{Split}}_GroundTruth/<id>_segmentation.png`: lesion masks (0 background, 255 lesion).
- `artifacts_<split>.csv`: `image` and one 0/1 column per artifact present in the image.
- `synth.json`: the options that produced this folder.

`{{Split}}` is Training (split `train`), Validation (`val`), Test (`test`) and TestShifted
(`test_shifted`). Image ids are `SYN_<TR|VA|TE|TS>_<index>`, unique across splits.

## Shortcuts
Each class has a shortcut artifact. In Training, Validation and Test an image carries its class's
shortcut with probability `spurious` and every other class's shortcut with probability
`artifact_rate`; hair and the dark dermoscope border appear at random. TestShifted shows the same
lesions on the same skin as Test, but with the association broken (`reversed`: the shortcut of
another class; `random`: independent of the class), so a model that learned the shortcut loses
accuracy there and a model that looks at the lesion does not.

{shortcut_lines}

Read it back with `--data-format isic2018 --data-root <this folder>`, or generate the same images
in memory with `--data-format synthetic` and the same options.
"""
