"""The ``skood`` command: ``demo``, ``bench``, ``score`` and ``convert``.

* ``skood demo``: sklearn's bundled digits (classes 0-4 inliers, 5-9 outliers; no download), the
  skood detectors in ``Pipeline`` s side by side with sklearn's and PyOD's peers.
* ``skood bench``: detectors x datasets x seeds under one protocol (:mod:`skood.bench`); writes
  a markdown table, a CSV and plots.
* ``skood score``: fit a detector on a CSV / Parquet file and write each row's score and label;
  ``--save`` / ``--model`` write and read skood's pickle-free model format (:mod:`skood.io`);
  ``--explain K`` adds the K columns that pushed each row towards "outlier" (:mod:`skood.explain`).
* ``skood convert``: re-save a pickle / joblib model (or an old signed ``--save`` file) in it.

One module per command (:mod:`skood.cli.demo`, :mod:`skood.cli.bench`, :mod:`skood.cli.score`,
:mod:`skood.cli.convert`), each with ``add_parser(subparsers)`` and ``run(args) -> int``; this
module only builds the parser from them and dispatches. Every module imports its heavy
dependencies (numpy, torch, dask, the harness) inside the functions that use them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from skood.cli import bench, convert, demo, score

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skood", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (demo, bench, score, convert):  # the order of `skood --help`
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command == "demo":  # skood's own showcase: a failure is a bug, shown with its traceback
        return demo.run(args)
    if args.command == "bench" and args.list:
        return bench.list_choices()
    try:
        return {"bench": bench.run, "score": score.run, "convert": convert.run}[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C: stop, with the shell's code for SIGINT
        kept = " (finished cells stay in results.partial.csv: --resume)" * (args.command == "bench")
        print(f"skood {args.command}: interrupted; no result written{kept}", file=sys.stderr)
        return 130
    except (ValueError, ImportError, OSError) as exc:  # a bad file or option: no traceback
        print(f"skood {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # anything else (a diverged fit, ...): one line, not a traceback
        print(f"skood {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
