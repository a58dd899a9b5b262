"""Inspect and manage the decoded-image cache ($MEDATTN_CACHE, default ~/.cache/medattn).

  medattn cache list                       entries with size, images, last use and source
  medattn cache clear --all | --older-than DAYS | --key KEY
  medattn cache verify [KEY ...] [--remove]   hash every row of every entry (or of the given ones)
  medattn cache limit [GB | none]          show or set the size limit (MEDATTN_CACHE_MAX_GB overrides it)

Entries in use by a running process are never removed. See docs/large_data.md.
"""
from __future__ import annotations

import argparse
import json
import os
import time

NAME = "cache"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list the entries, least recently used first")
    ls.add_argument("--json", action="store_true", help="one JSON object per entry instead of a table")
    cl = sub.add_parser("clear", help="remove entries (not those in use)")
    which = cl.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every entry")
    which.add_argument("--older-than", type=float, metavar="DAYS", help="entries last used more than DAYS ago")
    which.add_argument("--key", help="the entry whose key starts with KEY")
    ve = sub.add_parser("verify", help="check every row of every entry against its SHA-256 digest")
    ve.add_argument("keys", nargs="*", help="keys (or unique prefixes) of the entries to check (default: all)")
    ve.add_argument("--remove", action="store_true", help="remove damaged entries (they are rebuilt at their next use)")
    ve.add_argument("--quiet", action="store_true", help="no progress bar")
    li = sub.add_parser("limit", help="show or set the size limit")
    li.add_argument("gb", nargs="?", help="the limit in GB (10^9 bytes), or 'none'")


def _gb(n: int) -> str:
    """Bytes as GB (10^9), or MB / kB below 1 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n / 1e3:.1f} kB"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _limit_text() -> str:
    from ..data import cache

    limit = cache.max_bytes()
    where = ("MEDATTN_CACHE_MAX_GB" if "MEDATTN_CACHE_MAX_GB" in os.environ
             else cache.cache_dir() / cache.LIMIT_FILE if (cache.cache_dir() / cache.LIMIT_FILE).is_file() else "default")
    return f"limit {'none' if limit is None else _gb(limit)} ({where})"


def _list(args) -> int:
    from ..data import cache

    entries = cache.list_entries()
    if args.json:
        for e in entries:
            print(json.dumps({"key": e.key, "path": str(e.path), "state": e.state, "bytes": e.bytes, "images": e.images,
                              "source": e.source, "created": e.created, "last_used": e.last_used}))
        return 0
    print(f"{'KEY':<12}  {'STATE':<13}  {'SIZE':>10}  {'IMAGES':>7}  {'LAST USE':<16}  SOURCE")
    for e in entries:
        images = "-" if e.images is None else str(e.images)
        print(f"{e.key[:12]:<12}  {e.state:<13}  {_gb(e.bytes):>10}  {images:>7}  {_when(e.last_used):<16}  {e.source}")
    total = sum(e.bytes for e in entries)
    print(f"{len(entries)} entries, {_gb(total)} in {cache.cache_dir()}; {_limit_text()}")
    return 0


def _clear(args) -> int:
    from ..data import DataError, cache

    try:
        removed, in_use = cache.clear(older_than_days=args.older_than, key=args.key)
    except ValueError as e:
        raise DataError(str(e)) from None
    if args.key and not removed and not in_use:
        raise DataError(f"no cache entry with a key starting {args.key!r} (see `medattn cache list`)")
    print(f"removed {len(removed)} entries ({_gb(sum(e.bytes for e in removed))})")
    for e in in_use:
        print(f"kept {e.key[:12]} ({_gb(e.bytes)}): in use by a running process")
    return 0


def _verify(args) -> int:
    from ..data import DataError, cache

    entries = [e for e in cache.list_entries() if e.state not in ("being written", "killed write")]
    if args.keys:
        chosen = []
        for k in args.keys:
            match = [e for e in entries if e.key.startswith(k)]
            if len(match) != 1:
                raise DataError(f"key {k!r} matches {len(match)} cache entries (see `medattn cache list`)")
            chosen += match
        entries = chosen
    damaged = 0
    for e in entries:
        problems = cache.verify(e, progress=not args.quiet)
        damaged += bool(problems)
        print(f"{e.key[:12]}  {'ok' if not problems else 'DAMAGED: ' + '; '.join(problems)}")
        if problems and args.remove:
            print(f"{e.key[:12]}  {'removed' if cache.remove(e.path) else 'in use: not removed'}")
    print(f"{len(entries)} entries checked, {damaged} damaged")
    return 1 if damaged else 0


def _limit(args) -> int:
    from ..data import DataError, cache

    if args.gb is not None:
        value = None if args.gb.strip().lower() == "none" else args.gb
        try:
            gb = None if value is None else float(value)
        except ValueError:
            raise DataError(f"the limit must be a number of GB or 'none', got {args.gb!r}") from None
        if gb is not None and gb < 0:
            raise DataError(f"the limit must not be negative, got {gb}")
        print(f"wrote {cache.set_max_gb(gb)}")
        if "MEDATTN_CACHE_MAX_GB" in os.environ:
            print("note: MEDATTN_CACHE_MAX_GB is set and takes precedence over this file")
        before = sum(e.bytes for e in cache.list_entries())
        cache.make_room(0)
        after = sum(e.bytes for e in cache.list_entries())
        if after < before:
            print(f"removed {_gb(before - after)} of least recently used entries")
    print(_limit_text())
    return 0


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "clear": _clear, "verify": _verify, "limit": _limit}[args.action](args)
