"""``ScoreDistributionDisplay``: inlier and outlier score histograms with the threshold drawn;
``ContributionDisplay``: why a row was flagged, column by column (:mod:`skood.explain`).

Follows scikit-learn's visualisation API (``RocCurveDisplay`` and friends): the display object
stores what was computed, ``plot`` draws it, and the ``from_estimator`` / ``from_predictions``
class methods do both. matplotlib is imported only when something is drawn.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from skood.base import check_no_missing_labels, is_outlier_label
from skood.conformal import ConformalDetector, benjamini_hochberg, storey_null_proportion

_RESPONSE_METHODS = ("score_samples", "decision_function")

#: ``xscale="auto"`` leaves the linear axis when the scores (and the threshold) span more than
#: this many interquartile ranges of the inliers' scores: on a linear axis of the default 40
#: bins, the middle half of the inliers would then fill less than one bar.
_HEAVY_TAIL_RATIO = 40.0


def _inlier_mask(y, n_scores: int) -> np.ndarray:
    """Inlier mask of ``y`` in skood's convention; one of the two groups may be empty."""
    y = np.asarray(y).ravel()
    if y.shape[0] != n_scores:
        raise ValueError(f"y has {y.shape[0]} entries but the scores have {n_scores}.")
    if y.dtype == bool:
        return y
    check_no_missing_labels(y, "ScoreDistributionDisplay")
    return ~is_outlier_label(y)


def _threshold_of(final, response_method: str, scores: np.ndarray):
    """``(threshold, inclusive, label)``: where ``predict`` flips, on the drawn scores' scale.

    ``offset_`` on the score scale (rows strictly below it are outliers), 0 on the decision one.
    A :class:`~skood.conformal.ConformalDetector`'s scores are p-values and it flags those at
    most ``alpha``: its ``offset_`` is the smallest p-value above ``alpha`` it can return, the
    same split of the rows but not the level a reader looks for, so the line is drawn at
    ``alpha`` (with ``fdr=True``, at this batch's Benjamini–Hochberg cut). ``final`` is the
    detector itself (a Pipeline's last step).
    """
    if response_method == "decision_function":
        return 0.0, False, None
    if isinstance(final, ConformalDetector):
        alpha = float(final.alpha)
        if not final.fdr:
            return alpha, True, f"alpha = {alpha:.3g} (p-value <= alpha: outlier)"
        # BH flags exactly the p-values <= k alpha / m, k its number of discoveries in the batch.
        # Storey's adaptive BH runs at alpha / pi0.
        pi0 = storey_null_proportion(scores) if final.fdr == "storey" else 1.0
        found = int(benjamini_hochberg(scores, alpha, null_proportion=pi0).sum())
        cut = min(1.0, alpha / pi0 * found / max(scores.size, 1))
        flags = f"p-value <= {cut:.3g}" if found else "no p-value is low enough"
        return cut, True, f"BH cut at FDR {alpha:.3g}: {flags}"
    offset = getattr(final, "offset_", None)
    return (None if offset is None else float(offset)), False, None


def _nice_tick(value: float, centre: float, width: float) -> float:
    """``value`` rounded to one significant digit of its distance from ``centre`` (at least
    ``width``): -918 about -82 becomes -900, -77 becomes -77."""
    step = 10.0 ** math.floor(math.log10(max(abs(value - centre), width)))
    return round(value / step) * step


@functools.cache
def _asinh_about_locator():
    """The Locator class of :func:`_asinh_axis`, made at first use: matplotlib is optional."""
    from matplotlib.ticker import Locator

    class AsinhAboutLocator(Locator):
        """About 8 ticks evenly spaced on an ``asinh((x - centre) / width)`` axis, rounded."""

        def __init__(self, centre: float, width: float, numticks: int = 8) -> None:
            self.centre, self.width, self.numticks = centre, width, numticks

        def __call__(self):
            return self.tick_values(*self.axis.get_view_interval())

        def tick_values(self, vmin, vmax):
            vmin, vmax = sorted((float(vmin), float(vmax)))
            c, w = self.centre, self.width
            ends = np.arcsinh((np.array([vmin, vmax]) - c) / w)
            spots = c + w * np.sinh(np.linspace(ends[0], ends[1], self.numticks))
            gap = 0.5 * (ends[1] - ends[0]) / (self.numticks - 1)
            ticks, last = [], -np.inf
            for tick in sorted({_nice_tick(x, c, w) for x in spots}):
                at = np.arcsinh((tick - c) / w)
                if vmin <= tick <= vmax and at - last >= gap:  # rounding may crowd two together
                    ticks.append(tick)
                    last = at
            return np.array(ticks)

    return AsinhAboutLocator


def _asinh_axis(ax, centre: float, width: float) -> None:
    """Make ``ax``'s x axis ``asinh((x - centre) / width)``: linear within about ``width`` of
    ``centre``, logarithmic beyond, with ticks at round numbers."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    ax.set_xscale(
        "function",
        functions=(
            lambda x: np.arcsinh((np.asarray(x) - centre) / width),
            lambda u: centre + width * np.sinh(u),
        ),
    )
    ax.xaxis.set_major_locator(_asinh_about_locator()(centre, width))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


class ScoreDistributionDisplay:
    """Histograms of the inliers' and the outliers' scores, with the detector's threshold.

    The picture behind every OOD metric: how far apart the two score distributions lie, and
    where the threshold ``offset_`` cuts them. The legend gives the fraction of each group that
    falls below the threshold (inliers rejected, outliers caught). Build it with
    :meth:`from_estimator` or :meth:`from_predictions`; ``plot`` draws it again on other axes.

    Log-densities often have a lower tail that spans decades (a Gaussian's scores down to
    -40,000 around inliers near -10): there the score axis is chosen from the data
    (``xscale="auto"``), linear about the inliers and logarithmic beyond, so that the inliers
    do not all fall into one bar.

    Parameters
    ----------
    inlier_scores : array-like of shape (n_inliers,)
        Scores of the inlier rows (higher = more normal).
    outlier_scores : array-like of shape (n_outliers,)
        Scores of the outlier rows.
    threshold : float or None, default=None
        The score below which a row is predicted an outlier; None draws no threshold.
    estimator_name : str or None, default=None
        Shown in the title.
    threshold_inclusive : bool, default=False
        Whether a score equal to ``threshold`` is an outlier too (a conformal p-value equal to
        ``alpha`` is), for the rates in the legend.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure holding ``ax_``.
    inlier_patches_, outlier_patches_ : list of matplotlib patches
        The two histograms' bars (empty when the group is empty).
    threshold_line_ : matplotlib Line2D or None
        The vertical threshold line.
    inlier_rejection_rate_ : float
        Fraction of the inliers scoring below the threshold (nan without threshold or inliers).
    outlier_detection_rate_ : float
        Fraction of the outliers scoring below the threshold (nan without threshold or
        outliers).

    See Also
    --------
    sklearn.metrics.RocCurveDisplay : The ROC curve of the same scores.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skood import GaussianMahalanobis
    >>> from skood.datasets import load_digits_ood, novelty_split
    >>> from skood.metrics import ScoreDistributionDisplay
    >>> X, y = load_digits_ood(inlier_classes=range(5))
    >>> X_train, y_train, X_test, y_test = novelty_split(X, y, random_state=0)
    >>> detector = GaussianMahalanobis(random_state=0).fit(X_train, y_train)
    >>> display = ScoreDistributionDisplay.from_estimator(detector, X_test, y_test)
    >>> round(display.inlier_rejection_rate_, 2), round(display.outlier_detection_rate_, 2)
    (0.04, 0.33)
    """

    def __init__(
        self,
        *,
        inlier_scores,
        outlier_scores,
        threshold=None,
        estimator_name=None,
        threshold_inclusive=False,
    ):
        self.inlier_scores = np.asarray(inlier_scores, dtype=np.float64).ravel()
        self.outlier_scores = np.asarray(outlier_scores, dtype=np.float64).ravel()
        self.threshold = threshold
        self.estimator_name = estimator_name
        self.threshold_inclusive = threshold_inclusive

    def plot(
        self,
        ax=None,
        *,
        name=None,
        bins=40,
        density=True,
        xscale="auto",
        inlier_kwargs=None,
        outlier_kwargs=None,
        threshold_kwargs=None,
    ):
        """Draw the two histograms and the threshold.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; None creates a figure.
        name : str or None, default=None
            Title; defaults to ``estimator_name``.
        bins : int or array-like, default=40
            Histogram bins, shared by both groups (an int spans both groups' range and the
            threshold, evenly on the score axis's scale).
        density : bool, default=True
            Normalise each group, so that groups of different sizes compare: on a linear axis
            each histogram has unit area; on any other axis, whose bars have very different
            widths in score units, each bar's height is the share of its group in it.
        xscale : "auto", str or None, default="auto"
            The score axis. ``"auto"`` chooses from the data: linear, unless the scores and
            the threshold span more than 40 interquartile ranges of the inliers' scores (the
            middle half of the inliers would fill less than one of 40 linear bars); then
            ``asinh((score - m) / h)``, with ``m`` the inliers' median and ``h`` half their
            interquartile range: linear across the inliers' bulk, logarithmic in the tails.
            Another matplotlib scale name is applied as it is (``"asinh"`` or ``"symlog"`` are
            linear near 0, not near the inliers); None keeps the linear axis.
        inlier_kwargs, outlier_kwargs, threshold_kwargs : dict or None, default=None
            Passed to ``ax.hist`` (both groups) and ``ax.axvline`` (threshold).

        Returns
        -------
        display : ScoreDistributionDisplay
            This object, with the artists stored.
        """
        import matplotlib.pyplot as plt

        scores = np.concatenate([self.inlier_scores, self.outlier_scores])
        if scores.size == 0:
            raise ValueError("There are no scores to draw: both groups are empty.")
        if not np.all(np.isfinite(scores)):
            raise ValueError("The scores contain NaN or inf; a histogram needs finite scores.")
        if ax is None:
            _, ax = plt.subplots()
        about = self._heavy_tail_axis(scores) if xscale == "auto" else None
        if about is not None:
            _asinh_axis(ax, *about)
        elif xscale not in (None, "auto"):
            ax.set_xscale(xscale)
        linear = ax.get_xscale() == "linear"
        if np.ndim(bins) == 0:
            bins = self._bin_edges(scores, int(bins), ax, linear)

        rejected, caught = np.nan, np.nan
        if self.threshold is not None:
            flagged = np.less_equal if self.threshold_inclusive else np.less
            if self.inlier_scores.size:
                rejected = float(np.mean(flagged(self.inlier_scores, self.threshold)))
            if self.outlier_scores.size:
                caught = float(np.mean(flagged(self.outlier_scores, self.threshold)))
        groups = (
            ("inliers", self.inlier_scores, "C0", rejected, "rejected", inlier_kwargs),
            ("outliers", self.outlier_scores, "C3", caught, "caught", outlier_kwargs),
        )
        patches = []
        for label, values, color, rate, verb, kwargs in groups:
            if not values.size:
                patches.append([])
                continue
            text = f"{label} (n={values.size}"
            text += f", {rate:.0%} {verb})" if np.isfinite(rate) else ")"
            style = {"alpha": 0.55, "color": color, "label": text, "density": density}
            if density and not linear:  # each bar: the share of its group (see density)
                style.update(density=False, weights=np.full(values.size, 1.0 / values.size))
            patches.append(list(ax.hist(values, bins=bins, **{**style, **(kwargs or {})})[2]))
        self.inlier_patches_, self.outlier_patches_ = patches

        self.threshold_line_ = None
        if self.threshold is not None:
            label = f"threshold = {self.threshold:.3g}"
            if self.threshold_inclusive:
                label += " (at or below: outlier)"
            style = {"color": "k", "linestyle": "--", "label": label}
            self.threshold_line_ = ax.axvline(
                self.threshold, **{**style, **(threshold_kwargs or {})}
            )
        xlabel = "score (higher = more normal)"
        if about is not None:
            centre, half = about
            xlabel += (
                f"; axis linear from {centre - half:.3g} to {centre + half:.3g}, logarithmic beyond"
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(
            "count" if not density else "density" if linear else "share of the group per bar"
        )
        title = name if name is not None else self.estimator_name
        if title:
            ax.set_title(title)
        ax.legend(loc="best")

        self.inlier_rejection_rate_, self.outlier_detection_rate_ = rejected, caught
        self.ax_, self.figure_ = ax, ax.figure
        return self

    def _extent(self, scores) -> tuple[float, float]:
        """The span of the scores and the threshold."""
        low, high = scores.min(), scores.max()
        if self.threshold is not None:
            low, high = min(low, self.threshold), max(high, self.threshold)
        return float(low), float(high)

    def _heavy_tail_axis(self, scores) -> tuple[float, float] | None:
        """``(centre, half-width)`` of the asinh axis ``xscale="auto"`` draws, or None (linear).

        A robust range with the tails piled into the edge bars would not do: on heavy-tailed
        log-densities the outliers themselves spread over decades (-20 to -40,000), so any
        linear range that holds them squeezes the inliers into one bar. A logarithmic tail
        shows both; centring it on the inliers (not on 0, as matplotlib's "asinh" and "symlog"
        are) keeps their bulk linear wherever the scores lie (log-densities near -400 too).
        """
        reference = self.inlier_scores if self.inlier_scores.size >= 2 else scores
        q1, median, q3 = np.quantile(reference, [0.25, 0.5, 0.75])
        if q3 <= q1:  # the inliers are (nearly) all tied: measure the spread on every score
            q1, median, q3 = np.quantile(scores, [0.25, 0.5, 0.75])
        low, high = self._extent(scores)
        if q3 <= q1 or high - low <= _HEAVY_TAIL_RATIO * (q3 - q1):
            return None
        return float(median), float(q3 - q1) / 2

    def _bin_edges(self, scores, n_bins, ax, linear):
        """``n_bins`` bins over the scores and the threshold, of equal width on the x scale."""
        low, high = self._extent(scores)
        if high <= low:
            high = low + 1.0
        if linear:
            return np.linspace(low, high, n_bins + 1)
        # The axis's own transform, so that any matplotlib scale (and its parameters) works.
        forward = ax.xaxis.get_transform()
        ends = forward.transform(np.array([low, high]))
        # A scale that cannot hold the scores (log of a negative) clips or masks them: its
        # inverse then misses the ends.
        back = forward.inverted().transform(ends)
        if not (np.all(np.isfinite(ends)) and np.allclose(back, [low, high], rtol=1e-6)):
            raise ValueError(
                f"xscale={ax.get_xscale()!r} cannot show scores from {low:.4g} to {high:.4g} "
                '(log-densities are often negative); use "auto" (the default), which is linear '
                'about the inliers and logarithmic beyond, or "asinh" or "symlog", linear about 0.'
            )
        edges = forward.inverted().transform(np.linspace(ends[0], ends[1], n_bins + 1))
        edges[0], edges[-1] = low, high  # not one ulp inside: the extreme scores stay in a bar
        return edges

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        response_method="score_samples",
        threshold="auto",
        name=None,
        ax=None,
        **kwargs,
    ):
        """Score ``X`` with a fitted detector and draw the histograms of ``y``'s two groups.

        Parameters
        ----------
        estimator : fitted detector or Pipeline
            Anything with ``score_samples`` (or ``decision_function``), e.g. every skood
            detector and sklearn's ``IsolationForest``.
        X : array-like of shape (n_samples, n_features)
            Rows to score.
        y : array-like of shape (n_samples,)
            ``-1`` marks an outlier, any other value an inlier (or a boolean inlier mask).
        response_method : {"score_samples", "decision_function"}, default="score_samples"
            Which scores to draw. ``decision_function`` is ``score_samples - offset_``.
        threshold : "auto", float or None, default="auto"
            "auto" draws the estimator's own threshold: ``offset_`` (of a Pipeline's last step)
            on the ``score_samples`` scale, 0 on the ``decision_function`` one. For a
            :class:`~skood.conformal.ConformalDetector`, whose scores are p-values, ``alpha``
            (a p-value at most ``alpha`` is an outlier; its ``offset_``, the smallest p-value
            above ``alpha``, splits the rows the same way but is not the level), and with
            ``fdr=True`` the Benjamini–Hochberg cut of these rows.
        name : str or None, default=None
            Title; defaults to the estimator's class name.
        ax : matplotlib Axes or None, default=None
            Axes to draw on.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : ScoreDistributionDisplay
        """
        if response_method not in _RESPONSE_METHODS:
            raise ValueError(
                f"response_method must be one of {_RESPONSE_METHODS}, got {response_method!r}."
            )
        if not hasattr(estimator, response_method):
            raise TypeError(
                f"{type(estimator).__name__} has no {response_method}; pass a fitted detector, "
                "or scores through ScoreDistributionDisplay.from_predictions."
            )
        check_is_fitted(estimator)
        scores = np.asarray(getattr(estimator, response_method)(X), dtype=np.float64)
        final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
        if isinstance(threshold, str) and threshold == "auto":
            threshold, inclusive, label = _threshold_of(final, response_method, scores)
            kwargs.setdefault("threshold_inclusive", inclusive)
            if label is not None:
                user = kwargs.get("threshold_kwargs") or {}
                kwargs["threshold_kwargs"] = {"label": label, **user}
        name = type(final).__name__ if name is None else name
        return cls.from_predictions(y, scores, threshold=threshold, name=name, ax=ax, **kwargs)

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_score,
        *,
        threshold=None,
        name=None,
        ax=None,
        threshold_inclusive=False,
        **kwargs,
    ):
        """Draw the histograms of given scores.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            ``-1`` marks an outlier, any other value an inlier (or a boolean inlier mask).
        y_score : array-like of shape (n_samples,)
            Scores, higher = more normal.
        threshold : float or None, default=None
            The score below which a row counts as an outlier; None draws none.
        name : str or None, default=None
            Title.
        ax : matplotlib Axes or None, default=None
            Axes to draw on.
        threshold_inclusive : bool, default=False
            Whether a score equal to ``threshold`` counts as an outlier (a conformal p-value
            equal to ``alpha`` does).
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : ScoreDistributionDisplay
        """
        scores = np.asarray(y_score, dtype=np.float64).ravel()
        inlier = _inlier_mask(y_true, scores.shape[0])
        if threshold is not None:
            threshold = float(threshold)
            if not np.isfinite(threshold):
                raise ValueError(f"threshold must be finite or None, got {threshold}.")
        display = cls(
            inlier_scores=scores[inlier],
            outlier_scores=scores[~inlier],
            threshold=threshold,
            estimator_name=name,
            threshold_inclusive=threshold_inclusive,
        )
        return display.plot(ax=ax, name=name, **kwargs)


#: The two pictures of :class:`ContributionDisplay`.
_CONTRIBUTION_KINDS = ("row", "drivers")


class ContributionDisplay:
    """Why rows were flagged: one row's per-column contributions, or the columns that drive many.

    Draws an :class:`~skood.explain.Explanation` (:func:`skood.explain.explain`) as horizontal
    bars, in one of two pictures:

    * ``kind="row"``: one row's contribution of each column to its score, sorted, the column
      that pushed it furthest towards "outlier" on top. Contributions are measured from the
      explanation's baseline: negative bars (red) pushed the row towards "outlier", positive
      ones (blue) towards "normal", and the bars add up to the row's score minus the baseline
      score (up to the completeness error of integrated gradients), both given in the title.
    * ``kind="drivers"``: over a set of rows (say the flagged ones), the share of them whose
      largest push towards "outlier" comes from each column: which columns to look at first.
      A row that no column pushed towards "outlier" counts for none.

    Build it with :meth:`from_explanation` or :meth:`from_estimator`; ``plot`` draws it again.

    Parameters
    ----------
    values : array-like of shape (n_columns,)
        ``kind="row"``: each column's contribution; ``kind="drivers"``: the share of the rows
        each column drives.
    feature_names : array-like of str, shape (n_columns,)
        The columns' names.
    kind : {"row", "drivers"}, default="row"
        Which picture (see above).
    score, baseline_score : float or None, default=None
        ``kind="row"``: the row's score and the score its contributions start from.
    n_rows : int or None, default=None
        ``kind="drivers"``: the number of rows the shares are of.
    method : str or None, default=None
        How the contributions were computed (:attr:`~skood.explain.Explanation.method`).
    estimator_name : str or None, default=None
        Shown in the title.
    row : int or None, default=None
        ``kind="row"``: the row's position in the rows explained, for the title.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        The figure holding ``ax_``.
    bars_ : matplotlib BarContainer
        The bars, top first.
    labels_ : list of str
        The bars' labels, top first (the last may be ``"N other columns"``).

    See Also
    --------
    skood.explain.explain : The contributions this draws.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skood import GaussianMahalanobis
    >>> from skood.metrics import ContributionDisplay
    >>> rng = np.random.default_rng(0)
    >>> detector = GaussianMahalanobis().fit(rng.normal(size=(500, 4)))
    >>> rows = rng.normal(size=(50, 4))
    >>> rows[:, 2] += 5.0  # far out in column x2
    >>> display = ContributionDisplay.from_estimator(detector, rows, row=0)
    >>> display.labels_[0]
    'x2'
    >>> ContributionDisplay.from_estimator(detector, rows).labels_[0]  # drives every row
    'x2'
    """

    def __init__(
        self,
        *,
        values,
        feature_names,
        kind="row",
        score=None,
        baseline_score=None,
        n_rows=None,
        method=None,
        estimator_name=None,
        row=None,
    ):
        if kind not in _CONTRIBUTION_KINDS:
            raise ValueError(f"kind must be one of {_CONTRIBUTION_KINDS}, got {kind!r}.")
        self.values = np.asarray(values, dtype=np.float64).ravel()
        self.feature_names = np.asarray(feature_names, dtype=str).ravel()
        if self.values.shape != self.feature_names.shape:
            raise ValueError(
                f"{self.values.size} values for {self.feature_names.size} feature names."
            )
        self.kind = kind
        self.score = score
        self.baseline_score = baseline_score
        self.n_rows = n_rows
        self.method = method
        self.estimator_name = estimator_name
        self.row = row

    def plot(self, ax=None, *, name=None, max_display=10, bar_kwargs=None):
        """Draw the bars.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; None creates a figure.
        name : str or None, default=None
            Title; defaults to ``estimator_name``.
        max_display : int, default=10
            The most bars drawn: ``kind="row"``, the columns of largest contribution (in
            absolute value), the others summed into one bar; ``kind="drivers"``, the columns
            driving the most rows, the others' shares summed into one bar.
        bar_kwargs : dict or None, default=None
            Passed to ``ax.barh``.

        Returns
        -------
        display : ContributionDisplay
            This object, with the artists stored.
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        max_display = int(max_display)
        if max_display < 1:
            raise ValueError(f"max_display must be 1 or more, got {max_display}.")
        if self.values.size == 0:
            raise ValueError("There is no column to draw.")
        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 1.2 + 0.35 * min(max_display, self.values.size)))
        if self.kind == "row":  # the largest |contribution| kept, drawn most negative first
            order = np.argsort(-np.abs(self.values), kind="stable")
        else:  # the most rows driven first; a column that drives none is not drawn
            order = np.argsort(-self.values, kind="stable")
            order = order[self.values[order] > 0]
            if order.size == 0:
                raise ValueError(
                    "No column pushed any of the rows towards outlier: there is nothing to draw."
                )
        shown, rest = order[:max_display], order[max_display:]
        if rest.size == 1:  # one bar for "1 other column" is the column itself
            shown, rest = order, order[:0]
        if self.kind == "row":
            shown = shown[np.argsort(self.values[shown], kind="stable")]
        values = list(self.values[shown])
        labels = [str(n) for n in self.feature_names[shown]]
        if rest.size:
            values.append(float(self.values[rest].sum()))
            labels.append(f"{rest.size} other columns")
        values = np.asarray(values)
        positions = np.arange(values.size)

        if self.kind == "row":
            colors = ["C3" if v < 0 else "C0" for v in values]
        else:
            colors = ["C3"] * values.size
        if rest.size:
            colors[-1] = "0.6"
        style = {"color": colors, "height": 0.7}
        self.bars_ = ax.barh(positions, values, **{**style, **(bar_kwargs or {})})
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()  # the first bar on top
        ax.axvline(0.0, color="k", linewidth=0.8)

        title = name if name is not None else self.estimator_name
        method = ""
        if self.method:
            method = " + ".join(m.replace("_", " ") for m in self.method.split("+"))
            method = f" ({method})"
        if self.kind == "row":
            ax.set_xlabel(f"contribution to the score{method}")
            ax.legend(
                handles=[Patch(color="C3", label="towards outlier"),
                         Patch(color="C0", label="towards normal")],
                loc="best",
            )  # fmt: skip
            head = " ".join(
                p for p in (title, f"row {self.row}" if self.row is not None else None) if p
            )
            if self.score is not None and self.baseline_score is not None:
                total = float(self.values.sum())
                line = (
                    f"score {self.score:.4g} = baseline {self.baseline_score:.4g} "
                    f"{'-' if total < 0 else '+'} {abs(total):.4g} (the bars' sum)"
                )
                head = f"{head}\n{line}" if head else line
        else:
            ax.set_xlabel(f"share of the rows it pushes furthest towards outlier{method}")
            ax.bar_label(self.bars_, labels=[f"{v:.0%}" for v in values], padding=2)
            ax.set_xlim(0.0, max(1e-9, float(values.max())) * 1.15)
            n = f"{self.n_rows} rows" if self.n_rows is not None else "the rows"
            head = f"{title}: what drives {n}" if title else f"What drives {n}"
        if head:
            ax.set_title(head)
        self.labels_ = labels
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_explanation(cls, explanation, row=None, *, name=None, ax=None, **kwargs):
        """Draw an :class:`~skood.explain.Explanation`: one row, or the columns driving its rows.

        Parameters
        ----------
        explanation : Explanation
            What :func:`skood.explain.explain` returned.
        row : int or None, default=None
            The row (its position among the explained rows) whose contributions to draw
            (``kind="row"``). None: over all the explained rows, the share of them each
            column drives, i.e. is the largest push towards "outlier" of (``kind="drivers"``);
            explain the rows you want this over (say ``X[model.predict(X) == -1]``, the
            flagged ones).
        name : str or None, default=None
            Title.
        ax : matplotlib Axes or None, default=None
            Axes to draw on.
        **kwargs
            Passed to :meth:`plot` (``max_display``, ``bar_kwargs``).

        Returns
        -------
        display : ContributionDisplay
        """
        values = np.asarray(explanation.values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"explanation.values must be 2-D, got shape {values.shape}.")
        n_rows = values.shape[0]
        if row is not None:
            if not (isinstance(row, (int, np.integer)) and -n_rows <= row < n_rows):
                raise ValueError(
                    f"row must be an int from 0 to {n_rows - 1} (the explained rows), or None "
                    f"for the share of rows each column drives; got {row!r}."
                )
            display = cls._of_row(explanation, int(row) % n_rows, int(row) % n_rows, name)
            return display.plot(ax=ax, name=name, **kwargs)
        if n_rows == 0:
            raise ValueError("The explanation holds no row: explain at least one.")
        top = np.argmin(values, axis=1)
        pushed = values[np.arange(n_rows), top] < 0  # some column pushed it towards "outlier"
        counts = np.bincount(top[pushed], minlength=values.shape[1])
        display = cls(
            values=counts / n_rows,
            feature_names=explanation.feature_names,
            kind="drivers",
            n_rows=n_rows,
            method=explanation.method,
            estimator_name=name,
        )
        return display.plot(ax=ax, name=name, **kwargs)

    @classmethod
    def _of_row(cls, explanation, i, row, name):
        """The display of the explanation's row ``i``, titled as row ``row``; not drawn."""
        return cls(
            values=explanation.values[i],
            feature_names=explanation.feature_names,
            kind="row",
            score=float(explanation.scores[i]),
            baseline_score=float(explanation.baseline_scores[i]),
            method=explanation.method,
            estimator_name=name,
            row=row,
        )

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        *,
        row=None,
        background=None,
        n_steps=32,
        n_permutations=16,
        random_state=None,
        name=None,
        ax=None,
        **kwargs,
    ):
        """Explain ``X``'s rows with :func:`skood.explain.explain` and draw them.

        Parameters
        ----------
        estimator : fitted detector or Pipeline
            What :func:`skood.explain.explain` takes: any skood detector, a ``Pipeline``
            ending in one, an ensemble or a conformal detector, a scikit-learn or PyOD
            detector (with ``background``).
        X : array-like or DataFrame of shape (n_rows, n_columns)
            The rows, as ``estimator.score_samples`` takes them.
        row : int or None, default=None
            The row of ``X`` to draw (only it is explained), or None: every row of ``X`` is
            explained and the share of them each column drives is drawn (pass the flagged rows).
        background, n_steps, n_permutations, random_state
            Passed to :func:`skood.explain.explain`.
        name : str or None, default=None
            Title; defaults to the estimator's class name (a Pipeline's last step's).
        ax : matplotlib Axes or None, default=None
            Axes to draw on.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : ContributionDisplay
        """
        from skood.explain import explain

        check_is_fitted(estimator)
        n_rows = X.shape[0] if hasattr(X, "shape") else len(X)
        if row is not None:
            if not (isinstance(row, (int, np.integer)) and -n_rows <= row < n_rows):
                raise ValueError(f"row must be an int from 0 to {n_rows - 1} or None; got {row!r}.")
            row = int(row) % n_rows
            X = X.iloc[[row]] if hasattr(X, "iloc") else np.asarray(X)[[row]]
        explanation = explain(
            estimator,
            X,
            background=background,
            n_steps=n_steps,
            n_permutations=n_permutations,
            random_state=random_state,
        )
        final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
        name = type(final).__name__ if name is None else name
        if row is None:
            return cls.from_explanation(explanation, name=name, ax=ax, **kwargs)
        # the one row explained, titled with its position in X
        return cls._of_row(explanation, 0, row, name).plot(ax=ax, name=name, **kwargs)
