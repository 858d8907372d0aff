"""Conformal p-values (skood.conformal): the formula by hand, validity by seeded simulation
(split, cross, Mondrian, calibration-conditional, BH's FDR), any detector wrapped, composition,
persistence and bad input."""

import copy
import io
import math
import pickle
import warnings

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from sklearn.utils.estimator_checks import parametrize_with_checks

import skood
from skood import CLIPZeroShot, GaussianMahalanobis, QuantileFlowDetector
from skood.base import TIE_RTOL, TIE_RTOL_FLOAT64
from skood.conformal import (
    ConformalDetector,
    benjamini_hochberg,
    calibration_conditional_bounds,
    conformal_p_values,
    storey_null_proportion,
)
from skood.metrics import SCORERS
from skood.model_selection import OODStratifiedKFold
from tests._settings import TINY_FLOW

ALPHA = 0.1


def _assert_rate(rates, expected):
    """The mean of per-repetition rates is within 3 standard errors of ``expected``."""
    rates = np.asarray(rates, dtype=float)
    se = rates.std(ddof=1) / np.sqrt(rates.size)
    assert abs(rates.mean() - expected) <= 3 * se + 1e-12, (rates.mean(), expected, se)


def _gauss():
    return GaussianMahalanobis(offset_cv=None)  # trains on every row: ConformalDetector splits


# -- the formula -----------------------------------------------------------------------------------


def test_p_values_by_hand_with_ties():
    calibration = [3.0, 1.0, 2.0, 2.0, 5.0]  # sorted: 1 2 2 3 5, n = 5
    scores = [0.0, 1.0, 2.0, 2.5, 5.0, 7.0]
    # (1 + #{S_i <= s}) / 6: a tied calibration score counts, so ties raise the p-value
    expected = np.array([1, 2, 4, 4, 6, 6]) / 6
    np.testing.assert_array_equal(conformal_p_values(calibration, scores), expected)
    bounds = calibration_conditional_bounds(5, 0.1, "dkwm")
    np.testing.assert_array_equal(
        conformal_p_values(calibration, scores, bounds=bounds), bounds[[0, 1, 3, 3, 5, 5]]
    )
    assert bounds[-1] == 1.0 and np.all(np.diff(bounds) >= 0)


@pytest.mark.parametrize("method", ["simes", "dkwm"])
@pytest.mark.parametrize("n", [10, 99])
def test_calibration_conditional_bounds_hold_simultaneously(method, n):
    """P(U_(i) <= b_i for every i) >= 1 - delta for the order statistics of n uniforms."""
    rng = np.random.default_rng(n)
    bounds = calibration_conditional_bounds(n, 0.1, method)[:-1]
    uniforms = np.sort(rng.random((20_000, n)), axis=1)
    violated = np.any(uniforms > bounds, axis=1).mean()  # se about 0.002
    assert violated <= 0.1 + 0.007
    if method == "simes":  # the generalised Simes band is tight, not just valid
        assert violated >= 0.1 - 0.01


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
@pytest.mark.parametrize("delta", [0.01, 0.1, 0.5])
def test_simes_bounds_equal_the_papers_falling_factorials(n, delta):
    """Bates et al.'s b_{n+1-i} = 1 - (delta i (i-1)...(i-k+1) / (n (n-1)...(n-k+1)))^(1/k),
    k = ceil(n / 2), multiplied out factor by factor (the O(n^2) form the code replaced)."""
    k = math.ceil(n / 2)
    expected = np.ones(n)
    for i in range(k, n + 1):
        ratio = math.prod((i - j) / (n - j) for j in range(k))
        expected[n - i] = 1.0 - (delta * ratio) ** (1.0 / k)
    expected = np.append(np.maximum.accumulate(expected), 1.0)
    np.testing.assert_allclose(calibration_conditional_bounds(n, delta), expected, rtol=1e-12)


def test_benjamini_hochberg_is_scipys():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # the textbook example: at FDR 0.05, BH rejects the 2 smallest (0.008 <= 2/10 * 0.05)
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), [True, True] + [False] * 8)
    assert benjamini_hochberg([], 0.05).shape == (0,)


def _exact_p_values(calibration, scores):
    """``(1 + #{S_i <= s}) / (n + 1)`` with exact comparisons: nonconform's formula."""
    calibration = np.asarray(calibration, dtype=np.float64)
    return np.array([(1 + np.sum(calibration <= s)) / (calibration.size + 1) for s in scores])


def test_float64_scores_of_large_magnitude_are_not_ties():
    """1e7 + small integers: with a float32 tolerance (1e-6 relative: 10 units) they all tied,
    p-values rose by up to 0.26 and BH flagged nothing where exact ranks flag 177 rows."""
    rng = np.random.default_rng(0)
    calibration = 1e7 + rng.integers(0, 1000, size=500).astype(np.float64)
    scores = 1e7 + np.r_[rng.integers(0, 1000, size=800), rng.integers(-300, 3, size=200)]
    scores = scores.astype(np.float64)
    p = conformal_p_values(calibration, scores)
    np.testing.assert_array_equal(p, _exact_p_values(calibration, scores))
    # the float32 tolerance on the same float64 numbers: what the fix removes
    loose = conformal_p_values(calibration, scores, rtol=TIE_RTOL)
    assert (loose - p).max() > 0.01
    assert benjamini_hochberg(p, 0.1).sum() > benjamini_hochberg(loose, 0.1).sum()


def test_float32_scores_keep_the_float32_tolerance():
    """A float32 network scores a row ~1e-7 apart between batches: that must not move a
    p-value, so float32 arrays tie within TIE_RTOL, float64 ones within TIE_RTOL_FLOAT64."""
    calibration = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    below = np.float32(2.0) * np.float32(1 - 2e-7)  # 2.0 one or two float32 ulps down
    p32 = conformal_p_values(calibration, np.array([below], dtype=np.float32))
    p64 = conformal_p_values(calibration.astype(np.float64), [float(below)])
    assert p32[0] == 3 / 5 and p64[0] == 2 / 5  # tie counted / not counted
    assert TIE_RTOL_FLOAT64 < 1e-9 < TIE_RTOL


def test_conformal_detector_ties_follow_the_wrapped_detectors_precision():
    X = np.random.default_rng(0).normal(size=(200, 3))
    forest = ConformalDetector(IsolationForest(random_state=0), random_state=0).fit(X)
    gauss = ConformalDetector(_gauss(), random_state=0).fit(X)
    flow = ConformalDetector(QuantileFlowDetector(**TINY_FLOW), random_state=0).fit(X)
    assert forest.tie_rtol_ == gauss.tie_rtol_ == TIE_RTOL_FLOAT64
    assert flow.tie_rtol_ == TIE_RTOL  # a float32 network
    # the p-values of a float64 detector are its exact ranks
    scores = forest.detector_scores(X[:50])
    np.testing.assert_array_equal(
        forest.score_samples(X[:50]), _exact_p_values(forest.calibration_scores_, scores)
    )


def test_storey_null_proportion_and_adaptive_bh_by_hand():
    p = np.array([0.001, 0.002, 0.003, 0.2, 0.5, 0.7, 0.8, 0.9])
    # (1 + #{p >= 0.5}) / (m (1 - 0.5)) = (1 + 4) / 4: not capped at 1 (FDR in finite samples)
    assert storey_null_proportion(p) == 1.25
    assert storey_null_proportion(p, threshold=0.75) == pytest.approx((1 + 2) / (8 * 0.25))
    q = np.r_[np.full(6, 0.02), [0.6, 0.9]]
    pi0 = storey_null_proportion(q)  # (1 + 2) / 4 = 0.75
    assert pi0 == 0.75
    # BH at alpha = 0.025 rejects nothing (0.02 > 6/8 * 0.025); adaptive BH runs at 0.025 / 0.75
    assert not benjamini_hochberg(q, 0.025).any()
    np.testing.assert_array_equal(
        benjamini_hochberg(q, 0.025, null_proportion=pi0), [True] * 6 + [False] * 2
    )
    # few outliers: pi0 above 1 runs BH below alpha (what keeps the FDR of all-inlier batches)
    assert storey_null_proportion(np.full(10, 0.9)) == pytest.approx(2.2)
    assert benjamini_hochberg(q, 0.05).sum() == 6
    assert not benjamini_hochberg(q, 0.05, null_proportion=2.2).any()
    with pytest.raises(ValueError, match="null_proportion"):
        benjamini_hochberg(q, 0.1, null_proportion=0.0)
    with pytest.raises(ValueError, match="threshold"):
        storey_null_proportion(q, threshold=1.0)


# -- validity by simulation ------------------------------------------------------------------------


def test_split_p_values_are_exactly_valid():
    rng = np.random.default_rng(0)
    rates = []
    for rep in range(150):
        X, X_new = rng.normal(size=(100, 2)), rng.normal(size=(200, 2))
        det = ConformalDetector(_gauss(), alpha=ALPHA, random_state=rep).fit(X)
        rates.append(np.mean(det.predict(X_new) == -1))
    n = det.n_calibration_  # 30 held out of 100
    _assert_rate(rates, np.floor(ALPHA * (n + 1)) / (n + 1))  # P(p <= alpha), continuous scores
    assert not det.reused_calibration_


def test_reused_calibration_of_a_skood_detector_is_valid():
    """CLIPZeroShot fits nothing to X: its calibration scores are held out by construction."""
    rng = np.random.default_rng(1)
    text = rng.normal(size=(3, 4))
    rates = []
    for rep in range(150):
        X, X_new = rng.normal(size=(40, 4)), rng.normal(size=(200, 4))
        clip = CLIPZeroShot(precomputed=True, text_embeddings=text)
        det = ConformalDetector(clip, alpha=ALPHA, random_state=rep).fit(X)
        assert det.reused_calibration_ and det.n_calibration_ == 40
        rates.append(np.mean(det.predict(X_new) == -1))
    _assert_rate(rates, np.floor(ALPHA * 41) / 41)


def test_a_held_out_skood_calibration_is_reused_without_a_second_split():
    X = np.random.default_rng(0).normal(size=(120, 3))
    flow = QuantileFlowDetector(**TINY_FLOW, random_state=0)
    det = ConformalDetector(flow, alpha=ALPHA).fit(X)
    assert det.reused_calibration_
    np.testing.assert_array_equal(det.calibration_scores_, det.estimator_.calibration_scores_)
    assert det.estimator_.n_features_in_ == 3  # fitted on every row, as the flow holds out its own
    in_sample = QuantileFlowDetector(**TINY_FLOW, validation_fraction=0.0, random_state=0)
    assert not ConformalDetector(in_sample, alpha=ALPHA, random_state=0).fit(X).reused_calibration_


def test_cross_conformal_stays_within_its_guarantee():
    rng = np.random.default_rng(2)
    rates = []
    for rep in range(60):
        X, X_new = rng.normal(size=(40, 2)), rng.normal(size=(200, 2))
        det = ConformalDetector(_gauss(), alpha=ALPHA, method="cross", random_state=rep).fit(X)
        assert det.n_calibration_ == 40 and len(det.estimators_) == 5  # every inlier calibrates
        rates.append(np.mean(det.predict(X_new) == -1))
    assert np.mean(rates) <= 2 * ALPHA  # the theorem
    assert abs(np.mean(rates) - ALPHA) <= 0.03  # and close to alpha in practice


def _two_classes(rng, n):
    """Class 0 tight, class 1 spread: one Gaussian scores class 1 as less normal."""
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, 2)) * np.where(y == 0, 0.5, 2.0)[:, None]
    return X, y


@pytest.mark.parametrize("method", ["split", "cross"])
def test_mondrian_calibration_holds_the_level_in_every_class(method):
    rng = np.random.default_rng(3)
    rates = {False: {0: [], 1: []}, True: {0: [], 1: []}}
    for rep in range(40):
        X, y = _two_classes(rng, 200)
        X_new, y_new = _two_classes(rng, 1000)
        for mondrian in (False, True):
            det = ConformalDetector(
                _gauss(), alpha=ALPHA, method=method, class_conditional=mondrian, random_state=rep
            ).fit(X, y)
            flagged = det.predict(X_new) == -1
            for c in (0, 1):
                rates[mondrian][c].append(flagged[y_new == c].mean())
    for c in (0, 1):
        assert np.mean(rates[True][c]) <= ALPHA + 0.02, c
    # pooled calibration holds only on average: the spread class is flagged far above alpha
    assert np.mean(rates[False][1]) > 1.5 * ALPHA


def test_bh_controls_the_false_discovery_rate():
    rng = np.random.default_rng(4)
    fdp, power = [], []
    for rep in range(100):
        X = rng.normal(size=(1000, 2))  # 300 calibration rows: p-values down to 1 / 301
        X_new = np.vstack([rng.normal(size=(180, 2)), rng.normal(3.5, 1.0, size=(20, 2))])
        is_outlier = np.r_[np.zeros(180, bool), np.ones(20, bool)]
        det = ConformalDetector(_gauss(), alpha=ALPHA, fdr=True, random_state=rep).fit(X)
        flagged = det.predict(X_new) == -1
        fdp.append((flagged & ~is_outlier).sum() / max(flagged.sum(), 1))
        power.append(flagged[is_outlier].mean())
    assert np.mean(fdp) <= ALPHA + 0.02
    assert np.mean(power) > 0.3  # and it finds outliers


def test_calibration_conditional_p_values_hold_for_most_calibration_draws():
    rng = np.random.default_rng(5)
    over = {None: [], "simes": [], "dkwm": []}
    for rep in range(60):
        X, X_new = rng.normal(size=(1000, 2)), rng.normal(size=(5000, 2))
        for correction in over:
            det = ConformalDetector(
                _gauss(), alpha=ALPHA, calibration_conditional=correction, delta=0.1,
                random_state=rep,
            ).fit(X)  # fmt: skip
            # the false-positive rate given this calibration draw (5000 new inliers)
            over[correction].append(np.mean(det.predict(X_new) == -1) > ALPHA + 0.01)
    assert np.mean(over["simes"]) <= 0.1 + 0.08 and np.mean(over["dkwm"]) <= 0.1 + 0.08
    assert np.mean(over[None]) > 0.2  # marginal p-values exceed alpha for many draws


# -- any detector, composition, persistence --------------------------------------------------------


@pytest.mark.parametrize(
    "estimator",
    [
        IsolationForest(n_estimators=50, random_state=0),
        LocalOutlierFactor(novelty=True),
        OneClassSVM(gamma="scale"),
        make_pipeline(StandardScaler(), _gauss()),
        "pyod",
    ],
    ids=["iforest", "lof", "ocsvm", "pipeline", "pyod-knn"],
)
def test_wraps_sklearn_pyod_and_pipelines_with_the_right_sign(estimator):
    if estimator == "pyod":
        estimator = pytest.importorskip("pyod.models.knn").KNN()  # higher = more abnormal
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 3))
    X_new = np.vstack([rng.normal(size=(50, 3)), rng.normal(5.0, 1.0, size=(50, 3))])
    det = ConformalDetector(estimator, alpha=ALPHA, random_state=0).fit(X)
    p = det.score_samples(X_new)
    assert np.all((p > 0) & (p <= 1)) and p.dtype == np.float64
    assert np.median(p[:50]) > 0.3 and np.all(p[50:] <= 1 / (det.n_calibration_ + 1) + 1e-12)
    assert set(det.predict(X_new)) <= {-1, 1}


def test_outlier_rows_in_y_train_a_skood_detector_but_never_calibrate():
    rng = np.random.default_rng(7)
    X = np.vstack([rng.normal(size=(100, 2)), rng.normal(6.0, 1.0, size=(20, 2))])
    y = np.r_[np.ones(100), -np.ones(20)]
    det = ConformalDetector(_gauss(), alpha=ALPHA, random_state=0).fit(X, y)
    assert det.n_calibration_ == 30  # 30 % of the 100 inliers
    forest = ConformalDetector(IsolationForest(random_state=0), alpha=ALPHA, random_state=0)
    assert forest.fit(X, y).estimator_.n_features_in_ == 2


def test_in_a_grid_search_with_outliers_in_the_folds():
    rng = np.random.default_rng(8)
    X = np.vstack([rng.normal(size=(150, 2)), rng.normal(4.0, 1.0, size=(30, 2))])
    y = np.r_[np.ones(150), -np.ones(30)]
    search = GridSearchCV(
        ConformalDetector(IsolationForest(random_state=0), alpha=ALPHA, random_state=0),
        {"estimator__n_estimators": [10, 50], "method": ["split", "cross"]},
        cv=OODStratifiedKFold(n_splits=3, random_state=0),
        scoring=SCORERS["auroc"],
    ).fit(X, y)
    assert search.best_score_ > 0.9


def test_pickle_and_skood_save_round_trip():
    X = np.random.default_rng(9).normal(size=(100, 2))
    for det in (
        ConformalDetector(_gauss(), alpha=ALPHA, random_state=0),
        ConformalDetector(_gauss(), alpha=ALPHA, method="cross", random_state=0),
    ):
        det.fit(X)
        for loaded in (pickle.loads(pickle.dumps(det)), _skood_round_trip(det)):
            np.testing.assert_array_equal(loaded.score_samples(X), det.score_samples(X))
            np.testing.assert_array_equal(loaded.predict(X), det.predict(X))


def _skood_round_trip(model):
    buffer = io.BytesIO()
    skood.save(model, buffer)
    return skood.load(io.BytesIO(buffer.getvalue()))


def test_same_random_state_same_p_values():
    X = np.random.default_rng(10).normal(size=(100, 2))
    make = lambda: ConformalDetector(IsolationForest(random_state=0), random_state=3)  # noqa: E731
    np.testing.assert_array_equal(make().fit(X).score_samples(X), make().fit(X).score_samples(X))


# -- bad input -------------------------------------------------------------------------------------


def test_bad_input_is_named():
    X = np.random.default_rng(11).normal(size=(60, 2))
    with pytest.raises(ValueError, match="alpha"):
        ConformalDetector(_gauss(), alpha=1.5).fit(X)
    with pytest.raises(ValueError, match=r"smallest p-value is 0\.05.*can never be reached"):
        ConformalDetector(_gauss(), alpha=0.01, random_state=0).fit(X)  # 18 calibration rows
    with pytest.raises(ValueError, match="method='split'"):
        ConformalDetector(_gauss(), method="cross", calibration_conditional="simes").fit(X)
    with pytest.raises(ValueError, match="needs y with the inlier classes"):
        ConformalDetector(_gauss(), class_conditional=True).fit(X)

    class NoScore:
        def fit(self, X, y=None):
            return self

        def get_params(self, deep=True):
            return {}

        def set_params(self, **params):
            return self

    with pytest.raises(TypeError, match="neither score_samples nor decision_function"):
        ConformalDetector(NoScore(), alpha=0.2, random_state=0).fit(X)


@parametrize_with_checks(
    # alpha 0.5 and half the rows calibrating: sklearn's checks fit on as few as 10 rows
    [ConformalDetector(_gauss(), alpha=0.5, calibration_fraction=0.5, random_state=0)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_the_level_changes_without_refitting():
    rng = np.random.default_rng(12)
    X, X_new = rng.normal(size=(200, 2)), rng.normal(size=(500, 2))
    det = ConformalDetector(_gauss(), alpha=0.1, random_state=0).fit(X)
    p = det.score_samples(X_new)
    for alpha in (0.05, 0.2):
        det.set_params(alpha=alpha)
        np.testing.assert_array_equal(det.predict(X_new) == -1, p <= alpha)
        assert np.all((det.decision_function(X_new) < 0) == (p <= alpha))
    det.set_params(alpha=0.001)  # below 1 / 61: refused when used, not silently never flagging
    with pytest.raises(ValueError, match="can never be reached"):
        det.predict(X_new)


def test_the_documented_compositions_on_digits(digits_split):
    """docs/thresholds.md's example, with default settings, on real data (digits 0-4 vs 5-9)."""
    X_train, _, X_test, y_test = digits_split
    is_outlier = y_test == -1
    det = ConformalDetector(GaussianMahalanobis(), alpha=0.05, random_state=0).fit(X_train)
    flags = det.predict(X_test) == -1
    assert flags[~is_outlier].mean() <= 0.05 + 0.04  # one calibration draw: alpha + noise
    assert flags[is_outlier].mean() > 2 * 0.05  # power well above the level (measured 0.31)
    fdr = ConformalDetector(IsolationForest(random_state=0), alpha=0.1, fdr=True, random_state=0)
    flagged = fdr.fit(X_train).predict(X_test) == -1
    assert (flagged & ~is_outlier).sum() / max(flagged.sum(), 1) <= 0.1 + 0.05


# -- small classes, and parameters set on a fitted model --------------------------------------------


def _big_and_rare(n_rare, seed=13):
    """200 rows of class "big", ``n_rare`` of class "rare", both around the origin."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200 + n_rare, 2))
    return X, np.array(["big"] * 200 + ["rare"] * n_rare)


@pytest.mark.filterwarnings("ignore:The least populated class")  # cross with 1 rare row
@pytest.mark.parametrize(
    "method, n_rare, n_calibration",
    # split holds out round(0.3 n) of a class but keeps one row to train; cross calibrates on all
    [("split", 1, 0), ("split", 5, 2), ("cross", 1, 1), ("cross", 5, 5)],
)
def test_class_conditional_refuses_a_class_too_small_to_reach_alpha(method, n_rare, n_calibration):
    """A row's p-value is the largest over the classes: a class with n_c + 1 < 1 / alpha kept
    every p-value above alpha, so even (8, 8) was accepted (p = 1 with n_c = 0), silently."""
    X, y = _big_and_rare(n_rare)
    det = ConformalDetector(
        _gauss(), alpha=ALPHA, method=method, class_conditional=True, random_state=0
    )
    n = n_calibration
    reach = f"the smallest level it can reach is 1/({n} + 1) = {1 / (n + 1):.4g}"
    with pytest.raises(ValueError, match=f"class 'rare' has {n} calibration inlier") as err:
        det.fit(X, y)
    message = str(err.value)
    assert reach in message, message
    assert "alpha=0.1 can never be reached" in message and "9 or more" in message
    assert "class 'big'" not in message  # only the class at fault is named
    assert "class_conditional=False" in message and "more rows" in message
    assert ("method='cross'" in message) == (method == "split")  # cross calibrates on every row
    with pytest.raises(NotFittedError):  # a fit that raises leaves nothing behind
        det.score_samples(X)


def test_class_conditional_refuses_an_empty_class_with_calibration_conditional_bounds():
    X, y = _big_and_rare(1)
    det = ConformalDetector(
        _gauss(), alpha=ALPHA, class_conditional=True, calibration_conditional="simes"
    )
    with pytest.raises(ValueError, match=r"class 'rare' has 0 calibration inliers.* reach is 1\."):
        det.fit(X, y)  # no calibration row: the bounds are [1], not an IndexError


@pytest.mark.parametrize("method", ["split", "cross"])
def test_class_conditional_with_populated_classes_flags_far_rows(method):
    X, y = _big_and_rare(100)  # split: 60 and 30 calibration inliers; cross: 200 and 100
    det = ConformalDetector(
        _gauss(), alpha=ALPHA, method=method, class_conditional=True, random_state=0
    ).fit(X, y)
    p = det.score_samples(np.array([[8.0, 8.0], [0.0, 0.0]]))
    n_rare = 30 if method == "split" else 100
    # the far row ranks below every calibration score of both classes: the larger 1 / (n_c + 1)
    np.testing.assert_allclose(p[0], 1 / (n_rare + 1))
    assert det.possible_p_values_[0] == pytest.approx(1 / (n_rare + 1))
    assert p[1] > 0.5
    np.testing.assert_array_equal(det.predict(np.array([[8.0, 8.0], [0.0, 0.0]])), [-1, 1])


def test_class_conditional_level_boundary_is_one_over_n_plus_one():
    """Cross-conformal: a class of 9 rows reaches alpha = 0.1 (1 / 10), one of 8 does not."""
    X, y = _big_and_rare(9)
    det = ConformalDetector(_gauss(), alpha=ALPHA, method="cross", class_conditional=True)
    assert det.set_params(random_state=0).fit(X, y).predict(np.array([[8.0, 8.0]]))[0] == -1
    with pytest.raises(ValueError, match="class 'rare' has 8 calibration inliers"):
        det.fit(*_big_and_rare(8))


@pytest.mark.parametrize("alpha", [np.nan, 1, 1.5, np.inf, 0, -0.5])
@pytest.mark.parametrize("method", ["split", "cross"])
def test_an_alpha_set_after_fit_is_validated_as_at_fit(alpha, method):
    """skood score --model m.skood --alpha X calls set_params: nan flagged nothing, 1 / 1.5 / inf
    flagged every row, 0 raised ZeroDivisionError and -0.5 asked for "-3 or more" rows."""
    rng = np.random.default_rng(14)
    X, X_new = rng.normal(size=(200, 2)), rng.normal(size=(50, 2))
    with pytest.raises(ValueError) as at_fit:
        ConformalDetector(_gauss(), alpha=alpha, method=method).fit(X)
    assert "The 'alpha' parameter of ConformalDetector must be" in str(at_fit.value)
    det = ConformalDetector(_gauss(), alpha=ALPHA, method=method, random_state=0).fit(X)
    det.set_params(alpha=alpha)
    for use in (det.predict, det.decision_function, lambda X: det.offset_):
        with pytest.raises(ValueError) as when_used:
            use(X_new)
        assert str(when_used.value) == str(at_fit.value)  # same constraint, same message
    det.score_samples(X_new)  # the p-values do not depend on alpha


@pytest.mark.parametrize("fdr", ["yes", None, 1])
def test_an_fdr_set_after_fit_is_validated_as_at_fit(fdr):
    rng = np.random.default_rng(15)
    X, X_new = rng.normal(size=(200, 2)), rng.normal(size=(50, 2))
    det = ConformalDetector(_gauss(), alpha=ALPHA, random_state=0).fit(X)
    with pytest.raises(ValueError, match="The 'fdr' parameter of ConformalDetector must be"):
        det.set_params(fdr=fdr).predict(X_new)  # "yes" silently switched BH on


def test_a_valid_alpha_set_after_fit_sets_the_flagged_share():
    rng = np.random.default_rng(16)
    X, X_new = rng.normal(size=(1000, 2)), rng.normal(size=(5000, 2))  # 300 calibration rows
    det = ConformalDetector(_gauss(), alpha=ALPHA, random_state=0).fit(X)
    p = det.score_samples(X_new)
    shares = []
    for alpha in (0.02, 0.1, 0.3):
        flagged = det.set_params(alpha=alpha).predict(X_new) == -1
        np.testing.assert_array_equal(flagged, p <= alpha)
        shares.append(flagged.mean())
        assert abs(flagged.mean() - alpha) <= 0.05  # one calibration draw of 300: alpha + noise
    assert shares == sorted(shares) and shares[0] < shares[-1]


def test_a_class_conditional_alpha_set_after_fit_is_checked_per_class():
    X, y = _big_and_rare(40)  # split: 60 and 12 calibration inliers
    det = ConformalDetector(_gauss(), alpha=ALPHA, class_conditional=True, random_state=0)
    det.fit(X, y).set_params(alpha=0.05)  # 1 / 13 > 0.05 > 1 / 61
    with pytest.raises(ValueError, match=r"class 'rare' has 12 calibration inliers.*1/\(12 \+ 1\)"):
        det.predict(X)


@pytest.mark.parametrize(
    "fitted, changed",
    [
        ({}, {"method": "cross"}),  # was an AttributeError (no estimators_)
        ({"method": "cross"}, {"method": "split"}),
        ({}, {"class_conditional": True}),
        ({"class_conditional": True}, {"class_conditional": False}),
        ({}, {"calibration_conditional": "simes"}),  # offset_ was set from the marginal grid
        ({"calibration_conditional": "simes"}, {"delta": 0.5}),
    ],
)
def test_parameters_that_shaped_the_fit_are_refused_when_changed(fitted, changed):
    X, y = _big_and_rare(100)
    det = ConformalDetector(_gauss(), alpha=ALPHA, random_state=0, **fitted).fit(X, y)
    p = det.score_samples(X)
    det.set_params(**changed)
    name, value = next(iter(changed.items()))
    for use in (det.score_samples, det.predict, det.decision_function):
        with pytest.raises(ValueError, match=f"now has {name}={value!r}.*fit again"):
            use(X)
    det.set_params(**{name: ConformalDetector(_gauss(), **fitted).get_params()[name]})
    np.testing.assert_array_equal(det.score_samples(X), p)  # set back: as fitted


def test_invalid_fitted_parameters_get_the_fit_message_and_an_unread_delta_is_free():
    X = np.random.default_rng(17).normal(size=(200, 2))
    det = ConformalDetector(_gauss(), alpha=ALPHA, random_state=0).fit(X)
    with pytest.raises(ValueError, match="The 'method' parameter of ConformalDetector must be"):
        det.set_params(method="jackknife").score_samples(X)
    det.set_params(method="split", delta=2.0)  # delta is read only by calibration_conditional
    det.predict(X)
    det.set_params(delta=0.1, calibration_conditional="simes")
    with pytest.raises(ValueError, match="calibration_conditional=None, but now has"):
        det.predict(X)
    det.set_params(delta=2.0)  # now read: validated first
    with pytest.raises(ValueError, match="The 'delta' parameter of ConformalDetector must be"):
        det.predict(X)


def test_a_string_outlier_label_is_left_out_of_a_non_skood_estimator():
    # y as text (read from a CSV): "-1" is the outlier label there too, as for skood's own
    from sklearn.neighbors import LocalOutlierFactor

    X = np.random.RandomState(0).normal(size=(120, 3))
    y = np.array(["1"] * 100 + ["-1"] * 20)
    conformal = ConformalDetector(LocalOutlierFactor(novelty=True), random_state=0).fit(X, y)
    n_calibration = conformal.calibration_scores_.size
    assert conformal.estimator_.n_samples_fit_ + n_calibration == 100  # no "-1" row trained


def test_a_pyod_ecod_scores_each_row_against_its_training_rows_not_the_batch():
    # ECOD refits its empirical CDFs on the rows it scores: a batch full of anomalies moved the
    # reference (inliers' p-values moved by up to 0.64, and an anomaly 8 sigma out got p = 1.0).
    # Scored as PyODAdapter scores, in chunks of 1 % of the training rows
    # (skood.registry.pyod_scores), a row shares its reference with at most that many others.
    ecod = pytest.importorskip("pyod.models.ecod")
    rng = np.random.RandomState(0)
    X_train, inliers = rng.normal(size=(2000, 3)), rng.normal(size=(10, 3))
    conformal = ConformalDetector(ecod.ECOD(), random_state=0).fit(X_train)
    alone = conformal.score_samples(inliers)
    in_a_crowd = conformal.score_samples(np.r_[inliers, rng.normal(8.0, 1.0, size=(2000, 3))])
    assert np.abs(in_a_crowd[:10] - alone).max() < 0.05  # 0.013 measured
    assert in_a_crowd[10:].max() < 0.01  # every anomaly keeps a small p-value (0.0017)


def test_an_estimators_own_calibration_is_reused_only_when_it_can_reach_alpha():
    """An ensemble holds out 10 %: 17 of 180 inliers, whose smallest p-value 1/18 misses
    alpha=0.05. 79c6eae reused them anyway and refused every level, while its error said to
    raise calibration_fraction, which reuse ignored; now the split holds out enough."""
    from skood import EnsembleDetector, KNNDetector

    rng = np.random.RandomState(0)
    X = rng.normal(size=(180, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the inner detector's own offset_ warns of nothing here
        small = ConformalDetector(EnsembleDetector(random_state=0), alpha=0.05, random_state=0)
        small.fit(X)
    assert not small.reused_calibration_
    assert small.n_calibration_ == round(180 * small.calibration_fraction) > 17
    knn = ConformalDetector(KNNDetector(), alpha=0.05, random_state=0).fit(X)
    assert knn.reused_calibration_ and knn.n_calibration_ == 180  # leave-one-out: all rows


def test_dkwm_bounds_refuse_a_delta_above_their_proof():
    """The one-sided DKWM inequality with Massart's constant holds for delta <= 0.5; 79c6eae
    accepted any delta in (0, 1). Simes' bound holds for any delta."""
    X = np.random.RandomState(0).normal(size=(2000, 2))  # enough rows for DKWM to reach alpha
    det = ConformalDetector(GaussianMahalanobis(), calibration_conditional="dkwm", delta=0.7)
    with pytest.raises(ValueError, match=r"proved for delta <= 0.5.*'simes'"):
        det.fit(X)
    ConformalDetector(GaussianMahalanobis(), calibration_conditional="dkwm", delta=0.5).fit(X)
    ConformalDetector(GaussianMahalanobis(), calibration_conditional="simes", delta=0.7).fit(X)


def test_bh_that_cannot_flag_a_lone_outlier_says_so():
    """20 calibration rows: the smallest p-value 1/21 is above alpha / m = 0.1 / 100."""
    rng = np.random.RandomState(0)
    det = ConformalDetector(
        GaussianMahalanobis(), alpha=0.1, fdr=True, calibration_fraction=0.5, random_state=0
    ).fit(rng.normal(size=(40, 2)))
    batch = np.vstack([rng.normal(size=(99, 2)), [[8.0, 8.0]]])
    with pytest.warns(UserWarning, match=r"batch of 100 rows.*alpha / m = 0.001.*at least 999"):
        flagged = det.predict(batch)
    assert (flagged == -1).sum() == 0  # what the warning says: the far row is not flagged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.predict(batch[:2])  # a batch of 2: 1/21 <= 0.1 / 2, BH can flag


def test_storey_fdr_flags_more_when_many_rows_are_outliers_and_keeps_the_fdr():
    """fdr='storey' is adaptive BH on the batch: a batch that is 40 % outliers gets more flags
    than plain BH, and the realised FDR stays within alpha (Monte Carlo, 3 standard errors)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 2))
    det = ConformalDetector(_gauss(), alpha=ALPHA, fdr=True, random_state=0).fit(X)
    storey = copy.deepcopy(det).set_params(fdr="storey")  # fdr changes on a fitted model
    more, fdps = 0, []
    for _ in range(200):
        batch = np.r_[rng.normal(size=(60, 2)), rng.normal(2.5, 1.0, size=(40, 2))]
        plain, adaptive = det.predict(batch) == -1, storey.predict(batch) == -1
        assert np.all(adaptive[plain])  # alpha / pi0 >= alpha: never fewer flags
        more += adaptive.sum() > plain.sum()
        fdps.append(adaptive[:60].sum() / max(adaptive.sum(), 1))
    assert more > 100
    fdps = np.asarray(fdps)
    assert fdps.mean() <= ALPHA + 3 * fdps.std(ddof=1) / np.sqrt(fdps.size)


# -- contaminated calibration: Label-Trim (Bashari, Sesia & Romano 2025) ---------------------------


def _contaminated(rng, n, share):
    """``n`` training rows, a ``share`` of them unlabelled outliers (shifted by 3.5)."""
    k = round(share * n)
    X = rng.normal(size=(n, 2))
    X[:k] += 3.5
    return X, np.arange(n) < k  # the rows that are outliers


def test_label_trim_lists_the_lowest_calibration_rows_and_drops_the_reviewed_outliers():
    rng = np.random.default_rng(0)
    X, outlier = _contaminated(rng, 300, 0.1)
    det = ConformalDetector(_gauss(), alpha=ALPHA, labeling_budget=20, random_state=0).fit(X)
    assert det.calibration_rows_.size == det.n_calibration_ == 90
    assert not det.reused_calibration_
    scores = det.detector_scores(X)
    calibration = np.sort(scores[det.calibration_rows_])
    np.testing.assert_array_equal(det.calibration_scores_, calibration)
    np.testing.assert_array_equal(scores[det.review_rows_], calibration[:20])  # lowest first
    assert outlier[det.review_rows_].sum() >= 5  # the outliers are among the suspicious rows
    verdict = outlier[det.review_rows_]
    det.trim_calibration(verdict.astype(int))
    kept = np.setdiff1d(det.calibration_rows_, det.review_rows_[verdict])
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(scores[kept]))
    assert det.n_trimmed_ == verdict.sum() and det.n_calibration_ == 90 - verdict.sum()
    # p-values by hand on the rows left
    new = rng.normal(size=(50, 2))
    expected = _exact_p_values(np.sort(scores[kept]), det.detector_scores(new))
    np.testing.assert_allclose(det.score_samples(new), expected, rtol=0, atol=1e-15)
    # a second verdict replaces the first
    det.trim_calibration(np.zeros(20, dtype=bool))
    np.testing.assert_array_equal(det.calibration_scores_, calibration)
    assert det.n_trimmed_ == 0
    loaded = _skood_round_trip(det.trim_calibration(verdict))
    np.testing.assert_array_equal(loaded.score_samples(new), det.score_samples(new))
    np.testing.assert_array_equal(loaded.review_rows_, det.review_rows_)


def test_label_trim_recovers_power_and_holds_the_level():
    """5 % unlabelled outliers in the training rows: the plain split is conservative (the
    outliers' low calibration scores raise every p-value) and loses power; Label-Trim with a
    budget of 10 % of the calibration rows gets the power back, its false-positive rate within
    alpha plus the Monte Carlo error (200 repetitions)."""
    rng = np.random.default_rng(1)
    fpr = {"plain": [], "trim": []}
    power = {"plain": [], "trim": []}
    for rep in range(200):
        X, outlier = _contaminated(rng, 400, 0.05)
        det = ConformalDetector(_gauss(), alpha=ALPHA, labeling_budget=12, random_state=rep)
        det.fit(X)
        inliers, anomalies = rng.normal(size=(200, 2)), rng.normal(size=(50, 2)) + 2.5
        for name in ("plain", "trim"):
            if name == "trim":
                det.trim_calibration(outlier[det.review_rows_])
            fpr[name].append(np.mean(det.predict(inliers) == -1))
            power[name].append(np.mean(det.predict(anomalies) == -1))
    for name in fpr:
        rates = np.asarray(fpr[name])
        assert rates.mean() <= ALPHA + 3 * rates.std(ddof=1) / np.sqrt(rates.size)
    assert np.mean(fpr["plain"]) < 0.8 * ALPHA  # conservative
    assert np.mean(power["trim"]) > np.mean(power["plain"]) + 0.05


def test_label_trim_refuses_what_its_guarantee_does_not_cover():
    X = np.random.default_rng(2).normal(size=(200, 2))
    for bad in ({"method": "cross"}, {"calibration_conditional": "simes"}):
        with pytest.raises(ValueError, match="labeling_budget"):
            ConformalDetector(_gauss(), labeling_budget=5, **bad).fit(X)
    with pytest.raises(ValueError, match="labeling_budget"):
        ConformalDetector(_gauss(), labeling_budget=5, class_conditional=True).fit(
            X, np.arange(200) % 2
        )
    with pytest.raises(ValueError, match="more than the 60 calibration rows"):
        ConformalDetector(_gauss(), labeling_budget=61).fit(X)
    det = ConformalDetector(_gauss(), labeling_budget=5, random_state=0).fit(X)
    with pytest.raises(ValueError, match="one verdict per listed row"):
        det.trim_calibration([1, 0])
    with pytest.raises(ValueError, match="no verdict"):
        det.trim_calibration([1.0, 0.0, np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="0 / 1"):
        det.trim_calibration([2, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="labeling_budget=0"):
        ConformalDetector(_gauss()).fit(X).trim_calibration([])
    with pytest.raises(ValueError, match="fitted with labeling_budget=5"):
        det.set_params(labeling_budget=3).trim_calibration([0, 0, 0])


# -- an already fitted detector (FrozenEstimator) --------------------------------------------------


def test_a_frozen_detector_is_not_refitted_and_every_row_calibrates():
    from sklearn.frozen import FrozenEstimator

    rng = np.random.default_rng(3)
    X_train, X_cal = rng.normal(size=(300, 2)), rng.normal(size=(99, 2))
    forest = IsolationForest(random_state=0).fit(X_train)
    before = forest.score_samples(X_cal)
    det = ConformalDetector(FrozenEstimator(forest), alpha=ALPHA).fit(X_cal)
    np.testing.assert_array_equal(forest.score_samples(X_cal), before)  # not refitted
    assert det.n_calibration_ == 99 and not det.reused_calibration_
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(before))
    new = rng.normal(size=(20, 2))
    np.testing.assert_array_equal(
        det.score_samples(new), _exact_p_values(before, forest.score_samples(new))
    )
    # labelled outliers among the calibration rows are left out, as in the split
    y = np.where(np.arange(99) < 9, -1, 1)
    assert ConformalDetector(FrozenEstimator(forest)).fit(X_cal, y).n_calibration_ == 90
    with pytest.raises(ValueError, match="FrozenEstimator"):
        ConformalDetector(FrozenEstimator(forest), method="cross").fit(X_cal)
    buffer = io.BytesIO()
    skood.save(det, buffer)
    loaded = skood.load(io.BytesIO(buffer.getvalue()), trusted=["sklearn.tree._tree.Tree"])
    np.testing.assert_array_equal(loaded.predict(new), det.predict(new))


def test_false_discovery_bound_holds_for_the_batch_with_probability_one_minus_delta():
    """Over 300 (calibration, batch) draws the realised false discovery proportion of predict
    exceeds the bound in at most delta of them (plus 3 Monte Carlo standard errors), and the
    bound is informative (well below 1) when the batch's outliers are clear."""
    rng = np.random.default_rng(4)
    delta, misses, bounds = 0.1, 0, []
    for rep in range(300):
        X = rng.normal(size=(1000, 2))
        det = ConformalDetector(_gauss(), alpha=0.02, random_state=rep).fit(X)
        batch = np.r_[rng.normal(size=(180, 2)), rng.normal(size=(20, 2)) + 4.0]
        flagged = det.predict(batch) == -1
        fdp = flagged[:180].sum() / max(flagged.sum(), 1)
        bound = det.false_discovery_bound(batch, delta=delta)
        bounds.append(bound)
        misses += fdp > bound
    se = np.sqrt(delta * (1 - delta) / 300)
    assert misses / 300 <= delta + 3 * se
    assert np.median(bounds) < 0.6


def test_false_discovery_bound_refuses_what_it_does_not_cover():
    X = np.random.default_rng(5).normal(size=(200, 2))
    for bad in ({"fdr": True}, {"method": "cross"}):
        det = ConformalDetector(_gauss(), alpha=0.2, random_state=0, **bad).fit(X)
        with pytest.raises(ValueError, match="per-row rule"):
            det.false_discovery_bound(X)
    det = ConformalDetector(_gauss(), alpha=0.2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="delta"):
        det.false_discovery_bound(X, delta=1.0)
    assert det.false_discovery_bound(X[:20] * 0.0, delta=0.1) == 0.0  # nothing flagged
