"""List the registered models (and the config presets with --presets)."""
from __future__ import annotations

import argparse

NAME = "models"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", action="store_true", help="list the YAML presets shipped in configs/")


def first_sentence(doc: str) -> str:
    """The docstring's first sentence, over as many lines as it takes (never cut mid-sentence)."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    end = next((i for i in range(len(paragraph)) if paragraph[i] == "." and (i + 1 == len(paragraph) or paragraph[i + 1] == " ")
                and not paragraph[max(0, i - 3):i + 1].endswith(("e.g.", "i.e."))), None)
    return paragraph if end is None else paragraph[:end + 1]


def run(args: argparse.Namespace) -> int:
    from ..config import list_presets
    from ..models._registry import list_models, model_factory

    if args.presets:
        for name in list_presets():
            print(name)
        return 0
    for name in list_models():
        print(f"{name:<16} {first_sentence(model_factory(name).__doc__ or '')}")
    return 0
