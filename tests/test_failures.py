"""Failures are loud and leave nothing half-done: diverged training, Ctrl-C during fit."""

import signal

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback, EarlyStopping

from skood import (
    AMADetector,
    ClassifierFeatures,
    DeepSADDetector,
    DeepSVDDDetector,
    HSCDetector,
    ICEClassifier,
    OpenSetClassifier,
    QuantileFlowDetector,
    TrainingDiverged,
    VAEDetector,
)
from tests.conftest import TINY_FLOW

_OE = dict(hidden_sizes=(16,), max_epochs=3, min_steps=0, random_state=0)


def _data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5))
    return X, np.repeat([0, 1], 100)


# Each family, with the input or learning rate that made it return garbage silently on `main`:
# every score at the floor (-1e100) with offset_ at the floor too (so every row an inlier), all
# NaN features, or scores of -1e13 and beyond.
DIVERGING = {
    "flow, lr=1e6": (lambda: QuantileFlowDetector(**{**TINY_FLOW, "lr": 1e6}), 1, False),
    "Deep SVDD, x * 1e35": (lambda: DeepSVDDDetector(**_OE), 1e35, False),
    "Deep SAD, x * 1e35": (lambda: DeepSADDetector(**_OE), 1e35, False),
    "HSC, x * 1e35": (lambda: HSCDetector(**_OE), 1e35, False),
    "HSC, lr=1e6": (lambda: HSCDetector(**_OE, lr=1e6), 1, False),
    "ClassifierFeatures, lr=1e6": (
        lambda: ClassifierFeatures(hidden_sizes=(16,), max_epochs=3, lr=1e6, random_state=0),
        1,
        True,
    ),
    "VAE, lr=1e6": (
        lambda: VAEDetector(hidden_dims=(8,), max_epochs=3, min_steps=0, lr=1e6, random_state=0),
        1,
        False,
    ),
    "AMA, lr=1e6": (
        lambda: AMADetector(hidden_dims=(8,), max_epochs=3, lr=1e6, random_state=0),
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
        lambda cb: VAEDetector(hidden_dims=(8,), max_epochs=20, min_steps=0, callbacks=[cb]),
        lambda cb: HSCDetector(**{**_OE, "max_epochs": 20}, callbacks=[cb]),
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
