"""The `medattn` command line. Each subcommand lives in `medattn/commands/<name>.py` and provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only finds and dispatches them."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands


def _command_modules() -> dict[str, object]:
    found = {}
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        found[getattr(module, "NAME", info.name)] = module
    return dict(sorted(found.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medattn", description="Attention-guided medical image classification.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules().items():
        doc = (module.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else "", description=(module.__doc__ or "").strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from .data import DataError

    try:
        return int(args._run(args) or 0)
    except DataError as err:  # bad input: one clear line, no traceback
        print(f"medattn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
