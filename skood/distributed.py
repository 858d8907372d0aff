"""Scoring any amount of data with a fitted model, block by block, on Dask (``skood[dask]``).

A fitted detector (or a ``Pipeline`` ending in one, or a :class:`~skood.ConformalDetector`) scores
a dask array, a dask dataframe, or a Parquet / CSV dataset lazily: every block is scored where it
lives, with the model shipped to each worker once (it is one node of the task graph that every
block depends on), so a worker holds one block and the model at a time, whatever the number of
rows. Nothing here imports dask until it is called; the core of skood never imports it.

``TorchThreads`` is a worker plugin that sets torch's thread count to the worker's own, so that
processes sharing a machine do not each start one torch thread per core (on 2 cores, two
processes with torch's default threads slowed small-op training more than 10x).
"""

from __future__ import annotations

import numpy as np

from skood.base import fit_context, is_outlier_label, missing_labels_error

try:  # this module is the optional dask integration; the core of skood never imports it
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - without distributed, TorchThreads cannot be registered
    _WorkerPlugin = object

__all__ = [
    "OneGPUPerWorker",
    "TorchThreads",
    "fit_gaussian",
    "output_columns",
    "require_dask",
    "sample_rows",
    "score_dataset",
    "score_frame",
    "score_rows",
]


def require_dask() -> None:
    """Raise an ImportError naming what to install unless dask and dask.dataframe import."""
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "skood.distributed needs dask: pip install 'skood[dask]' (dask[array,dataframe] and "
            "distributed)."
        ) from exc


def output_columns(model) -> list[str]:
    """The columns a model's scores come in: ``score, is_outlier`` or ``score, p_value,
    is_outlier`` (conformal); ``is_outlier`` is 1 for a flagged row, else 0."""
    last = model[-1] if hasattr(model, "steps") else model
    if hasattr(last, "detector_scores"):
        return ["score", "p_value", "is_outlier"]
    return ["score", "is_outlier"]


def score_rows(model, X: np.ndarray) -> np.ndarray:
    """One block of rows scored: ``(n, k)`` float64 columns in the order of :func:`output_columns`."""
    last = model[-1] if hasattr(model, "steps") else model
    flagged = (np.asarray(model.predict(X)) == -1).astype(np.float64)  # is_outlier: 1 or 0
    if hasattr(last, "detector_scores"):  # conformal: the detector's score, then the p-value
        head = model[:-1].transform(X) if hasattr(model, "steps") else X
        scores = last.detector_scores(head)
        return np.column_stack([scores, model.score_samples(X), flagged])
    return np.column_stack([np.asarray(model.score_samples(X), dtype=np.float64), flagged])


def score_frame(frame, model, columns, outputs):
    """One dataframe block scored: a pandas frame of ``outputs`` (:func:`output_columns`) on its index."""
    import pandas as pd

    if getattr(model, "feature_names_in_", None) is not None:
        X = frame[columns].astype(np.float64)  # by name: the model checks them as in memory
    else:
        X = frame[columns].to_numpy(dtype=np.float64) if columns else frame.to_numpy(np.float64)
    if X.shape[0] == 0:
        empty = pd.DataFrame({name: np.zeros(0) for name in outputs}, index=frame.index)
        return empty.astype({"is_outlier": np.int64})
    values = score_rows(model, X)
    out = pd.DataFrame(values, columns=outputs, index=frame.index)
    out["is_outlier"] = out["is_outlier"].astype(np.int64)
    return out


def score_dataset(model, data, *, columns=None):
    """Lazy scores of every row of ``data``: a dask dataframe with ``score``, ``is_outlier``
    (1 = flagged, else 0; and ``p_value`` for a conformal model), one output partition per input
    block, on the input's index (a dask array's rows are numbered from 0 across its blocks), so
    that ``data.join(scores)`` puts each row's scores beside it.

    Parameters
    ----------
    model : fitted estimator
        A skood detector, a ``Pipeline`` ending in one, a :class:`~skood.ConformalDetector`, or
        any sklearn-style detector with ``score_samples`` and ``predict``.
    data : dask.array.Array, dask.dataframe.DataFrame, or str / path
        A dask array of shape ``(n_rows, n_features)`` (chunked along rows), a dask dataframe,
        or a Parquet dataset / CSV files (a directory or a glob, read with
        ``dask.dataframe.read_parquet`` / ``read_csv``).
    columns : list of str, default=None
        The feature columns of a dataframe or dataset, in the order the model was fitted on.
        Default: the model's ``feature_names_in_`` when it was fitted on a DataFrame (columns
        are then selected and ordered by name, as in memory), else every column in its order.

    Returns
    -------
    dask.dataframe.DataFrame
        Call ``.compute()``, ``.to_parquet(...)`` or ``.persist()``; nothing runs before.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from skood import GaussianMahalanobis
    >>> from skood.distributed import score_dataset
    >>> X = np.random.default_rng(0).normal(size=(1000, 3))
    >>> model = GaussianMahalanobis(random_state=0).fit(X)
    >>> out = score_dataset(model, da.from_array(X, chunks=(250, 3))).compute()
    >>> bool(np.array_equal(out["score"].to_numpy(), model.score_samples(X)))
    True
    """
    require_dask()
    import dask
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    outputs = output_columns(model)
    names = getattr(model, "feature_names_in_", None)
    if names is not None and not isinstance(data, da.Array):
        columns = _model_columns(list(map(str, names)), columns)
    # One graph node for the model: each worker receives it once, not once per block.
    shipped = dask.delayed(model, pure=True)
    if isinstance(data, da.Array):
        if data.ndim != 2:
            raise ValueError(f"score_dataset needs a 2-D dask array, got {data.ndim}-D")
        if columns is not None:
            raise ValueError("columns applies to dataframes and datasets, not to a dask array")
        data = data.rechunk({1: data.shape[1]})  # whole rows in every block
        blocks = data.map_blocks(
            lambda block, m: score_rows(m, np.asarray(block, dtype=np.float64)),
            shipped,
            chunks=(data.chunks[0], (len(outputs),)),
            dtype=np.float64,
        )
        frame = dd.from_dask_array(blocks, columns=outputs)
        return frame.astype({"is_outlier": np.int64})
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        data = _read_dataset(str(data), columns)
    if not isinstance(data, dd.DataFrame):
        raise TypeError(
            "score_dataset takes a dask array, a dask dataframe, or the path of a Parquet / CSV "
            f"dataset; got {type(data).__name__}"
        )
    if columns is not None:
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise ValueError(
                f"the data lacks the model's column(s) {missing[:10]} (it has "
                f"{list(data.columns)[:10]}); give data with every column the model was fitted on."
            )
    meta = pd.DataFrame({name: np.zeros(0) for name in outputs})
    meta["is_outlier"] = meta["is_outlier"].astype(np.int64)
    return data.map_partitions(score_frame, shipped, columns, outputs, meta=meta)


def _model_columns(names: list[str], columns) -> list[str]:
    """The columns to score for a model fitted on ``names``: those, by name, in their order."""
    if columns is not None and list(columns) != names:
        raise ValueError(
            f"columns={list(columns)[:10]} differ from the columns the model was fitted on "
            f"({names[:10]}); leave columns=None to select the model's own by name."
        )
    return names


def _read_dataset(path: str, columns):
    import os

    import dask.dataframe as dd

    from skood._files import check_input_file

    if os.path.exists(path) and not os.path.isdir(path):
        check_input_file(path)  # one file: a FIFO would block a worker forever

    if path.endswith((".csv", ".csv.gz")) or "*.csv" in path:
        return dd.read_csv(path, usecols=columns) if columns else dd.read_csv(path)
    return dd.read_parquet(path, columns=columns)


# -- GaussianMahalanobis from per-block moments ----------------------------------------------------


def _as_blocks(X, y):
    """``X`` as a dask array chunked along rows only, and ``y`` (or None) with the same chunks."""
    import dask.array as da
    import dask.dataframe as dd

    if isinstance(X, (dd.DataFrame, dd.Series)):
        X = X.to_dask_array(lengths=True)
    if not isinstance(X, da.Array):
        X = da.from_array(np.asarray(X), chunks=(100_000, -1))
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got {X.ndim}-D")
    X = X.rechunk({1: X.shape[1]})
    if y is None:
        return X, None
    if isinstance(y, (dd.DataFrame, dd.Series)):
        y = y.to_dask_array(lengths=True)
    y = (
        da.asarray(y).rechunk((X.chunks[0],))
        if isinstance(y, da.Array)
        else da.from_array(np.asarray(y), chunks=(X.chunks[0],))
    )
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows but X has {X.shape[0]}")
    return X, y


def _tree_sum(parts):
    """Add delayed partial results pairwise, so no task receives more than two."""
    import operator

    import dask

    add = dask.delayed(operator.add, pure=True)
    while len(parts) > 1:
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]  # fmt: skip
    return parts[0]


def _inliers(x, y, classes):
    """A block's inlier rows as float64, and their labels where the model has classes."""
    x = np.asarray(x, dtype=np.float64)
    if y is None:
        return x, None
    y = np.asarray(y)
    keep = ~is_outlier_label(y)
    return x[keep], None if classes is None else y[keep]


def _count_inliers(y) -> np.ndarray:
    return np.array([np.count_nonzero(~is_outlier_label(np.asarray(y)))])


def _block_moments(moments_type, x, y, classes, folds, about):
    """The moments (a :class:`~skood.gaussian.GaussianMoments`) of a block's inlier rows."""
    x, labels = _inliers(x, y, classes)
    return moments_type.from_rows(x, labels, classes=classes, folds=folds, about=about)


def _block_scores(x, y, calibration, models):
    """A block's calibration rows, each scored by the model that did not see it."""
    x, _ = _inliers(x, y, None)
    scores = [model.score_samples(x[rows]) for rows, model in zip(calibration, models) if rows.size]
    return np.concatenate(scores) if scores else np.empty(0)


def _rows_in(calibration, start: int, stop: int) -> list[np.ndarray]:
    """The calibration rows (indices into every inlier row) in ``[start, stop)``, from ``start``."""
    return [
        rows[np.searchsorted(rows, start) : np.searchsorted(rows, stop)] - start
        for rows in calibration
    ]


@fit_context(prefer_skip_nested_validation=True)
def fit_gaussian(estimator, X, y=None):
    """Fit a :class:`~skood.GaussianMahalanobis` on blocks: what ``fit`` does with dask input.

    The in-memory fit, with the rows left where they are. Its public steps, run on the
    cluster where they touch rows:

    1. the labels and each block's inlier count (one pass over ``y``);
       ``estimator.modelled_classes`` and ``estimator.calibration_folds`` of the inlier count
       say which classes are modelled and which inlier rows calibrate ``offset_`` (at most
       50,000, in ``offset_cv`` folds), as in memory;
    2. each block's :class:`~skood.gaussian.GaussianMoments` (counts, sums, scatter ``Z^T Z``,
       and the fold models' by leaving out each fold's rows), added in a tree; a second pass
       ``about=`` the first where ``estimator.moments_suffice`` says so (Ledoit–Wolf's fourth
       moment, or means far from the origin);
    3. ``estimator.fit_moments(moments)``, and ``estimator.fold_model(moments.folds[f])`` for the
       ``offset_cv`` fold models;
    4. each block's calibration rows scored by ``score_samples`` of the model that did not see
       them, and ``estimator.calibrate_offset(scores, held_out=False)``.

    So ``means_``, ``covariance_``, ``whitening_``, ``offset_`` and ``calibration_scores_``
    equal the in-memory fit's to rounding, with or without ``offset_cv``. A covariance
    *estimator* object (``MinCovDet``, ...) needs the rows themselves and is refused: fit it
    on a sample in memory. Beyond 50,000 inlier rows, drawing the calibration rows takes a
    permutation of the inlier row indices on the client (8 bytes a row, briefly).

    Parameters
    ----------
    estimator : GaussianMahalanobis
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
    y : dask array or series of shape (n_samples,), default=None
        ``-1`` marks outlier rows (left out); other values are inlier class labels.

    Returns
    -------
    estimator : GaussianMahalanobis
        Fitted.
    """
    require_dask()
    import dask
    import dask.array as da

    name = type(estimator).__name__
    if not isinstance(estimator.covariance, str):
        raise ValueError(
            f"{name}: covariance={estimator.covariance!r} needs the rows themselves, not their "
            "moments; on a Dask array use covariance='empirical', 'shrunk', 'ledoit_wolf' or "
            "'oas', or fit this estimator on a sample that fits in memory."
        )
    X, y = _as_blocks(X, y)
    x_blocks = X.to_delayed().ravel()
    y_blocks = [None] * len(x_blocks) if y is None else list(y.to_delayed().ravel())
    labels, inliers = None, np.asarray(X.chunks[0])
    if y is not None:
        count = dask.delayed(_count_inliers, pure=True)
        labels, inliers = dask.compute(da.unique(y), [count(yb) for yb in y_blocks])
        labels, inliers = np.asarray(labels), np.concatenate(inliers)
        if labels.dtype.kind == "f" and np.isnan(labels).any():  # NaN would become a class
            missing = da.isnan(y)
            n_missing, first = dask.compute(missing.sum(), da.argmax(missing))
            raise missing_labels_error(int(n_missing), int(first), name, "NaN")
        labels = labels[~is_outlier_label(labels)]
        if labels.size == 0:
            raise ValueError(f"y marks every row as an outlier (-1), so {name} has no inliers.")
    classes = estimator.modelled_classes(labels)
    n_rows = int(inliers.sum())
    if n_rows < 2:
        raise ValueError(f"{name} needs at least 2 inlier rows, got {n_rows}.")
    calibration = estimator.calibration_folds(n_rows)
    starts = np.concatenate([[0], np.cumsum(inliers)])
    block_rows = [_rows_in(calibration, starts[b], starts[b + 1]) for b in range(len(x_blocks))]
    block_folds = block_rows if len(calibration) > 1 else [[]] * len(x_blocks)

    def moments(about=None):
        task, about = dask.delayed(_block_moments, pure=True), dask.delayed(about, pure=True)
        parts = [
            task(estimator.moments_type, xb, yb, classes, f, about)
            for xb, yb, f in zip(x_blocks, y_blocks, block_folds)
        ]
        return dask.compute(_tree_sum(parts))[0]

    total = moments()
    if not estimator.moments_suffice(total):  # Ledoit-Wolf's fourth moment, or far means
        total = moments(about=total)
    estimator.fit_moments(total)
    models = [estimator.fold_model(fold) for fold in total.folds] or [estimator]
    task, shipped = dask.delayed(_block_scores, pure=True), dask.delayed(models, pure=True)
    scores = dask.compute([
        task(xb, yb, rows, shipped) for xb, yb, rows in zip(x_blocks, y_blocks, block_rows)
    ])[0]  # fmt: skip
    return estimator.calibrate_offset(np.concatenate(scores), held_out=False)


class TorchThreads(_WorkerPlugin):
    """A Dask worker plugin: torch in each worker uses the worker's threads, not every core.

    ``client.register_plugin(TorchThreads())``; ``n_threads=None`` takes the worker's
    ``nthreads`` (``threads_per_worker``). skood estimators also pin their own fits
    (``n_threads=1``); this covers scoring and any other torch work on the worker.
    """

    name = "skood-torch-threads"

    def __init__(self, n_threads: int | None = None) -> None:
        self.n_threads = n_threads

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(int(self.n_threads or worker.state.nthreads))

    def teardown(self, worker) -> None:  # nothing to undo: the process ends with the worker
        return None


class OneGPUPerWorker(_WorkerPlugin):
    """A Dask worker plugin: each worker sees one GPU (``CUDA_VISIBLE_DEVICES``), by its index.

    ``client.register_plugin(OneGPUPerWorker())`` before any task runs torch on CUDA: worker
    ``i`` (its ``name``; ``LocalCluster`` names them 0, 1, ...) sees GPU ``gpus[i % len(gpus)]``
    as ``cuda:0``, so estimators with ``device="auto"`` train on it. ``gpus`` defaults to every
    GPU the worker's machine has. On a machine without CUDA the variable is set all the same and
    ``device="auto"`` resolves to the CPU. dask-cuda's ``LocalCUDACluster`` does the same.
    """

    name = "skood-one-gpu-per-worker"

    def __init__(self, gpus=None) -> None:
        self.gpus = None if gpus is None else [int(g) for g in gpus]

    def setup(self, worker) -> None:
        import os
        import zlib

        gpus = self.gpus
        if gpus is None:
            import torch

            gpus = list(range(torch.cuda.device_count())) or [0]
        name = str(worker.name)
        index = int(name) if name.isdigit() else zlib.crc32(name.encode())
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus[index % len(gpus)])


def sample_rows(data, n_rows: int, *, random_state=None) -> np.ndarray:
    """A uniform sample of ``n_rows`` rows (without replacement) of a dask array or dataframe,
    in memory: what the torch detectors fit on when the data do not fit (their scoring then runs
    on every row with :func:`score_dataset`).

    Two passes: the rows per block, then only the drawn rows of each block are gathered.

    Parameters
    ----------
    data : dask.array.Array or dask.dataframe.DataFrame
    n_rows : int
        At most the number of rows (all rows when larger).
    random_state : int, RandomState or None

    Returns
    -------
    ndarray of float64, shape (n_rows, n_features)
    """
    require_dask()
    import dask
    import dask.array as da
    import dask.dataframe as dd
    from sklearn.utils import check_random_state

    if isinstance(data, dd.DataFrame):
        lengths = np.asarray(data.map_partitions(len).compute())
        blocks = data.to_delayed()

        def take(block, rows):
            return block.iloc[rows].to_numpy(dtype=np.float64)

    elif isinstance(data, da.Array):
        data = data.rechunk({1: data.shape[1]})
        lengths = np.asarray(data.chunks[0])
        blocks = data.to_delayed().ravel()

        def take(block, rows):
            return np.asarray(block, dtype=np.float64)[rows]

    else:
        raise TypeError(f"sample_rows takes a dask array or dataframe, got {type(data).__name__}")
    total = int(lengths.sum())
    chosen = np.sort(
        check_random_state(random_state).choice(total, min(n_rows, total), replace=False)
    )
    starts = np.concatenate([[0], np.cumsum(lengths)])
    parts = []
    for b, block in enumerate(blocks):
        rows = chosen[(chosen >= starts[b]) & (chosen < starts[b + 1])] - starts[b]
        if rows.size:
            parts.append(dask.delayed(take)(block, rows))
    return np.concatenate(dask.compute(*parts))
