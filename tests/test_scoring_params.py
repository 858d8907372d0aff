"""Every parameter that ``score_samples`` reads is declared, so a stale ``offset_`` is refused.

A detector's ``offset_`` is set from the scores its parameters gave at fit time. Here every
parameter of every detector skood exports is set, on a fitted model, to each of a few other valid
values (:data:`ALTERNATIVES`):

* where a value changes the scores (or they can no longer be computed), the parameter must be
  declared in ``_scoring_params`` (:class:`skood.base.CalibratedThresholdMixin`), and every
  method that thresholds must refuse with a ``ValueError`` that says to fit again;
* where no value changes the scores (batch sizes, devices, training-only settings), the
  parameter must not be declared, and thresholding must keep working: refusing would be a
  false alarm.

A new detector, or a new parameter without an entry in :data:`ALTERNATIVES`, fails here until
it is added.
"""

import copy
import functools
import inspect

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from torch import nn

import skood
import skood.registry
from skood import (
    AMADetector,
    ClassifierFeatures,
    CLIPZeroShot,
    ConformalDetector,
    DeepSADDetector,
    DeepSVDDDetector,
    EnsembleDetector,
    GaussianMahalanobis,
    HSCDetector,
    ICEClassifier,
    KNNDetector,
    OEClassifier,
    OpenSetClassifier,
    QuantileFlowDetector,
    ROSEScorer,
    VAEDetector,
)
from skood.registry import PyODAdapter
from tests._helpers import FLOAT32_RTOL, StandInCLIP, hash_tokenizer
from tests._settings import AMA_CHECKS, HSC_CHECKS, STAGE1_CHECKS, TINY_FLOW, VAE_CHECKS

try:
    from pyod.models.knn import KNN
except ImportError:
    KNN = None

# -- data -----------------------------------------------------------------------------------------

X, _classes = make_blobs(n_samples=150, centers=3, n_features=4, random_state=0)
Y_CLASSES = np.where(np.arange(150) % 10 == 0, -1, _classes)  # three classes, -1 for outliers
Y_OE = np.where(Y_CLASSES == -1, -1, 1)  # outlier-exposure rows for HSC, OE, Deep SAD
X_POSITIVE = np.abs(X) + 0.5  # CLIP embeddings need a non-zero norm
X_IMAGES = np.random.RandomState(0).uniform(size=(40, 64)).astype(np.float32)  # 1 x 8 x 8


def _other_tokenizer(texts):
    return hash_tokenizer(texts) % 7


def _no_normalisation(images):  # a CLIP preprocess: grey to RGB, no mean / std
    return images.expand(-1, 3, -1, -1)


def _doubled_log_prob(module, x):  # ROSE's log_prob: twice the gradients
    return 2.0 * module.log_prob(x)


def _noise(batch):  # an augment
    return batch + 0.01


def _linear_network(n_features):  # a module factory
    return nn.Linear(n_features, 4)


# -- the detectors, fitted small ------------------------------------------------------------------

#: config id -> (a factory of the unfitted detector, fit arguments, rows to score).
CONFIGS = {
    "GaussianMahalanobis": (lambda: GaussianMahalanobis(random_state=0), (X,), X),
    "GaussianMahalanobis-classes": (
        lambda: GaussianMahalanobis(random_state=0),
        (X, Y_CLASSES),
        X,
    ),
    "KNNDetector": (lambda: KNNDetector(random_state=0), (X,), X),
    "EnsembleDetector": (lambda: EnsembleDetector(random_state=0), (X,), X),
    "HSCDetector": (lambda: HSCDetector(**HSC_CHECKS), (X, Y_OE), X),
    "OEClassifier": (lambda: OEClassifier(**HSC_CHECKS), (X, Y_OE), X),
    "DeepSADDetector": (lambda: DeepSADDetector(**HSC_CHECKS), (X, Y_OE), X),
    "DeepSVDDDetector": (lambda: DeepSVDDDetector(**HSC_CHECKS), (X,), X),
    "QuantileFlowDetector": (lambda: QuantileFlowDetector(**TINY_FLOW, random_state=0), (X,), X),
    "VAEDetector": (lambda: VAEDetector(**VAE_CHECKS), (X,), X),
    "ROSEScorer": (lambda: ROSEScorer(VAEDetector(**VAE_CHECKS), random_state=0), (X,), X[:40]),
    "AMADetector": (lambda: AMADetector(**AMA_CHECKS), (X,), X),
    "ICEClassifier": (
        lambda: ICEClassifier(hidden_sizes=(16,), feature_dim=4, max_epochs=5, random_state=0),
        (X, Y_CLASSES),
        X,
    ),
    # ood_score="auto" reads head and, for the linear head, loss.
    "ICEClassifier-linear": (
        lambda: ICEClassifier(
            "linear", "oe", hidden_sizes=(16,), feature_dim=4, max_epochs=5, random_state=0
        ),
        (X, Y_CLASSES),
        X,
    ),
    "OpenSetClassifier": (
        lambda: OpenSetClassifier(
            ClassifierFeatures(**STAGE1_CHECKS), detector="energy", random_state=0
        ),
        (X, Y_CLASSES),
        X,
    ),
    # A fitted detector as the gate: the temperature is not read.
    "OpenSetClassifier-density": (
        lambda: OpenSetClassifier(
            ClassifierFeatures(**STAGE1_CHECKS),
            detector=GaussianMahalanobis(offset_cv=None),
            random_state=0,
        ),
        (X, Y_CLASSES),
        X,
    ),
    "CLIPZeroShot": (
        lambda: CLIPZeroShot(
            precomputed=True,
            text_embeddings=np.random.RandomState(0).normal(size=(3, 4)),
            contamination=0.1,
        ),
        (X_POSITIVE,),
        X_POSITIVE,
    ),
    # Images through an encoder: image_shape and preprocess are read too.
    "CLIPZeroShot-encoder": (
        lambda: CLIPZeroShot(
            ["cat", "dog"],
            encoder=StandInCLIP().eval(),
            tokenizer=hash_tokenizer,
            image_shape=(1, 8, 8),
            contamination=0.1,
        ),
        (X_IMAGES,),
        X_IMAGES,
    ),
    "ConformalDetector": (
        lambda: ConformalDetector(
            GaussianMahalanobis(),
            alpha=0.2,
            calibration_conditional="simes",
            random_state=0,
        ),
        (X,),
        X,
    ),
}
if KNN is not None:  # PyOD is optional: skood.registry's adapter is checked where it is
    CONFIGS["PyODAdapter"] = (lambda: PyODAdapter(KNN()), (X,), X)

#: Other valid values of each parameter, by name; ``"Class.name"`` or ``"config-id.name"``
#: entries take precedence. Every value that differs from the fitted one is tried.
ALTERNATIVES = {
    # shared by the torch estimators
    "batch_size": (16, 8),
    "callbacks": ([],),
    "device": ("cpu", "auto"),
    "inference_batch_size": (7, 13),
    "lr": (0.01,),
    "lr_schedule": ((0.5,),),
    "max_epochs": (3, 4),
    "min_steps": (5, 0),
    "n_threads": (2, 1),
    "random_state": (1, 2),
    "verbose": (1, 0),
    "weight_decay": (0.1,),
    # the threshold and the held-out rows
    "contamination": (0.2, 0.1),
    "validation_fraction": (0.3, 0.1),
    # networks
    "augment": (_noise,),
    "feature_dim": (3, 5),
    "hidden_sizes": ((8,), (4,)),
    "image_shape": ((1, 2, 2),),
    "CLIPZeroShot-encoder.image_shape": ((1, 4, 16),),
    "latent_dim": (3,),
    "module": (_linear_network,),
    "AMADetector.module": ("mlp",),
    "VAEDetector.module": ("mlp",),
    # GaussianMahalanobis
    "aggregate": ("logsumexp", "max"),
    "class_conditional": (False, True),
    "covariance": ("ledoit_wolf", "oas"),
    "offset_cv": (None, 3),
    "reg_covar": (1e-3,),
    # EnsembleDetector
    "combine": ("pvalue", "zscore"),
    "estimators": ([("knn", KNNDetector(3))],),
    "n_jobs": (2, 1),
    # KNNDetector
    "KNNDetector.aggregate": ("mean", "kth"),
    "n_neighbors": (3, 7),
    "normalize": (True, False),
    # the outlier-exposure family
    "center_eps": (0.2,),
    "eta": (2.0,),
    "gamma": (1.0,),
    "OEClassifier.alpha": (0.25,),
    "OEClassifier.loss": ("focal", "bce"),
    "radial": ("squared", "l1"),
    # QuantileFlowDetector
    "actnorm": (False, True),
    "adam_eps": (1e-8,),
    "betas": ((0.9, 0.999),),
    "clamp": (1.0,),
    "constant_scale": (0.2,),
    "coupling": ("realnvp",),
    "dequantize": (True, False),
    "drop_last": (False, True),
    "dropout": (0.1,),
    "grad_clip": (None, 5.0),
    "n_blocks": (3,),
    "noise_std": (0.1,),
    "permutation": ("reverse",),
    "q": (0.1, "mean"),
    "shuffle": (False, True),
    # VAEDetector
    "bound": ("iwae", "elbo"),
    "conv_width": (16,),
    "min_scale": (1e-2,),
    "n_mc_samples": (2,),
    # ROSEScorer
    "ROSEScorer.estimator": (VAEDetector(latent_dim=3),),
    "beta": (0.5, -0.5),
    "clip": (False, True),
    "damping": (1e-3,),
    "fisher": ("diag", "ekfac"),
    "gradients": ("loop", "vmap"),
    "layers": (["encoder.*"],),
    "log_prob": (_doubled_log_prob,),
    "n_fisher_samples": (10,),
    "p": (2.0, 1.0),
    "prefit": (True, False),
    # AMADetector
    "AMADetector.ood_score": ("R", "recon"),
    "interp_update_generator": (False, True),
    "lambda_gp": (5.0,),
    "lambda_inter": (0.25,),
    "lambda_neg": (2.0,),
    "lambda_rec": (1.0,),
    "lambda_reg": (0.5,),
    "mirrored": (False, True),
    "n_critic": (2, 3),
    "n_interp": (2, 4),
    "neg_delta": (0.25,),
    "neg_direction": ("outward", None),
    "neg_fraction": (0.2,),
    "neg_warmup": (0.2,),
    "spectral_norm": (False, True),
    # ICEClassifier
    "ICEClassifier.loss": ("ce", "energy", "oe"),
    "ICEClassifier.ood_score": ("energy", "msp", "max_logit"),
    "center_init": ("random", "data"),
    "diag_eps": (1e-3,),
    "energy_margins": ((-20.0, -5.0),),
    "fine_tune": (nn.Identity(),),
    "head": ("linear", "gaussian"),
    "momentum": (0.5,),
    "ood_eps": (1e-5,),
    "ood_weight": (1.0,),
    "optimizer": ("sgd", "adam"),
    "outlier_batch_ratio": (1.0,),
    # OpenSetClassifier
    "detector": ("msp", GaussianMahalanobis(offset_cv=None)),
    "features": (ClassifierFeatures(hidden_sizes=(4,)),),
    "temperature": (3.0, 0.5),
    # CLIPZeroShot
    "anomaly_prompt": ("an image of something",),
    "checkpoint": ("other.pt",),
    "class_names": (["cat", "cow"],),
    "encoder": (StandInCLIP(seed=1).eval(),),
    "logit_scale": (10.0,),
    "precomputed": (False, True),
    "preprocess": (_no_normalisation,),
    "prompt_template": ("an image of a {}",),
    "text_embeddings": (np.eye(4)[:3] + 0.2,),
    "tokenizer": (_other_tokenizer,),
    # ConformalDetector
    "ConformalDetector.alpha": (0.3, 0.25),
    "ConformalDetector.estimator": (GaussianMahalanobis(covariance="oas"),),
    "calibration_conditional": (None, "dkwm"),
    "calibration_fraction": (0.5,),
    "delta": (0.2, 0.05),
    "fdr": (True, "storey"),
    "labeling_budget": (3,),
    "method": ("cross",),
    "n_splits": (3,),
    # PyODAdapter
    "model": (KNN(n_neighbors=3) if KNN else None,),
}


# -- the checks -----------------------------------------------------------------------------------


def _class(config: str) -> type:
    name = config.split("-")[0]
    return PyODAdapter if name == "PyODAdapter" else getattr(skood, name)


def _cases():
    for config in CONFIGS:
        for param in _class(config)._get_param_names():
            yield pytest.param(config, param, id=f"{config}-{param}")


@functools.cache
def _fitted(config: str):
    """The fitted detector of ``config`` and the rows it scores (fitted once per session)."""
    factory, fit_args, rows = CONFIGS[config]
    return factory().fit(*fit_args), rows


def _alternatives(estimator, config: str, param: str) -> list:
    name = type(estimator).__name__
    for key in (f"{config}.{param}", f"{name}.{param}", param):
        if key in ALTERNATIVES:
            now = estimator.get_params(deep=False)[param]
            others = [v for v in ALTERNATIVES[key] if not _same(v, now)]
            assert others, f"ALTERNATIVES[{key!r}] holds only {name}'s fitted value {now!r}"
            return others
    raise AssertionError(f"{name}.{param} has no entry in ALTERNATIVES: add other valid values")


def _same(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return type(a) is type(b) and a == b


def _thresholding(estimator) -> list:
    """The methods that compare scores with ``offset_``: a gate's, or a detector's."""
    if hasattr(estimator, "predict_outlier"):  # a classifier: predict is the classifier's
        names = ("predict_outlier", "predict_open_set", "outlier_decision_function")
    else:
        names = ("predict", "decision_function")
    return [getattr(estimator, n) for n in names]


def _changes(estimator, rows, before) -> bool:
    """Whether ``estimator`` scores ``rows`` otherwise than ``before``, beyond float32 rounding
    (another batch size moves a float32 network's scores by that much)."""
    try:
        after = estimator.score_samples(rows)
    except Exception:  # the score reads the parameter, and cannot be computed with its value
        return True
    scale = float(np.max(np.abs(before)))
    return not np.allclose(after, before, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL * scale)


def _detector_classes() -> set[str]:
    """The classes skood and skood.registry export that score rows (``score_samples``)."""
    exported = [getattr(skood, n) for n in skood.__all__ if n != "__version__"]
    exported += [getattr(skood.registry, n) for n in skood.registry.__all__]
    return {c.__name__ for c in exported if inspect.isclass(c) and hasattr(c, "score_samples")}


def test_every_exported_detector_is_checked():
    checked = {_class(config).__name__ for config in CONFIGS}
    missing = _detector_classes() - checked - ({"PyODAdapter"} if KNN is None else set())
    assert not missing, f"add a fitted configuration of {sorted(missing)} to CONFIGS"


@pytest.mark.filterwarnings("ignore::UserWarning")  # fit-time advice (no OE rows, few rows)
@pytest.mark.parametrize(("config", "param"), list(_cases()))
def test_a_parameter_set_after_fit_is_declared_exactly_when_it_changes_the_scores(config, param):
    fitted, rows = _fitted(config)
    name = type(fitted).__name__
    before = fitted.score_samples(rows)
    declared = param in getattr(fitted, "_scoring_params", ())
    changed_by = []  # the values that change the scores
    for value in _alternatives(fitted, config, param):
        estimator = copy.deepcopy(fitted).set_params(**{param: value})
        if hasattr(estimator, "_parameter_constraints"):
            estimator._validate_params()  # the table holds valid values only
        if _changes(estimator, rows, before):
            changed_by.append(value)
        if declared:
            for method in _thresholding(estimator):
                with pytest.raises(ValueError, match="fit again"):
                    method(rows)
            continue
        assert not changed_by, (
            f"{name}.score_samples reads {param} ({param}={value!r} changes the scores or "
            "makes them fail), but _scoring_params does not declare it: predict compares the "
            "new scores with an offset_ set from the old ones"
        )
        for method in _thresholding(estimator):  # no false alarm
            method(rows)
    if declared:
        assert changed_by, (
            f"{name} declares {param} in _scoring_params, but no other value of it changes the "
            "scores: refusing to threshold after set_params is a false alarm"
        )
