"""Fixtures and hooks only: the settings and the data the test modules share.

Nothing imports this module. Assertion helpers are in ``tests/_helpers.py``; settings that
``@pytest.mark.parametrize`` arguments or module-level estimator lists need while pytest collects
are constants in ``tests/_settings.py`` (a fixture does not exist yet at that point).

Settings are session-scoped and read-only (``MappingProxyType``): pass them as ``**ice_small`` and
derive a variant with ``{**ice_small, "max_epochs": 10}``. Data fixtures keep the scope they had
in their test module (``module``: each test module gets its own arrays); ``digits_xy``, which the
fixtures below only read, is loaded once per session. No test writes into these arrays.
"""

import os
from types import MappingProxyType

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skood.datasets import load_digits_ood, novelty_split
from tests._settings import TINY_FLOW

# -- hooks -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _model_signing_key(monkeypatch):
    """`skood convert` checks old signed model files with this key, not the developer's own."""
    monkeypatch.setenv("SKOOD_MODEL_KEY", "skood-tests")


@pytest.fixture(autouse=True)
def _fast_torch():
    torch.set_num_threads(int(os.environ.get("SKOOD_TEST_THREADS", "2")))
    yield


# -- small estimator settings (only test bodies and fixtures use these) -------------------------


@pytest.fixture(scope="session")
def flow_tiny():
    """QuantileFlowDetector, just runs: ``tests._settings.TINY_FLOW``, as a fixture."""
    return MappingProxyType(TINY_FLOW)


@pytest.fixture(scope="session")
def ama_small():
    """AMADetector trained enough to beat its untrained networks on digit 0 (test_ama.py)."""
    return MappingProxyType(
        dict(
            hidden_sizes=(64, 32),
            latent_dim=8,
            batch_size=64,
            max_epochs=30,
            n_critic=2,
            random_state=0,
        )
    )


@pytest.fixture(scope="session")
def ice_small():
    """ICEClassifier trained enough to classify digits 0-4 and reject 8-9 (test_ice.py)."""
    return MappingProxyType(
        dict(hidden_sizes=(64,), feature_dim=16, batch_size=64, max_epochs=30, random_state=0)
    )


@pytest.fixture(scope="session")
def vae_small():
    """VAEDetector, a few epochs of a 2-d latent (test_rose.py)."""
    return MappingProxyType(
        dict(latent_dim=2, hidden_sizes=(16,), max_epochs=3, min_steps=0, random_state=0)
    )


# -- data ------------------------------------------------------------------------------------------


@pytest.fixture
def rng():
    return np.random.RandomState(0)


@pytest.fixture(scope="session")
def digits_xy():
    """sklearn's 8x8 digits as loaded: ``X`` (1797, 64) pixels in [0, 16], ``digit`` 0-9."""
    return load_digits(return_X_y=True)


@pytest.fixture(scope="session")
def digits_split():
    """Digits 0-4 inliers / 5-9 outliers, pixels standardised on the train rows, constant columns dropped."""
    X, y = load_digits_ood(range(5))
    X_train, y_train, X_test, y_test = novelty_split(X, y, train_fraction=0.5, random_state=0)
    keep = X_train.std(axis=0) > 0
    mean, std = X_train[:, keep].mean(0), X_train[:, keep].std(0)
    return (X_train[:, keep] - mean) / std, y_train, (X_test[:, keep] - mean) / std, y_test


@pytest.fixture(scope="module")
def digits6():
    """Digits 0-5 are the inlier classes, 6-9 the outliers (``y == -1``); pixels / 16."""
    X, y = load_digits_ood(range(6))
    return X / 16.0, y


@pytest.fixture(scope="module")
def digits6_split(digits6):
    """``digits6`` novelty-split: ``X_train, y_train`` inliers only, outliers in the test half."""
    return novelty_split(*digits6, random_state=0)


@pytest.fixture(scope="module")
def digits6_stratified(digits6):
    """``X, y, train, test``: ``digits6`` with a stratified 70/30 split of the inlier rows; the
    outlier rows (6-9) are all in ``test``."""
    X, y = digits6
    inliers = np.flatnonzero(y != -1)
    train, test = train_test_split(inliers, test_size=0.3, stratify=y[inliers], random_state=0)
    test = np.concatenate([test, np.flatnonzero(y == -1)])
    return X, y, train, test


@pytest.fixture(scope="module")
def digits_one_class(digits_xy):
    """Digit 0 normal (70 % to train); test: the other 30 % of 0s against digits 1-9.

    ``X_train, X_test, y_test`` in float32, pixels scaled to [-1, 1].
    """
    X, d = digits_xy
    X = (X / 8.0 - 1.0).astype(np.float32)  # [-1, 1]
    rng = np.random.RandomState(0)
    zeros = rng.permutation(np.flatnonzero(d == 0))
    n_train = int(0.7 * zeros.size)
    test = np.r_[zeros[n_train:], rng.permutation(np.flatnonzero(d != 0))[:300]]
    return X[zeros[:n_train]], X[test], np.where(d[test] == 0, 1, -1)


@pytest.fixture(scope="module")
def digits_ovr():
    """Digit 0 normal; OE from digits 1-4; test anomalies digits 5-9 (disjoint, as in the paper)."""
    X, digit = load_digits_ood(range(10))
    X = X / 16.0
    rng = np.random.RandomState(0)
    normal = rng.permutation(np.flatnonzero(digit == 0))
    oe = rng.permutation(np.flatnonzero(np.isin(digit, [1, 2, 3, 4])))[:64]
    test_anom = np.flatnonzero(digit >= 5)
    X_train = np.vstack([X[normal[:90]], X[oe]])
    y_train = np.r_[np.ones(90), -np.ones(len(oe))]
    X_test = np.vstack([X[normal[90:]], X[test_anom]])
    y_test = np.r_[np.ones(len(normal) - 90), -np.ones(len(test_anom))]
    return X_train, y_train, X_test, y_test


@pytest.fixture(scope="module")
def digits_aux(digits_xy):
    """ID digits 0-4 (70/30 split), auxiliary outliers 5-7, held-out OOD digits 8-9.

    A dict: ``X_fit, y_fit`` (the ID train rows, then the auxiliary rows labelled -1),
    ``X_te, y_te`` (ID test rows) and ``X_ood``; float32 pixels / 16.
    """
    X, d = digits_xy
    X = (X / 16.0).astype(np.float32)
    in_rows = d < 5
    X_tr, X_te, y_tr, y_te = train_test_split(
        X[in_rows], d[in_rows], test_size=0.3, stratify=d[in_rows], random_state=0
    )
    X_aux = X[(d >= 5) & (d <= 7)]
    X_ood = X[d >= 8]
    X_fit = np.vstack([X_tr, X_aux])
    y_fit = np.r_[y_tr, -np.ones(len(X_aux), dtype=int)]
    return dict(X_fit=X_fit, y_fit=y_fit, X_te=X_te, y_te=y_te, X_ood=X_ood)


@pytest.fixture(scope="module")
def digits_dequantised(digits_xy):
    """``X_train`` (1000 rows), ``X_test`` (300): (pixels + U(0, 1) noise) / 17, float32."""
    X, _ = digits_xy
    rng = np.random.RandomState(0)
    X = ((X + rng.uniform(size=X.shape)) / 17.0).astype(np.float32)  # dequantised to (0, 1)
    return X[:1000], X[1000:1300]
