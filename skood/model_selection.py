"""Cross-validation for OOD detectors: train on inliers, evaluate on inliers and outliers."""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Integral

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.model_selection._split import _BaseKFold
from sklearn.utils.validation import _num_samples

from skood.base import OUTLIER_LABEL, is_outlier_label

__all__ = ["OODStratifiedKFold"]


class OODStratifiedKFold(_BaseKFold):
    """K-fold splitter whose train folds hold only inliers and whose test folds hold both.

    Inlier and outlier rows (``y == -1``) are each spread evenly over the ``n_splits`` test folds
    (stratified on "is outlier"); the outlier rows of the train side are then dropped, unless
    ``train_outliers=True`` (for outlier-exposure methods that learn from ``y == -1`` rows).
    Every row is in exactly one test fold, so ``cross_val_predict`` works too.

    The rows are shuffled before they are split, because stratification here is on "is outlier"
    only: without it, each test fold would be a contiguous run of the inliers, and on data sorted
    by class (as many data sets are) a test fold would hold mostly one class, which its training
    rows would then lack.
    The shuffle is seeded by default (``random_state=0``), so two searches over the same data
    get the same folds and the same ``cv_results_``, as with scikit-learn's ``StratifiedKFold``
    (which does not shuffle by default).

    Parameters
    ----------
    n_splits : int, default=5
    shuffle : bool, default=True
        Shuffle rows before splitting. ``False`` keeps their order (each test fold then takes
        a contiguous run of the inliers and of the outliers).
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffle: the same int gives the same folds. None draws new folds at every
        ``split`` call (NumPy's global random state), as does a ``RandomState`` instance,
        which advances. Ignored when ``shuffle`` is False.
    train_outliers : bool, default=False
        Keep the ``-1`` rows of the train side in the train folds.

    Examples
    --------
    >>> import numpy as np
    >>> from skood.model_selection import OODStratifiedKFold
    >>> y = np.array([0, 1, 2, 0, 1, 2, -1, -1])
    >>> for train, test in OODStratifiedKFold(n_splits=2, random_state=0).split(np.zeros(8), y):
    ...     assert (y[train] != -1).all() and (y[test] == -1).any()
    """

    def __init__(
        self,
        n_splits: int = 5,
        *,
        shuffle: bool = True,
        random_state=0,
        train_outliers: bool = False,
    ) -> None:
        if not isinstance(n_splits, Integral) or n_splits < 2:
            raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}.")
        # sklearn refuses a random_state without shuffle; the default seed must not make
        # shuffle=False an error, so it is checked on None and then kept as given (get_params).
        super().__init__(n_splits=n_splits, shuffle=shuffle, random_state=None)
        self.random_state = random_state
        self.train_outliers = train_outliers

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` index arrays; ``y`` (with ``-1`` outliers) is required."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} needs y to tell outliers ({OUTLIER_LABEL}) from inliers."
            )
        y = np.asarray(y).ravel()
        if y.shape[0] != _num_samples(X):
            raise ValueError(f"X has {_num_samples(X)} rows but y has {y.shape[0]}.")
        outlier = is_outlier_label(y)
        n_out, n_in = int(outlier.sum()), int((~outlier).sum())
        if min(n_out, n_in) < self.n_splits:
            raise ValueError(
                f"{type(self).__name__}(n_splits={self.n_splits}) needs at least {self.n_splits} "
                f"outlier rows (y == {OUTLIER_LABEL}) and as many inlier rows, so every test fold "
                f"holds both; got {n_out} outliers and {n_in} inliers."
            )
        seed = self.random_state if self.shuffle else None  # StratifiedKFold refuses one unused
        folds = StratifiedKFold(self.n_splits, shuffle=self.shuffle, random_state=seed)
        for train, test in folds.split(np.zeros(y.shape[0]), outlier):
            if not self.train_outliers:
                train = train[~outlier[train]]
            yield train, test

    def _iter_test_indices(self, X=None, y=None, groups=None):  # required by _BaseKFold
        for _, test in self.split(X, y, groups):
            yield test
