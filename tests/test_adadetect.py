"""AdaDetect (Marandon, Lei, Mary & Roquain, Ann. Statist. 2024): p-values against hand-computed
conformal ranks, the adaptive level against the paper's formula, Monte Carlo FDR (and a leaky
variant that the same check catches), power over a one-class baseline, determinism, persistence,
bad input, scikit-learn's checks."""

import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.neighbors import KernelDensity, KNeighborsClassifier
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import skood
from skood import GaussianMahalanobis
from skood.adadetect import AdaDetect
from skood.conformal import ConformalDetector, benjamini_hochberg, storey_null_proportion

ALPHA = 0.1


class FixedScore(ClassifierMixin, BaseEstimator):
    """A "classifier" whose class-1 probability is a fixed function of the first column, and that
    records what it was trained on."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        self.X_fit_, self.y_fit_ = np.array(X), np.array(y)
        return self

    def predict_proba(self, X):
        p1 = 1.0 / (1.0 + np.exp(-np.asarray(X)[:, 0]))
        return np.c_[1.0 - p1, p1]


def _hand_p_values(calibration_novelty, novelty):
    """(1 + #{calibration rows at least as novel}) / (n + 1): the paper's p-value."""
    calibration_novelty = np.asarray(calibration_novelty)
    n = calibration_novelty.size
    return np.array([(1 + np.sum(calibration_novelty >= s)) / (n + 1) for s in novelty])


def _hand_bh(p, level):
    """Step-up BH written out: reject the k* smallest, k* = max{k : p_(k) <= level k / m}."""
    m = p.size
    order = np.argsort(p, kind="stable")
    passed = np.flatnonzero(p[order] <= level * np.arange(1, m + 1) / m)
    flags = np.zeros(m, dtype=bool)
    if passed.size:
        flags[order[: passed[-1] + 1]] = True
    return flags


# -- the math against references --------------------------------------------------------------
def test_p_values_are_conformal_ranks_and_classes_are_set_as_the_paper():
    inliers = np.arange(10.0).reshape(-1, 1) - 5.0
    batch = np.array([[-4.5], [0.2], [3.9], [9.0], [-0.5]])
    det = AdaDetect(FixedScore(), alpha=0.25, calibration_fraction=0.4, random_state=1)
    det.fit(inliers)
    assert det.n_calibration_ == 4 and len(det.X_train_) == 6
    # the split partitions the inliers
    together = np.sort(np.r_[det.X_train_[:, 0], det.X_calibration_[:, 0]])
    np.testing.assert_array_equal(together, inliers[:, 0])
    novelty = lambda X: 1.0 / (1.0 + np.exp(-X[:, 0]))  # noqa: E731
    expected = _hand_p_values(novelty(det.X_calibration_), novelty(batch))
    np.testing.assert_allclose(det.score_samples(batch), expected, rtol=0, atol=0)
    # e.g. the row at 9.0 is more novel than all 4 calibration rows: p = 1 / 5
    assert det.score_samples(batch)[3] == pytest.approx(0.2)


def test_classifier_sees_training_part_as_class_0_and_calibration_plus_batch_as_class_1():
    rng = np.random.default_rng(0)
    inliers, batch = rng.normal(size=(40, 3)), rng.normal(size=(15, 3)) + 1.0
    det = AdaDetect(FixedScore(), random_state=0).fit(inliers)
    learner = clone(det.estimator)
    # run the per-batch fit with a learner we can inspect afterwards
    det.estimator = learner
    seen = {}
    original_fit = FixedScore.fit

    def spy(self, X, y):
        seen["X"], seen["y"] = np.array(X), np.array(y)
        return original_fit(self, X, y)

    FixedScore.fit = spy
    try:
        det.score_samples(batch)
    finally:
        FixedScore.fit = original_fit
    X, y = seen["X"], seen["y"]
    key = lambda A: sorted(map(tuple, A))  # noqa: E731
    assert key(X[y == 0]) == key(det.X_train_)
    assert key(X[y == 1]) == key(np.r_[det.X_calibration_, batch])
    # the class-1 rows are not handed over calibration-first (the learner must not tell them)
    first = X[y == 1][: det.n_calibration_]
    assert key(first) != key(det.X_calibration_)


def test_adaptive_level_is_the_papers_storey_formula_and_bh_matches_hand_step_up():
    rng = np.random.default_rng(3)
    inliers = rng.normal(size=(199, 1))  # 99 calibration rows: p-values k / 100, 0.5 reachable
    batch = np.r_[rng.normal(size=(30, 1)), rng.normal(size=(30, 1)) + 3.0]
    det = AdaDetect(FixedScore(), alpha=ALPHA, adaptive=True, random_state=0).fit(inliers)
    result = det.detect(batch)
    p = result.p_values
    pi0 = (1 + np.sum(p >= 0.5)) / (p.size * (1 - 0.5))  # the paper's estimator, no cap
    assert result.null_proportion == pytest.approx(pi0, rel=1e-15)
    assert result.level == pytest.approx(ALPHA / pi0, rel=1e-15)
    np.testing.assert_array_equal(result.outlier, _hand_bh(p, ALPHA / pi0))
    np.testing.assert_array_equal(det.predict(batch) == -1, result.outlier)
    plain = det.set_params(adaptive=False).detect(batch)
    assert plain.null_proportion == 1.0
    np.testing.assert_array_equal(plain.outlier, _hand_bh(p, ALPHA))
    assert result.outlier.sum() >= plain.outlier.sum()


def test_the_storey_estimate_counts_ties_and_is_not_capped():
    p = np.array([0.01, 0.5, 0.5, 0.7, 1.0])
    assert storey_null_proportion(p, 0.5) == pytest.approx(
        (1 + 4) / (5 * 0.5)
    )  # p >= lambda: 4 rows
    assert storey_null_proportion(np.full(4, 0.9), 0.5) == pytest.approx(2.5)  # above 1, kept
    assert storey_null_proportion([], 0.5) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        storey_null_proportion(p, 1.0)


# -- validity (Monte Carlo, fixed seeds) ----------------------------------------------------------
def _draw(rng, n=200, m=60, m1=20, d=5, shift=3.0):
    null, batch = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    batch[:m1, 0] += shift
    return null, batch, np.arange(m) < m1


def _fdp(flags, is_outlier):
    return (flags & ~is_outlier).sum() / max(flags.sum(), 1)


def _leaky_flags(det, batch):
    """The naive alternative: calibration rows on the class-0 side, the batch alone as class 1.

    A 5-NN classifier memorises its class-0 rows, so calibration rows look more normal than the
    batch's inliers (measured: mean FDP 0.18 +- 0.012 at alpha = 0.1 over these 150 draws;
    AdaDetect with 20-NN: 0.024 plain, 0.028 adaptive)."""
    learner = KNeighborsClassifier(n_neighbors=5)
    X = np.r_[det.X_train_, det.X_calibration_, batch]
    y = np.r_[np.zeros(len(det.X_train_) + det.n_calibration_), np.ones(len(batch))]
    learner.fit(X, y)
    novelty = learner.predict_proba(np.r_[det.X_calibration_, batch])[:, 1]
    p = _hand_p_values(novelty[: det.n_calibration_], novelty[det.n_calibration_ :])
    return benjamini_hochberg(p, ALPHA)


def test_monte_carlo_fdr_is_controlled_and_the_check_catches_a_leak():
    # k-NN memorises its training rows: a hard case for the exchangeability argument.
    reps = 150
    fdp = {"plain": [], "adaptive": [], "leaky": []}
    power = []
    for rep in range(reps):
        null, batch, is_outlier = _draw(np.random.default_rng(rep))
        det = AdaDetect(KNeighborsClassifier(n_neighbors=20), adaptive=True, random_state=rep)
        result = det.fit(null).detect(batch)
        fdp["adaptive"].append(_fdp(result.outlier, is_outlier))
        plain = benjamini_hochberg(result.p_values, ALPHA)
        fdp["plain"].append(_fdp(plain, is_outlier))
        fdp["leaky"].append(_fdp(_leaky_flags(det, batch), is_outlier))
        power.append((plain & is_outlier).mean() / is_outlier.mean())
    for name in ("plain", "adaptive"):
        values = np.array(fdp[name])
        bound = ALPHA + 3 * values.std(ddof=1) / np.sqrt(reps)
        assert values.mean() <= bound, (name, values.mean(), bound)
    leaky = np.array(fdp["leaky"])
    assert leaky.mean() > ALPHA + 3 * leaky.std(ddof=1) / np.sqrt(reps)
    assert np.mean(power) > 0.05  # not valid by being powerless (measured: 0.13)


def test_more_power_than_the_one_class_baseline_where_it_misses_the_direction():
    # 20 features, outliers shifted in 2: the Mahalanobis norm dilutes the shift among 20
    # coordinates; the classifier learns it from the batch.
    ada, base = [], []
    for rep in range(4):
        rng = np.random.default_rng(rep)
        null, batch = rng.normal(size=(600, 20)), rng.normal(size=(300, 20))
        is_outlier = np.arange(300) < 60
        batch[is_outlier, :2] += 2.5
        flags = AdaDetect(random_state=rep).fit(null).predict(batch) == -1
        one_class = ConformalDetector(
            GaussianMahalanobis(), alpha=ALPHA, fdr=True, calibration_fraction=0.5, random_state=rep
        )
        with pytest.warns(UserWarning, match="lone outlier"):
            base_flags = one_class.fit(null).predict(batch) == -1
        ada.append(flags[is_outlier].mean())
        base.append(base_flags[is_outlier].mean())
    assert np.mean(ada) > np.mean(base) + 0.3, (ada, base)


def test_density_ratio_path_for_one_class_learners():
    rng = np.random.default_rng(0)
    null, batch, is_outlier = _draw(rng, n=300, m=100, m1=30, d=2)
    det = AdaDetect(KernelDensity(bandwidth=0.5), random_state=0).fit(null)
    flags = det.predict(batch) == -1
    assert flags[is_outlier].mean() > 0.5 and _fdp(flags, is_outlier) <= 0.2
    # a PyOD-style detector (higher decision_function = more abnormal) or a decision_function
    # classifier also work
    svc = AdaDetect(LinearSVC(), random_state=0).fit(null)
    assert (svc.predict(batch)[is_outlier] == -1).mean() > 0.3


# -- determinism and persistence -----------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(7)
    null, batch, _ = _draw(rng, n=120, m=40, m1=10)
    return AdaDetect(alpha=0.2, adaptive=True, random_state=0).fit(null), null, batch


def test_same_seed_same_answer_and_batch_order_does_not_matter(fitted):
    det, null, batch = fitted
    p = det.score_samples(batch)
    np.testing.assert_array_equal(det.score_samples(batch), p)
    again = AdaDetect(alpha=0.2, adaptive=True, random_state=0).fit(null)
    np.testing.assert_array_equal(again.score_samples(batch), p)
    np.testing.assert_array_equal(again.predict(batch), det.predict(batch))
    order = np.random.default_rng(0).permutation(len(batch))
    np.testing.assert_array_equal(det.score_samples(batch[order]), p[order])
    other = AdaDetect(alpha=0.2, random_state=1).fit(null)
    assert not np.array_equal(other.X_calibration_, det.X_calibration_)


def test_clone_get_params_pickle_and_skood_save_round_trip(fitted, tmp_path):
    det, _, batch = fitted
    params = det.get_params()
    assert params["alpha"] == 0.2 and params["adaptive"] is True and params["estimator"] is None
    cloned = clone(det)
    assert cloned.get_params() == params and not hasattr(cloned, "X_train_")
    restored = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(restored.score_samples(batch), det.score_samples(batch))
    path = tmp_path / "ada.skood"
    skood.save(det, path)
    loaded = skood.load(path)
    np.testing.assert_array_equal(loaded.score_samples(batch), det.score_samples(batch))
    np.testing.assert_array_equal(loaded.predict(batch), det.predict(batch))


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_is_refused_clearly():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    with pytest.raises(ValueError, match="needs at least 9 calibration rows"):
        AdaDetect(alpha=0.1).fit(X[:12])
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        AdaDetect().fit(X_nan)
    det = AdaDetect(alpha=0.2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        det.predict(X_nan)
    with pytest.raises(ValueError, match="3 features"):
        det.predict(X[:, :2])
    with pytest.raises(ValueError, match="0 sample"):
        det.predict(X[:0])
    det.set_params(alpha=0.01)  # 12 calibration rows cannot reach 0.01
    with pytest.raises(ValueError, match="can never be reached"):
        det.predict(X)
    det.set_params(alpha=1.5)
    with pytest.raises(InvalidParameterError, match="alpha"):
        det.predict(X)
    with pytest.raises(InvalidParameterError, match="calibration_fraction"):
        AdaDetect(calibration_fraction=1.0).fit(X)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        AdaDetect().predict(X)


def test_outlier_labelled_rows_are_left_out_of_the_inliers():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(40, 2)), rng.normal(size=(5, 2)) + 50.0]
    y = np.r_[np.ones(40, dtype=int), -np.ones(5, dtype=int)]
    det = AdaDetect(alpha=0.2, random_state=0).fit(X, y)
    assert len(det.X_train_) + det.n_calibration_ == 40
    assert np.abs(np.r_[det.X_train_, det.X_calibration_]).max() < 10


# -- scikit-learn's checks ------------------------------------------------------------------------
# alpha = 0.25 needs only 3 calibration rows: the checks fit on 10-30 rows (alpha = 0.1 would
# need 18 and be refused, rightly, by most of them).
_EXPECTED_FAILURES = {
    "check_methods_subset_invariance": (
        "transductive: the score is learned from the whole batch, so a row's p-value and flag "
        "depend on the other rows it is scored with"
    ),
    "check_outliers_train": (
        "predict flags Benjamini-Hochberg discoveries in the batch; on the fit's own rows "
        "(inliers) it finds none, and there is no decision_function / offset_: BH's threshold "
        "depends on the batch, no fixed offset exists"
    ),
    "check_outliers_fit_predict": (
        "fit_predict scores the fit's own inlier rows, among which BH (rightly) finds no outlier"
    ),
}


@parametrize_with_checks(
    [AdaDetect(alpha=0.25, random_state=0)],
    expected_failed_checks=lambda est: _EXPECTED_FAILURES,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
