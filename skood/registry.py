"""Detectors by name: the registry behind ``skood bench`` and ``skood score``.

* :func:`make_detector` builds a detector from a spec such as ``"flow:q=0.05,n_blocks=4"``:
  skood's detectors, sklearn's peers and, when installed, PyOD's (behind :class:`PyODAdapter`).
  Every detector's ``score_samples`` is higher for more normal rows.
* :func:`make_pipeline_for` puts the shared preprocessing in front of it:
  ``Pipeline([InformativeColumns, StandardScaler, detector])``.

This module imports no part of the benchmark harness (:mod:`skood.bench`), so that resolving a
detector name costs only sklearn's imports.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from skood.base import BaseDetector, iter_slices

__all__ = [
    "QUICK_DETECTORS",
    "InformativeColumns",
    "PyODAdapter",
    "available_detectors",
    "make_detector",
    "make_pipeline_for",
    "parse_detector",
    "pyod_scores",
    "uses_classes",
]

# -- detectors ------------------------------------------------------------------------------------


class PyODAdapter(BaseDetector):
    """A PyOD model behind skood's convention: ``score_samples`` is higher for more normal rows.

    PyOD's ``decision_function`` is an anomaly score (higher = more anomalous), so it is negated.
    With ``contamination="auto"``, ``offset_`` is PyOD's own ``threshold_`` negated, so
    ``predict`` agrees with PyOD's labels; a float sets it as every skood detector does, from
    the training rows' scores. Models that re-estimate on the scored rows (ECOD, COPOD keep
    ``X_train``) are scored in small chunks so that the scored rows do not move their
    reference distribution. Rows labelled ``-1`` in ``y`` are left out of the fit.

    Parameters
    ----------
    model : PyOD estimator
        Cloned at ``fit``; a model with an ``n_features`` parameter (PyOD's DeepSVDD) is given
        the width of the rows it is fitted on.
    contamination : "auto" or float in (0, 0.5], default="auto"
        "auto": PyOD's threshold (from the model's own ``contamination``).

    Attributes
    ----------
    model_ : PyOD estimator
        The fitted clone of ``model``.
    offset_ : float
        ``predict`` is -1 where ``score_samples < offset_``.
    """

    _input_dtype = np.float64

    def __init__(self, model=None, *, contamination="auto"):
        self.model = model
        self.contamination = contamination

    @property
    def _natural_offset(self) -> float | None:
        model = getattr(self, "model_", None)
        return None if model is None else -float(model.threshold_)

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        model = clone(self.model)
        if "n_features" in model.get_params():  # DeepSVDD sizes its network at construction
            model.set_params(n_features=X.shape[1])
        self.model_ = model.fit(X)

    def _calibration_scores(self, X: np.ndarray) -> np.ndarray:
        return -np.asarray(self.model_.decision_scores_, dtype=np.float64)  # PyOD's, of X

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        return pyod_scores(self.model_, X)


def pyod_scores(model, X) -> np.ndarray:
    """The scores of a fitted PyOD model, or a Pipeline ending in one, higher = more normal.

    PyOD's ``decision_function`` is an anomaly score, so it is negated. ECOD and COPOD refit
    their empirical CDFs on training + scored rows, so a test set with many anomalies moves the
    reference and flips the scores (AUROC 0.50 instead of 0.996 on digits-ovr-0): rows are
    scored at most 1 % of the training size at a time (models that keep ``X_train``), which
    keeps each row judged against the training distribution.
    """
    last = model[-1] if hasattr(model, "steps") else model
    n_rows = _num_samples(X)
    n_train = getattr(last, "X_train", None)
    chunk = n_rows if n_train is None else max(1, len(n_train) // 100)
    parts = [model.decision_function(_safe_indexing(X, sl)) for sl in iter_slices(n_rows, chunk)]
    return -np.concatenate(parts).astype(np.float64) if parts else np.empty(0)


@dataclass(frozen=True)
class _Entry:
    family: str  # "skood", "sklearn" or "pyod"
    build: Callable[..., Any]  # build(params, random_state) -> estimator
    summary: str
    uses_classes: bool = False
    quick: dict = field(default_factory=dict)  # parameters --quick applies (user ones win)


def _paper_flow(params: dict, random_state):
    """``QuantileFlowDetector.paper(**params)`` (skood is imported only when it is built)."""
    from skood import QuantileFlowDetector

    return QuantileFlowDetector.paper(**{"random_state": random_state, **params})


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


def _ensemble(params: dict, random_state):
    """EnsembleDetector; ``members`` (a tuple of detector specs) builds its members by name."""
    from skood import EnsembleDetector

    params = dict(params)
    members = params.pop("members", None)
    if isinstance(members, str):
        members = (members,)
    if members is not None:
        members = [
            (spec.partition(":")[0].replace("-", "_") + f"_{i}", make_detector(spec))
            for i, spec in enumerate(members)
        ]
    params.setdefault("random_state", random_state)
    return EnsembleDetector(members, **params)


_REGISTRY: dict[str, _Entry] = {
    "flow": _Entry(
        "skood",
        _by_path("skood.QuantileFlowDetector"),
        "QuantileFlowDetector(): skood's CPU defaults (mean NLL, 4 blocks of 64 x 2)",
        quick={"max_epochs": 5, "min_steps": 100},
    ),
    "flow-mean": _Entry(
        "skood",
        _by_path("skood.QuantileFlowDetector", q="mean"),
        "QuantileFlowDetector, mean NLL (the paper's baseline; the default since 0.3)",
        quick={"max_epochs": 5, "min_steps": 100},
    ),
    "flow-q05": _Entry(
        "skood",
        _by_path("skood.QuantileFlowDetector", q=0.05),
        "QuantileFlowDetector, the paper's q=0.05 loss at skood's CPU size",
        quick={"max_epochs": 5, "min_steps": 100},
    ),
    "flow-paper": _Entry(
        "skood",
        _paper_flow,
        "QuantileFlowDetector.paper(): the paper's 8 blocks of 512 x 3 (GPU-sized)",
        quick={"max_epochs": 1, "min_steps": 20},
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
    "knn": _Entry(
        "skood",
        _by_path("skood.KNNDetector"),
        "KNNDetector (distance to the k-th nearest training inlier, exact, in torch)",
    ),
    "ensemble": _Entry(
        "skood",
        lambda params, random_state: _ensemble(params, random_state),
        "EnsembleDetector (default members; members=('gauss','knn:normalize=True') picks others)",
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
    "pyod-gmm": _Entry(
        "pyod",
        _by_path("pyod.models.gmm.GMM", pyod=True),
        "PyOD GMM (one full-covariance component)",
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
    """``{name: description}`` of the detectors :func:`make_detector` can build here.

    Examples
    --------
    >>> detectors = available_detectors()
    >>> "flow" in detectors, detectors["iforest"]
    (True, 'IsolationForest')
    """
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

    Examples
    --------
    >>> det = make_detector("flow:q=0.1,n_blocks=2", random_state=0)
    >>> type(det).__name__, det.q, det.n_blocks, det.random_state
    ('QuantileFlowDetector', 0.1, 2, 0)
    >>> make_detector("hsc", quick=True).max_epochs  # the --quick settings
    5
    >>> make_detector(("iforest", {"n_estimators": 50}), random_state=0).n_estimators
    50
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
        A column is kept when at least this many training rows (or all rows but one, on fewer
        rows) differ from its most frequent value.

    Attributes
    ----------
    support_ : ndarray of bool, shape (`n_features_in_`,)
        The columns kept.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> sparse = np.r_[np.ones(3), np.zeros(47)]  # only 3 rows differ from the mode
    >>> X = np.c_[rng.normal(size=50), np.zeros(50), sparse]
    >>> InformativeColumns().fit(X).support_
    array([ True, False, False])
    >>> InformativeColumns(min_rows=3).fit_transform(X).shape
    (50, 2)
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
    """The preprocessing every benchmark cell and ``skood score`` use, then ``detector``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import IsolationForest
    >>> pipe = make_pipeline_for(IsolationForest(random_state=0))
    >>> [name for name, _ in pipe.steps]
    ['columns', 'scale', 'detector']
    >>> X = np.c_[np.random.RandomState(0).normal(size=(100, 2)), np.zeros(100)]
    >>> pipe.fit(X).named_steps["columns"].support_  # the constant column is dropped
    array([ True,  True, False])
    >>> pipe.score_samples(X).shape
    (100,)
    """
    return Pipeline(
        [("columns", InformativeColumns()), ("scale", StandardScaler()), ("detector", detector)]
    )
