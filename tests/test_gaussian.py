"""GaussianMahalanobis against closed forms (scipy, numpy), singular covariance, batching."""

import copy
import pickle
import re
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.covariance import EmpiricalCovariance, MinCovDet
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError

from skood import GaussianMahalanobis
from skood.gaussian import GaussianMoments
from skood.metrics import auroc


def test_unconditional_score_is_the_mle_gaussian_log_density(rng):
    X = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    det = GaussianMahalanobis(reg_covar=0.0, offset_cv=None).fit(X)
    expected = multivariate_normal(X.mean(0), np.cov(X.T, bias=True)).logpdf(X)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-8)
    assert det.classes_ is None and det.means_.shape == (1, 4)


def _tied_reference(X, y):
    classes = np.unique(y)
    means = np.stack([X[y == c].mean(0) for c in classes])
    centred = X - means[np.searchsorted(classes, y)]
    cov = centred.T @ centred / len(X)
    return means, cov


@pytest.mark.parametrize("aggregate", ["max", "logsumexp"])
def test_class_conditional_tied_covariance_matches_numpy(rng, aggregate):
    y = np.repeat([3, 7, 9], 100)
    X = rng.normal(size=(300, 3)) + np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]])[y // 3 - 1]
    det = GaussianMahalanobis(aggregate=aggregate, reg_covar=0.0).fit(X, y)
    means, cov = _tied_reference(X, y)
    Z = rng.normal(size=(50, 3)) * 3
    dens = np.stack([multivariate_normal(m, cov).logpdf(Z) for m in means], axis=1)
    expected = dens.max(1) if aggregate == "max" else logsumexp(dens, axis=1) - np.log(3)
    np.testing.assert_allclose(det.score_samples(Z), expected, rtol=1e-8)
    np.testing.assert_array_equal(det.classes_, [3, 7, 9])
    inv = np.linalg.inv(cov)
    d2 = np.min([np.einsum("ij,jk,ik->i", Z - m, inv, Z - m) for m in means], axis=0)
    np.testing.assert_allclose(det.mahalanobis(Z), d2, rtol=1e-6)


def test_class_conditional_auto_and_explicit(rng):
    X = rng.normal(size=(60, 2))
    assert GaussianMahalanobis().fit(X, np.ones(60)).classes_ is None  # one label: unconditional
    assert GaussianMahalanobis(class_conditional=False).fit(X, np.arange(60) % 2).classes_ is None
    with pytest.raises(ValueError, match="class_conditional=True needs"):
        GaussianMahalanobis(class_conditional=True).fit(X)


def test_outlier_rows_are_not_a_class(rng):
    X = rng.normal(size=(80, 2))
    y = np.r_[np.zeros(40), np.ones(30), -np.ones(10)]
    det = GaussianMahalanobis().fit(X, y)
    np.testing.assert_array_equal(det.classes_, [0, 1])
    ref = GaussianMahalanobis().fit(X[:70], y[:70])
    np.testing.assert_allclose(det.score_samples(X), ref.score_samples(X))


def test_singular_covariance_from_dead_features_is_handled(rng):
    """Dead ReLU units: constant zero columns make the covariance singular."""
    X = np.maximum(rng.normal(size=(300, 20)), 0)
    X[:, :5] = 0.0
    det = GaussianMahalanobis().fit(X)
    assert np.linalg.matrix_rank(det.covariance_) == 15
    test = np.maximum(rng.normal(size=(20, 20)), 0)
    test[:, :5] = 0.0
    test[:5, 0] = 1.0  # a dead unit fires: strongly out of distribution
    scores = det.score_samples(test)
    assert np.isfinite(scores).all() and scores.dtype == np.float64
    assert scores[:5].max() < scores[5:].min()


@pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")  # 40 rows, 30 features
@pytest.mark.parametrize("covariance", ["empirical", "ledoit_wolf", "oas", "shrunk"])
def test_covariance_estimators(rng, covariance):
    X = rng.normal(size=(40, 30))
    det = GaussianMahalanobis(covariance=covariance).fit(X)
    assert np.isfinite(det.score_samples(X)).all()
    det2 = GaussianMahalanobis(covariance=MinCovDet(random_state=0)).fit(X[:, :3])
    assert det2.covariance_.shape == (3, 3)


def test_shrinkage_helps_when_features_outnumber_rows(rng):
    inl = rng.normal(size=(200, 60))
    train, test_in = inl[:50], inl[50:]  # 50 rows, 60 features: empirical covariance singular
    test_out = rng.normal(size=(150, 60)) * 1.3
    y = np.r_[np.ones(150), -np.ones(150)]
    Z = np.r_[test_in, test_out]
    with pytest.warns(UserWarning, match="it is singular"):
        emp = auroc(y, GaussianMahalanobis(covariance="empirical").fit(train).score_samples(Z))
    lw = auroc(y, GaussianMahalanobis(covariance="ledoit_wolf").fit(train).score_samples(Z))
    assert lw > emp
    # the default picks the shrinkage here, without a warning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*degrees of freedom")
        auto = GaussianMahalanobis().fit(train)
    assert auto.covariance_method_ == "oas"
    oas = GaussianMahalanobis(covariance="oas").fit(train)
    np.testing.assert_array_equal(auto.score_samples(Z), oas.score_samples(Z))
    assert auroc(y, auto.score_samples(Z)) > emp


def test_auto_covariance_is_empirical_from_two_degrees_of_freedom_per_feature(rng):
    """5 folds of n rows leave n - ceil(n / 5) rows; minus 1 class mean: >= 2 * d needed."""
    d = 10  # 26 rows: 26 - 6 - 1 = 19 < 20; 27 rows: 27 - 6 - 1 = 20
    assert GaussianMahalanobis().fit(rng.normal(size=(26, d))).covariance_method_ == "oas"
    det = GaussianMahalanobis().fit(rng.normal(size=(27, d)))
    assert det.covariance_method_ == "empirical"
    X = rng.normal(size=(27, d))
    np.testing.assert_array_equal(
        GaussianMahalanobis().fit(X).score_samples(X),
        GaussianMahalanobis(covariance="empirical").fit(X).score_samples(X),
    )


@pytest.mark.numerics
def test_batched_scoring_equals_one_shot(rng):
    X = rng.normal(size=(500, 5))
    y = np.arange(500) % 3
    det = GaussianMahalanobis().fit(X, y)
    small = pickle.loads(pickle.dumps(det)).set_params(inference_batch_size=7)
    np.testing.assert_allclose(small.score_samples(X), det.score_samples(X))


@pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")  # 100 rows, 40 features
def test_out_of_fold_offset_is_not_biased_by_the_training_rows(rng):
    """With many features and few rows, training scores overstate normality."""
    X = rng.normal(size=(400, 40))
    train, new = X[:100], X[100:]
    for offset_cv, lo, hi in [(5, 0.0, 0.12), (None, 0.3, 1.0)]:
        det = GaussianMahalanobis(contamination=0.05, offset_cv=offset_cv, random_state=0)
        flagged = (det.fit(train).predict(new) == -1).mean()
        assert lo <= flagged <= hi, (offset_cv, flagged)


def test_bad_input(rng):
    det = GaussianMahalanobis().fit(rng.normal(size=(20, 3)))
    with pytest.raises(ValueError, match="expecting 3 features"):
        det.score_samples(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        GaussianMahalanobis().fit(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="every row as an outlier"):
        GaussianMahalanobis().fit(rng.normal(size=(5, 2)), -np.ones(5))
    with pytest.raises(ValueError, match="1 sample"):
        GaussianMahalanobis().fit(np.ones((1, 3)))


def test_chunked_scatter_equals_sklearn_empirical_covariance_of_centred_rows(rng, monkeypatch):
    from sklearn.covariance import EmpiricalCovariance

    X = rng.normal(size=(503, 6)) * 3 + 10
    y = np.arange(503) % 4
    monkeypatch.setattr(GaussianMoments, "_BLOCK_ROWS", 17)  # the centred pass, in 30 blocks
    monkeypatch.setattr(GaussianMahalanobis, "_MAX_MEAN_TO_SPREAD", -1.0)  # always centre
    det = GaussianMahalanobis(offset_cv=3, random_state=0).fit(X, y)
    monkeypatch.undo()
    centred = X - np.stack([X[y == k].mean(0) for k in range(4)])[y]
    expected = EmpiricalCovariance(assume_centered=True).fit(centred).covariance_
    np.testing.assert_allclose(det.covariance_, expected, rtol=1e-10)
    one_chunk = GaussianMahalanobis(offset_cv=3, random_state=0).fit(X, y)
    np.testing.assert_allclose(det.offset_, one_chunk.offset_, rtol=1e-10)


@pytest.mark.parametrize("covariance", ["empirical", "ledoit_wolf", "oas", "shrunk"])
@pytest.mark.parametrize("classes", [False, True])
def test_fold_models_from_one_pass_equal_fold_models_fitted_on_their_rows(rng, covariance, classes):
    """The fold models come from the moments of one pass (fold scatter minus a mean-shift
    term); the covariance object path fits each fold's rows with sklearn. Both must agree,
    also when a class has a single row (absent from the training rows of one fold)."""
    from sklearn import covariance as sk_covariance

    X = rng.normal(size=(600, 5)) @ rng.normal(size=(5, 5)) + 40.0
    y = np.r_[rng.randint(3, size=599), 7] if classes else None
    if classes:
        X[y == 1] += 6.0
    objects = {
        "empirical": sk_covariance.EmpiricalCovariance(),
        "ledoit_wolf": sk_covariance.LedoitWolf(),
        "oas": sk_covariance.OAS(),
        "shrunk": sk_covariance.ShrunkCovariance(),
    }
    fast = GaussianMahalanobis(covariance=covariance, random_state=0).fit(X, y)
    rows = GaussianMahalanobis(covariance=objects[covariance], random_state=0).fit(X, y)
    np.testing.assert_allclose(fast.covariance_, rows.covariance_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.means_, rows.means_, rtol=1e-12)
    np.testing.assert_allclose(
        fast.calibration_scores_, rows.calibration_scores_, rtol=1e-10, atol=1e-10
    )


def test_offset_from_a_random_subset_of_rows_beyond_the_cap(rng, monkeypatch):
    """Beyond the cap, the out-of-fold scores of a random subset set the threshold; each fold
    model leaves out only its own test rows."""
    X = rng.normal(size=(2000, 3))
    full = GaussianMahalanobis(random_state=0).fit(X)
    monkeypatch.setattr(GaussianMahalanobis, "_MAX_CALIBRATION_ROWS", 500)
    capped = GaussianMahalanobis(random_state=0).fit(X)
    assert capped.calibration_scores_.shape == (500,)
    np.testing.assert_array_equal(capped.covariance_, full.covariance_)
    assert abs(capped.offset_ - full.offset_) < 0.5
    again = GaussianMahalanobis(random_state=0).fit(X)
    np.testing.assert_array_equal(again.calibration_scores_, capped.calibration_scores_)
    # The same through the covariance-object path, which fits each fold on its rows.
    from sklearn.covariance import EmpiricalCovariance

    rows = GaussianMahalanobis(covariance=EmpiricalCovariance(), random_state=0).fit(X)
    np.testing.assert_allclose(rows.calibration_scores_, capped.calibration_scores_, rtol=1e-9)


def test_gram_identity_and_centred_blocks_give_the_same_covariance(rng, monkeypatch):
    """Near zero the scatter is X^T X minus the mean term; far from it, blocks are centred."""
    X = rng.normal(size=(700, 4)) @ rng.normal(size=(4, 4))
    y = np.arange(700) % 3
    for shift in (0.0, 1e6):  # mu^2 / var ~ 0 (the identity) and ~1e12 (centred blocks)
        det = GaussianMahalanobis(random_state=0).fit(X + shift, y)
        monkeypatch.setattr(GaussianMahalanobis, "_MAX_MEAN_TO_SPREAD", -1.0)  # always centre
        centred = GaussianMahalanobis(random_state=0).fit(X + shift, y)
        monkeypatch.undo()
        np.testing.assert_allclose(det.covariance_, centred.covariance_, rtol=1e-9)
        np.testing.assert_allclose(det.offset_, centred.offset_, rtol=1e-9)


def test_a_changed_aggregate_refuses_the_threshold_set_for_the_old_one():
    """Three overlapping classes: max and GEM's logsumexp scores differ, and so do their offsets
    (measured: the max model's offset_ flags 2.5 % of new inliers; the logsumexp scores of the
    same model, against it, 11.4 %)."""
    X, y = make_blobs(n_samples=2000, centers=[[0, 0], [1.5, 0], [0, 1.5]], random_state=0)
    det = GaussianMahalanobis(random_state=0).fit(X[:1000], y[:1000])
    new = X[1000:]
    labels = det.predict(new)
    gem = copy.deepcopy(det).set_params(aggregate="logsumexp")
    assert not np.allclose(gem.score_samples(new), det.score_samples(new))  # rescoring works
    for method in (gem.predict, gem.decision_function):
        with pytest.raises(ValueError, match=r"aggregate='max'.*aggregate='logsumexp'.*fit again"):
            method(new)
    np.testing.assert_array_equal(gem.set_params(aggregate="max").predict(new), labels)
    # One Gaussian has no class densities to combine: aggregate changes nothing, refuses nothing.
    single = GaussianMahalanobis(random_state=0).fit(X[:1000])
    same = copy.deepcopy(single).set_params(aggregate="logsumexp")
    np.testing.assert_array_equal(same.predict(new), single.predict(new))


def test_too_few_rows_for_the_empirical_covariance_warn_with_what_to_do(rng):
    """12 rows of 10 features: the fold models' covariances are singular, offset_ lands at -1e7
    and a point 6 sigma out on every feature passes. Ledoit-Wolf flags it."""
    d, far = 10, np.full((1, 10), 6.0)
    X = rng.normal(size=(12, d))
    with pytest.warns(UserWarning, match=r"8 degrees of freedom.*covariance='ledoit_wolf'") as w:
        GaussianMahalanobis(covariance="empirical", random_state=0).fit(X)
    enough = int(re.search(r"at least (\d+) inlier rows", str(w[0].message)).group(1))
    with warnings.catch_warnings():
        # (12 rows are also too few for contamination=0.05: a warning of its own, not this one)
        warnings.filterwarnings("error", message=".*degrees of freedom")
        shrunk = GaussianMahalanobis(covariance="ledoit_wolf", random_state=0).fit(X)
        assert shrunk.predict(far)[0] == -1
        GaussianMahalanobis(random_state=0).fit(rng.normal(size=(1000, d)))
        GaussianMahalanobis(covariance="empirical").fit(
            rng.normal(size=(enough, d))
        )  # enough, as advised
        GaussianMahalanobis().fit(X)  # the default shrinks here: nothing to warn about
    with pytest.warns(UserWarning, match="degrees of freedom"):
        GaussianMahalanobis(covariance="empirical").fit(rng.normal(size=(enough - 1, d)))
    with pytest.warns(UserWarning, match="degrees of freedom"):  # the estimator object too
        GaussianMahalanobis(covariance=EmpiricalCovariance()).fit(X)


# -- GaussianMoments: the sums the model is computed from -----------------------------------------


def _moments_fields(m):
    return [m.counts, m.sums, m.scatter, m.centre] + ([] if m.fourth is None else [m.fourth])


@pytest.mark.parametrize("classes", [False, True])
@pytest.mark.parametrize("centred", [False, True], ids=["about-origin", "about-means"])
def test_moments_of_two_halves_add_up_to_the_moments_of_the_whole(rng, classes, centred):
    """Sums over rows: the halves' moments added equal the whole's to float64 rounding (rtol
    1e-12: the scatter entries are sums of ~600 products of O(10) values, each half summed in
    another order), fold models and the fourth moment included."""
    X = rng.normal(size=(600, 4)) @ rng.normal(size=(4, 4)) + 5.0
    y = np.arange(600) % 3 if classes else None
    labels = [0, 1, 2] if classes else None
    folds = GaussianMahalanobis(random_state=0).calibration_folds(600)
    whole = GaussianMoments.from_rows(X, y, classes=labels, folds=folds)
    about = {"about": whole} if centred else {}
    if centred:
        whole = GaussianMoments.from_rows(X, y, classes=labels, folds=folds, about=whole)
    halves = []
    for part in (slice(0, 257), slice(257, 600)):
        start, stop, _ = part.indices(600)
        part_folds = [f[(f >= start) & (f < stop)] - start for f in folds]
        part_y = None if y is None else y[part]
        halves.append(
            GaussianMoments.from_rows(X[part], part_y, classes=labels, folds=part_folds, **about)
        )
    total = sum(halves)
    assert total.n_rows == 600 and len(total.folds) == 5 and (total.fourth is None) != centred
    for got, want in zip([total, *total.folds], [whole, *whole.folds]):
        for a, b in zip(_moments_fields(got), _moments_fields(want)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="same classes, centre and number of folds"):
        halves[0] + GaussianMoments.from_rows(X[:10], None if y is None else y[:10] + 5)


@pytest.mark.parametrize("covariance", ["auto", "empirical", "ledoit_wolf", "oas", "shrunk"])
@pytest.mark.parametrize("offset_cv", [5, None])
@pytest.mark.parametrize("classes", [False, True])
def test_fit_moments_from_blocks_equals_fit(rng, covariance, offset_cv, classes):
    """What the Dask fit does, in memory: moments block by block (public names only), added,
    fit_moments, the fold models' out-of-fold scores, calibrate_offset. Model, offset_ and the
    calibration scores equal fit's to rtol 1e-10 (measured: at most 2e-11, on a whitening entry
    near 0 and a score near 0; the covariance 2e-13)."""
    X = rng.normal(size=(900, 4)) @ rng.normal(size=(4, 4)) + 2.0
    y = np.arange(900) % 3 if classes else None
    params = dict(covariance=covariance, offset_cv=offset_cv, random_state=0)
    memory = GaussianMahalanobis(**params).fit(X, y)

    det = GaussianMahalanobis(**params)
    labels = det.modelled_classes(None if y is None else np.unique(y))
    calibration = det.calibration_folds(900)
    folds = calibration if len(calibration) > 1 else []
    blocks = [slice(0, 300), slice(300, 650), slice(650, 900)]

    def moments(about=None):
        parts = []
        for b in blocks:
            start, stop, _ = b.indices(900)
            fb = [f[(f >= start) & (f < stop)] - start for f in folds]
            yb = None if labels is None else y[b]
            parts.append(GaussianMoments.from_rows(X[b], yb, classes=labels, folds=fb, about=about))
        return sum(parts)

    total = moments()
    assert det.moments_suffice(total) == (covariance != "ledoit_wolf")
    if not det.moments_suffice(total):
        total = moments(about=total)
    det.fit_moments(total)
    models = [det.fold_model(fold) for fold in total.folds] or [det]
    scores = np.concatenate([m.score_samples(X[rows]) for rows, m in zip(calibration, models)])
    det.calibrate_offset(scores, held_out=False)

    assert det.covariance_method_ == memory.covariance_method_
    for name in ("means_", "covariance_", "whitening_"):
        np.testing.assert_allclose(
            getattr(det, name), getattr(memory, name), rtol=1e-10, atol=1e-12
        )
    np.testing.assert_allclose(det.offset_, memory.offset_, rtol=1e-10)
    np.testing.assert_allclose(det.calibration_scores_, memory.calibration_scores_, rtol=1e-10)
    np.testing.assert_allclose(det.score_samples(X), memory.score_samples(X), rtol=1e-10)


def test_what_fit_moments_refuses(rng):
    X = rng.normal(size=(200, 3))
    raw = GaussianMoments.from_rows(X)
    with pytest.raises(ValueError, match=r"fourth moment about the class means.*about=moments"):
        GaussianMahalanobis(covariance="ledoit_wolf").fit_moments(raw)
    with pytest.raises(ValueError, match="fitted on the rows themselves"):
        GaussianMahalanobis(covariance=EmpiricalCovariance()).fit_moments(raw)
    with pytest.raises(ValueError, match="class_conditional=True needs inlier class labels"):
        GaussianMahalanobis(class_conditional=True).fit_moments(raw)
    per_class = GaussianMoments.from_rows(X, np.arange(200) % 2)
    with pytest.raises(ValueError, match="class_conditional=False, but the moments are per class"):
        GaussianMahalanobis(class_conditional=False).fit_moments(per_class)
    with pytest.raises(TypeError, match="takes GaussianMoments"):
        GaussianMahalanobis().fit_moments(X)
    # A refit from moments drops the old threshold: predict waits for calibrate_offset.
    det = GaussianMahalanobis().fit(X)
    det.fit_moments(GaussianMoments.from_rows(X[:100]))
    assert not hasattr(det, "offset_")
    with pytest.raises(NotFittedError, match="no offset_ yet: call calibrate_offset"):
        det.predict(X)
    det.calibrate_offset(det.score_samples(X[:100]), held_out=False)
    assert det.predict(X).shape == (200,)
    # Means 1e6 spreads from the origin: the moments about it would lose digits, about the means
    # (a second pass) they do not.
    far = GaussianMoments.from_rows(X + 1e6)
    assert not GaussianMahalanobis().moments_suffice(far)
    centred = GaussianMoments.from_rows(X + 1e6, about=far)
    assert GaussianMahalanobis().moments_suffice(centred)
    np.testing.assert_allclose(
        GaussianMahalanobis().fit_moments(centred).covariance_,
        np.cov(X.T, bias=True),
        rtol=1e-9,
    )


def test_default_offset_is_the_same_at_every_fit(rng):
    """The out-of-fold threshold of two identical default fits (issue 34: -62.3 against -62.9).
    The folds are the only draw of the fit; random_state=None shuffles them as 0 does."""
    X = rng.normal(size=(150, 30))
    offsets = [GaussianMahalanobis().fit(X).offset_ for _ in range(3)]
    assert offsets[0] == offsets[1] == offsets[2]
    assert offsets[0] == GaussianMahalanobis(random_state=0).fit(X).offset_
    # Another seed gives other folds, so another out-of-fold threshold.
    assert GaussianMahalanobis(random_state=1).fit(X).offset_ != offsets[0]
