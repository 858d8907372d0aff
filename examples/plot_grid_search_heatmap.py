"""Tune a QuantileFlowDetector with GridSearchCV on folds that hold outliers.

The README's example, sized for a CPU: digits 0-4 are inliers, a few 5-9 images are known
outliers (y == -1). OODStratifiedKFold keeps them out of every training fold and puts them in
every test fold, and SCORERS["auroc"] scores each fold with score_samples. Runs in ~2 minutes.
"""

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skood import QuantileFlowDetector
from skood.datasets import load_digits_ood
from skood.metrics import SCORERS
from skood.model_selection import OODStratifiedKFold

X, y = load_digits_ood(inlier_classes=range(5))
rng = np.random.RandomState(0)
keep = (y != -1) | (rng.rand(len(y)) < 0.1)  # all inliers, ~10% of the outliers as labelled ones
X, y = X[keep], y[keep]

pipe = Pipeline(
    [
        ("scale", StandardScaler()),  # the constant border pixels need no VarianceThreshold
        (
            "det",
            QuantileFlowDetector(hidden_sizes=(128, 128), min_steps=300, lr=1e-3, random_state=0),
        ),
    ]
)
search = GridSearchCV(
    pipe,
    {"det__q": [0.05, "mean"], "det__n_blocks": [2, 4]},
    cv=OODStratifiedKFold(n_splits=3, random_state=0),
    scoring={"auroc": SCORERS["auroc"], "neg_fpr95": SCORERS["neg_fpr95"]},
    refit="auroc",
)
search.fit(X, y)
for params, auc, fpr in zip(
    search.cv_results_["params"],
    search.cv_results_["mean_test_auroc"],
    search.cv_results_["mean_test_neg_fpr95"],
):
    print(f"{params}  AUROC {auc:.3f}  FPR95 {-fpr:.3f}")
print("best:", search.best_params_)
