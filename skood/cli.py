"""The ``skood`` command: ``demo``, ``bench``, ``score`` and ``convert``.

* ``skood demo``: sklearn's bundled digits (classes 0-4 inliers, 5-9 outliers; no download), the
  skood detectors in ``Pipeline`` s side by side with sklearn's and PyOD's peers.
* ``skood bench``: detectors x datasets x seeds under one protocol (:mod:`skood.bench`); writes
  a markdown table, a CSV and plots.
* ``skood score``: fit a detector on a CSV / Parquet file and write each row's score and label;
  ``--save`` / ``--model`` write and read skood's pickle-free model format (:mod:`skood.io`).
* ``skood convert``: re-save a pickle / joblib model (or an old signed ``--save`` file) in it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _demo_detectors(random_state: int, verbose: int):
    from sklearn.ensemble import IsolationForest
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skood import EnsembleDetector, GaussianMahalanobis, KNNDetector, QuantileFlowDetector

    def flow(q):
        return QuantileFlowDetector(q, random_state=random_state, verbose=verbose)

    def prep():
        return [VarianceThreshold(), StandardScaler()]  # pixel 0 is constant in digits

    return {
        "EnsembleDetector()": (
            make_pipeline(*prep(), EnsembleDetector(random_state=random_state)),
            False,
        ),
        "KNNDetector()": (make_pipeline(*prep(), KNNDetector()), False),
        "QuantileFlowDetector(q=0.05)": (make_pipeline(*prep(), flow(0.05)), False),
        "QuantileFlowDetector(q='mean')": (make_pipeline(*prep(), flow("mean")), False),
        "GaussianMahalanobis (class-cond.)": (
            make_pipeline(*prep(), GaussianMahalanobis(covariance="ledoit_wolf")),
            True,
        ),
        "GaussianMahalanobis (single)": (
            make_pipeline(*prep(), GaussianMahalanobis(covariance="ledoit_wolf")),
            False,
        ),
        "IsolationForest (sklearn)": (
            make_pipeline(StandardScaler(), IsolationForest(random_state=random_state)),
            False,
        ),
        "LocalOutlierFactor (sklearn)": (
            make_pipeline(*prep(), LocalOutlierFactor(novelty=True)),
            False,
        ),
        **_pyod_peers(prep),
    }


def _pyod_peers(prep) -> dict:
    from sklearn.pipeline import make_pipeline

    from skood.registry import available_detectors, make_detector

    if "pyod-knn" not in available_detectors():  # PyOD is the optional `bench` extra
        return {}
    return {
        f"{label} (PyOD)": (make_pipeline(*prep(), make_detector(name)), False)
        for label, name in [("KNN", "pyod-knn"), ("ECOD", "pyod-ecod")]
    }


def demo(random_state: int = 0, verbose: int = 1) -> list[dict]:
    """Run the demo; print and return one row of results per detector."""
    from skood.datasets import load_digits_ood, novelty_split
    from skood.metrics import auroc, fpr_at_tpr

    X, y = load_digits_ood(inlier_classes=range(5))
    X_train, y_train, X_test, y_test = novelty_split(X, y, train_fraction=0.5, random_state=0)
    print(
        f"digits open set: train on {len(X_train)} images of digits 0-4; test on "
        f"{(y_test != -1).sum()} unseen 0-4 (inliers) + {(y_test == -1).sum()} of 5-9 (outliers)\n"
    )
    rows = []
    for name, (pipe, uses_labels) in _demo_detectors(random_state, verbose).items():
        start = time.perf_counter()
        pipe.fit(X_train, y_train if uses_labels else None)
        fit_s = time.perf_counter() - start
        scores = pipe.score_samples(X_test)
        rows.append(
            dict(
                detector=name,
                auroc=auroc(y_test, scores),
                fpr95=fpr_at_tpr(y_test, scores, 0.95),
                fit_s=fit_s,
            )
        )
    print(f"{'detector':36s} {'AUROC':>7s} {'FPR95':>7s} {'fit (s)':>8s}")
    for r in rows:
        print(f"{r['detector']:36s} {r['auroc']:7.3f} {r['fpr95']:7.3f} {r['fit_s']:8.1f}")
    print(
        "\nAUROC: higher is better. FPR95: outliers accepted at 95% inlier acceptance, lower is better."
    )
    return rows


# -- skood bench ---------------------------------------------------------------------------------


def bench(args) -> int:
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
    from skood._files import check_not_input

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


# -- skood score ---------------------------------------------------------------------------------


# `--save` writes skood's pickle-free format (skood.io) and `--model` reads nothing else: loading
# a pickle can run arbitrary code. Model files written by skood before that format were pickles
# signed with a key private to their user (HMAC-SHA256); `skood convert` checks that signature,
# on the machine that signed them, before it unpickles one to re-save it.
_OLD_MODEL_MAGIC = b"skood-model-v1\n"


def _signing_key() -> bytes:
    """This user's key for the old signed pickles (``$SKOOD_MODEL_KEY``, else the config file)."""
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "skood"
    path = home / "model-signing-key"
    if os.environ.get("SKOOD_MODEL_KEY"):
        key, source = os.environ["SKOOD_MODEL_KEY"].strip().encode(), "$SKOOD_MODEL_KEY"
    elif path.exists():
        from skood._files import read_input_file

        # a regular file, read no further than its size: a FIFO or /dev/zero is refused
        key, source = read_input_file(path, "the signing key").strip(), str(path)
    else:
        raise ValueError(
            f"no signing key ({path} or $SKOOD_MODEL_KEY): this machine signed no skood model "
            "file, so the signature of this one cannot be checked. Convert it where it was saved."
        )
    # A short key (an empty file is b"") lets anyone forge a signature, and a forged signature
    # would get a pickle unpickled: code run. skood wrote 64-character keys.
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(
            f"the signing key in {source} is {len(key)} bytes long; a key shorter than "
            f"{_MIN_KEY_BYTES} bytes proves nothing, so no file is unpickled with it. Use the key "
            "that signed the file, on the machine that signed it."
        )
    return key


_MIN_KEY_BYTES = 32


def _unpickle_signed(path, data: bytes):
    """The object in an old `skood score --save` file, once its signature is checked."""
    import hashlib
    import hmac
    import io

    import joblib

    tag, _, payload = data[len(_OLD_MODEL_MAGIC) :].partition(b"\n")
    expected = hmac.new(_signing_key(), payload, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(tag, expected):
        raise ValueError(
            f"{path} was not signed with this user's key, or was changed since: refusing to "
            "unpickle it, since loading a pickle can run arbitrary code. Convert it on the "
            "machine that saved it, or refit the model."
        )
    return joblib.load(io.BytesIO(payload))


def convert(args) -> int:
    """Re-save a pickle / joblib model (or an old signed `--save` file) in skood's format."""
    import io

    import joblib

    import skood
    from skood._files import atomic_file, check_output, read_input_file

    data = read_input_file(args.old, "OLD")
    check_output(args.new, [args.old], what="NEW", replace=args.force)
    if data.startswith(_OLD_MODEL_MAGIC):
        model = _unpickle_signed(args.old, data)
    elif args.trust_pickle:
        model = joblib.load(io.BytesIO(data))
    else:
        raise ValueError(
            f"{args.old} is not a signed `skood score --save` file; unpickling it can run any "
            "code in it. If you (or someone you trust) wrote it, pass --trust-pickle."
        )
    with atomic_file(args.new, replace=args.force) as f:  # never over a file made meanwhile
        skood.save(model, f)
    print(f"Wrote {args.new} (skood's format: no pickle)", file=sys.stderr)
    return 0


def _load_model(path, trusted):
    import skood
    from skood._files import check_input_file
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
    from skood.distributed import _outputs, _score_frame

    out = _score_frame(frame, model, columns, _outputs(model))
    out.insert(0, "row", frame["row"])  # same index: aligned, dtypes kept
    out.insert(0, "file", frame["file"])
    out["threshold"] = threshold
    return out


def _score_dataset(args, dataset) -> int:
    """``skood score`` on a directory or glob: one output Parquet file per input file."""
    import numpy as np

    from skood._files import atomic_directory, check_output
    from skood.distributed import _outputs, _require_dask

    _require_dask()
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
        f"{spec}: scored {n_files} file(s) of {dataset} ({', '.join(_outputs(pipe))}) -> "
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

        from skood.distributed import TorchThreads

        local = None
        if address == "local":
            local = LocalCluster(threads_per_worker=1, processes=True, dashboard_address=None)
        try:
            with Client(local or address) as client:
                client.register_plugin(TorchThreads())

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


def score(args) -> int:
    import numpy as np

    from skood._files import atomic_file, check_output, resolve_path
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


# -- entry point ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skood", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="digits open-set demo: skood detectors vs peers")
    p_demo.add_argument("--random-state", type=int, default=0)
    p_demo.add_argument("--quiet", action="store_true", help="no progress bars")

    p_bench = sub.add_parser(
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

    p_score = sub.add_parser(
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

    p_convert = sub.add_parser(
        "convert",
        help="re-save a pickle / joblib model in skood's format (.skood)",
        description="Re-save a model in skood's pickle-free format. A file saved by `skood score "
        "--save` before skood 0.3 (a signed pickle) is unpickled only if its signature matches "
        "this user's key; any other pickle only with --trust-pickle.",
    )
    p_convert.add_argument("old", metavar="OLD", help="the pickle / joblib / signed model file")
    p_convert.add_argument("new", metavar="NEW", help="the .skood file to write")
    p_convert.add_argument(
        "--trust-pickle",
        action="store_true",
        help="unpickle OLD although skood did not sign it (only for a file you trust)",
    )
    p_convert.add_argument("--force", action="store_true", help="overwrite an existing NEW")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    if args.command == "demo":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            demo(random_state=args.random_state, verbose=0 if args.quiet else 1)
        return 0
    if args.command == "bench" and args.list:
        from skood.bench import available_detectors, bundled_datasets

        for name, summary in available_detectors().items():
            print(f"detector  {name:14s} {summary}")
        for name in bundled_datasets():
            print(f"dataset   {name}")
        return 0
    try:
        return {"bench": bench, "score": score, "convert": convert}[args.command](args)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
