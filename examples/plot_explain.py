"""
==========================================
Why was this row flagged?
==========================================

A detector that flags 100 rows out of 300 leaves a practitioner with 60 rows to triage, and a
score alone does not say which columns to look at. :func:`skood.explain.explain` splits each
row's score into one contribution per input column, and
:class:`skood.metrics.ContributionDisplay` draws them: one row's contributions, and which
columns drive the flagged rows as a whole. The page :doc:`/user_guide/explain` says what each
method guarantees and costs.
"""

# %%
# Data: breast cancer, benign normal and malignant anomalous
# ------------------------------------------------------------
# scikit-learn's bundled breast-cancer measurements (569 tumours, 30 columns, kept as a
# DataFrame so that the contributions carry the column names). Two thirds of the benign tumours
# train the detector; the other third and every malignant tumour are the new rows.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import EnsembleDetector
from skood.explain import explain
from skood.metrics import ContributionDisplay

data = load_breast_cancer(as_frame=True)
X, malignant = data.data, (data.target == 0).to_numpy()  # scikit-learn: 0 = malignant
rng = np.random.RandomState(0)
benign_rows = np.flatnonzero(~malignant)
train_rows = rng.choice(benign_rows, size=2 * benign_rows.size // 3, replace=False)
X_train = X.iloc[train_rows]
X_new = X.drop(index=X.index[train_rows])
is_malignant = malignant[X_new.index]
print(f"train: {len(X_train)} benign; new: {np.sum(~is_malignant)} benign, "
      f"{np.sum(is_malignant)} malignant")  # fmt: skip

# %%
# The default detector, and the rows it flags
# -------------------------------------------
# skood's default :class:`~skood.EnsembleDetector` (a Gaussian and the nearest-neighbour
# distance, each put on the scale of its calibration scores) after a ``StandardScaler``.
model = make_pipeline(StandardScaler(), EnsembleDetector(random_state=0)).fit(X_train)
flagged = model.predict(X_new) == -1
print(f"flagged {flagged.sum()} of {len(X_new)} new rows: "
      f"{np.sum(flagged & is_malignant)} malignant, {np.sum(flagged & ~is_malignant)} benign")  # fmt: skip

# %%
# Explain the flagged rows
# ------------------------
# ``explain`` goes through the ``Pipeline`` (a scaler's column is its input column) and the
# ensemble (its members' contributions, with the ensemble's weights): the Gaussian's are its
# exact Shapley values, the nearest-neighbour distance's are integrated gradients, whose sum
# misses ``score - baseline score`` by a quadrature error reported per row. Contributions are
# measured from a *baseline*: here each detector's own (the Gaussian's mean, the median of the
# nearest-neighbour detector's training rows). Negative = pushed the row towards "outlier".
explanation = explain(model, X_new[flagged])
gap = np.abs(explanation.scores - explanation.baseline_scores)
print(f"method: {explanation.method}")
print(f"completeness error: largest {explanation.completeness_error.max():.3g}, median "
      f"{np.median(explanation.completeness_error / gap):.1%} of |score - baseline score|")  # fmt: skip
names, shares = explanation.top(3)
for i in range(3):
    parts = ", ".join(f"{n} ({s:.0%})" for n, s in zip(names[i], shares[i]))
    print(f"row {X_new.index[flagged][i]}: {parts}")

# %%
# One row, and what drives them all
# ---------------------------------
# Left: the first flagged row's contributions, largest first, the ten largest drawn and the
# others summed into one bar. Its score is the baseline score plus the bars' sum. Right: over
# the flagged rows, the share of them whose largest push towards "outlier" comes from each
# column, the column to look at first.
fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), layout="constrained")
ContributionDisplay.from_explanation(explanation, row=0, ax=left, name="EnsembleDetector")
ContributionDisplay.from_explanation(explanation, ax=right, name="EnsembleDetector, flagged")
plt.show()

# %%
# Size measures of a tumour (the radius, perimeter and area of the cells, nearly collinear)
# carry most rows: a malignant tumour's cells are larger. Within one row the correlated columns
# can pull in opposite directions (a large area with a smaller radius than that area implies
# is itself unusual); their sum is what moved the score.
#
# A detector with no reference rows
# ---------------------------------
# scikit-learn's ``IsolationForest`` keeps no row to measure contributions from, so ``explain``
# needs ``background=`` (normal rows; the baseline is their column-wise median) and estimates
# Shapley values by permutations: ``n_permutations * (n_columns + 1)`` scores per row, here
# 8 x 31 = 248 forest evaluations per row, which is why only a few rows are explained.
forest = make_pipeline(StandardScaler(), IsolationForest(random_state=0)).fit(X_train)
rows = X_new[flagged].iloc[:20]
forest_explanation = explain(forest, rows, background=X_train, n_permutations=8, random_state=0)
print(f"method: {forest_explanation.method}; largest completeness error "
      f"{forest_explanation.completeness_error.max():.1g} (the permutations telescope)")  # fmt: skip
agree = np.mean(forest_explanation.top(1)[0][:, 0] == explanation.top(1)[0][:20, 0])
print(f"same top column as the ensemble on {agree:.0%} of these 20 rows")

# %%
# An explanation is the detector's, not the data's: the forest isolates a row by many random
# splits, and its contributions spread thinly over most columns (the first row's largest is
# small beside their sum), so its top column is another one than the ensemble's on most rows.
fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), layout="constrained")
ContributionDisplay.from_explanation(forest_explanation, row=0, ax=left, name="IsolationForest")
ContributionDisplay.from_explanation(forest_explanation, ax=right, name="IsolationForest")
plt.show()
