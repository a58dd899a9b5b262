"""Helpers shared by the subcommands."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..metrics.summary import headline_names, lookup_metric


def new_run_dir(base: str | Path) -> Path:
    """``base`` if it does not exist yet, else ``base-YYYYmmdd-HHMMSS`` (never reuse a run)."""
    base = Path(base)
    if not base.exists():
        return base
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = base.with_name(f"{base.name}-{stamp}")
    i = 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{stamp}-{i}")
        i += 1
    return candidate


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def results_table(results: dict[str, dict], task: str) -> str:
    """A markdown table: one row per split, headline metrics as columns (with 95% CI when present)."""
    cols = headline_names(task, list(results.values()))
    lines = ["| split | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for split, m in results.items():
        cells = []
        for c in cols:
            node = lookup_metric(m, c)
            cell = fmt(node)
            ci = m.get("ci95", {}).get(c)
            if ci and node is not None:
                cell += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
            cells.append(cell)
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dump_json(obj, path: str | Path | None) -> None:
    text = json.dumps(obj, indent=1, default=float)
    if path:
        from ..files import atomic_write_text

        atomic_write_text(path, text)
    else:
        print(text)


def add_run_data_arguments(p, split_verb: str = "score", data_note: str = "", set_example: str = "data.options.masks=true") -> None:
    """The arguments every command that reads a run and its data shares: RUN_DIR, --data-format,
    --data-root, --split, --set and --checkpoint."""
    p.add_argument("run_dir", help="run directory written by `medattn train`")
    p.add_argument("--data-format", help="reader name (default: the run's)" + data_note)
    p.add_argument("--data-root", help="data root (default: the run's)")
    p.add_argument("--split", default="test", help=f"split to {split_verb} (default test)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override data options of the run's config, e.g. --set {set_example}")
    p.add_argument("--checkpoint", default="best", help="best (default) or last")
    p.add_argument("--overwrite", action="store_true", help="replace result files that already exist (default: refuse)")


def load_run_and_split(args, device=None):
    """The run of ``args.run_dir`` (``args.checkpoint``) and its ``args.split`` data, with the
    ``--set`` overrides and ``--data-format``/``--data-root`` applied: (run, config, dataset)."""
    from ..config import Config, apply_update, parse_override
    from ..engine.run import load_run

    run = load_run(args.run_dir, checkpoint=args.checkpoint, **({"device": device} if device is not None else {}))
    cfg = run.config.to_dict()
    if args.data_format:
        cfg = apply_update(cfg, {"data": {"format": args.data_format}})  # another reader: the run's options go
    if args.data_root:
        cfg = apply_update(cfg, {"data": {"root": args.data_root}})
    for item in args.overrides:
        cfg = apply_update(cfg, parse_override(item))  # as `train --set`: a new reader drops the old options
    cfg = Config.from_dict(cfg)
    return run, cfg, read_run_split(run, cfg, args.split, getattr(args, "map_classes", None))


SAME_DATA_OPTIONS = ("masks", "mask_dir", "max_pixels", "cache", "num_workers", "progress", "storage")


def results_stem(run, cfg, split: str, class_map: str | None = None) -> str:
    """The name a command's results on ``split`` get: the split itself on the run's own data, else
    ``<split>_<format>-<root folder>-<hash of the data settings>``, so results on other data never
    replace the run's own. Options that add annotations or change how files are decoded, not which
    images and labels a split holds (masks, mask_dir, max_pixels, cache, ...), do not count."""
    import hashlib

    def identity(d) -> tuple:
        return d.format, d.root, {k: v for k, v in d.options.items() if k not in SAME_DATA_OPTIONS}

    if identity(run.config.data) == identity(cfg.data) and not class_map:
        return split
    asked = cfg.data
    digest = hashlib.sha256(json.dumps([identity(asked), class_map], sort_keys=True, default=str).encode()).hexdigest()[:6]
    folder = Path(asked.root).name if asked.root else "data"
    return f"{split}_{asked.format}-{folder}-{digest}"


def refuse_existing(paths, overwrite: bool) -> None:
    """`OutputExistsError` naming the first of ``paths`` that exists, unless ``overwrite``."""
    from ..errors import OutputExistsError

    taken = [Path(p) for p in paths if Path(p).exists()]
    if taken and not overwrite:
        raise OutputExistsError(f"{taken[0]} exists; pass --overwrite to replace it (or choose another --out)")


def read_run_split(run, cfg, split: str, class_map: str | None = None):
    """``split`` of the data ``cfg`` names, refused (`DataError`) when its classes are not the run's;
    with ``class_map`` (``--map-classes``) its classes are first mapped to the run's (``data.relabel``)
    and the images left out are said."""
    from ..engine.data import read_split

    dataset = read_split(cfg, split)
    if class_map:
        from ..data.relabel import parse_class_map, relabel

        dataset, left_out = relabel(dataset, parse_class_map(class_map), list(run.class_names))
        dropped = {k: v for k, v in left_out.items() if v}
        print(f"--map-classes: {len(dataset)} images in the run's classes"
              + (f"; left out (no class given): {', '.join(f'{k} {v}' for k, v in dropped.items())}" if dropped else ""))
    if dataset.class_names != run.class_names:
        from ..errors import DataError

        raise DataError(f"the {split} split's classes {dataset.class_names} differ from the run's {run.class_names}")
    return dataset


def add_tta_argument(p) -> None:
    """``--tta`` of the commands that predict (see ``engine.inference.predict_proba``)."""
    from ..engine.inference import TTA_VIEWS

    p.add_argument("--tta", default="none", choices=list(TTA_VIEWS),
                   help="test-time augmentation: average over the image and its mirror (flip) or its 8 "
                        "rotations/reflections (dihedral); default none")


def argument_type(parse):
    """An argparse ``type=`` from a parser that raises ValueError: the message becomes argparse's usage error."""
    import argparse

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


def add_max_pixels_argument(p) -> None:
    """``--max-pixels`` of the commands that read image files (the decompression-bomb limit)."""
    from ..data.io import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images with more pixels than this (width x height; default {DEFAULT_MAX_PIXELS}, "
                        f"0: no limit)")
