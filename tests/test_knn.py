"""KNNDetector: exact distances against sklearn's search, leave-one-out calibration, PyOD parity."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from skood import ConformalDetector, KNNDetector
from skood.metrics import auroc
from skood.nn.neighbors import knn_distances

RNG = np.random.RandomState(0)
X_TRAIN = RNG.normal(size=(400, 6))
X_TEST = np.r_[RNG.normal(size=(100, 6)), RNG.normal(3.0, 1.0, size=(20, 6))]


def _sklearn_distances(reference, queries, k):
    return NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(queries)[0]


@pytest.mark.parametrize("query_block, reference_block", [(1024, 8192), (7, 13), (1, 400)])
def test_distances_are_exact_whatever_the_blocks(query_block, reference_block):
    got = knn_distances(
        torch.from_numpy(X_TEST),
        torch.from_numpy(X_TRAIN),
        5,
        query_block=query_block,
        reference_block=reference_block,
    ).numpy()
    # float64 distances measured from the difference vectors: equal to sklearn's to rounding
    np.testing.assert_allclose(got, _sklearn_distances(X_TRAIN, X_TEST, 5), rtol=1e-12)


def test_a_near_tie_at_the_kth_neighbour_is_decided_in_float64():
    # Two rows 1 + 1e-9 and 1 away, in random directions: the same distance in float32. A search
    # that kept only its float32 top-k returned the farther one in 74 of 200 such draws.
    rng = np.random.RandomState(0)
    for _ in range(100):
        q = rng.normal(size=(1, 8))
        u, v = rng.normal(size=(2, 8))
        far, near = q + u / np.linalg.norm(u) * (1 + 1e-9), q + v / np.linalg.norm(v)
        reference = np.r_[far, near, q + rng.normal(5.0, 1.0, size=(30, 8))]
        got = knn_distances(torch.from_numpy(q), torch.from_numpy(reference), 1).numpy()
        assert got[0, 0] == pytest.approx(np.linalg.norm(near - q), rel=1e-12)


def test_leave_one_out_skips_exactly_the_row_itself_even_among_duplicates():
    reference = np.r_[X_TRAIN[:50], X_TRAIN[:10]]  # rows 50-59 duplicate rows 0-9
    got = knn_distances(
        torch.from_numpy(reference),
        torch.from_numpy(reference),
        3,
        query_block=8,
        reference_block=16,
        exclude_self=torch.arange(60),
    ).numpy()
    expected = _sklearn_distances(reference, reference, 4)[:, 1:]  # the first is the row itself
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.all(got[:10, 0] == 0) and np.all(got[50:, 0] == 0)  # the duplicate is a neighbour


@pytest.mark.parametrize("aggregate", ["kth", "mean"])
def test_scores_are_minus_the_kth_or_mean_distance(aggregate):
    det = KNNDetector(7, aggregate=aggregate).fit(X_TRAIN)
    distances = _sklearn_distances(X_TRAIN, X_TEST, 7)
    expected = -(distances[:, -1] if aggregate == "kth" else distances.mean(1))
    scores = det.score_samples(X_TEST)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_normalize_scores_the_directions_of_the_rows():
    det = KNNDetector(normalize=True).fit(X_TRAIN)
    unit = X_TRAIN / np.linalg.norm(X_TRAIN, axis=1, keepdims=True)
    np.testing.assert_allclose(det.reference_, unit)
    # a row scaled by 10 has the same direction: the same score
    np.testing.assert_allclose(det.score_samples(10 * X_TEST), det.score_samples(X_TEST))
    assert np.isfinite(det.score_samples(np.zeros((1, 6)))).all()  # a zero row stays zero


def test_offset_comes_from_leave_one_out_scores_of_the_training_rows():
    det = KNNDetector(5, aggregate="kth", contamination=0.1).fit(X_TRAIN)
    loo = -_sklearn_distances(X_TRAIN, X_TRAIN, 6)[:, -1]  # 6 neighbours, the first is itself
    np.testing.assert_allclose(det.calibration_scores_, np.sort(loo), rtol=1e-12)
    assert det.offset_ == pytest.approx(np.quantile(np.sort(loo), 0.1, method="weibull"))
    assert det.calibration_held_out_  # conservative for conformal p-values (see the docstring)
    # on new inliers the rate of flagged rows is near contamination
    new = RNG.normal(size=(4000, 6))
    assert 0.06 < np.mean(det.predict(new) == -1) < 0.14  # 0.127 here; 0.103 over 30 seeds


def test_many_rows_calibrate_on_a_seeded_subset(monkeypatch):
    monkeypatch.setattr(KNNDetector, "_MAX_CALIBRATION_ROWS", 100)
    a = KNNDetector(random_state=0).fit(X_TRAIN)
    b = KNNDetector(random_state=0).fit(X_TRAIN)
    assert a.calibration_scores_.size == 100
    np.testing.assert_array_equal(a.calibration_scores_, b.calibration_scores_)


def test_outlier_rows_are_left_out_of_the_reference():
    y = np.r_[np.ones(400), -np.ones(20)]
    det = KNNDetector().fit(np.r_[X_TRAIN, X_TEST[-20:]], y)
    assert det.reference_.shape == X_TRAIN.shape
    np.testing.assert_array_equal(det.score_samples(X_TEST), KNNDetector().fit(X_TRAIN).score_samples(X_TEST))


def test_too_few_rows_for_k_says_how_many_are_needed():
    with pytest.raises(ValueError, match="n_neighbors=5 needs at least 6 inlier rows"):
        KNNDetector().fit(X_TRAIN[:5])


def test_on_real_data_it_separates_malignant_from_benign():
    X, t = load_breast_cancer(return_X_y=True)
    benign, malignant = X[t == 1], X[t == 0]
    scaler = StandardScaler().fit(benign[:250])
    det = KNNDetector().fit(scaler.transform(benign[:250]))
    test = scaler.transform(np.r_[benign[250:], malignant])
    y = np.r_[np.ones(len(benign) - 250), -np.ones(len(malignant))]
    assert auroc(y, det.score_samples(test)) > 0.85


def test_conformal_reuses_the_leave_one_out_scores():
    conformal = ConformalDetector(KNNDetector(), alpha=0.1, random_state=0).fit(X_TRAIN)
    # every training row is in the reference: none was held out by the conformal wrapper
    assert conformal.estimator_.reference_.shape == X_TRAIN.shape
    np.testing.assert_array_equal(
        conformal.calibration_scores_, conformal.estimator_.calibration_scores_
    )
    p = conformal.score_samples(X_TEST)
    assert p.shape == (X_TEST.shape[0],) and p[-20:].max() < p[:100].mean()
    # valid: over training sets, the share of new inliers flagged is at most alpha (it is a
    # marginal guarantee; one set alone realised 12.5 % here)
    rates = []
    for seed in range(20):
        rng = np.random.RandomState(seed)
        fitted = ConformalDetector(KNNDetector(), alpha=0.1).fit(rng.normal(size=(200, 6)))
        rates.append(np.mean(fitted.predict(rng.normal(size=(1000, 6))) == -1))
    assert np.mean(rates) <= 0.1 + 0.01  # 2 standard errors of the mean over 20 sets


def test_matches_pyods_knn():
    pytest.importorskip("pyod")
    from pyod.models.knn import KNN

    for method, aggregate in (("largest", "kth"), ("mean", "mean")):
        pyod = KNN(n_neighbors=5, method=method).fit(X_TRAIN)
        ours = KNNDetector(5, aggregate=aggregate).fit(X_TRAIN)
        np.testing.assert_allclose(
            -ours.score_samples(X_TEST), pyod.decision_function(X_TEST), rtol=1e-10
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_model_fitted_on_a_gpu_scores_on_the_cpu():
    det = KNNDetector(device="cpu").fit(X_TRAIN)
    expected = det.score_samples(X_TEST)
    det.device_ = "cuda"  # as a model fitted on a GPU arrives on a machine without one
    np.testing.assert_array_equal(det.score_samples(X_TEST), expected)
    with pytest.raises(ValueError, match="sees no CUDA device"):  # a fit there is refused
        KNNDetector(device="cuda").fit(X_TRAIN)
