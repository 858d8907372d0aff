"""``skood score``: fit a detector on a CSV / Parquet file and write each row's score and label.

``--save`` writes the fitted model in skood's pickle-free format (:mod:`skood.io`) and ``--model``
scores with one, reading nothing else (a pickle is refused, never unpickled: ``skood convert``).
Given a dataset (a directory or a glob of files) and ``--model``, the rows are scored block by
block on Dask, one Parquet file per input file; ``--scheduler`` picks the cluster.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from skood._files import (
    atomic_directory,
    atomic_file,
    check_input_file,
    check_output,
    resolve_path,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    p_score = subparsers.add_parser(
        "score",
        help="fit a detector on a CSV / Parquet file and write each row's score",
        description="Fit on TRAIN's numeric columns (standardised) and score TEST (or TRAIN). "
        "Output columns: row, score (higher = more normal), label (+1 / -1), threshold.",
    )
    p_score.add_argument("train", metavar="TRAIN", help="CSV or Parquet file to fit on")
    p_score.add_argument("test", metavar="TEST", nargs="?", help="file to score (default TRAIN)")
    p_score.add_argument(
        "--detector",
        default="ensemble",
        help="NAME or NAME:key=value,... (default: ensemble, skood's EnsembleDetector())",
    )
    p_score.add_argument("--params", help="key=value,... added to the detector's parameters")
    p_score.add_argument("--contamination", type=float)
    p_score.add_argument(
        "--alpha",
        type=float,
        help="flag rows whose conformal p-value is <= ALPHA (a false-positive rate of at most "
        "ALPHA); adds a p_value column (skood.conformal)",
    )
    p_score.add_argument(
        "--fdr",
        action="store_true",
        help="with --alpha: flag the Benjamini-Hochberg discoveries, a false discovery rate of "
        "at most ALPHA",
    )
    p_score.add_argument(
        "--drop", metavar="COLS", help="comma-separated columns to leave out (e.g. an id column)"
    )
    p_score.add_argument("--random-state", type=int, default=0)
    p_score.add_argument("--out", default="-", help="output CSV (default: standard output)")
    p_score.add_argument(
        "--save",
        metavar="MODEL",
        help="save the fitted model in skood's format (.skood: no pickle; see skood.io)",
    )
    p_score.add_argument(
        "--model",
        metavar="MODEL",
        help="score TRAIN with a model saved by --save (pickles are refused, never unpickled)",
    )
    p_score.add_argument(
        "--trust",
        action="append",
        metavar="TYPE",
        help="with --model: a type the file names that skood does not load unasked (e.g. "
        "sklearn.tree._tree.Tree for an IsolationForest); review it first (repeatable)",
    )
    p_score.add_argument(
        "--force", action="store_true", help="overwrite an existing --out / --save file"
    )
    p_score.add_argument(
        "--scheduler",
        metavar="local|ADDRESS",
        help="with a dataset (a directory or glob of Parquet / CSV files): score it on a Dask "
        "cluster, 'local' (one process per core) or a scheduler ADDRESS; default: threads here",
    )


def run(args) -> int:
    """Fit on TRAIN (or load ``--model``), score TEST or TRAIN, and write the scores' CSV."""
    import numpy as np

    from skood.registry import make_detector, make_pipeline_for, parse_detector

    inputs = [args.train, args.test, args.model]
    dataset = args.test if args.test else args.train
    if _is_dataset(dataset):
        return _score_dataset(args, dataset)
    if args.scheduler:
        raise ValueError("--scheduler applies to a dataset: a directory or a glob of files.")
    out = None if args.out == "-" else args.out
    if out is not None:
        check_output(out, inputs, what="--out", replace=args.force)
    if args.save is not None:
        if out is not None and resolve_path(out) == resolve_path(args.save):
            raise ValueError(f"--save {args.save} and --out {out} name the same file; give two.")
        check_output(args.save, inputs, what="--save", replace=args.force)
    if args.model:
        if args.test:
            raise ValueError("with --model, give one file to score (the model is already fitted).")
        saved = _load_model(args.model, args.trust)
        pipe, columns, spec = saved["pipeline"], saved["columns"], saved.get("detector", "?")
        to_score = _read_table(args.train, args.drop)
        _set_level(pipe[-1], args)
    else:
        train = _read_table(args.train, args.drop)
        to_score = _read_table(args.test, args.drop) if args.test else train
        _check_same_columns(train.columns, to_score)
        if train.dropped:
            print(f"Dropped non-numeric column(s): {', '.join(train.dropped)}", file=sys.stderr)
        if train.X.shape[0] < 2:
            raise ValueError(f"{args.train} has {train.X.shape[0]} data row; fitting needs 2+.")
        name, params = parse_detector(args.detector)
        if args.params:
            params = {**params, **parse_detector(f"{name}:{args.params}")[1]}
        if args.contamination is not None:
            params["contamination"] = args.contamination
        det = make_detector((name, params), random_state=args.random_state)
        spec = name + (":" + ",".join(f"{k}={v!r}" for k, v in params.items()) if params else "")
        if args.alpha is not None:  # conformal p-values around the detector (skood.conformal)
            from skood.conformal import ConformalDetector

            det = ConformalDetector(
                det, alpha=args.alpha, fdr=args.fdr, random_state=args.random_state
            )
        elif args.fdr:
            raise ValueError("--fdr needs --alpha, the false discovery rate to control.")
        pipe = make_pipeline_for(det)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", category=UserWarning)
            pipe.fit(train.X)
        # What the fit warns of is about the user's data (too few rows for a threshold, a
        # covariance that cannot be estimated): said once each, on one line, not as a traceback.
        for message in dict.fromkeys(str(w.message) for w in caught):
            print(f"skood score: warning: {message}", file=sys.stderr)
        columns = train.columns
        if args.save is not None:
            import skood

            saved = {"pipeline": pipe, "columns": columns, "detector": spec}
            with atomic_file(args.save, replace=args.force) as f:
                skood.save(saved, f)
            print(f"Saved the fitted model to {args.save}", file=sys.stderr)
    _check_same_columns(columns, to_score)
    labels = pipe.predict(to_score.X)
    conformal = hasattr(pipe[-1], "detector_scores")
    if conformal:  # the detector's score, its p-value, and the level (or FDR) flagged at
        p_values = pipe.score_samples(to_score.X)
        scores = pipe[-1].detector_scores(pipe[:-1].transform(to_score.X))
        threshold = float(pipe[-1].alpha)
        lines = ["row,score,p_value,label,threshold"]
        lines += [
            f"{i},{float(s)!r},{float(p)!r},{int(lab)},{threshold!r}"
            for i, (s, p, lab) in enumerate(zip(scores, p_values, labels))
        ]
    else:
        scores = pipe.score_samples(to_score.X)
        # sklearn's OneClassSVM keeps offset_ as a 1-element array, which numpy 2 will not float()
        threshold = float(np.ravel(pipe[-1].offset_)[0])
        lines = ["row,score,label,threshold"]
        lines += [
            f"{i},{float(s)!r},{int(lab)},{threshold!r}"
            for i, (s, lab) in enumerate(zip(scores, labels))
        ]
    text = "\n".join(lines) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        with atomic_file(out, "w", replace=args.force, encoding="utf-8", newline="") as f:
            f.write(text)
    n_out = int(np.sum(labels == -1))
    if conformal:
        rule = (
            f"Benjamini-Hochberg at false discovery rate {threshold:g}"
            if pipe[-1].fdr
            else f"p-value <= {threshold:g}, a false-positive rate of at most {threshold:g}"
        )
    else:
        rule = f"threshold {threshold:.6g}; higher score = more normal"
    print(
        f"{spec}: scored {len(scores)} rows of {to_score.path}; {n_out} flagged as outliers "
        f"({rule})" + ("" if out is None else f" -> {out}"),
        file=sys.stderr,
    )
    return 0


def _load_model(path, trusted):
    import skood
    from skood.io import UntrustedTypesError

    check_input_file(path, "--model")
    try:
        saved = skood.load(path, trusted=trusted)
    except UntrustedTypesError as exc:
        raise ValueError(
            f"{path} names type(s) that skood loads only when told to: {exc.types}. Review them; "
            "if you trust the file, pass --trust NAME for each."
        ) from None
    if not isinstance(saved, dict) or {"pipeline", "columns"} - set(saved):
        raise ValueError(
            f"{path} holds a {type(saved).__name__}, not a model saved by `skood score --save`; "
            "load it in Python with skood.load."
        )
    return saved


def _is_dataset(path) -> bool:
    """A directory or a glob of Parquet / CSV files: scored block by block on Dask.

    A path that exists is that path, whatever its name holds (``data[1].csv`` is a file); only
    one that does not exist is read as a pattern.
    """
    if not path:  # None, or "" (which would name the working folder)
        return False
    if Path(path).is_dir():
        return True
    return not os.path.lexists(path) and any(c in str(path) for c in "*?[")


def _dataset_files(path) -> list[Path]:
    import glob

    if Path(path).is_dir():
        files = sorted(
            p for p in Path(path).iterdir() if p.suffix.lower() in {".csv", ".parquet", ".pq"}
        )
        if not files:
            raise ValueError(f"{path} holds no .csv / .parquet file to score.")
        return files
    files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"{path}: no such file, and as a pattern it matches no file.")
    return files


def _read_partition(path, columns, drop):
    """One file of a dataset, checked as ``skood score`` checks one file (errors name it)."""
    import pandas as pd

    table = _read_table(path, drop)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks the model's column(s) {missing}.")
    index = [table.columns.index(c) for c in columns]
    frame = pd.DataFrame(table.X[:, index], columns=columns)
    frame.insert(0, "row", range(len(frame)))
    frame.insert(0, "file", Path(path).name)
    return frame


def _scored_partition(frame, model, columns, threshold):
    out = _score_block(frame, model, columns, _output_columns(model))
    out.insert(0, "row", frame["row"])  # same index: aligned, dtypes kept
    out.insert(0, "file", frame["file"])
    out["threshold"] = threshold
    return out


def _score_dataset(args, dataset) -> int:
    """``skood score`` on a directory or glob: one output Parquet file per input file."""
    import numpy as np

    _check_dask()
    import dask
    import dask.dataframe as dd
    import pandas as pd

    files = _dataset_files(dataset)
    if not args.model:
        raise ValueError(
            f"{dataset} is a dataset (a directory or a glob): fit on one file with --save, then "
            "score the dataset with --model (scoring is block by block; fitting is in memory)."
        )
    if args.test:
        raise ValueError("with --model, give one file or dataset to score.")
    if args.out == "-":
        raise ValueError("a dataset's scores go to a directory: pass --out DIR.")
    folder = dataset if Path(dataset).is_dir() else None
    check_output(args.out, [folder, *files, args.model], what="--out", folder=True)
    saved = _load_model(args.model, args.trust)
    pipe, columns, spec = saved["pipeline"], saved["columns"], saved.get("detector", "?")
    _set_level(pipe[-1], args)
    last = pipe[-1]
    threshold = float(last.alpha if hasattr(last, "detector_scores") else np.ravel(last.offset_)[0])
    read = dask.delayed(_read_partition, pure=True)
    text = pd.Series(["file"]).dtype  # whatever pandas gives a column of names
    meta = pd.DataFrame({"file": pd.Series(dtype=text), "row": pd.Series(dtype=np.int64)})
    for c in columns:
        meta[c] = pd.Series(dtype=np.float64)
    frames = dd.from_delayed([read(f, columns, args.drop) for f in files], meta=meta)
    out_meta = _scored_partition(meta, pipe, columns, threshold).iloc[:0]
    shipped = dask.delayed(pipe, pure=True)  # the model goes to each worker once
    scored = frames.map_partitions(_scored_partition, shipped, columns, threshold, meta=out_meta)
    # Written to a new folder beside --out and renamed when every file is complete: a bad
    # partition or Ctrl-C removes only that folder, which this run created.
    with atomic_directory(args.out) as tmp, _dask_scheduler(args.scheduler) as progress:
        progress(scored.to_parquet(tmp, compute=False, write_index=False))
    n_files = len(files)
    print(
        f"{spec}: scored {n_files} file(s) of {dataset} ({', '.join(_output_columns(pipe))}) -> "
        f"{args.out}/ (one Parquet file per input file)",
        file=sys.stderr,
    )
    return 0


def _dask_scheduler(address):
    """A context giving a function that computes a collection with a progress bar."""
    import contextlib

    @contextlib.contextmanager
    def local_threads():
        from dask.diagnostics import ProgressBar

        def run(collection):
            with ProgressBar(out=sys.stderr):
                collection.compute()

        yield run

    @contextlib.contextmanager
    def cluster(address):
        from distributed import Client, LocalCluster, progress

        local = None
        if address == "local":
            local = LocalCluster(threads_per_worker=1, processes=True, dashboard_address=None)
        try:
            with Client(local or address) as client:
                client.register_plugin(_torch_threads_plugin())

                def run(collection):
                    future = client.compute(collection)
                    progress(future)
                    print(file=sys.stderr)
                    future.result()

                yield run
        finally:
            if local is not None:
                local.close()

    return local_threads() if not address else cluster(address)


def _set_level(detector, args) -> None:
    """``--alpha`` / ``--fdr`` given with ``--model``: a new level for a conformal model."""
    if args.alpha is None and not args.fdr:
        return
    if not hasattr(detector, "detector_scores"):
        raise ValueError(
            "--alpha / --fdr need a model saved with --alpha (conformal p-values); this one "
            "was saved without: refit it with --alpha."
        )
    detector.set_params(
        alpha=detector.alpha if args.alpha is None else args.alpha, fdr=args.fdr or detector.fdr
    )


def _read_table(path, drop):
    """:func:`skood.tables.read_table`, saying on stderr what it read differently."""
    from skood.tables import read_table

    table = read_table(path, drop=drop)
    for note in table.notes:
        print(note, file=sys.stderr)
    return table


def _check_same_columns(columns, table) -> None:
    if table.columns != columns:
        missing = [c for c in columns if c not in table.columns]
        extra = [c for c in table.columns if c not in columns]
        raise ValueError(
            f"{table.path} has other numeric columns than the training data: missing "
            f"{missing or 'none'}, extra {extra or 'none'}"
            + ("" if missing or extra else " (same names, another order)")
            + ". Score a file with the training file's columns."
        )


# -- what dataset scoring takes from skood.distributed ---------------------------------------------
# The only place the CLI names skood.distributed. Three of these names are its private helpers,
# which its rewrite will rename: change them here. Imported when called, since importing
# skood.distributed imports dask's distributed where it is installed.


def _check_dask() -> None:
    """ImportError, saying what to install, unless dask and dask.dataframe import."""
    from skood.distributed import require_dask

    require_dask()


def _output_columns(model) -> list[str]:
    """``score, label``, or ``score, p_value, label`` for a conformal model."""
    from skood.distributed import output_columns

    return output_columns(model)


def _score_block(frame, model, columns, outputs):
    """One block of rows scored: a frame of ``outputs``, on ``frame``'s index."""
    from skood.distributed import score_frame

    return score_frame(frame, model, columns, outputs)


def _torch_threads_plugin():
    """The Dask worker plugin that gives torch the worker's threads, not every core."""
    from skood.distributed import TorchThreads

    return TorchThreads()
