"""The OOD splitter, and the README's GridSearchCV example end to end."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import GridSearchCV, cross_val_predict, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skood import QuantileFlowDetector
from skood.metrics import SCORERS
from skood.model_selection import OODStratifiedKFold


def test_train_folds_hold_only_inliers_and_test_folds_hold_both(rng):
    y = np.r_[rng.randint(0, 3, 90), -np.ones(30, dtype=int)]
    seen = np.zeros(len(y), dtype=int)
    for train, test in OODStratifiedKFold(5, random_state=0).split(np.zeros(len(y)), y):
        assert (y[train] != -1).all()
        assert (y[test] == -1).sum() == 6 and (y[test] != -1).sum() == 18
        assert np.intersect1d(train, test).size == 0
        seen[test] += 1
    assert (seen == 1).all()  # a partition: cross_val_predict works


def test_train_outliers_option_keeps_minus_one_rows_for_outlier_exposure(rng):
    y = np.r_[np.ones(40), -np.ones(10)]
    for train, _ in OODStratifiedKFold(5, random_state=0, train_outliers=True).split(y, y):
        assert (y[train] == -1).sum() == 8


def test_splitter_errors_are_clear():
    with pytest.raises(ValueError, match="needs y"):
        next(OODStratifiedKFold(2).split(np.zeros(4)))
    with pytest.raises(ValueError, match="at least 5 outlier rows"):
        next(OODStratifiedKFold(5).split(np.zeros(10), np.r_[np.ones(8), -np.ones(2)]))
    with pytest.raises(ValueError, match="n_splits"):
        OODStratifiedKFold(1)


def test_readme_grid_search_example(rng):
    X = np.r_[rng.normal(size=(160, 3)), rng.normal(4, 1, size=(40, 3))]
    y = np.r_[np.zeros(160), -np.ones(40)]
    flow = QuantileFlowDetector(hidden_sizes=(16, 16), max_epochs=2, min_steps=20, random_state=0)
    # --- as in the README ---
    search = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("det", flow)]),
        {"det__q": [0.05, "mean"], "det__n_blocks": [2, 4]},
        cv=OODStratifiedKFold(n_splits=3, random_state=0),
        scoring=SCORERS["auroc"],
    ).fit(X, y)
    # ------------------------
    assert set(search.cv_results_["param_det__q"]) == {0.05, "mean"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_score_ > 0.9
    assert set(np.unique(search.predict(X))) == {-1, 1}


def test_works_with_sklearn_detectors_and_cross_val_predict(rng):
    X = np.r_[rng.normal(size=(100, 2)), rng.normal(5, 1, size=(25, 2))]
    y = np.r_[np.ones(100), -np.ones(25)]
    cv = OODStratifiedKFold(5, random_state=0)
    scores = cross_val_score(IsolationForest(random_state=0), X, y, cv=cv, scoring=SCORERS["auroc"])
    assert scores.mean() > 0.95
    pred = cross_val_predict(IsolationForest(random_state=0), X, y, cv=cv)
    assert set(np.unique(pred)) <= {-1, 1}


def _folds(cv, y):
    return [(train.tolist(), test.tolist()) for train, test in cv.split(np.zeros(len(y)), y)]


def test_default_folds_are_reproducible(rng):
    """Two GridSearchCV runs with the default splitter see the same folds (issue 34): the
    shuffle is seeded by default, as sklearn's StratifiedKFold does not shuffle by default."""
    y = np.r_[np.repeat([0, 1, 2], 30), -np.ones(30, dtype=int)]  # sorted by class, -1 last
    cv = OODStratifiedKFold()
    assert _folds(cv, y) == _folds(OODStratifiedKFold(), y) == _folds(cv, y)
    assert cv.random_state == 0 and cv.shuffle
    # Shuffled: with the rows sorted by class, every train fold still holds every class.
    for train, _ in cv.split(np.zeros(len(y)), y):
        assert set(y[train]) == {0, 1, 2}
    # Not shuffling needs no random_state=None, and keeps the order.
    unshuffled = _folds(OODStratifiedKFold(shuffle=False), y)
    assert unshuffled[0][1][:18] == list(range(18))
    # None still means fresh folds at every call (sklearn's meaning).
    fresh = OODStratifiedKFold(random_state=None)
    assert any(_folds(fresh, y) != _folds(fresh, y) for _ in range(3))
