"""Shared fixtures: small, fast model settings and real (bundled) data."""

import numpy as np
import pytest
import torch

from skood.datasets import load_digits_ood, novelty_split

# A flow small enough that sklearn's ~50 estimator checks run in seconds.
TINY_FLOW = dict(
    n_blocks=2, hidden_size=16, n_hidden_layers=1, max_epochs=2, min_steps=0, batch_size=32
)


#: Relative tolerance for float32 results computed another way: another batch size, another CPU
#: kernel (``ATEN_CPU_CAPABILITY=default|avx2|avx512``) or another thread count. Such a change
#: reorders float32 sums, so each output moves by a few float32 epsilons (1.2e-7) per layer,
#: times the width it sums over; through a network, a log-density, a Fisher quadratic form
#: (ROSE) or a softmax over 100 x cosine (CLIP) that reaches ~1e-5 to 1e-4 of the scores'
#: magnitude (measured: ICE 1.7e-5, ROSE 1.4e-4, AMA 6.6e-7 on a 2-core AMD EPYC). Exact
#: equality stays for the same computation run twice (same batch size, device and threads).
FLOAT32_RTOL = 1e-4


def assert_float32_close(actual, desired, rtol: float = FLOAT32_RTOL) -> None:
    """``actual == desired`` up to float32 rounding, relative to the largest ``|desired|``.

    The rounding error of a float32 sum scales with the magnitude of what is summed, not with
    the result, so a row whose score is near zero gets the same absolute slack as the others.
    """
    actual, desired = np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64)
    scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


@pytest.fixture(autouse=True)
def _model_signing_key(monkeypatch):
    """`skood score --save` signs with this key, not with the developer's own."""
    monkeypatch.setenv("SKOOD_MODEL_KEY", "skood-tests")


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
