"""Test a trained model under Gaussian noise, a background swap, painted artifacts and a shifted split.

Noise: mean 0 and sigma in {0, 0.005, 0.01, 0.05, 0.1} on the [0, 1] image scale (the SIBnet protocol),
every metric at every level. Where the split has lesion masks: the background (outside the mask)
replaced by another image's background (of another class where there is one), and ruler marks, ink
dots and hair painted outside the lesion; the metric change and the fraction of predictions that flip.
For the synthetic set, also the in-distribution split against the shifted one (test_shifted).
Writes JSON (default RUN_DIR/robustness_<split>.json), a markdown table (.md) and a plot (.png).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_run_data_arguments, argument_type

NAME = "robustness"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_data_arguments(p, "perturb", "", "data.options.masks=true")
    p.add_argument("--sigmas", default="0,0.005,0.01,0.05,0.1", type=argument_type(parse_sigmas),
                   help="comma-separated noise standard deviations on the [0, 1] scale (default 0,0.005,0.01,0.05,0.1)")
    p.add_argument("--artifacts", default="ruler,ink,hair", type=argument_type(parse_artifacts),
                   help="comma-separated artifacts painted outside the lesion (default ruler,ink,hair; also bubbles, patch, vignette; '' for none)")
    p.add_argument("--shifted-split", default=None,
                   help="a second split to compare with (default test_shifted for the synthetic sets, else none; "
                        "'none' to skip)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise, donors and artifacts (default 0)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="resamples of the paired bootstrap (the same images clean and perturbed) behind the 95%% "
                        "intervals of each condition's change of AUC and flip fraction (default 1000; 0: none)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, help="use only the first N images of each split")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "auto"),
                   help="fp32 by default: small noise levels are below bf16 resolution")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--out", help="JSON file (default RUN_DIR/robustness_<split>.json); .md and .png beside it")


def parse_sigmas(text: str) -> list[float]:
    """'0,0.01' -> [0.0, 0.01]; raises ValueError naming the bad item."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"--sigmas: {item!r} is not a number") from None
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"--sigmas: {item!r} must be a finite number >= 0")
        out.append(value)
    return out


def parse_artifacts(text: str) -> list[str]:
    """'ruler,ink' -> ['ruler', 'ink'], checked against the synthetic painter's artifact names."""
    from ..data.synthetic import ARTIFACTS

    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in ARTIFACTS]
    if unknown:
        raise ValueError(f"--artifacts: unknown artifact(s) {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(ARTIFACTS)}")
    return names


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..engine.precision import Precision, resolve_device
    from ..evaluation.robustness import evaluate_robustness, write_robustness
    from ..evaluation.robustness_results import robustness_table
    from ._common import load_run_and_split, read_run_split, refuse_existing, results_stem

    sigmas, artifacts = args.sigmas, args.artifacts
    device = resolve_device(args.device)
    run, cfg, dataset = load_run_and_split(args, device)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"robustness_{results_stem(run, cfg, args.split)}.json"
    refuse_existing([out, out.with_suffix(".md"), out.with_suffix(".png")], args.overwrite)
    shifted_split = args.shifted_split or ("test_shifted" if cfg.data.format in ("synthetic", "synthetic_multilabel") else "none")
    shifted = read_run_split(run, cfg, shifted_split) if shifted_split != "none" else None
    if args.limit:
        dataset = dataset.subset(np.arange(min(args.limit, len(dataset))))
        shifted = None if shifted is None else shifted.subset(np.arange(min(args.limit, len(shifted))))
    result = evaluate_robustness(run.model, dataset, sigmas=sigmas, artifacts=artifacts, shifted=shifted,
                                 shifted_split=shifted_split, seed=args.seed, batch_size=args.batch_size,
                                 precision=Precision.resolve(args.precision, device), progress=True,
                                 n_boot=args.bootstrap)
    result.update(run_dir=str(args.run_dir), split=args.split, data_format=cfg.data.format)
    paths = write_robustness(result, out)
    print(robustness_table(result))
    if result["background_note"]:
        print(("background conditions skipped: " if result["background"] is None else "background conditions: ")
              + result["background_note"])
    print("wrote " + ", ".join(map(str, paths)))
    return 0
