"""``ScoreDistributionDisplay``: inlier and outlier score histograms with the threshold drawn.

Follows scikit-learn's visualisation API (``RocCurveDisplay`` and friends): the display object
stores what was computed, ``plot`` draws it, and the ``from_estimator`` / ``from_predictions``
class methods do both. matplotlib is imported only when something is drawn.
"""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from skood.base import check_no_missing_labels, is_outlier_label

_RESPONSE_METHODS = ("score_samples", "decision_function")


def _inlier_mask(y, n_scores: int) -> np.ndarray:
    """Inlier mask of ``y`` in skood's convention; one of the two groups may be empty."""
    y = np.asarray(y).ravel()
    if y.shape[0] != n_scores:
        raise ValueError(f"y has {y.shape[0]} entries but the scores have {n_scores}.")
    if y.dtype == bool:
        return y
    check_no_missing_labels(y, "ScoreDistributionDisplay")
    return ~is_outlier_label(y)


def _threshold_of(final, response_method: str) -> float | None:
    """The score at which ``predict`` flips: ``offset_`` on the score scale, 0 on the decision one.

    ``final`` is the detector itself (a Pipeline's last step).
    """
    if response_method == "decision_function":
        return 0.0
    offset = getattr(final, "offset_", None)
    return None if offset is None else float(offset)


class ScoreDistributionDisplay:
    """Histograms of the inliers' and the outliers' scores, with the detector's threshold.

    The picture behind every OOD metric: how far apart the two score distributions lie, and
    where the threshold ``offset_`` cuts them. The legend gives the fraction of each group that
    falls below the threshold (inliers rejected, outliers caught). Build it with
    :meth:`from_estimator` or :meth:`from_predictions`; ``plot`` draws it again on other axes.

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

    def __init__(self, *, inlier_scores, outlier_scores, threshold=None, estimator_name=None):
        self.inlier_scores = np.asarray(inlier_scores, dtype=np.float64).ravel()
        self.outlier_scores = np.asarray(outlier_scores, dtype=np.float64).ravel()
        self.threshold = threshold
        self.estimator_name = estimator_name

    def plot(
        self,
        ax=None,
        *,
        name=None,
        bins=40,
        density=True,
        xscale=None,
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
            Histogram bins, shared by both groups (an int spans both groups' range).
        density : bool, default=True
            Normalise each histogram to unit area, so that groups of different sizes compare.
        xscale : str or None, default=None
            A matplotlib scale for the score axis. ``"asinh"`` or ``"symlog"`` (linear near 0,
            logarithmic beyond) show log-densities whose lower tail spans decades, where a
            linear axis puts every inlier in one bar; an int ``bins`` is then spaced evenly on
            that scale. Counts (``density=False``) read better than densities on such an axis,
            whose bins have very different widths. None keeps the linear axis.
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
        if xscale is not None:
            ax.set_xscale(xscale)
        if np.ndim(bins) == 0:
            bins = self._bin_edges(scores, int(bins), ax, xscale)

        rejected, caught = np.nan, np.nan
        if self.threshold is not None:
            if self.inlier_scores.size:
                rejected = float(np.mean(self.inlier_scores < self.threshold))
            if self.outlier_scores.size:
                caught = float(np.mean(self.outlier_scores < self.threshold))
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
            style = {"alpha": 0.55, "color": color, "label": text, "density": density, **(kwargs or {})}
            patches.append(list(ax.hist(values, bins=bins, **style)[2]))
        self.inlier_patches_, self.outlier_patches_ = patches

        self.threshold_line_ = None
        if self.threshold is not None:
            style = {"color": "k", "linestyle": "--", "label": f"threshold = {self.threshold:.3g}"}
            self.threshold_line_ = ax.axvline(self.threshold, **{**style, **(threshold_kwargs or {})})
        ax.set_xlabel("score (higher = more normal)")
        ax.set_ylabel("density" if density else "count")
        title = name if name is not None else self.estimator_name
        if title:
            ax.set_title(title)
        ax.legend(loc="best")

        self.inlier_rejection_rate_, self.outlier_detection_rate_ = rejected, caught
        self.ax_, self.figure_ = ax, ax.figure
        return self

    def _bin_edges(self, scores, n_bins, ax, xscale):
        """``n_bins`` bins over the scores and the threshold, of equal width on the x scale."""
        low, high = scores.min(), scores.max()
        if self.threshold is not None:
            low, high = min(low, self.threshold), max(high, self.threshold)
        if high <= low:
            high = low + 1.0
        if xscale in (None, "linear"):
            return np.linspace(low, high, n_bins + 1)
        # The axis's own transform, so that any matplotlib scale (and its parameters) works.
        forward = ax.xaxis.get_transform()
        ends = forward.transform(np.array([low, high]))
        # A scale that cannot hold the scores (log of a negative) clips or masks them: its
        # inverse then misses the ends.
        back = forward.inverted().transform(ends)
        if not (np.all(np.isfinite(ends)) and np.allclose(back, [low, high], rtol=1e-6)):
            raise ValueError(
                f"xscale={xscale!r} cannot show scores from {low:.4g} to {high:.4g} (log-densities "
                'are often negative); use "asinh" or "symlog", which are linear around 0.'
            )
        return forward.inverted().transform(np.linspace(ends[0], ends[1], n_bins + 1))

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
            on the ``score_samples`` scale, 0 on the ``decision_function`` one.
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
        if threshold == "auto":
            threshold = _threshold_of(final, response_method)
        name = type(final).__name__ if name is None else name
        return cls.from_predictions(y, scores, threshold=threshold, name=name, ax=ax, **kwargs)

    @classmethod
    def from_predictions(cls, y_true, y_score, *, threshold=None, name=None, ax=None, **kwargs):
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
        )
        return display.plot(ax=ax, name=name, **kwargs)
