"""Write the model card of a run (RUN_DIR/MODEL_CARD.md), after Mitchell et al. (2019).

Model and method with its paper, data (sets, splits, class counts, lesion grouping), intended and
out-of-scope use, metrics with 95% intervals, calibration, robustness and attention-vs-lesion
agreement where the run has measured them (`medattn robustness`, `medattn saliency`), known
limitations, and the command behind every number. `medattn report` shows the card when it exists;
`medattn export` puts it into the sidecar.
"""
from __future__ import annotations

import argparse
import shlex
import sys

NAME = "card"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by `medattn train`")
    p.add_argument("--out", help="Markdown file (default RUN_DIR/MODEL_CARD.md)")
    p.add_argument("--no-data", action="store_true",
                   help="do not read the training and validation data (their class counts are left out)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing card (it may hold your edits)")


def run(args: argparse.Namespace) -> int:
    from ..deploy.card import write_card

    command = shlex.join(["medattn", *sys.argv[1:]]) if sys.argv[1:2] == ["card"] else None
    try:
        out = write_card(args.run_dir, args.out, overwrite=args.overwrite, read_data=not args.no_data,
                         command=command)
    except (FileExistsError, FileNotFoundError) as err:
        raise SystemExit(f"medattn card: error: {err}") from None
    print(f"wrote {out}")
    return 0
