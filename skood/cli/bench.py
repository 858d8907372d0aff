"""``skood bench``: detectors x datasets x seeds under one protocol (:mod:`skood.bench`).

Writes a markdown table, a CSV and plots to ``--out``; ``--list`` names every detector and bundled
dataset. The harness is imported only when the command runs (``skood score`` never loads it).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from skood._files import check_not_input

__all__ = ["add_parser", "list_choices", "run"]


def add_parser(subparsers) -> None:
    p_bench = subparsers.add_parser(
        "bench",
        help="detectors x datasets x seeds: table, CSV and plots",
        description="Run detectors x datasets x seeds under one protocol and write "
        "results.md, results.csv and PNG plots to --out.",
    )
    p_bench.add_argument(
        "--detector",
        action="append",
        metavar="SPEC",
        help="NAME or NAME:key=value,... (repeatable); default: every available detector. "
        "List them with `skood bench --list`.",
    )
    p_bench.add_argument("--list", action="store_true", help="list detectors and datasets")
    p_bench.add_argument(
        "--data", action="append", metavar="DIR", help="folder of ADBench-format .npz files"
    )
    p_bench.add_argument(
        "--datasets", nargs="*", metavar="NAME", help="bundled datasets (default: a standard four)"
    )
    p_bench.add_argument(
        "--bundled", action="store_true", help="with --data, also run the default bundled sets"
    )
    p_bench.add_argument("--protocol", choices=["semi", "unsup", "both"], default="semi")
    p_bench.add_argument("--seeds", type=int, nargs="+")
    p_bench.add_argument("--train-fraction", type=float, default=0.5)
    p_bench.add_argument("--max-train", type=int, default=10_000, help="0 = no cap")
    p_bench.add_argument("--max-test", type=int, default=20_000, help="0 = no cap")
    p_bench.add_argument("--quick", action="store_true", help="a one-minute run")
    p_bench.add_argument("--n-jobs", type=int, default=1)
    p_bench.add_argument("--out", default="skood-bench")
    p_bench.add_argument("--quiet", action="store_true", help="no progress bar")
    p_bench.add_argument(
        "--force", action="store_true", help="replace the results of an earlier run in --out"
    )
    p_bench.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished cells of OUT/results.partial.csv (an interrupted run) or "
        "OUT/results.csv (a finished one, to add seeds, datasets or detectors)",
    )


def list_choices() -> int:
    """``skood bench --list``: every detector name and bundled dataset, one a line."""
    from skood.bench import available_detectors, bundled_datasets

    for name, summary in available_detectors().items():
        print(f"detector  {name:14s} {summary}")
    for name in bundled_datasets():
        print(f"dataset   {name}")
    return 0


def run(args) -> int:
    from skood import bench as harness

    detectors = args.detector or list(
        harness.QUICK_DETECTORS if args.quick else harness.available_detectors()
    )
    names = args.datasets
    if names is None:
        names = [] if args.data and not args.bundled else list(harness.DEFAULT_BUNDLED)
    if args.quick and args.datasets is None:
        names = ["digits-ovr-0", "breast-cancer", "wine"]
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    protocols = ["semi", "unsup"] if args.protocol == "both" else [args.protocol]
    for d in detectors:
        harness.parse_detector(d)  # fail on a typo before loading any data
    datasets = harness.load_datasets(names, args.data or [])
    print(
        f"skood bench: {len(detectors)} detector(s) x {len(datasets)} dataset(s) x "
        f"{len(seeds)} seed(s) x {len(protocols)} protocol(s) -> {args.out}",
        file=sys.stderr,
    )
    out = _bench_output(args)
    partial = out / "results.partial.csv"
    previous = []
    if args.resume:  # an interrupted run's rows, else a finished run's (to add seeds or sets)
        source = partial if partial.exists() else out / "results.csv"
        previous = harness.read_csv(source) if source.exists() else []
        print(f"Resuming: {len(previous)} rows from {source}", file=sys.stderr)
        if source != partial:
            harness.write_csv(previous, partial)
    elif partial.exists():  # --force: the user asked to replace the earlier run's results
        partial.unlink()

    def record(row):  # so a long run that is cut off still leaves what it finished
        harness.write_csv([row], partial, append=True)

    rows = harness.run_benchmark(
        detectors,
        datasets,
        seeds=seeds,
        protocols=protocols,
        train_fraction=args.train_fraction,
        max_train=args.max_train or None,
        max_test=args.max_test or None,
        quick=args.quick,
        n_jobs=args.n_jobs,
        progress=not args.quiet,
        on_row=record,
        previous=previous,
    )
    command = "skood " + " ".join(shlex.quote(a) for a in args.argv)
    md = harness.write_report(rows, out, command=command, replace=args.force or args.resume)
    partial.unlink(missing_ok=True)  # only once the results are written: else they stay here
    print(harness.headline_table(harness.summarize(rows)))
    print(f"\nWrote {md}, {out / 'results.csv'} and the plots.", file=sys.stderr)
    return 0


def _bench_output(args) -> Path:
    """``--out`` resolved and created; refused inside a ``--data`` folder, or where an earlier
    run's results are, unless ``--force`` (replace them) or ``--resume`` (add to them)."""
    from skood import bench as harness

    if args.force and args.resume:
        raise ValueError("--force replaces earlier results and --resume adds to them: pick one.")
    out = check_not_input(args.out, args.data or [], "--out")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out} is a file; bench writes a folder of results.")
    names = [*harness.REPORT_FILES, "results.partial.csv"]
    earlier = [name for name in names if os.path.lexists(out / name)]
    if earlier and not (args.force or args.resume):
        raise ValueError(
            f"--out {args.out} holds an earlier run's results ({', '.join(earlier)}): pass "
            "--resume to add to them, --force to replace them, or choose a new folder."
        )
    for name in earlier:  # read, appended to or replaced: each must be a file of its own
        path = out / name
        if path.is_symlink() or not path.is_file():
            raise ValueError(
                f"--out {args.out}: {name} is not a regular file (a symlink, folder or special "
                "file); skood reads, appends to and replaces only its own files. Remove it or "
                "choose a new folder."
            )
    out.mkdir(parents=True, exist_ok=True)
    return out
