"""Loaders return skood's label convention; the novelty split follows ADBench's protocol."""

from pathlib import Path

import numpy as np
import pytest

from skood.datasets import (
    from_anomaly_labels,
    list_adbench,
    load_adbench,
    load_digits_ood,
    novelty_split,
)

ADBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "adbench"


def test_digits_ood():
    X, y = load_digits_ood(range(5))
    assert X.shape == (1797, 64)
    assert set(np.unique(y)) == {-1, 0, 1, 2, 3, 4}


def test_from_anomaly_labels():
    np.testing.assert_array_equal(from_anomaly_labels([0, 1, 0]), [1, -1, 1])
    with pytest.raises(ValueError, match="1 = anomaly"):
        from_anomaly_labels([0, 2])


def test_novelty_split_trains_on_inliers_only(rng):
    y = np.r_[np.zeros(100), -np.ones(20)]
    X = rng.normal(size=(120, 2))
    X_tr, y_tr, X_te, y_te = novelty_split(X, y, train_fraction=0.7, random_state=0)
    assert len(X_tr) == 70 and (y_tr != -1).all()
    assert (y_te == -1).sum() == 20 and len(X_te) == 50
    with pytest.raises(ValueError, match="train_fraction"):
        novelty_split(X, y, train_fraction=1.0)


def test_load_adbench_file(tmp_path):
    np.savez(tmp_path / "toy.npz", X=np.ones((3, 2)), y=np.array([0, 1, 0]))
    _, y = load_adbench(tmp_path / "toy.npz")
    np.testing.assert_array_equal(y, [1, -1, 1])
    assert list_adbench(tmp_path) == [tmp_path / "toy.npz"]
    np.savez(tmp_path / "bad.npz", data=np.ones(3))
    with pytest.raises(ValueError, match="not ADBench format"):
        load_adbench(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        list_adbench(tmp_path / "nowhere")


@pytest.mark.skipif(not ADBENCH.is_dir(), reason="shared ADBench data not beside the repo")
def test_shared_adbench_sets_load():
    X, y = load_adbench(ADBENCH / "29_Pima.npz")
    assert X.shape[0] == y.shape[0] and set(np.unique(y)) == {-1, 1}
