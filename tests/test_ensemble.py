"""EnsembleDetector: members standardised by their calibration scores, fitted in parallel."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

import skood
from skood import ConformalDetector, EnsembleDetector, GaussianMahalanobis, KNNDetector
from skood.ensemble import default_members
from skood.metrics import auroc
from tests._settings import TINY_FLOW

RNG = np.random.RandomState(0)
X_TRAIN = RNG.normal(size=(300, 4))
X_TEST = np.r_[RNG.normal(size=(80, 4)), RNG.normal(4.0, 1.0, size=(20, 4))]


def _two(**params):
    members = [("gaussian", GaussianMahalanobis()), ("knn", KNNDetector())]
    return EnsembleDetector(members, random_state=0, **params)


def test_zscore_is_the_mean_of_members_standardised_by_their_own_calibration_scores():
    ens = _two().fit(X_TRAIN)
    expected = []
    for member in ens.estimators_:
        cal = member.calibration_scores_
        q75, q25 = np.quantile(cal, [0.75, 0.25])
        expected.append((member.score_samples(X_TEST) - np.median(cal)) / ((q75 - q25) / 1.349))
    np.testing.assert_allclose(ens.score_samples(X_TEST), np.mean(expected, axis=0), rtol=1e-12)
    assert ens.calibration_held_out_  # every member brought its own calibration scores


def test_pvalue_is_the_mean_log_conformal_p_value():
    ens = _two(combine="pvalue").fit(X_TRAIN)
    expected = []
    for member in ens.estimators_:
        cal = member.calibration_scores_
        s = member.score_samples(X_TEST)
        expected.append(np.log((1 + (cal[None, :] <= s[:, None]).sum(1)) / (cal.size + 1)))
    np.testing.assert_allclose(ens.score_samples(X_TEST), np.mean(expected, axis=0))


def test_offset_comes_from_rows_no_member_trained_on():
    ens = _two(validation_fraction=0.2).fit(X_TRAIN)
    knn = ens.named_estimators_["knn"]
    assert knn.reference_.shape[0] == 240  # 60 of the 300 rows held out by the ensemble
    trained = {tuple(r) for r in knn.reference_}
    held = np.array([r for r in X_TRAIN if tuple(r) not in trained])
    np.testing.assert_allclose(ens.calibration_scores_, np.sort(ens.score_samples(held)))
    assert ens.offset_ == pytest.approx(np.quantile(ens.calibration_scores_, 0.05, method="weibull"))


def test_a_member_without_calibration_scores_is_scaled_on_the_held_out_rows():
    ens = EnsembleDetector(
        [("iforest", IsolationForest(random_state=0)), ("knn", KNNDetector())], random_state=0
    ).fit(X_TRAIN)
    forest = ens.named_estimators_["iforest"]
    assert not ens.calibration_held_out_  # those rows set the forest's scale too
    held_scores = np.sort(forest.score_samples(X_TRAIN[_held_rows(ens)]))
    np.testing.assert_array_equal(ens.reference_scores_[0], held_scores)


def _held_rows(ens):
    trained = {tuple(r) for r in ens.named_estimators_["knn"].reference_}
    return np.array([tuple(r) not in trained for r in X_TRAIN])


def test_same_random_state_same_scores_whatever_n_jobs():
    members = [("flow", skood.QuantileFlowDetector(**TINY_FLOW)), ("knn", KNNDetector())]
    one = EnsembleDetector(members, random_state=0, n_jobs=1).fit(X_TRAIN)
    two = EnsembleDetector(members, random_state=0, n_jobs=2).fit(X_TRAIN)
    # the same fits; float64 BLAS products of arrays shipped to a worker process may differ in
    # their last bit (another memory alignment, another kernel path)
    np.testing.assert_allclose(one.score_samples(X_TEST), two.score_samples(X_TEST), rtol=1e-12)
    # the seed drawn for the flow, which had none; a member's own random_state is kept
    assert isinstance(one.named_estimators_["flow"].random_state, int)
    assert members[0][1].random_state is None  # the given estimators are left as they were
    kept = EnsembleDetector([("flow", skood.QuantileFlowDetector(**TINY_FLOW, random_state=7))])
    assert kept.fit(X_TRAIN).estimators_[0].random_state == 7


def test_outlier_rows_reach_the_members_and_leave_the_calibration():
    y = np.r_[np.ones(300), -np.ones(20)]
    ens = _two().fit(np.r_[X_TRAIN, X_TEST[-20:]], y)
    assert ens.named_estimators_["knn"].reference_.shape[0] == 270  # 30 held, outliers left out
    assert ens.calibration_scores_.size == 30


def test_nested_parameters_and_default_members():
    ens = _two()
    ens.set_params(knn__n_neighbors=3)
    assert ens.get_params()["knn__n_neighbors"] == 3
    default = EnsembleDetector(random_state=0).fit(X_TRAIN)
    assert [n for n, _ in default_members()] == list(default.named_estimators_)


@pytest.mark.parametrize(
    "estimators, match",
    [
        ([], "at least one member"),
        ([KNNDetector()], r"\(name, estimator\) pairs"),
        ([("a", KNNDetector()), ("a", KNNDetector())], "unique"),
        ([("a", StandardScaler())], "no fit / score_samples"),
    ],
)
def test_bad_members_are_refused_with_the_fix(estimators, match):
    with pytest.raises((ValueError, TypeError), match=match):
        EnsembleDetector(estimators).fit(X_TRAIN)


def test_on_real_data_it_is_at_least_as_good_as_its_weaker_member():
    X, t = load_breast_cancer(return_X_y=True)
    benign, malignant = X[t == 1], X[t == 0]
    scaler = StandardScaler().fit(benign[:250])
    train = scaler.transform(benign[:250])
    test = scaler.transform(np.r_[benign[250:], malignant])
    y = np.r_[np.ones(len(benign) - 250), -np.ones(len(malignant))]
    ens = EnsembleDetector(random_state=0).fit(train)
    members = [auroc(y, m.score_samples(test)) for m in ens.estimators_]
    assert auroc(y, ens.score_samples(test)) >= min(members) and min(members) > 0.85


def test_conformal_reuses_its_held_out_scores():
    conformal = ConformalDetector(_two(), alpha=0.1, random_state=0).fit(X_TRAIN)
    assert conformal.reused_calibration_
    np.testing.assert_array_equal(
        conformal.calibration_scores_, conformal.estimator_.calibration_scores_
    )


def test_saves_and_loads_bit_identically_with_an_sklearn_member(tmp_path):
    ens = EnsembleDetector(
        [("iforest", IsolationForest(n_estimators=20)), ("gaussian", GaussianMahalanobis())],
        random_state=0,
    ).fit(X_TRAIN)
    skood.save(ens, tmp_path / "ensemble.skood")
    # the forest's trees are skops-stored code types, named as for any sklearn model that has them
    with pytest.raises(skood.io.UntrustedTypesError, match=r"sklearn\.tree\._tree\.Tree"):
        skood.load(tmp_path / "ensemble.skood")
    loaded = skood.load(tmp_path / "ensemble.skood", trusted=["sklearn.tree._tree.Tree"])
    for method in ("score_samples", "decision_function", "predict"):
        np.testing.assert_array_equal(getattr(loaded, method)(X_TEST), getattr(ens, method)(X_TEST))
    assert list(loaded.named_estimators_) == ["iforest", "gaussian"]


class _NaNOnFarRows(KNNDetector):
    """A member that answers NaN for rows far from the origin (as a broken peer might)."""

    def score_samples(self, X):
        scores = super().score_samples(X)
        return np.where(np.abs(np.asarray(X)).max(axis=1) > 3.5, np.nan, scores)


def test_a_member_answering_nan_makes_the_row_an_outlier_never_a_nan_score():
    ens = EnsembleDetector([("gaussian", GaussianMahalanobis()), ("odd", _NaNOnFarRows())],
                           random_state=0).fit(X_TRAIN)
    far = np.full((1, 4), 6.0)
    scores = ens.score_samples(np.r_[X_TEST, far])
    assert np.isfinite(scores).all()
    assert ens.predict(far)[0] == -1 and scores[-1] == scores.min()
