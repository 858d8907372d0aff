"""ScoreDistributionDisplay: what it draws is what the detector computed."""

import matplotlib
import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import ConformalDetector, GaussianMahalanobis
from skood.conformal import benjamini_hochberg
from skood.metrics import ScoreDistributionDisplay

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X_train = rng.randn(300, 4)
    X_test = np.vstack([rng.randn(80, 4), rng.randn(20, 4) + 4.0])
    y_test = np.r_[np.zeros(80, dtype=int), -np.ones(20, dtype=int)]
    return X_train, X_test, y_test


def _bar_heights(patches):
    return np.array([p.get_height() for p in patches])


def test_from_estimator_draws_the_estimators_scores_and_threshold(data):
    X_train, X_test, y_test = data
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    display = ScoreDistributionDisplay.from_estimator(detector, X_test, y_test, density=False)

    scores = detector.score_samples(X_test)
    np.testing.assert_array_equal(display.inlier_scores, scores[:80])
    np.testing.assert_array_equal(display.outlier_scores, scores[80:])
    assert display.threshold == detector.offset_
    assert display.threshold_line_.get_xdata()[0] == detector.offset_
    # The rates in the legend are the predictions' rates.
    predicted_outlier = detector.predict(X_test) == -1
    assert display.inlier_rejection_rate_ == pytest.approx(predicted_outlier[:80].mean())
    assert display.outlier_detection_rate_ == pytest.approx(predicted_outlier[80:].mean())
    # The bars are the histogram of each group on shared bins.
    counts_in = _bar_heights(display.inlier_patches_)
    counts_out = _bar_heights(display.outlier_patches_)
    assert counts_in.sum() == 80 and counts_out.sum() == 20
    assert len(counts_in) == len(counts_out) == 40
    assert display.ax_.get_xscale() == "linear"  # no heavy tail here: the axis stays linear
    legend = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert legend[0].startswith("inliers (n=80") and legend[1].startswith("outliers (n=20")
    assert display.ax_.get_title() == "GaussianMahalanobis"
    assert display.figure_ is display.ax_.figure


def test_from_predictions_matches_from_estimator(data):
    X_train, X_test, y_test = data
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    a = ScoreDistributionDisplay.from_estimator(detector, X_test, y_test)
    b = ScoreDistributionDisplay.from_predictions(
        y_test, detector.score_samples(X_test), threshold=detector.offset_
    )
    np.testing.assert_array_equal(_bar_heights(a.inlier_patches_), _bar_heights(b.inlier_patches_))
    np.testing.assert_array_equal(
        _bar_heights(a.outlier_patches_), _bar_heights(b.outlier_patches_)
    )
    assert a.threshold == b.threshold
    # A boolean inlier mask is the same as skood's labels.
    c = ScoreDistributionDisplay.from_predictions(y_test != -1, detector.score_samples(X_test))
    np.testing.assert_array_equal(c.inlier_scores, a.inlier_scores)
    assert c.threshold_line_ is None and np.isnan(c.inlier_rejection_rate_)


def test_density_histograms_integrate_to_one(data):
    X_train, X_test, y_test = data
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    display = ScoreDistributionDisplay.from_estimator(detector, X_test, y_test)
    for patches in (display.inlier_patches_, display.outlier_patches_):
        area = sum(p.get_height() * p.get_width() for p in patches)
        assert area == pytest.approx(1.0)


def test_pipeline_and_sklearn_detector_and_decision_function(data):
    X_train, X_test, y_test = data
    pipe = make_pipeline(StandardScaler(), GaussianMahalanobis(random_state=0)).fit(X_train)
    display = ScoreDistributionDisplay.from_estimator(pipe, X_test, y_test)
    assert display.threshold == pipe[-1].offset_
    assert display.ax_.get_title() == "GaussianMahalanobis"

    decision = ScoreDistributionDisplay.from_estimator(
        pipe, X_test, y_test, response_method="decision_function"
    )
    assert decision.threshold == 0.0
    assert decision.inlier_rejection_rate_ == display.inlier_rejection_rate_

    forest = IsolationForest(random_state=0).fit(X_train)
    display = ScoreDistributionDisplay.from_estimator(forest, X_test, y_test, name="iForest")
    assert display.threshold == forest.offset_ and display.ax_.get_title() == "iForest"


def test_draws_on_given_axes_and_redraws(data):
    X_train, X_test, y_test = data
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    _, (left, right) = plt.subplots(1, 2)
    display = ScoreDistributionDisplay.from_estimator(detector, X_test, y_test, ax=left)
    assert display.ax_ is left
    display.plot(ax=right, name="again", bins=10)
    assert display.ax_ is right and right.get_title() == "again"
    assert len(display.inlier_patches_) == 10


def test_one_group_only_is_drawn(data):
    X_train, X_test, _ = data
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    display = ScoreDistributionDisplay.from_estimator(detector, X_test, np.zeros(len(X_test)))
    assert display.outlier_patches_ == [] and np.isnan(display.outlier_detection_rate_)
    assert len(display.inlier_patches_) == 40


def test_bad_inputs_get_clear_errors(data):
    X_train, X_test, y_test = data
    with pytest.raises(NotFittedError):
        ScoreDistributionDisplay.from_estimator(GaussianMahalanobis(), X_test, y_test)
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    with pytest.raises(ValueError, match="response_method"):
        ScoreDistributionDisplay.from_estimator(detector, X_test, y_test, response_method="proba")
    with pytest.raises(TypeError, match="has no score_samples"):
        ScoreDistributionDisplay.from_estimator(StandardScaler().fit(X_train), X_test, y_test)
    with pytest.raises(ValueError, match="entries"):
        ScoreDistributionDisplay.from_predictions(y_test[:-1], np.zeros(len(y_test)))
    with pytest.raises(ValueError, match="NaN or inf"):
        ScoreDistributionDisplay.from_predictions(y_test, np.full(len(y_test), np.nan))
    with pytest.raises(ValueError, match="threshold must be finite"):
        ScoreDistributionDisplay.from_predictions(y_test, np.zeros(len(y_test)), threshold=np.inf)
    with pytest.raises(ValueError, match="missing label"):
        ScoreDistributionDisplay.from_predictions([0.0, np.nan, -1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no scores"):
        ScoreDistributionDisplay.from_predictions([], [])


def test_asinh_scale_spaces_the_bins_evenly_on_that_scale():
    """Log-densities with a long lower tail: one bar on a linear axis, readable on asinh."""
    scores = np.r_[-np.logspace(0, 6, 90), -np.logspace(1, 8, 10)]
    y = np.r_[np.zeros(90), -np.ones(10)]
    display = ScoreDistributionDisplay.from_predictions(
        y, scores, threshold=-100.0, xscale="asinh", density=False, bins=20
    )
    assert display.ax_.get_xscale() == "asinh"
    edges = [p.get_x() for p in display.inlier_patches_] + [
        display.inlier_patches_[-1].get_x() + display.inlier_patches_[-1].get_width()
    ]
    # asinh's default linear_width is 1: the edges are evenly spaced in arcsinh(x).
    np.testing.assert_allclose(np.diff(np.arcsinh(edges)), np.diff(np.arcsinh(edges))[0])
    assert edges[0] == pytest.approx(-1e8) and edges[-1] == pytest.approx(-1.0)
    assert _bar_heights(display.inlier_patches_).sum() == 90
    # The rates do not depend on the axis.
    assert display.inlier_rejection_rate_ == pytest.approx(np.mean(scores[:90] < -100.0))


def test_log_scale_of_negative_scores_is_a_clear_error():
    with pytest.raises(ValueError, match=r'use "auto" \(the default\).* or "asinh" or "symlog"'):
        ScoreDistributionDisplay.from_predictions([1, 1, -1], [-1.0, -2.0, -30.0], xscale="log")


def _edges(patches):
    return np.array([p.get_x() for p in patches] + [patches[-1].get_x() + patches[-1].get_width()])


@pytest.mark.parametrize("location", [-10.0, -400.0], ids=["near-0", "far-from-0"])
def test_heavy_tailed_scores_do_not_put_every_inlier_in_one_bar(location):
    """Log-densities down to -40,000 (issue 34): on the default linear axis every inlier fell
    into one bar. The default axis is chosen from the data: asinh about the inliers' median,
    linear across their middle half, so it works wherever the scores lie."""
    rng = np.random.RandomState(0)
    inliers = location + 3.0 * rng.randn(300)
    outliers = location - 10.0 ** rng.uniform(1.3, 4.6, 100)  # 20 below to 40,000 below
    y = np.r_[np.zeros(300), -np.ones(100)]
    display = ScoreDistributionDisplay.from_predictions(
        y, np.r_[inliers, outliers], threshold=location - 6.0
    )
    heights = _bar_heights(display.inlier_patches_)
    assert np.sum(heights > 0) >= 8  # the inliers spread over many bars, not one
    assert heights.sum() == pytest.approx(1.0)  # density: each bar's share of its group
    assert _bar_heights(display.outlier_patches_).sum() == pytest.approx(1.0)
    # 40 bins, evenly spaced on the axis asinh((x - m) / h) from the lowest score to the highest.
    q1, median, q3 = np.quantile(inliers, [0.25, 0.5, 0.75])
    edges = _edges(display.inlier_patches_)
    assert edges.size == 41
    assert edges[0] == pytest.approx(outliers.min()) and edges[-1] == pytest.approx(inliers.max())
    steps = np.diff(np.arcsinh((edges - median) / ((q3 - q1) / 2)))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6)
    # The axis says so, its ticks are round numbers in view, and the rates do not change.
    ax = display.ax_
    assert ax.get_xscale() == "function" and "logarithmic beyond" in ax.get_xlabel()
    assert ax.get_ylabel() == "share of the group per bar"
    ticks = ax.xaxis.get_major_locator()()
    low, high = sorted(ax.get_xlim())
    assert len(ticks) >= 5 and ((ticks >= low) & (ticks <= high)).all()
    assert all(t == round(t) and len(f"{abs(t):.0f}".rstrip("0")) <= 3 for t in ticks)
    assert display.inlier_rejection_rate_ == pytest.approx(np.mean(inliers < location - 6.0))
    # xscale=None keeps the linear axis, which puts the inliers into one bar or two.
    linear = ScoreDistributionDisplay.from_predictions(y, np.r_[inliers, outliers], xscale=None)
    assert linear.ax_.get_xscale() == "linear"
    assert np.sum(_bar_heights(linear.inlier_patches_) > 0) <= 2


@pytest.mark.parametrize("fdr", [False, True])
def test_conformal_threshold_is_drawn_at_alpha(data, fdr):
    """A ConformalDetector's scores are p-values and it flags those <= alpha; its offset_ is the
    smallest p-value above alpha (issue 34: the line stood at 0.0656 for alpha=0.05)."""
    X_train, X_test, y_test = data
    conformal = ConformalDetector(GaussianMahalanobis(), alpha=0.1, fdr=fdr, random_state=0)
    conformal.fit(X_train)
    display = ScoreDistributionDisplay.from_estimator(conformal, X_test, y_test)
    p_values = conformal.score_samples(X_test)
    if fdr:  # Benjamini-Hochberg on these rows flags the p-values <= k alpha / m
        expected = 0.1 * benjamini_hochberg(p_values, 0.1).sum() / p_values.size
    else:
        expected = 0.1
        assert conformal.offset_ > 0.1
    assert display.threshold == pytest.approx(expected)
    assert display.threshold_line_.get_xdata()[0] == pytest.approx(expected)
    label = display.threshold_line_.get_label()
    assert ("BH cut at FDR 0.1" if fdr else "alpha = 0.1") in label
    # The legend's rates are predict's: a p-value equal to the line is flagged too.
    flagged = conformal.predict(X_test) == -1
    assert flagged.any()
    assert display.inlier_rejection_rate_ == pytest.approx(flagged[:80].mean())
    assert display.outlier_detection_rate_ == pytest.approx(flagged[80:].mean())


# -- ContributionDisplay: one row's contributions, and the columns that drive many rows -----------


@pytest.fixture
def planted():
    """Normal training rows of 6 columns; 40 new rows far out in column x4."""
    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(400, 6))
    X_train[:, 1] += 0.8 * X_train[:, 0]
    rows = rng.normal(size=(40, 6))
    rows[:, 1] += 0.8 * rows[:, 0]
    rows[:, 4] += 6.0
    return X_train, rows


def _widths(bars):
    return np.array([b.get_width() for b in bars])


def test_contribution_display_of_one_row_draws_its_contributions(planted):
    from skood.explain import explain
    from skood.metrics import ContributionDisplay

    X_train, rows = planted
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    display = ContributionDisplay.from_estimator(detector, rows, row=3)
    e = explain(detector, rows[3:4])
    order = np.argsort(e.values[0])  # most negative (towards outlier) on top
    np.testing.assert_allclose(_widths(display.bars_), e.values[0][order])
    assert display.labels_ == [f"x{i}" for i in order] and display.labels_[0] == "x4"
    assert display.kind == "row" and display.row == 3
    title = display.ax_.get_title()
    assert title.startswith("GaussianMahalanobis row 3\nscore ")
    assert f"baseline {e.baseline_scores[0]:.4g}" in title and f"score {e.scores[0]:.4g}" in title
    colors = [b.get_facecolor() for b in display.bars_]
    assert colors[0] == matplotlib.colors.to_rgba("C3")  # towards outlier
    assert "exact" in display.ax_.get_xlabel()
    # from an explanation, the same bars
    again = ContributionDisplay.from_explanation(explain(detector, rows), row=3)
    np.testing.assert_allclose(_widths(again.bars_), _widths(display.bars_), rtol=1e-12)


def test_contribution_display_of_many_rows_draws_the_share_each_column_drives(planted):
    from skood.explain import explain
    from skood.metrics import ContributionDisplay

    X_train, rows = planted
    pipe = make_pipeline(StandardScaler(), GaussianMahalanobis(random_state=0)).fit(X_train)
    e = explain(pipe, rows)
    display = ContributionDisplay.from_explanation(e, name="flagged")
    counts = np.bincount(np.argmin(e.values, axis=1), minlength=6) / len(rows)
    drawn = dict(zip(display.labels_, _widths(display.bars_)))
    assert display.labels_[0] == "x4" and drawn["x4"] >= 0.95
    for name, share in drawn.items():
        assert share == pytest.approx(counts[int(name[1:])])
    assert set(drawn) == {f"x{i}" for i in np.flatnonzero(counts)}  # none drawn at 0 %
    assert display.ax_.get_title() == "flagged: what drives 40 rows"
    assert display.ax_.texts[0].get_text() == f"{drawn['x4']:.0%}"


def test_contribution_display_groups_the_smallest_columns(planted):
    from skood.explain import explain
    from skood.metrics import ContributionDisplay

    X_train, rows = planted
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    e = explain(detector, rows)
    display = ContributionDisplay.from_explanation(e, row=0, max_display=3)
    assert len(display.bars_) == 4 and display.labels_[-1] == "3 other columns"
    assert _widths(display.bars_).sum() == pytest.approx(e.values[0].sum())
    kept = np.argsort(-np.abs(e.values[0]))[:3]
    assert sorted(display.labels_[:3]) == sorted(f"x{i}" for i in kept)
    # "1 other column" would be a column by another name: it is drawn itself
    assert len(ContributionDisplay.from_explanation(e, row=0, max_display=5).bars_) == 6


def test_contribution_display_names_the_users_columns_through_a_pipeline():
    import pandas as pd

    from skood.metrics import ContributionDisplay
    from skood.preprocessing import make_table_pipeline

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "site": rng.choice(["n", "s"], size=300),
            "a": rng.normal(size=300),
            "b": rng.normal(size=300),
        }
    )
    model = make_table_pipeline(GaussianMahalanobis(random_state=0)).fit(frame)
    new = frame.iloc[:20].copy()
    new["b"] += 8.0
    display = ContributionDisplay.from_estimator(model, new)
    assert display.labels_ == ["b"]  # every row driven by b; site's one-hot block is "site"
    row = ContributionDisplay.from_estimator(model, new, row=0)
    assert sorted(row.labels_) == ["a", "b", "site"]
    assert row.ax_.get_title().startswith("GaussianMahalanobis row 0")


def test_contribution_display_from_a_detector_without_a_reference_needs_background(planted):
    from skood.metrics import ContributionDisplay

    X_train, rows = planted
    forest = IsolationForest(random_state=0).fit(X_train)
    with pytest.raises(ValueError, match="background="):
        ContributionDisplay.from_estimator(forest, rows[:5])
    display = ContributionDisplay.from_estimator(
        forest, rows[:5], background=X_train, n_permutations=4, random_state=0
    )
    assert display.labels_[0] == "x4" and "permutation" in display.ax_.get_xlabel()


def test_contribution_display_bad_inputs_get_clear_errors(planted):
    from skood.explain import explain
    from skood.metrics import ContributionDisplay

    X_train, rows = planted
    detector = GaussianMahalanobis(random_state=0).fit(X_train)
    e = explain(detector, rows[:4])
    with pytest.raises(ValueError, match="row must be an int from 0 to 3"):
        ContributionDisplay.from_explanation(e, row=4)
    with pytest.raises(ValueError, match="row must be an int"):
        ContributionDisplay.from_estimator(detector, rows[:4], row=1.5)
    with pytest.raises(ValueError, match="max_display must be 1 or more"):
        ContributionDisplay.from_explanation(e, row=0, max_display=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        ContributionDisplay(values=[1.0], feature_names=["a"], kind="bars")
    with pytest.raises(ValueError, match="2 values for 1 feature names"):
        ContributionDisplay(values=[1.0, 2.0], feature_names=["a"])
    calm = explain(detector, detector.means_)  # the mean itself: no column pushes it anywhere
    with pytest.raises(ValueError, match="nothing to draw"):
        ContributionDisplay.from_explanation(calm)
    with pytest.raises(NotFittedError):
        ContributionDisplay.from_estimator(GaussianMahalanobis(), rows)
