"""Shared fixtures: small, fast model settings and real (bundled) data."""

import numpy as np
import pytest
import torch

from skood.datasets import load_digits_ood, novelty_split

# A flow small enough that sklearn's ~50 estimator checks run in seconds.
TINY_FLOW = dict(
    n_blocks=2, hidden_size=16, n_hidden_layers=1, max_epochs=2, min_steps=0, batch_size=32
)


@pytest.fixture(autouse=True)
def _fast_torch():
    torch.set_num_threads(int(__import__("os").environ.get("SKOOD_TEST_THREADS", "2")))
    yield


@pytest.fixture(scope="session")
def digits_split():
    """Digits 0-4 inliers / 5-9 outliers, pixels standardised on the train rows, constant columns dropped."""
    X, y = load_digits_ood(range(5))
    X_train, y_train, X_test, y_test = novelty_split(X, y, train_fraction=0.5, random_state=0)
    keep = X_train.std(axis=0) > 0
    mean, std = X_train[:, keep].mean(0), X_train[:, keep].std(0)
    return (X_train[:, keep] - mean) / std, y_train, (X_test[:, keep] - mean) / std, y_test


@pytest.fixture
def rng():
    return np.random.RandomState(0)
