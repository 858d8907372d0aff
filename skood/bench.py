"""The benchmark harness behind ``skood bench``: detectors x datasets x seeds under one protocol.

* Detectors by name, with parameters (``"flow:q=0.05,n_blocks=4"``): skood's, sklearn's peers and,
  when installed, PyOD's. :func:`make_detector` returns each as an sklearn estimator whose
  ``score_samples`` is higher for more normal rows (PyOD's scores are negated).
* Datasets: bundled ones built from sklearn's data (no download) and ADBench-format ``.npz`` files.
* Protocols (as in ADBench): ``"semi"`` trains on a random share of the normal rows and tests on
  the other normals plus every anomaly; ``"unsup"`` trains on all rows, anomalies included, with
  the labels hidden, and scores the same rows.
* Every cell is fitted as ``Pipeline([InformativeColumns, StandardScaler, detector])`` on the
  training rows only; a failing cell is recorded with its error, never fatal.
"""

from __future__ import annotations

import ast
import csv
import datetime
import importlib
import os
import platform
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, OutlierMixin, TransformerMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from skood.base import OUTLIER_LABEL, iter_slices
from skood.datasets import load_adbench, novelty_split
from skood.metrics import aupr_out, auroc, fpr_at_tpr

__all__ = [
    "BenchData",
    "InformativeColumns",
    "available_detectors",
    "bundled_datasets",
    "load_datasets",
    "make_detector",
    "make_pipeline_for",
    "parse_detector",
    "read_csv",
    "run_benchmark",
    "summarize",
    "write_report",
]

# -- detectors ------------------------------------------------------------------------------------


class PyODAdapter(OutlierMixin, BaseEstimator):
    """A PyOD model behind skood's convention: ``score_samples`` is higher for more normal rows.

    PyOD's ``decision_function`` is an anomaly score (higher = more anomalous), so it is negated;
    ``offset_`` is PyOD's own ``threshold_`` negated, so ``predict`` agrees with PyOD's labels.
    Models that re-estimate on the scored rows (ECOD, COPOD keep ``X_train``) are scored in small
    chunks so that the scored rows do not move their reference distribution.
    """

    def __init__(self, model=None):
        self.model = model

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        model = clone(self.model)
        if "n_features" in model.get_params():  # DeepSVDD sizes its network at construction
            model.set_params(n_features=X.shape[1])
        self.model_ = model.fit(X)
        self.offset_ = -float(self.model_.threshold_)
        return self

    def score_samples(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        # ECOD and COPOD refit their empirical CDFs on training + scored rows, so a test set
        # with many anomalies moves the reference and flips the scores (AUROC 0.50 instead of
        # 0.996 on digits-ovr-0). Scoring at most 1 % of the training size at a time keeps
        # each row judged against the training distribution.
        n_train = getattr(self.model_, "X_train", None)
        chunk = X.shape[0] if n_train is None else max(1, len(n_train) // 100)
        parts = [self.model_.decision_function(X[sl]) for sl in iter_slices(X.shape[0], chunk)]
        return -np.concatenate(parts).astype(np.float64) if parts else np.empty(0)

    def decision_function(self, X):
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        return np.where(self.decision_function(X) >= 0, 1, -1)


@dataclass(frozen=True)
class _Entry:
    family: str  # "skood", "sklearn" or "pyod"
    build: Callable[..., Any]  # build(params, random_state) -> estimator
    summary: str
    uses_classes: bool = False
    quick: dict = field(default_factory=dict)  # parameters --quick applies (user ones win)


# A CPU-sized flow (the spec's "H=128, L=1, 4 blocks" setting); the paper's default network
# (8 blocks, H=512, L=2) is meant for ~50,000 feature vectors on a GPU.
_CPU_FLOW = {"n_blocks": 4, "hidden_size": 128, "n_hidden_layers": 1}


def _by_path(path: str, *, seeded: bool = True, pyod: bool = False, **fixed):
    """A builder for the estimator class at ``path``, with ``fixed`` defaults under the user's."""

    def build(params, random_state):
        module, name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        kwargs = {**fixed, **params}
        if seeded:
            kwargs.setdefault("random_state", random_state)
        return PyODAdapter(cls(**kwargs)) if pyod else cls(**kwargs)

    return build


def _rose(params: dict, random_state):
    """ROSEScorer around a VAEDetector; ``vae_<name>`` parameters go to the VAE."""
    from skood import ROSEScorer, VAEDetector

    params = dict(params)
    vae = {k[4:]: params.pop(k) for k in list(params) if k.startswith("vae_")}
    vae.setdefault("random_state", random_state)
    params.setdefault("random_state", random_state)
    return ROSEScorer(VAEDetector(**vae), **params)


_REGISTRY: dict[str, _Entry] = {
    "flow": _Entry(
        "skood",
        _by_path("skood.QuantileFlowDetector", **_CPU_FLOW),
        "QuantileFlowDetector, q=0.05, CPU-sized (4 blocks, H=128, L=1)",
        quick={"max_epochs": 5, "min_steps": 100},
    ),
    "flow-mean": _Entry(
        "skood",
        _by_path("skood.QuantileFlowDetector", q="mean", **_CPU_FLOW),
        "QuantileFlowDetector, mean NLL (the paper's baseline)",
        quick={"max_epochs": 5, "min_steps": 100},
    ),
    "gauss": _Entry(
        "skood",
        _by_path("skood.GaussianMahalanobis", covariance="ledoit_wolf", class_conditional=False),
        "GaussianMahalanobis, one Gaussian, Ledoit-Wolf covariance",
    ),
    "mahalanobis": _Entry(
        "skood",
        _by_path("skood.GaussianMahalanobis", covariance="ledoit_wolf", class_conditional=True),
        "GaussianMahalanobis, class-conditional, max over classes (Lee et al.)",
        uses_classes=True,
    ),
    "gem": _Entry(
        "skood",
        _by_path(
            "skood.GaussianMahalanobis",
            covariance="ledoit_wolf",
            class_conditional=True,
            aggregate="logsumexp",
        ),
        "GaussianMahalanobis, class-conditional, logsumexp (GEM)",
        uses_classes=True,
    ),
    "hsc": _Entry(
        "skood",
        _by_path("skood.HSCDetector"),
        "HSCDetector (hypersphere classifier; Deep SVDD with centre 0 when no rows are -1)",
        quick={"max_epochs": 5},
    ),
    "deepsvdd": _Entry(
        "skood",
        _by_path("skood.DeepSVDDDetector"),
        "DeepSVDDDetector (one-class, bias-free MLP)",
        quick={"max_epochs": 5},
    ),
    "ama": _Entry(
        "skood",
        _by_path("skood.AMADetector"),
        "AMADetector (adversarial mirrored autoencoder, log Gaussian of the R-score)",
        quick={"max_epochs": 3},
    ),
    "vae": _Entry(
        "skood",
        _by_path("skood.VAEDetector"),
        "VAEDetector (Gaussian VAE, per-row ELBO)",
        quick={"max_epochs": 5, "min_steps": 100},
    ),
    "rose": _Entry(
        "skood",
        lambda params, random_state: _rose(params, random_state),
        "ROSEScorer on a VAEDetector (EKFAC; vae_<param>=... sets the VAE's parameters)",
        quick={"vae_max_epochs": 5, "vae_min_steps": 100, "n_fisher_samples": 500},
    ),
    "iforest": _Entry("sklearn", _by_path("sklearn.ensemble.IsolationForest"), "IsolationForest"),
    "lof": _Entry(
        "sklearn",
        _by_path("sklearn.neighbors.LocalOutlierFactor", seeded=False, novelty=True),
        "LocalOutlierFactor(novelty=True)",
    ),
    "ocsvm": _Entry(
        "sklearn",
        _by_path("sklearn.svm.OneClassSVM", seeded=False, gamma="scale", nu=0.1),
        'OneClassSVM(gamma="scale", nu=0.1)',
    ),
    "elliptic": _Entry(
        "sklearn",
        _by_path("sklearn.covariance.EllipticEnvelope"),
        "EllipticEnvelope (MCD)",
    ),
    "pyod-knn": _Entry(
        "pyod", _by_path("pyod.models.knn.KNN", seeded=False, pyod=True), "PyOD KNN"
    ),
    "pyod-ecod": _Entry(
        "pyod", _by_path("pyod.models.ecod.ECOD", seeded=False, pyod=True), "PyOD ECOD"
    ),
    "pyod-copod": _Entry(
        "pyod", _by_path("pyod.models.copod.COPOD", seeded=False, pyod=True), "PyOD COPOD"
    ),
    "pyod-pca": _Entry("pyod", _by_path("pyod.models.pca.PCA", pyod=True), "PyOD PCA"),
    "pyod-ae": _Entry(
        "pyod",
        _by_path("pyod.models.auto_encoder.AutoEncoder", pyod=True, verbose=0),
        "PyOD AutoEncoder",
        quick={"epoch_num": 3},
    ),
    "pyod-vae": _Entry(
        "pyod",
        _by_path("pyod.models.vae.VAE", pyod=True, verbose=0),
        "PyOD VAE",
        quick={"epoch_num": 3},
    ),
    "pyod-deepsvdd": _Entry(
        "pyod",
        _by_path(
            "pyod.models.deep_svdd.DeepSVDD",
            pyod=True,
            n_features=1,  # a placeholder: PyODAdapter.fit sets the width it is given
            verbose=0,
            epochs=20,
        ),
        "PyOD DeepSVDD (20 epochs)",
        quick={"epochs": 3},
    ),
}

#: What ``skood bench --quick`` runs: one fast detector of each kind.
QUICK_DETECTORS = ("flow", "gauss", "mahalanobis", "iforest", "lof", "pyod-ecod")


def _pyod_available() -> bool:
    try:
        import pyod  # noqa: F401
    except ImportError:
        return False
    return True


def available_detectors() -> dict[str, str]:
    """``{name: description}`` of the detectors :func:`make_detector` can build here."""
    pyod = _pyod_available()
    return {n: e.summary for n, e in _REGISTRY.items() if e.family != "pyod" or pyod}


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string parameter such as coupling=realnvp


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets: ``a=1,b=(2,3)`` -> ``["a=1", "b=(2,3)"]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_detector(spec: str) -> tuple[str, dict]:
    """Parse ``"name:key=value,key=value"`` into ``(name, params)``.

    Values are Python literals (``0.05``, ``4``, ``(64, 32)``, ``True``) or bare strings.

    Examples
    --------
    >>> parse_detector("flow:q=0.05,n_blocks=4,coupling=realnvp")
    ('flow', {'q': 0.05, 'n_blocks': 4, 'coupling': 'realnvp'})
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown detector {name!r}. Available: {', '.join(available_detectors())}."
        )
    params = {}
    for item in _split_top_level(rest):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(
                f"Cannot read {item!r} in detector spec {spec!r}: write key=value pairs separated "
                "by commas, e.g. flow:q=0.05,n_blocks=4."
            )
        params[key.strip()] = _parse_value(value.strip())
    return name, params


def make_detector(
    spec: str | tuple[str, dict],
    *,
    random_state=None,
    quick: bool = False,
):
    """Build a detector by name; its ``score_samples`` is higher for more normal rows.

    Parameters
    ----------
    spec : str or (name, params)
        ``"flow:q=0.05,n_blocks=4"``, or a parsed pair from :func:`parse_detector`.
    random_state : int or None
        Passed to detectors that take one (unless ``spec`` sets it).
    quick : bool
        Apply the detector's ``--quick`` settings (fewer epochs) under the user's parameters.

    Returns
    -------
    estimator : sklearn estimator (unfitted)
    """
    name, params = parse_detector(spec) if isinstance(spec, str) else spec
    entry = _REGISTRY[name]
    if entry.family == "pyod" and not _pyod_available():
        raise ImportError(f"Detector {name!r} needs PyOD: pip install 'skood[bench]'.")
    params = {**(entry.quick if quick else {}), **params}
    try:
        return entry.build(params, random_state)
    except TypeError as exc:  # an unknown keyword: say which detector and how to list its options
        raise ValueError(f"Detector {name!r}: {exc}") from exc


def uses_classes(name: str) -> bool:
    """Whether detector ``name`` needs the inlier class labels (class-conditional)."""
    return _REGISTRY[name].uses_classes


class InformativeColumns(TransformerMixin, BaseEstimator):
    """Keep the columns where at least ``min_rows`` training rows differ from the column's mode.

    ``VarianceThreshold`` drops only exactly-constant columns; a density model that holds out a
    share of its rows (the flow's ``validation_fraction``) can still meet a column that is
    constant on the rest, which happens to sparse columns (some MVTec ResNet-18 features are
    non-zero on one or two images).

    Parameters
    ----------
    min_rows : int, default=5
    """

    def __init__(self, min_rows=5):
        self.min_rows = min_rows

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        keep = np.zeros(X.shape[1], dtype=bool)
        for j in range(X.shape[1]):
            _, counts = np.unique(X[:, j], return_counts=True)
            keep[j] = X.shape[0] - counts.max() >= min(self.min_rows, X.shape[0] - 1)
        if not keep.any():
            raise ValueError(
                "Every column is (nearly) constant on the training rows: nothing to learn from."
            )
        self.support_ = keep
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X[:, self.support_]

    def get_feature_names_out(self, input_features=None):
        from sklearn.utils.validation import _check_feature_names_in

        return _check_feature_names_in(self, input_features)[self.support_]


def make_pipeline_for(detector) -> Pipeline:
    """The preprocessing every benchmark cell and ``skood score`` use, then ``detector``."""
    return Pipeline(
        [("columns", InformativeColumns()), ("scale", StandardScaler()), ("detector", detector)]
    )


# -- datasets -------------------------------------------------------------------------------------


@dataclass
class BenchData:
    """One dataset: ``y`` is -1 for anomalies and a class label (or +1) for normal rows."""

    name: str
    X: np.ndarray
    y: np.ndarray
    has_classes: bool = False
    group: str = "bundled"


def _digits_ovr(digit: int) -> BenchData:
    from sklearn.datasets import load_digits

    X, d = load_digits(return_X_y=True)
    return BenchData(f"digits-ovr-{digit}", X, np.where(d == digit, 1, OUTLIER_LABEL))


def _digits_open_set() -> BenchData:
    from skood.datasets import load_digits_ood

    X, y = load_digits_ood(range(5))
    return BenchData("digits-open-set", X, y, has_classes=True)


def _breast_cancer() -> BenchData:
    from sklearn.datasets import load_breast_cancer

    X, t = load_breast_cancer(return_X_y=True)  # 0 = malignant, 1 = benign
    return BenchData("breast-cancer", X, np.where(t == 1, 1, OUTLIER_LABEL))


def _wine() -> BenchData:
    from sklearn.datasets import load_wine

    X, t = load_wine(return_X_y=True)  # cultivars 0 and 1 normal, cultivar 2 anomalous
    return BenchData("wine", X, np.where(t == 2, OUTLIER_LABEL, t), has_classes=True)


def bundled_datasets() -> dict[str, Callable[[], BenchData]]:
    """Loaders of the datasets built from sklearn's bundled data (no download).

    ``digits-ovr-<d>``: digit ``d`` normal, the nine others anomalous. ``digits-open-set``: digits
    0-4 normal (with their classes), 5-9 anomalous. ``breast-cancer``: benign normal, malignant
    anomalous. ``wine``: cultivars 0 and 1 normal (with their classes), cultivar 2 anomalous.
    """
    loaders: dict[str, Callable[[], BenchData]] = {
        f"digits-ovr-{d}": (lambda d=d: _digits_ovr(d)) for d in range(10)
    }
    loaders["digits-open-set"] = _digits_open_set
    loaders["breast-cancer"] = _breast_cancer
    loaders["wine"] = _wine
    return loaders


#: The bundled datasets a plain ``skood bench`` runs.
DEFAULT_BUNDLED = ("digits-ovr-0", "digits-open-set", "breast-cancer", "wine")


def load_datasets(names: Iterable[str] = (), folders: Iterable[str | os.PathLike] = ()):
    """Bundled datasets by name, then every ``.npz`` under each folder (searched recursively)."""
    loaders = bundled_datasets()
    out = []
    for name in names:
        if name not in loaders:
            raise ValueError(f"Unknown bundled dataset {name!r}. Available: {', '.join(loaders)}.")
        out.append(loaders[name]())
    for folder in folders:
        paths = sorted(Path(folder).rglob("*.npz"))
        if not paths:
            raise FileNotFoundError(f"No ADBench-format .npz files under {os.fspath(folder)!r}.")
        for path in paths:
            X, y = load_adbench(path)  # y already in skood's convention (-1 / +1)
            group = path.parent.name if path.parent != Path(folder) else Path(folder).name
            out.append(BenchData(path.stem, X, y, group=group))
    return out


# -- protocol -------------------------------------------------------------------------------------


def _subsample(n: int, cap: int | None, rng, stratify=None) -> np.ndarray:
    if not cap or n <= cap:
        return np.arange(n)
    if stratify is None:
        return np.sort(rng.choice(n, cap, replace=False))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(n), train_size=cap, stratify=stratify, random_state=rng.randint(2**31 - 1)
    )
    return np.sort(keep)


def split(
    data: BenchData,
    protocol: str,
    seed: int,
    *,
    train_fraction: float = 0.5,
    max_train: int | None = 10_000,
    max_test: int | None = 20_000,
):
    """``(X_train, y_train, X_test, y_test)`` for one cell; ``y_*`` follow skood's convention.

    ``"semi"``: a random ``train_fraction`` of the normal rows trains; the other normals and every
    anomaly test. ``"unsup"``: every row trains (labels hidden from the detector) and is scored.
    Caps subsample the training rows at random and the test rows stratified.
    """
    rng = check_random_state(seed)
    if protocol == "semi":
        X_tr, y_tr, X_te, y_te = novelty_split(
            data.X, data.y, train_fraction=train_fraction, random_state=seed
        )
    elif protocol == "unsup":
        X_tr, y_tr, X_te, y_te = data.X, data.y, data.X, data.y
    else:
        raise ValueError(f"protocol must be 'semi' or 'unsup', got {protocol!r}.")
    tr = _subsample(len(X_tr), max_train, rng)
    te = _subsample(len(X_te), max_test, rng, stratify=y_te == OUTLIER_LABEL)
    return X_tr[tr], y_tr[tr], X_te[te], y_te[te]


FIELDS = [
    "protocol",
    "group",
    "dataset",
    "seed",
    "detector",
    "status",
    "auroc",
    "aupr",
    "fpr95",
    "fit_s",
    "score_s",
    "n_train",
    "n_test",
    "n_features",
    "error",
]


def run_cell(detector: str, params: dict, data_split, meta: dict, quick: bool, threads: int):
    """Fit and score one (detector, dataset, seed) cell; errors are returned, not raised."""
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

    Rows in ``previous`` (e.g. from :func:`read_csv` of an interrupted run) whose status is not
    ``"error"`` are reused instead of run again, so a long benchmark can resume.

    Cells run in ``n_jobs`` joblib workers (each torch model then uses one thread, as two
    processes sharing cores otherwise slow each other by an order of magnitude). Seeds fix the
    splits and every detector's ``random_state``, so a rerun gives the same table.
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


# -- summaries and report -------------------------------------------------------------------------


def summarize(rows: Sequence[dict]) -> dict:
    """Per-detector means over datasets and the mean AUROC rank.

    Ranks are computed per (protocol, dataset) on the seed-mean AUROC, 1 = best; a detector with
    no successful cell on a dataset takes the worst rank there. Returns
    ``{"overall": {detector: {...}}, "per_dataset": {(protocol, dataset): {detector: auroc}}}``.
    """
    detectors = list(dict.fromkeys(r["detector"] for r in rows))
    cells: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        cells.setdefault((r["protocol"], r["dataset"]), {}).setdefault(r["detector"], []).append(r)
    per_dataset, ranks = {}, {d: [] for d in detectors}
    for key, by_det in cells.items():
        means = {}
        for d in detectors:
            ok = [r["auroc"] for r in by_det.get(d, []) if r["status"] == "ok"]
            means[d] = float(np.mean(ok)) if ok else np.nan
        per_dataset[key] = means
        if all(by_det.get(d) and by_det[d][0]["status"] == "n/a" for d in detectors):
            continue
        applicable = [d for d in detectors if not all(r["status"] == "n/a" for r in by_det[d])]
        values = np.array([means[d] for d in applicable])
        r = rankdata(-np.nan_to_num(values, nan=-np.inf), method="average")
        for d, rank in zip(applicable, r):
            ranks[d].append(rank)
    overall = {}
    for d in detectors:
        mine = [r for r in rows if r["detector"] == d]
        ok = [r for r in mine if r["status"] == "ok"]
        overall[d] = {
            "auroc": _mean(r["auroc"] for r in ok),
            "aupr": _mean(r["aupr"] for r in ok),
            "fpr95": _mean(r["fpr95"] for r in ok),
            "fit_s": float(sum(r["fit_s"] for r in ok)),
            "score_s": float(sum(r["score_s"] for r in ok)),
            "rank": _mean(ranks[d]),
            "n_ranked": len(ranks[d]),
            "ok": len(ok),
            "failed": sum(r["status"] == "error" for r in mine),
            "n_a": sum(r["status"] == "n/a" for r in mine),
        }
    return {"overall": overall, "per_dataset": per_dataset}


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def _fmt(x, digits=3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def headline_table(summary: dict) -> str:
    """The per-detector markdown table: detectors ranked on every dataset first, by mean rank.

    A detector that applies to fewer datasets (a class-conditional one needs class labels) is
    listed after them: its mean rank covers only those datasets and is not comparable.
    """
    overall = summary["overall"]
    most = max((o["n_ranked"] for o in overall.values()), default=0)
    order = sorted(
        overall,
        key=lambda d: (
            overall[d]["n_ranked"] < most,
            np.nan_to_num(overall[d]["rank"], nan=1e9),
            d,
        ),
    )
    lines = [
        "| detector | mean rank | datasets ranked | AUROC | AUPR (anomaly) | FPR95 | fit s (total) "
        "| score s (total) | cells ok / failed / n/a |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in order:
        o = overall[d]
        lines.append(
            f"| {d} | {_fmt(o['rank'], 2)} | {o['n_ranked']} | {_fmt(o['auroc'])} | "
            f"{_fmt(o['aupr'])} | {_fmt(o['fpr95'])} | {_fmt(o['fit_s'], 1)} | "
            f"{_fmt(o['score_s'], 1)} | {o['ok']} / {o['failed']} / {o['n_a']} |"
        )
    return "\n".join(lines)


def per_dataset_table(summary: dict) -> str:
    detectors = list(summary["overall"])
    lines = [
        "| protocol | dataset | " + " | ".join(detectors) + " |",
        "|---|---|" + "---|" * len(detectors),
    ]
    for (protocol, dataset), means in summary["per_dataset"].items():
        best = np.nanmax([v for v in means.values()] + [-np.inf])
        cells = [f"**{_fmt(means[d])}**" if means[d] == best else _fmt(means[d]) for d in detectors]
        lines.append(f"| {protocol} | {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_FLOATS = {"auroc", "aupr", "fpr95", "fit_s", "score_s"}
_INTS = {"seed", "n_train", "n_test", "n_features"}


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows written by :func:`write_csv` (or a run's ``results.partial.csv``), typed again."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in _FLOATS:
            r[k] = float(r[k]) if r.get(k) else np.nan
        for k in _INTS:
            r[k] = int(r[k]) if r.get(k) else 0
    return rows


def write_csv(rows: Sequence[dict], path: str | os.PathLike, *, append: bool = False) -> None:
    """Write result rows (the ``FIELDS`` columns); ``append`` adds to an existing file."""
    header = not (append and Path(path).exists())
    with open(path, "a" if append else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if header:
            writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in FIELDS})


def write_plots(summary: dict, rows: Sequence[dict], out: Path) -> list[Path]:
    """Per-dataset AUROC, mean rank, and time vs AUROC as PNGs; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    overall = summary["overall"]
    detectors = list(overall)
    paths = []

    keys = list(summary["per_dataset"])
    grid = np.array([[summary["per_dataset"][k][d] for d in detectors] for k in keys])
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(detectors), max(2.5, 1.6 + 0.32 * len(keys))))
    im = ax.imshow(np.ma.masked_invalid(grid), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(detectors)), detectors, rotation=45, ha="right")
    ax.set_yticks(
        range(len(keys)), [f"{d} ({p})" if len(set(k[0] for k in keys)) > 1 else d for p, d in keys]
    )
    for i in range(len(keys)):
        for j in range(len(detectors)):
            if np.isfinite(grid[i, j]):
                color = "k" if grid[i, j] > 0.8 else "w"
                ax.text(
                    j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6, color=color
                )
    fig.colorbar(im, ax=ax, label="AUROC")
    ax.set_title("AUROC per dataset")
    fig.tight_layout()
    paths.append(out / "auroc_per_dataset.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    order = sorted(detectors, key=lambda d: np.nan_to_num(overall[d]["rank"], nan=1e9))
    fig, ax = plt.subplots(figsize=(6, max(2.0, 1.0 + 0.35 * len(order))))
    ax.barh(range(len(order)), [overall[d]["rank"] for d in order], color="tab:blue")
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("mean AUROC rank (1 = best)")
    ax.set_title("Mean rank over datasets")
    fig.tight_layout()
    paths.append(out / "mean_rank.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for d in detectors:
        o = overall[d]
        if o["ok"]:
            seconds = (o["fit_s"] + o["score_s"]) / o["ok"]
            ax.scatter(seconds, o["auroc"], s=30)
            ax.annotate(
                d, (seconds, o["auroc"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_xlabel("fit + score seconds per cell (mean, log scale)")
    ax.set_ylabel("mean AUROC")
    ax.set_title("Time vs AUROC")
    fig.tight_layout()
    paths.append(out / "time_vs_auroc.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def write_report(rows: Sequence[dict], out: str | os.PathLike, *, command: str = "") -> Path:
    """Write ``results.csv``, ``results.md`` and the plots to ``out``; return the markdown path."""
    import sklearn
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    write_csv(rows, out / "results.csv")
    plots = write_plots(summary, rows, out)
    errors = [r for r in rows if r["status"] == "error"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        "# skood bench",
        "",
        f"{now}; {platform.platform()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}.",
    ]
    if command:
        md += ["", "```", command, "```"]
    md += [
        "",
        "Mean over datasets of the seed-mean AUROC, AUPR (anomalies positive) and FPR at 95% TPR "
        "(normal rows positive); mean rank of AUROC per dataset (1 = best; a detector that failed "
        "on a dataset takes the worst rank there; detectors that do not apply to every dataset, "
        "such as class-conditional ones, are ranked among the applicable ones and listed last). "
        "Every cell: InformativeColumns + StandardScaler fitted on the training rows, then the "
        "detector.",
        "",
        headline_table(summary),
        "",
        "## AUROC per dataset (seed mean; best in bold)",
        "",
        per_dataset_table(summary),
    ]
    if plots:
        md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    if errors:
        md += ["", "## Failed cells", ""]
        md += [
            f"- {r['detector']} on {r['dataset']} (seed {r['seed']}): {r['error']}" for r in errors
        ]
    path = out / "results.md"
    path.write_text("\n".join(md) + "\n")
    return path
