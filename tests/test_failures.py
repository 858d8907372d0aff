"""Failures are loud and leave nothing half-done: diverged training, Ctrl-C during fit."""

import signal
import time

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback, EarlyStopping

from skood import (
    AMADetector,
    ClassifierFeatures,
    CLIPZeroShot,
    DeepSADDetector,
    DeepSVDDDetector,
    GaussianMahalanobis,
    HSCDetector,
    ICEClassifier,
    OpenSetClassifier,
    QuantileFlowDetector,
    TrainingDiverged,
    VAEDetector,
)
from tests._settings import HSC_TINY, TINY_FLOW  # constants: DIVERGING and parametrize need them


def _data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5))
    return X, np.repeat([0, 1], 100)


# Each family, with the input or learning rate that made it return garbage silently on `main`:
# every score at the floor (-1e100) with offset_ at the floor too (so every row an inlier), all
# NaN features, or scores of -1e13 and beyond.
DIVERGING = {
    "flow, lr=1e6": (lambda: QuantileFlowDetector(**{**TINY_FLOW, "lr": 1e6}), 1, False),
    "Deep SVDD, x * 1e35": (lambda: DeepSVDDDetector(**HSC_TINY), 1e35, False),
    "Deep SAD, x * 1e35": (lambda: DeepSADDetector(**HSC_TINY), 1e35, False),
    "HSC, x * 1e35": (lambda: HSCDetector(**HSC_TINY), 1e35, False),
    "HSC, lr=1e6": (lambda: HSCDetector(**HSC_TINY, lr=1e6), 1, False),
    "ClassifierFeatures, lr=1e6": (
        lambda: ClassifierFeatures(hidden_sizes=(16,), max_epochs=3, lr=1e6, random_state=0),
        1,
        True,
    ),
    "VAE, lr=1e6": (
        lambda: VAEDetector(hidden_sizes=(8,), max_epochs=3, min_steps=0, lr=1e6, random_state=0),
        1,
        False,
    ),
    "AMA, lr=1e6": (
        lambda: AMADetector(hidden_sizes=(8,), max_epochs=3, lr=1e6, random_state=0),
        1,
        False,
    ),
    "ICE, lr=1e6": (
        lambda: ICEClassifier(hidden_sizes=(8,), max_epochs=3, lr=1e6, random_state=0),
        1,
        True,
    ),
}


@pytest.mark.parametrize("case", list(DIVERGING))
def test_diverged_training_raises_and_leaves_the_estimator_unfitted(case):
    make, scale, needs_y = DIVERGING[case]
    X, y = _data()
    est = make()
    with pytest.raises(TrainingDiverged, match=r"training diverged at epoch \d+ of \d+: the loss"):
        est.fit(X * scale, y if needs_y else None)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


def test_open_set_classifier_on_a_diverging_stage_1_raises():
    X, y = _data()
    stage1 = ClassifierFeatures(hidden_sizes=(16,), max_epochs=3, lr=1e6, random_state=0)
    with pytest.raises(TrainingDiverged, match="ClassifierFeatures: training diverged"):
        OpenSetClassifier(stage1, random_state=0).fit(X, y)


class _CtrlC(Callback):
    """Presses Ctrl-C (sends SIGINT to this process) at the start of epoch ``at``."""

    def __init__(self, at=2):
        self.at = at

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.at:
            signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize(
    "make",
    [
        lambda cb: QuantileFlowDetector(**{**TINY_FLOW, "max_epochs": 20}, callbacks=[cb]),
        lambda cb: VAEDetector(hidden_sizes=(8,), max_epochs=20, min_steps=0, callbacks=[cb]),
        lambda cb: HSCDetector(**{**HSC_TINY, "max_epochs": 20}, callbacks=[cb]),
    ],
    ids=["flow", "vae", "hsc"],
)
def test_ctrl_c_stops_fit_and_leaves_the_estimator_unfitted(make):
    X, _ = _data()
    est = make(_CtrlC())
    with pytest.raises(KeyboardInterrupt):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_a_refit_keeps_the_previous_model():
    X, _ = _data()
    est = QuantileFlowDetector(**{**TINY_FLOW, "max_epochs": 20}, random_state=0).fit(X)
    before = est.score_samples(X[:5])
    old_net = est.net_
    est.set_params(callbacks=[_CtrlC()])
    with pytest.raises(KeyboardInterrupt):
        est.fit(X * 2)
    assert est.net_ is old_net
    np.testing.assert_array_equal(est.score_samples(X[:5]), before)


def test_early_stopping_still_stops_quietly():
    """skorch's EarlyStopping also raises KeyboardInterrupt inside fit; that one is not Ctrl-C."""
    X, _ = _data()
    det = QuantileFlowDetector(
        **{**TINY_FLOW, "max_epochs": 50},
        callbacks=[EarlyStopping(patience=1, threshold=10.0, threshold_mode="abs")],
        random_state=0,
    ).fit(X)
    assert len(det.net_.history) < 50
    check_is_fitted(det)


# -- inputs that crashed deep inside numpy / torch, or misled -------------------------------------


@pytest.mark.parametrize("covariance", ["empirical", "ledoit_wolf"])
@pytest.mark.parametrize("scale", [1e160, 1e300])
def test_gaussian_on_values_whose_squares_overflow_says_so(covariance, scale):
    X, _ = _data()
    with pytest.raises(ValueError, match=r"squares overflow float64.*StandardScaler"):
        GaussianMahalanobis(covariance=covariance).fit(X * scale)


def test_gaussian_on_far_more_columns_than_rows_answers_at_once():
    X = np.random.RandomState(0).normal(size=(50, 20_000))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"20000 features but only 50 inlier rows.*PCA"):
        GaussianMahalanobis().fit(X)
    assert time.perf_counter() - start < 5  # on main: minutes building a 20000 x 20000 matrix


@pytest.mark.parametrize(
    "make",
    [
        lambda: QuantileFlowDetector(**TINY_FLOW, device="nonsense"),
        lambda: VAEDetector(device="gpu0"),
        lambda: ClassifierFeatures(device="nonsense"),
        lambda: CLIPZeroShot(precomputed=True, text_embeddings=np.eye(5)[:3], device="nonsense"),
    ],
)
def test_a_bad_device_is_named_before_any_work(make):
    X, y = _data()
    with pytest.raises(ValueError, match="is not a torch device"):
        make().fit(X, y)


@pytest.mark.parametrize(
    "make",
    [
        GaussianMahalanobis,
        lambda: QuantileFlowDetector(**TINY_FLOW),
        lambda: HSCDetector(**HSC_TINY),
        lambda: ClassifierFeatures(hidden_sizes=(8,), max_epochs=1),
    ],
)
def test_nan_labels_are_refused(make):
    X, y = _data()
    y = y.astype(float)
    y[7] = np.nan  # on main: a class of its own, or an inlier
    with pytest.raises(ValueError, match=r"y has 1 missing label\(s\).*row 7"):
        make().fit(X, y)


@pytest.mark.parametrize(
    "make",
    [
        GaussianMahalanobis,
        lambda: QuantileFlowDetector(**TINY_FLOW),
        lambda: ClassifierFeatures(hidden_sizes=(8,), max_epochs=1),
        lambda: ICEClassifier(hidden_sizes=(8,), max_epochs=1),
    ],
)
def test_a_string_column_is_named(make):
    pd = pytest.importorskip("pandas")
    X, y = _data()
    frame = pd.DataFrame(X, columns=list("abcde")).assign(city=["Oslo"] * len(X))
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['city'\]"):
        make().fit(frame, y)


def test_clip_refuses_zero_norm_embeddings_and_scale_does_not_matter():
    text = np.random.RandomState(0).normal(size=(3, 4))
    X = np.random.RandomState(1).normal(size=(6, 4))
    det = CLIPZeroShot(precomputed=True, text_embeddings=text).fit(X)
    for scale in (1e-300, 1e300):  # on main: every row log(2/3), an inlier
        np.testing.assert_allclose(det.score_samples(X * scale), det.score_samples(X))
    with pytest.raises(ValueError, match="zero norm"):
        det.score_samples(np.vstack([X, np.zeros(4)]))
    with pytest.raises(ValueError, match="zero norm"):
        CLIPZeroShot(precomputed=True, text_embeddings=np.zeros((3, 4))).fit(X)


@pytest.mark.parametrize("widths", [(0,), (16.5,), [True], "64", (64, -1)])
@pytest.mark.parametrize(
    "make", [HSCDetector, QuantileFlowDetector, VAEDetector, AMADetector, ClassifierFeatures]
)
def test_hidden_sizes_must_be_positive_ints(make, widths):
    X, y = _data()
    with pytest.raises(InvalidParameterError, match=r"hidden_sizes.*tuple of positive ints"):
        make(hidden_sizes=widths).fit(X, y)


def test_a_cnn_needs_a_feature_width():
    X = np.random.RandomState(0).rand(20, 4)
    with pytest.raises(ValueError, match="last entry of hidden_sizes, which is empty"):
        ClassifierFeatures(image_shape=(1, 2, 2), hidden_sizes=()).fit(X, np.repeat([0, 1], 10))
