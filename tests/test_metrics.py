"""OOD metrics against sklearn and hand computations; label conventions; scorers."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from skood.metrics import SCORERS, aupr_in, aupr_out, auroc, fpr_at_tpr, make_ood_scorer


@pytest.fixture
def labelled(rng):
    y = np.r_[rng.randint(0, 3, 200), -np.ones(100, dtype=int)]  # classes 0-2 inliers
    scores = np.r_[rng.normal(1, 1, 200), rng.normal(-1, 1, 100)]
    return y, scores


def test_metrics_match_sklearn_with_inliers_positive(labelled):
    y, s = labelled
    inlier = y != -1
    assert auroc(y, s) == pytest.approx(roc_auc_score(inlier, s))
    assert aupr_in(y, s) == pytest.approx(average_precision_score(inlier, s))
    assert aupr_out(y, s) == pytest.approx(average_precision_score(~inlier, -s))
    assert auroc(inlier, s) == auroc(y, s)  # boolean mask: True = inlier


def test_fpr95_by_hand(labelled):
    y, s = labelled
    inl, out = s[y != -1], s[y == -1]
    # The threshold that accepts (at least) 95% of inliers: accept s >= t.
    t = np.sort(inl)[::-1][int(np.ceil(0.95 * inl.size)) - 1]
    assert fpr_at_tpr(y, s) == pytest.approx((out >= t).mean())
    assert fpr_at_tpr(y, s, tpr=1.0) == pytest.approx((out >= inl.min()).mean())


def test_perfect_and_inverted_scores():
    y = np.array([1, 1, 1, -1, -1])
    good = np.array([3.0, 2.0, 1.0, 0.0, -1.0])
    assert auroc(y, good) == 1.0 and fpr_at_tpr(y, good) == 0.0
    assert auroc(y, -good) == 0.0 and fpr_at_tpr(y, -good) == 1.0


@pytest.mark.parametrize(
    "y, match",
    [
        (np.ones(4), "only inliers"),
        (-np.ones(4), "only outliers"),
        (np.array([0, 1, 0, 1]), "from_anomaly_labels"),  # ADBench's convention, not skood's
    ],
)
def test_wrong_label_conventions_are_explained(y, match):
    with pytest.raises(ValueError, match=match):
        auroc(y, np.arange(4.0))


def test_non_finite_scores_and_length_mismatch_are_rejected():
    with pytest.raises(ValueError, match="NaN or inf"):
        auroc([1, -1], [np.nan, 0.0])
    with pytest.raises(ValueError, match="entries"):
        auroc([1, -1, 1], [0.0, 1.0])


def test_scorers_work_with_any_detector_including_sklearns(rng):
    X = np.r_[rng.normal(size=(100, 2)), rng.normal(5, 1, size=(20, 2))]
    y = np.r_[np.ones(100), -np.ones(20)]
    det = IsolationForest(random_state=0).fit(X[:100])
    assert SCORERS["auroc"](det, X, y) == pytest.approx(auroc(y, det.score_samples(X)))
    assert SCORERS["neg_fpr95"](det, X, y) == pytest.approx(-fpr_at_tpr(y, det.score_samples(X)))
    assert "greater_is_better=False" in repr(SCORERS["neg_fpr95"])
    custom = make_ood_scorer(fpr_at_tpr, greater_is_better=False, tpr=0.8)
    assert custom(det, X, y) == pytest.approx(-fpr_at_tpr(y, det.score_samples(X), tpr=0.8))


def test_normal_auc_is_the_auroc_scorer():
    from skood.metrics import normal_auc

    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(50, 2)), rng.normal(4, 1, size=(10, 2))])
    y = np.r_[np.ones(50), -np.ones(10)]
    det = IsolationForest(random_state=0).fit(X[:50])
    assert normal_auc(det, X, y) == SCORERS["auroc"](det, X, y) > 0.9


def test_a_negated_scorer_reports_zero_not_negative_zero():
    from skood import GaussianMahalanobis
    from skood.metrics import SCORERS

    rng = np.random.RandomState(0)
    det = GaussianMahalanobis(random_state=0).fit(rng.normal(size=(200, 3)))
    X = np.vstack([rng.normal(size=(50, 3)), rng.normal(loc=8.0, size=(10, 3))])
    y = np.r_[np.ones(50), -np.ones(10)]
    value = SCORERS["neg_fpr95"](det, X, y)  # every outlier is rejected: FPR95 = 0
    assert value == 0.0 and not np.signbit(value)
