"""Where a benchmark writes its report: ``--out PATH``, never over an existing file unless
``--overwrite`` is given. The check runs before the benchmark does, so a refused run costs
nothing; the file is written whole at the end."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_report_arguments(parser: argparse.ArgumentParser, what: str = "a markdown report") -> None:
    parser.add_argument("--out", default=None, help=f"write {what} here (refused if the file exists)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def check_report_path(args: argparse.Namespace) -> None:
    """Exit with one line naming the file when ``--out`` exists and ``--overwrite`` is not given."""
    if args.out and Path(args.out).exists() and not args.overwrite:
        raise SystemExit(f"--out {args.out} exists: pass --overwrite to replace it, or choose another path")


def write_report(args: argparse.Namespace, text: str) -> None:
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
