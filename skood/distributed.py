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

try:  # this module is the optional dask integration; the core of skood never imports it
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - without distributed, TorchThreads cannot be registered
    _WorkerPlugin = object

__all__ = ["TorchThreads", "score_dataset"]


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

    X = frame[columns].to_numpy(dtype=np.float64) if columns else frame.to_numpy(np.float64)
    if X.shape[0] == 0:
        return pd.DataFrame({name: np.zeros(0) for name in outputs}, index=frame.index)
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
        The feature columns of a dataframe or dataset, in the order the model was fitted on
        (default: every column).

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
    meta = pd.DataFrame({name: np.zeros(0) for name in outputs})
    meta["label"] = meta["label"].astype(np.int64)
    return data.map_partitions(_score_frame, shipped, columns, outputs, meta=meta)


def _read_dataset(path: str, columns):
    import dask.dataframe as dd

    if path.endswith((".csv", ".csv.gz")) or "*.csv" in path:
        return dd.read_csv(path, usecols=columns) if columns else dd.read_csv(path)
    return dd.read_parquet(path, columns=columns)


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
