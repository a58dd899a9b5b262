"""List the registered models (and the config presets with --presets)."""
from __future__ import annotations

import argparse

NAME = "models"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", action="store_true", help="list the YAML presets shipped in configs/")


def run(args: argparse.Namespace) -> int:
    from ..config import list_presets
    from ..models._registry import list_models, model_factory

    if args.presets:
        for name in list_presets():
            print(name)
        return 0
    for name in list_models():
        doc = (model_factory(name).__doc__ or "").strip().splitlines()
        print(f"{name:<16} {doc[0] if doc else ''}")
    return 0
