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

from skood.base import is_outlier_label

try:  # this module is the optional dask integration; the core of skood never imports it
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - without distributed, TorchThreads cannot be registered
    _WorkerPlugin = object

__all__ = ["OneGPUPerWorker", "TorchThreads", "fit_gaussian", "sample_rows", "score_dataset"]


def _require_dask():
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "skood.distributed needs dask: pip install 'skood[dask]' (dask[array,dataframe] and "
            "distributed)."
        ) from exc


def _outputs(model) -> list[str]:
    last = model[-1] if hasattr(model, "steps") else model
    return ["score", "p_value", "label"] if hasattr(last, "detector_scores") else ["score", "label"]


def _score_rows(model, X: np.ndarray) -> np.ndarray:
    """One block: ``(n, k)`` float64 columns in the order of :func:`_outputs`."""
    last = model[-1] if hasattr(model, "steps") else model
    labels = np.asarray(model.predict(X), dtype=np.float64)
    if hasattr(last, "detector_scores"):  # conformal: the detector's score, then the p-value
        head = model[:-1].transform(X) if hasattr(model, "steps") else X
        scores = last.detector_scores(head)
        return np.column_stack([scores, model.score_samples(X), labels])
    return np.column_stack([np.asarray(model.score_samples(X), dtype=np.float64), labels])


def _score_frame(frame, model, columns, outputs):
    import pandas as pd

    if getattr(model, "feature_names_in_", None) is not None:
        X = frame[columns].astype(np.float64)  # by name: the model checks them as in memory
    else:
        X = frame[columns].to_numpy(dtype=np.float64) if columns else frame.to_numpy(np.float64)
    if X.shape[0] == 0:
        empty = pd.DataFrame({name: np.zeros(0) for name in outputs}, index=frame.index)
        return empty.astype({"label": np.int64})
    values = _score_rows(model, X)
    out = pd.DataFrame(values, columns=outputs, index=frame.index)
    out["label"] = out["label"].astype(np.int64)
    return out


def score_dataset(model, data, *, columns=None):
    """Lazy scores of every row of ``data``: a dask dataframe with ``score``, ``label`` (and
    ``p_value`` for a conformal model), one output partition per input block.

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
    _require_dask()
    import dask
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    outputs = _outputs(model)
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
            lambda block, m: _score_rows(m, np.asarray(block, dtype=np.float64)),
            shipped,
            chunks=(data.chunks[0], (len(outputs),)),
            dtype=np.float64,
        )
        frame = dd.from_dask_array(blocks, columns=outputs)
        return frame.astype({"label": np.int64})
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
    meta["label"] = meta["label"].astype(np.int64)
    return data.map_partitions(_score_frame, shipped, columns, outputs, meta=meta)


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
    import dask

    add = dask.delayed(lambda a, b: [x + z for x, z in zip(a, b)], pure=True)
    while len(parts) > 1:
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]  # fmt: skip
    return parts[0]


def _block_codes(y_block, classes):
    """Class codes of a block's rows (-1 for outlier rows and for labels outside ``classes``)."""
    if y_block is None:
        return None
    y_block = np.asarray(y_block)
    codes = np.searchsorted(classes, y_block)
    codes = np.clip(codes, 0, len(classes) - 1)
    return np.where(classes[codes] == y_block, codes, -1)


def _folds(n_rows: int, block: int, n_splits: int, seed: int) -> np.ndarray:
    """The calibration fold of every row of a block (seeded per block, so reproducible)."""
    return np.random.default_rng([seed, block]).integers(n_splits, size=n_rows)


def _inlier_rows(x, y, block, classes, n_splits, seed):
    """A block's inlier rows with their class codes and calibration folds."""
    x = np.asarray(x, dtype=np.float64)
    codes = np.zeros(len(x), dtype=np.intp) if classes is None else _block_codes(y, classes)
    if y is not None and classes is None:
        codes = np.where(is_outlier_label(y), -1, 0)
    folds = _folds(len(x), block, max(n_splits, 1), seed)
    keep = codes >= 0
    return x[keep], codes[keep], folds[keep]


def _first_moments(x, y, block, classes, n_classes, n_splits, seed):
    """Per fold and class: row counts and row sums of the inlier rows."""
    x, codes, folds = _inlier_rows(x, y, block, classes, n_splits, seed)
    counts = np.zeros((max(n_splits, 1), n_classes))
    sums = np.zeros((max(n_splits, 1), n_classes, x.shape[1]))
    np.add.at(counts, (folds, codes), 1.0)
    np.add.at(sums, (folds, codes), x)
    return [counts, sums]


def _second_moments(x, y, block, classes, n_splits, seed, means, fold_means):
    """``Z^T Z`` and ``sum ||z||^4`` of the class-centred inlier rows: for the model on every
    row, and for each fold's model (the rows outside that fold, centred by its means)."""
    x, codes, folds = _inlier_rows(x, y, block, classes, n_splits, seed)

    def moments(rows, centres):
        z = x[rows] - centres[codes[rows]]
        return z.T @ z, np.sum(np.sum(z * z, axis=1) ** 2)

    scatter, fourth = moments(slice(None), means)
    out = [scatter, np.array(fourth)]
    for k in range(n_splits):
        fold_scatter, fold_fourth = moments(folds != k, fold_means[k])
        out += [fold_scatter, np.array(fold_fourth)]
    return out


def _calibration_block(x, y, block, classes, n_splits, seed, estimator, models):
    """Each inlier row's score under the model that did not see it (or the full model)."""
    x, _, folds = _inlier_rows(x, y, block, classes, n_splits, seed)
    scores = np.empty(len(x))
    for k, (means, whitening, log_det) in enumerate(models):
        rows = folds == k if n_splits else slice(None)
        scores[rows] = estimator._score(x[rows], means, whitening, log_det)
    return scores


def fit_gaussian(estimator, X, y=None):
    """Fit a :class:`~skood.GaussianMahalanobis` on blocks: what ``fit`` does with dask input.

    Per-block moments (row counts and sums per class, then the class-centred scatter ``Z^T Z``
    and ``sum ||z||^4``) are added up in a tree, three passes over the data: the means, the
    centred moments, and the out-of-fold calibration scores. Every covariance that skood names
    (``empirical``, ``shrunk``, ``ledoit_wolf``, ``oas``) is a function of these moments, so
    means, covariance and whitening equal the in-memory fit to rounding. A covariance
    *estimator* object (``MinCovDet``, ...) needs the rows themselves and is refused: fit it on a
    sample in memory.

    ``offset_cv`` folds are drawn per block (seeded by ``random_state`` and the block's index),
    not by ``KFold`` over the row order as in memory, so ``offset_`` differs from the in-memory
    one by the sampling noise of the folds (with ``offset_cv=None`` it is equal too). The
    calibration scores of every inlier row are kept (8 bytes a row).
    """
    _require_dask()
    import dask
    import dask.array as da
    from sklearn.utils import check_random_state

    from skood.base import missing_labels_error

    name = type(estimator).__name__
    if not isinstance(estimator.covariance, str):
        raise ValueError(
            f"{name}: covariance={estimator.covariance!r} needs the rows themselves, not their "
            "moments; on a Dask array use covariance='empirical', 'shrunk', 'ledoit_wolf' or "
            "'oas', or fit this estimator on a sample that fits in memory."
        )
    X, y = _as_blocks(X, y)
    n_features = X.shape[1]
    labels = None
    if y is not None:
        labels = np.asarray(da.unique(y).compute())
        if labels.dtype.kind == "f" and np.isnan(labels).any():  # NaN would become a class
            missing = da.isnan(y)
            n_missing, first = dask.compute(missing.sum(), da.argmax(missing))
            raise missing_labels_error(int(n_missing), int(first), name, "NaN")
        labels = labels[~is_outlier_label(labels)]
        if labels.size == 0:
            raise ValueError(f"y marks every row as an outlier (-1), so {name} has no inliers.")
    if estimator.class_conditional is True and labels is None:
        raise ValueError(f"{name}: class_conditional=True needs inlier class labels in y.")
    use_classes = labels is not None and (
        estimator.class_conditional is True
        or (estimator.class_conditional == "auto" and labels.size >= 2)
    )
    classes = np.sort(labels) if use_classes else None
    n_classes = 1 if classes is None else classes.size
    n_splits = estimator.offset_cv or 0
    seed = int(check_random_state(estimator.random_state).randint(2**31 - 1))
    x_blocks = X.to_delayed().ravel()
    y_blocks = [None] * len(x_blocks) if y is None else y.to_delayed().ravel()

    first = dask.delayed(_first_moments, pure=True)
    counts, sums = dask.compute(_tree_sum([
        first(xb, yb, b, classes, n_classes, n_splits, seed)
        for b, (xb, yb) in enumerate(zip(x_blocks, y_blocks))
    ]))[0]  # fmt: skip
    n_rows = counts.sum()
    if n_rows < 2:
        raise ValueError(f"{name} needs at least 2 inlier rows, got {int(n_rows)}.")
    estimator._choose_covariance(int(n_rows), n_features, n_classes)  # as in memory
    means = sums.sum(axis=0) / counts.sum(axis=0)[:, None]
    fold_means = [
        (sums.sum(axis=0) - sums[k]) / (counts.sum(axis=0) - counts[k])[:, None]
        for k in range(n_splits)
    ]
    second = dask.delayed(_second_moments, pure=True)
    moments = dask.compute(_tree_sum([
        second(xb, yb, b, classes, n_splits, seed, means, fold_means)
        for b, (xb, yb) in enumerate(zip(x_blocks, y_blocks))
    ]))[0]  # fmt: skip
    covariance = estimator._covariance_from_moments(moments[0], float(moments[1]), n_rows)
    whitening, log_det = estimator._whiten(covariance)
    estimator.classes_, estimator.means_, estimator.covariance_ = classes, means, covariance
    estimator.whitening_, estimator.log_det_ = whitening, log_det
    estimator.n_features_in_ = n_features
    models = [(means, whitening, log_det)]
    if n_splits:
        models = []
        for k in range(n_splits):
            n_k = n_rows - counts[k].sum()
            cov_k = estimator._covariance_from_moments(
                moments[2 + 2 * k], float(moments[3 + 2 * k]), n_k
            )
            models.append((fold_means[k], *estimator._whiten(cov_k)))
    calib = dask.delayed(_calibration_block, pure=True)
    scores = dask.compute([
        calib(xb, yb, b, classes, n_splits, seed, estimator, models)
        for b, (xb, yb) in enumerate(zip(x_blocks, y_blocks))
    ])[0]  # fmt: skip
    estimator._set_offset(np.concatenate(scores), held_out=False)
    return estimator


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
    _require_dask()
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
