"""Issue 16's compositions at issue 22's defaults, on digits 0-5 against 6-9, as tests run them.

The same calls as ``tests/test_compositions.py``, printing the AUROC the tests only bound. The
recorded output (``compositions_2026-11-30.txt``) ran the OpenSetClassifier line with
``ClassifierFeatures(max_epochs=10)``; the test now uses every default.

Usage (repo root): OMP_NUM_THREADS=1 .venv/bin/python benchmarks/defaults/compositions.py
"""

import time
import warnings

import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline

from skood import ClassifierFeatures, OpenSetClassifier, QuantileFlowDetector
from skood.datasets import load_digits_ood
from skood.metrics import SCORERS, auroc
from skood.model_selection import OODStratifiedKFold


def main():
    warnings.simplefilter("ignore")
    X, y = load_digits_ood(range(6))
    X = X / 16.0
    inliers = np.flatnonzero(y != -1)
    train, test = train_test_split(inliers, test_size=0.3, stratify=y[inliers], random_state=0)
    test = np.concatenate([test, np.flatnonzero(y == -1)])

    def features(**kw):
        return ClassifierFeatures(max_epochs=10, random_state=0, **kw)

    t0 = time.perf_counter()
    search = GridSearchCV(
        Pipeline(
            [
                ("feat", features(pre_activation=False)),
                ("det", QuantileFlowDetector(random_state=0)),
            ]
        ),
        {"det__q": [0.05, "mean"], "det__n_blocks": [2, 4]},
        cv=OODStratifiedKFold(n_splits=2, random_state=0),
        scoring=SCORERS["auroc"],
        n_jobs=2,
    ).fit(X, y)
    print(
        "grid: mean test AUROC per candidate",
        np.round(search.cv_results_["mean_test_score"], 4),
        "best",
        search.best_params_,
        round(search.best_score_, 4),
        f"{time.perf_counter() - t0:.0f} s",
    )
    clf = OpenSetClassifier(
        ClassifierFeatures(random_state=0), QuantileFlowDetector(random_state=0), random_state=0
    )
    clf.fit(X[train], y[train])
    print(
        "OpenSetClassifier(ClassifierFeatures(), QuantileFlowDetector()) AUROC",
        round(auroc(y[test], clf.score_samples(X[test])), 4),
    )
    rows = np.concatenate([train, np.flatnonzero(y == -1)[::4]])
    pipe = make_pipeline(features(pre_activation=False), QuantileFlowDetector(random_state=0))
    pipe.fit(X[rows], y[rows])
    print(
        "Pipeline fitted with known outliers in y, AUROC",
        round(auroc(y[test], pipe.score_samples(X[test])), 4),
    )
    det = QuantileFlowDetector(random_state=0).fit(X[train])
    print(
        "flow on raw digits (constant border pixels), AUROC",
        round(auroc(y[test], det.score_samples(X[test])), 4),
        "pinned",
        det.constant_columns_.size,
    )


if __name__ == "__main__":
    main()
