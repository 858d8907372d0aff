"""The benchmark's cells and their runner.

A cell is one (protocol, dataset, seed, detector): ``Pipeline([InformativeColumns,
StandardScaler, detector])`` fitted on the training rows of the split and scored on the test
rows. A failing cell is recorded with its error, never fatal. Cells run in joblib workers.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from skood.bench.data import BenchData, split
from skood.metrics import aupr_out, auroc, fpr_at_tpr
from skood.registry import make_detector, make_pipeline_for, parse_detector, uses_classes

__all__ = ["run_benchmark", "run_cell"]


def run_cell(detector: str, params: dict, data_split, meta: dict, quick: bool, threads: int):
    """Fit and score one (detector, dataset, seed) cell; errors are returned, not raised.

    Parameters
    ----------
    detector : str
        A registry name (:func:`skood.registry.make_detector`).
    params : dict
        The detector's parameters.
    data_split : tuple
        ``(X_train, y_train, X_test, y_test)`` from :func:`skood.bench.data.split`.
    meta : dict
        ``protocol``, ``group``, ``dataset``, ``seed`` (also the detector's ``random_state``) and
        ``has_classes`` (whether ``y_train`` holds the normal rows' classes).
    quick : bool
        Apply the detector's ``--quick`` settings.
    threads : int
        Torch's thread count in this process; 0 leaves it as it is.

    Returns
    -------
    row : dict
        ``meta`` and the :data:`skood.bench.report.FIELDS` values: ``status`` is ``"ok"``,
        ``"error"`` (with ``error``) or ``"n/a"`` (a class-conditional detector without classes).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    X_tr, y_tr, X_te, y_te = data_split
    row = {**meta, "detector": detector, "n_train": len(X_tr), "n_test": len(X_te)}
    row["n_features"] = X_tr.shape[1]
    try:
        if uses_classes(detector) and not meta.get("has_classes"):
            raise ValueError("needs the normal rows' class labels, which this cell does not have")
        det = make_detector((detector, params), random_state=meta["seed"], quick=quick)
        pipe = make_pipeline_for(det)
        labels = y_tr if uses_classes(detector) else None
        start = time.perf_counter()
        with warnings.catch_warnings():  # fit-time advice (rank, collapse) would flood the log
            warnings.simplefilter("ignore")
            pipe.fit(X_tr, labels)
        row["fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        scores = pipe.score_samples(X_te)
        row["score_s"] = time.perf_counter() - start
        if not np.all(np.isfinite(scores)):
            raise ValueError("the detector returned non-finite scores")
        row.update(
            status="ok",
            auroc=auroc(y_te, scores),
            aupr=aupr_out(y_te, scores),
            fpr95=fpr_at_tpr(y_te, scores, 0.95),
        )
    except Exception as exc:  # one failing cell must not end the benchmark
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" ({Path(last.filename).name}:{last.lineno})"
        row.update(status="n/a" if "class labels" in str(exc) else "error")
        row["error"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300] + where
    return row


def run_benchmark(
    detectors: Sequence[str],
    datasets: Sequence[BenchData],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    protocols: Sequence[str] = ("semi",),
    train_fraction: float = 0.5,
    max_train: int | None = 10_000,
    max_test: int | None = 20_000,
    quick: bool = False,
    n_jobs: int = 1,
    progress: bool = True,
    on_row: Callable[[dict], None] | None = None,
    previous: Sequence[dict] = (),
) -> list[dict]:
    """Run every (protocol, dataset, seed, detector) cell; return one result row per cell.

    Rows in ``previous`` (e.g. from :func:`skood.bench.report.read_csv` of an interrupted run)
    whose status is not ``"error"`` are reused instead of run again, so a long benchmark can
    resume.

    Cells run in ``n_jobs`` joblib workers (each torch model then uses one thread, as two
    processes sharing cores otherwise slow each other by an order of magnitude). Seeds fix the
    splits and every detector's ``random_state``, so a rerun gives the same table.

    Parameters
    ----------
    detectors : sequence of str
        Detector specs (``"flow:q=mean"``); each spec is the ``detector`` of its rows.
    datasets : sequence of BenchData
    seeds : sequence of int, default=(0, 1, 2)
    protocols : sequence of {"semi", "unsup"}, default=("semi",)
    train_fraction, max_train, max_test
        Passed to :func:`skood.bench.data.split`.
    quick : bool, default=False
        Apply each detector's ``--quick`` settings.
    n_jobs : int, default=1
        joblib workers.
    progress : bool, default=True
        Show a progress bar.
    on_row : callable or None
        Called with each new row as it finishes (``skood bench`` appends it to a partial CSV).
    previous : sequence of dict, default=()
        Rows of an earlier run to reuse.

    Returns
    -------
    rows : list of dict
        The reused rows, then the new ones in (protocol, dataset, seed, detector) order.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    parsed = [parse_detector(d) for d in detectors]
    labels = [d.strip() for d in detectors]  # "flow:q=mean" stays apart from "flow"
    done = {
        (r["protocol"], r["dataset"], int(r["seed"]), r["detector"]): r
        for r in previous
        if r["status"] != "error"
    }
    jobs, reused = [], []
    for protocol in protocols:
        for data in datasets:
            for seed in seeds:
                data_split = split(
                    data,
                    protocol,
                    seed,
                    train_fraction=train_fraction,
                    max_train=max_train,
                    max_test=max_test,
                )
                meta = dict(
                    protocol=protocol,
                    group=data.group,
                    dataset=data.name,
                    seed=seed,
                    has_classes=data.has_classes and protocol == "semi",
                )
                for label, (name, params) in zip(labels, parsed):
                    key = (protocol, data.name, seed, label)
                    if key in done:
                        reused.append(done[key])
                    else:
                        jobs.append((label, name, params, data_split, meta))
    threads = 1 if n_jobs != 1 else 0
    rows = list(reused)
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(run_cell)(name, params, data_split, meta, quick, threads)
        for _, name, params, data_split, meta in jobs
    )
    bar = tqdm(total=len(jobs), desc="skood bench", unit="cell", disable=not progress)
    for (label, *_), row in zip(jobs, results):
        row["detector"] = label
        row.pop("has_classes", None)
        rows.append(row)
        if on_row is not None:
            on_row(row)
        bar.set_postfix_str(f"{row['dataset']} {label}", refresh=False)
        bar.update()
    bar.close()
    return rows
