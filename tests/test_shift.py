"""skood.shift: weighted conformal p-values and Weighted Conformalized Selection (Jin & Candès).

The formulas against hand computations and a direct transcription of the paper's Algorithm 1;
validity under a known covariate shift by Monte Carlo (where unweighted p-values fail); the
estimator's contract (determinism, clone, pickle, skood.save / load, sklearn's checks).
"""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import skood
from skood.conformal import benjamini_hochberg, conformal_p_values
from skood.shift import (
    WeightedConformalDetector,
    _bh_sizes,
    estimate_likelihood_ratio,
    weighted_conformal_p_values,
    weighted_conformal_selection,
)

# -- the p-value formula -------------------------------------------------------------------------


def test_p_value_matches_hand_computation_with_ties():
    cal = np.array([1.0, 2.0, 2.0, 3.0])
    cal_w = np.array([1.0, 2.0, 3.0, 4.0])
    u = np.random.RandomState(7).uniform(size=2)
    p = weighted_conformal_p_values(cal, [2.0, 0.5], cal_w, [5.0, 0.5], random_state=7)
    # row 0: weight 1 strictly below, 2 + 3 tied, own weight 5, total 10 + 5
    # row 1: nothing below or tied, own weight 0.5, total 10.5
    np.testing.assert_allclose(p, [(1 + u[0] * (5 + 5)) / 15, u[1] * 0.5 / 10.5], rtol=1e-15)
    deterministic = weighted_conformal_p_values(
        cal, [2.0, 0.5, 9.0], cal_w, [5.0, 0.5, 1.0], randomize=False
    )
    np.testing.assert_allclose(deterministic, [11 / 15, 0.5 / 10.5, 1.0], rtol=1e-15)


def test_deterministic_p_value_counts_near_ties_as_skood_does():
    """A float32 model's 1e-7 rounding must not move the deterministic p-value (TIE_RTOL)."""
    cal = np.array([1.0, 2.0 * (1 + 1e-7), 3.0], dtype=np.float32)
    p = weighted_conformal_p_values(cal, [2.0], [1.0, 1.0, 1.0], [1.0], randomize=False)
    assert p[0] == pytest.approx(3 / 4)  # the near tie counts as <=, like conformal_p_values
    assert p[0] == conformal_p_values(cal, [2.0])[0]
    # float64 scores tie within 1e-10 only (skood.base.tie_rtol): 2 (1 + 1e-7) is above 2
    p64 = weighted_conformal_p_values(
        cal.astype(np.float64), [2.0], np.ones(3), [1.0], randomize=False
    )
    assert p64[0] == pytest.approx(2 / 4)
    assert p64[0] == conformal_p_values(cal.astype(np.float64), [2.0])[0]


def test_unit_weights_reduce_to_unweighted_conformal_p_values():
    rng = np.random.default_rng(0)
    cal = np.round(rng.normal(size=200), 1)  # rounded: many ties
    scores = np.round(rng.normal(size=500), 1)
    ones_cal, ones = np.ones(cal.size), np.ones(scores.size)
    unweighted = conformal_p_values(cal, scores)
    deterministic = weighted_conformal_p_values(cal, scores, ones_cal, ones, randomize=False)
    np.testing.assert_allclose(deterministic, unweighted, rtol=1e-14)
    randomized = weighted_conformal_p_values(cal, scores, ones_cal, ones, random_state=0)
    strictly_below = (cal[None, :] < scores[:, None]).sum(axis=1)
    assert np.all(randomized <= unweighted + 1e-15)
    assert np.all(randomized >= strictly_below / (cal.size + 1) - 1e-15)
    assert np.any(randomized < unweighted - 1e-3)  # the randomisation does act
    # scaling every weight by a constant changes nothing: only ratios matter
    scaled = weighted_conformal_p_values(cal, scores, 3 * ones_cal, 3 * ones, random_state=0)
    np.testing.assert_allclose(scaled, randomized, rtol=1e-14)


def test_randomized_p_values_are_uniform_for_exchangeable_rows():
    """w = 1 and no ties: p is exactly Uniform(0, 1) over calibration and test draws."""
    rng = np.random.default_rng(1)
    p = np.concatenate(
        [
            weighted_conformal_p_values(
                rng.normal(size=9),
                rng.normal(size=1),
                np.ones(9),
                [1.0],
                random_state=rng.integers(1 << 30),
            )
            for _ in range(4000)
        ]
    )
    # Kolmogorov-Smirnov distance to the uniform, with a generous bound (1.63 / sqrt(4000) at 1 %)
    grid = np.sort(p)
    ks = np.max(np.abs(grid - np.arange(1, grid.size + 1) / grid.size))
    assert ks < 0.026
    # the deterministic one has the (n + 1)-point grid instead
    assert np.mean(p <= 0.1) == pytest.approx(0.1, abs=0.015)


@pytest.mark.parametrize(
    ("cal_w", "w", "message"),
    [
        (np.array([1.0, 0.0, 1.0]), [1.0], "calibration_weights must be finite and > 0"),
        (np.ones(3), [-1.0], r"weights must be finite and > 0 .*row 0: -1.0"),
        (np.ones(3), [np.inf], "weights must be finite and > 0"),
        (np.array([1.0, np.nan, 1.0]), [1.0], "calibration_weights must be finite"),
        (np.ones(2), [1.0], r"calibration_weights must have shape \(3,\)"),
    ],
)
def test_bad_weights_are_refused(cal_w, w, message):
    with pytest.raises(ValueError, match=message):
        weighted_conformal_p_values([1.0, 2.0, 3.0], [1.5], cal_w, w)


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="scores must be finite"):
        weighted_conformal_p_values([1.0, np.nan], [1.5], [1.0, 1.0], [1.0])


# -- Weighted Conformalized Selection against the paper's Algorithm 1, transcribed ----------------


def _algorithm_1(p, cal, scores, cal_w, w, alpha, pruning, random_state):
    """Jin & Candès, Algorithm 1, line by line (O(m^2 log m), no shortcut)."""
    m = len(scores)
    sizes = np.zeros(m, dtype=int)
    for j in range(m):
        modified = np.zeros(m)
        for ell in range(m):
            if ell != j:
                numerator = cal_w[cal < scores[ell]].sum() + w[j] * (scores[j] < scores[ell])
                modified[ell] = numerator / (cal_w.sum() + w[j])
        # modified[j] = 0
        sizes[j] = benjamini_hochberg(modified, alpha).sum()
    first = [j for j in range(m) if p[j] <= alpha * sizes[j] / m]
    rng = np.random.RandomState(random_state)
    if pruning == "heterogeneous":
        xi = rng.uniform(size=m)
    elif pruning == "homogeneous":
        xi = np.full(m, rng.uniform())
    else:
        xi = np.ones(m)
    r_star = max(r for r in range(0, m + 1) if sum(xi[j] * sizes[j] <= r for j in first) >= r)
    selected = np.zeros(m, dtype=bool)
    selected[[j for j in first if xi[j] * sizes[j] <= r_star]] = True
    return selected, sizes


def _example(seed, m=40, n=60, ties=False):
    rng = np.random.default_rng(seed)
    cal = rng.normal(size=n)
    scores = np.r_[rng.normal(size=m - 8), rng.normal(-2.5, 0.5, size=8)]
    if ties:
        cal, scores = np.round(cal, 1), np.round(scores, 1)
    return cal, scores, rng.uniform(0.2, 3.0, size=n), rng.uniform(0.2, 3.0, size=m)


@pytest.mark.parametrize("pruning", ["heterogeneous", "homogeneous", "deterministic"])
@pytest.mark.parametrize("ties", [False, True])
def test_selection_matches_algorithm_1(pruning, ties):
    n_selected = []
    for seed in range(6):
        cal, scores, cal_w, w = _example(seed, ties=ties)
        p = weighted_conformal_p_values(cal, scores, cal_w, w, random_state=seed)
        for alpha in (0.1, 0.3):
            expected, sizes = _algorithm_1(p, cal, scores, cal_w, w, alpha, pruning, seed)
            np.testing.assert_array_equal(_bh_sizes(cal, scores, cal_w, w, alpha), sizes)
            got = weighted_conformal_selection(
                p, cal, scores, cal_w, w, alpha, pruning=pruning, random_state=seed
            )
            np.testing.assert_array_equal(got, expected)
            n_selected.append(got.sum())
    # the example is not trivial: some batches select, none selects everything
    assert 0 < max(n_selected) < 40


def test_selection_edge_cases():
    cal, scores, cal_w, w = _example(0)
    p = weighted_conformal_p_values(cal, scores, cal_w, w, random_state=0)
    none = weighted_conformal_selection(np.ones(40), cal, scores, cal_w, w, 0.1, random_state=0)
    assert not none.any()
    empty = weighted_conformal_selection([], cal, [], cal_w, [], 0.1)
    assert empty.shape == (0,)
    one = weighted_conformal_selection(
        [0.001], cal, [-9.0], cal_w, [1.0], 0.1, pruning="deterministic"
    )
    assert one.tolist() == [True]
    with pytest.raises(ValueError, match="pruning must be one of"):
        weighted_conformal_selection(p, cal, scores, cal_w, w, 0.1, pruning="hete")
    with pytest.raises(ValueError, match="alpha must be in"):
        weighted_conformal_selection(p, cal, scores, cal_w, w, 1.5)
    with pytest.raises(ValueError, match="p_values has 3 entries for 40 scores"):
        weighted_conformal_selection(p[:3], cal, scores, cal_w, w, 0.1)


# -- validity under a known covariate shift (Monte Carlo) ----------------------------------------

# P = N(0, I_2), Q = N(theta, I_2): dQ/dP(x) = exp(theta . x - |theta|^2 / 2). The score is
# -|x|^2 (a fixed function, so no model is fitted): Q's inliers sit further from 0 than P's,
# so the unweighted p-values are too small for them. Outliers: N(0, I) * 0.4 + (0, 4).
_THETA = np.array([1.2, 0.0])


def _shift_batch(rng, n_cal=200, m=100, n_out=10):
    cal = rng.normal(size=(n_cal, 2))
    inliers = rng.normal(size=(m - n_out, 2)) + _THETA
    outliers = rng.normal(size=(n_out, 2)) * 0.4 + [0.0, 4.0]
    return cal, np.vstack([inliers, outliers]), np.r_[np.zeros(m - n_out), np.ones(n_out)]


def _w(X):
    return np.exp(X @ _THETA)


def _score(X):
    return -np.sum(X**2, axis=1)


def test_monte_carlo_weighted_selection_controls_fdr_where_unweighted_does_not():
    """1,000 batches: WCS's FDR and the weighted level test's FPR stay within alpha plus three
    Monte Carlo standard errors; unweighted conformal + BH exceeds alpha by far more."""
    alpha, reps = 0.1, 1000
    rng = np.random.default_rng(2024)
    fdp = {"wcs": [], "bh_unweighted": []}
    fpr = {"level": [], "level_unweighted": []}
    power = []
    for _ in range(reps):
        cal, X, is_out = _shift_batch(rng)
        s_cal, s = _score(cal), _score(X)
        seed = int(rng.integers(1 << 30))
        p = weighted_conformal_p_values(s_cal, s, _w(cal), _w(X), random_state=seed)
        # xi must not replay U: the next seed (the same one gives FDR 0.18, see the docstring)
        sel = weighted_conformal_selection(
            p, s_cal, s, _w(cal), _w(X), alpha, random_state=seed + 1
        )
        unweighted = conformal_p_values(s_cal, s)
        bh = benjamini_hochberg(unweighted, alpha)
        fdp["wcs"].append((sel & (is_out == 0)).sum() / max(sel.sum(), 1))
        fdp["bh_unweighted"].append((bh & (is_out == 0)).sum() / max(bh.sum(), 1))
        fpr["level"].append(np.mean(p[is_out == 0] <= alpha))
        fpr["level_unweighted"].append(np.mean(unweighted[is_out == 0] <= alpha))
        power.append(sel[is_out == 1].mean())

    def bound(values):
        values = np.asarray(values)
        return alpha + 3 * values.std(ddof=1) / np.sqrt(values.size)

    assert np.mean(fdp["wcs"]) <= bound(fdp["wcs"])
    assert np.mean(fpr["level"]) <= bound(fpr["level"])
    # the shift matters: without weights both rates are far above alpha
    assert np.mean(fdp["bh_unweighted"]) > bound(fdp["bh_unweighted"]) + 0.05
    assert np.mean(fpr["level_unweighted"]) > 2 * alpha
    assert np.mean(power) > 0.3  # and WCS still finds outliers (0.38 here)


# -- estimated likelihood ratios -----------------------------------------------------------------


def test_estimated_likelihood_ratio_tracks_the_true_one():
    rng = np.random.default_rng(3)
    cal, X, _ = _shift_batch(rng, n_cal=1000, m=1000, n_out=0)
    cal_w, w = estimate_likelihood_ratio(cal, X, random_state=0)
    true_cal, true = (
        _w(cal) * np.exp(-(_THETA @ _THETA) / 2),
        _w(X) * np.exp(-(_THETA @ _THETA) / 2),
    )
    assert np.corrcoef(np.log(cal_w), np.log(true_cal))[0, 1] > 0.99
    assert np.median(np.abs(np.log(w / true))) < 0.2  # the scale too, not only the shape
    assert np.all(np.isfinite(cal_w)) and np.all(cal_w > 0)


def test_estimated_ratio_stays_finite_for_a_separating_classifier():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(4)
    cal, X = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 20  # disjoint supports
    cal_w, w = estimate_likelihood_ratio(
        cal, X, classifier=HistGradientBoostingClassifier(), random_state=0
    )
    assert np.all(np.isfinite(np.r_[cal_w, w])) and np.all(np.r_[cal_w, w] > 0)


# -- the estimator --------------------------------------------------------------------------------


def _fit_data(seed=0, n=600):
    return np.random.default_rng(seed).normal(size=(n, 2))


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(size=(190, 2)) + _THETA, rng.normal([0, 6], 0.5, size=(10, 2))])


def test_detector_flags_the_outliers_and_matches_the_functions():
    X, batch = _fit_data(), _batch()
    det = WeightedConformalDetector(
        EllipticEnvelope(random_state=0), likelihood_ratio=_w, alpha=0.1, random_state=0
    ).fit(X)
    assert det.n_calibration_ == 180 and det.X_calibration_.shape == (180, 2)
    flags = det.predict(batch)
    assert (flags[-10:] == -1).sum() >= 7 and (flags[:190] == -1).sum() <= 5
    # predict = the functions on the same draws: U first, then xi, from random_state
    rng = np.random.RandomState(0)
    s = det.estimator_.score_samples(batch)
    p = weighted_conformal_p_values(
        det.calibration_scores_, s, _w(det.X_calibration_), _w(batch), random_state=rng
    )
    np.testing.assert_array_equal(det.score_samples(batch), p)
    expected = weighted_conformal_selection(
        p, det.calibration_scores_, s, _w(det.X_calibration_), _w(batch), 0.1, random_state=rng
    )
    np.testing.assert_array_equal(flags, np.where(expected, -1, 1))
    # the other selections
    det.set_params(selection="bh")
    np.testing.assert_array_equal(det.predict(batch), np.where(benjamini_hochberg(p, 0.1), -1, 1))
    det.set_params(selection="level")
    np.testing.assert_array_equal(det.predict(batch), np.where(p <= 0.1, -1, 1))
    np.testing.assert_array_equal(det.decision_function(batch) >= 0, p > 0.1)


def test_estimated_weights_by_default_and_determinism():
    X, batch = _fit_data(), _batch()
    det = WeightedConformalDetector(IsolationForest(random_state=0), random_state=0).fit(X)
    assert not hasattr(det, "calibration_weights_")
    p1, f1 = det.score_samples(batch), det.predict(batch)
    refit = clone(det).fit(X)
    np.testing.assert_array_equal(refit.score_samples(batch), p1)
    np.testing.assert_array_equal(refit.predict(batch), f1)
    np.testing.assert_array_equal(det.score_samples(batch), p1)  # same draws on every call
    # a different seed draws other tie-breaking uniforms
    other = clone(det).set_params(random_state=1).fit(X)
    assert not np.array_equal(other.score_samples(batch), p1)
    assert p1.dtype == np.float64 and np.all((p1 >= 0) & (p1 <= 1))


def test_pickle_and_skood_save_load_round_trip(tmp_path):
    X, batch = _fit_data(), _batch()
    det = WeightedConformalDetector(EllipticEnvelope(random_state=0), random_state=0).fit(X)
    for loaded in (pickle.loads(pickle.dumps(det)), _saved(det, tmp_path)):
        np.testing.assert_array_equal(loaded.score_samples(batch), det.score_samples(batch))
        np.testing.assert_array_equal(loaded.predict(batch), det.predict(batch))
        np.testing.assert_array_equal(loaded.decision_function(batch), det.decision_function(batch))


def _saved(model, tmp_path):
    path = tmp_path / "shift.skood"
    skood.save(model, path)
    return skood.load(path)


def test_outlier_rows_in_y_are_never_calibrated_on():
    X = _fit_data()
    y = np.r_[np.ones(500), -np.ones(100)]
    X[500:] += 8.0
    det = WeightedConformalDetector(EllipticEnvelope(random_state=0), random_state=0).fit(X, y)
    assert det.n_calibration_ == 150
    assert np.abs(det.X_calibration_).max() < 6


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"alpha": 1.5}, InvalidParameterError, "alpha"),
        ({"selection": "storey"}, InvalidParameterError, "selection"),
        ({"pruning": "hete"}, InvalidParameterError, "pruning"),
        ({"likelihood_ratio": 3.0}, InvalidParameterError, "likelihood_ratio"),
        ({"likelihood_ratio": lambda X: -np.ones(len(X))}, ValueError, "finite and > 0"),
        ({"likelihood_ratio": lambda X: np.ones(3)}, ValueError, r"must have shape \(180,\)"),
    ],
)
def test_bad_parameters_are_refused_at_fit(params, error, match):
    det = WeightedConformalDetector(IsolationForest(random_state=0), random_state=0, **params)
    with pytest.raises(error, match=match):
        det.fit(_fit_data())
    assert not hasattr(det, "estimator_")  # a failed fit leaves nothing behind


def test_bad_weights_on_a_batch_and_bad_level_after_fit_are_refused():
    def weights(X):
        return np.where(X[:, 0] > 5, 0.0, 1.0)

    det = WeightedConformalDetector(
        IsolationForest(random_state=0), likelihood_ratio=weights, random_state=0
    ).fit(_fit_data())
    with pytest.raises(ValueError, match=r"likelihood_ratio\(X\) must be finite and > 0"):
        det.predict(np.array([[0.0, 0.0], [9.0, 0.0]]))
    det.set_params(alpha=0.0)
    with pytest.raises(InvalidParameterError, match="alpha"):
        det.predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="features"):
        det.set_params(alpha=0.1).score_samples(np.zeros((2, 3)))


# -- scikit-learn's checks ------------------------------------------------------------------------


def _unit_ratio(X):
    """A picklable likelihood ratio for the checks (no shift)."""
    return np.ones(len(X))


_BATCH_DEPENDENT = (
    "predict selects from the whole batch (WCS), so a row's flag depends on the rows scored "
    "with it; the estimated likelihood ratio makes the p-values batch-dependent too"
)
_WCS_PREDICT = (
    "decision_function is the per-row level test (p <= alpha), while predict is the batch's "
    "WCS selection at FDR alpha, as ConformalDetector(fdr=True) does"
)

_CHECKED = [
    WeightedConformalDetector(IsolationForest(n_estimators=20, random_state=0), random_state=0),
    WeightedConformalDetector(
        IsolationForest(n_estimators=20, random_state=0),
        likelihood_ratio=_unit_ratio,
        selection="level",
        randomize=False,
        random_state=0,
    ),
]


def _expected_failed_checks(estimator):
    if estimator.likelihood_ratio is not None:
        return {}
    return {
        "check_methods_subset_invariance": _BATCH_DEPENDENT,
        "check_methods_sample_order_invariance": _BATCH_DEPENDENT,
        "check_outliers_train": _WCS_PREDICT,
        "check_outliers_fit_predict": (
            "fit_predict screens the inlier-only training rows as a batch: WCS at FDR alpha "
            "rightly selects none of them, and the check wants both -1 and +1"
        ),
    }


@parametrize_with_checks(_CHECKED, expected_failed_checks=_expected_failed_checks)
def test_sklearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)
