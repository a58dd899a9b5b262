"""The `medattn` command line. Each subcommand lives in `medattn/commands/<name>.py` and provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only finds and dispatches them.

A user error (`medattn.errors.MedattnError`: config, data, unknown names, run directories,
checkpoints) ends as one line on stderr and exit code 2; ``--debug`` (or ``MEDATTN_DEBUG=1``) shows
the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__, commands
from .errors import MedattnError


def _command_modules() -> dict[str, object]:
    found = {}
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        found[getattr(module, "NAME", info.name)] = module
    return dict(sorted(found.items()))


def _help_text(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help strings: "95% intervals" must stay text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medattn", description="Attention-guided medical image classification.")
    parser.add_argument("--version", action="version", version=f"medattn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules().items():
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(name, help=_help_text(doc.splitlines()[0] if doc else ""), description=_help_text(doc),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error instead of one line")
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except MedattnError as err:  # bad input: one clear line, no traceback
        if args.debug or os.environ.get("MEDATTN_DEBUG") == "1":
            raise
        print(f"medattn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
