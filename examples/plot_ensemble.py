"""
=============================================================
An ensemble of detectors, combined through calibration scores
=============================================================

Detectors disagree: a Gaussian sees rows far from the mean in unusual directions, a nearest-
neighbour score sees rows far from every training row, a flow learns curved densities. Their
scores live on unrelated scales (nats, distances), so adding them lets the one with the widest
spread decide. :class:`~skood.EnsembleDetector` puts each member's score on the scale of its own
*calibration scores*, the held-out inlier scores every skood detector keeps for its threshold,
and averages: no test row is looked at. This example shows the scales, then the ensemble against
its members and a plain sum on the four bundled small tables of ``skood bench``.
"""

# %%
# The members' scores live on different scales
# --------------------------------------------
# Benign breast-cancer rows are the inliers. Each member of the default ensemble is fitted on
# them; the first plot shows each member's raw scores of test rows.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import EnsembleDetector
from skood.bench import bundled_datasets, split
from skood.metrics import auroc

data = bundled_datasets()["breast-cancer"]()
X_train, _, X_test, y_test = split(data, "semi", seed=0, train_fraction=0.7)
ensemble = make_pipeline(StandardScaler(), EnsembleDetector(random_state=0)).fit(X_train)
fitted = ensemble[-1]
X_test_scaled = ensemble[0].transform(X_test)
raw = {name: m.score_samples(X_test_scaled) for name, m in fitted.named_estimators_.items()}

fig, axes = plt.subplots(1, len(raw), figsize=(3.2 * len(raw), 3.2))
for ax, (name, s) in zip(np.atleast_1d(axes), raw.items()):
    bins = np.linspace(np.quantile(s, 0.02), s.max(), 30)
    ax.hist(s[y_test != -1], bins=bins, alpha=0.6, label="benign (inlier)")
    ax.hist(s[y_test == -1], bins=bins, alpha=0.6, label="malignant")
    ax.set_title(f"{name}: raw score")
    ax.set_xlabel("score_samples (higher = more normal)")
np.atleast_1d(axes)[0].legend(fontsize="small")
fig.tight_layout()

for name, s in raw.items():
    print(f"{name:10s} inlier scores span {np.ptp(s[y_test != -1]):10.2f}; AUROC {auroc(y_test, s):.3f}")
print(f"ensemble   AUROC {auroc(y_test, ensemble.score_samples(X_test)):.3f}")

# %%
# Ensemble, members and a plain sum on four small tables
# ------------------------------------------------------
# Each dataset is split as ``skood bench`` does (70 % of the normal rows train; the rest and
# every anomaly test), over three seeds. "plain sum" adds the members' raw scores.
# Wine and digits-ovr-0 leave 9-12 held-out rows: too few for a 5 % threshold, which fit warns
# about. Only the scores are compared here.
warnings.filterwarnings("ignore", message=".*calibration score")
names = ["digits-ovr-0", "digits-open-set", "breast-cancer", "wine"]
results = {}
for name in names:
    data = bundled_datasets()[name]()
    per_seed = []
    for seed in range(3):
        X_train, _, X_test, y_test = split(data, "semi", seed=seed, train_fraction=0.7)
        pipe = make_pipeline(StandardScaler(), EnsembleDetector(random_state=seed)).fit(X_train)
        Z = pipe[0].transform(X_test)
        members = {n: m.score_samples(Z) for n, m in pipe[-1].named_estimators_.items()}
        row = {n: auroc(y_test, s) for n, s in members.items()}
        row["plain sum"] = auroc(y_test, np.sum(list(members.values()), axis=0))
        row["EnsembleDetector"] = auroc(y_test, pipe.score_samples(X_test))
        per_seed.append(row)
    results[name] = {k: np.mean([r[k] for r in per_seed]) for k in per_seed[0]}

labels = list(next(iter(results.values())))
fig, ax = plt.subplots(figsize=(7.5, 3.8))
width = 0.8 / len(labels)
for i, label in enumerate(labels):
    ax.bar(np.arange(len(names)) + i * width, [results[n][label] for n in names], width,
           label=label)
ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
ax.set_ylim(0.8, 1.0)
ax.set_ylabel("AUROC (mean of 3 seeds)")
ax.legend(fontsize="small", ncol=len(labels), loc="upper center", bbox_to_anchor=(0.5, 1.18))
fig.tight_layout()

print(f"{'dataset':16s} " + " ".join(f"{label:>16s}" for label in labels))
for name in names:
    print(f"{name:16s} " + " ".join(f"{results[name][label]:16.3f}" for label in labels))

# %%
# What the figures say
# --------------------
# The raw scores differ in range by orders of magnitude, so the plain sum follows one member.
# Standardised by their calibration scores the members count alike, and the ensemble is at or
# near the best member on each table without knowing in advance which one that is. Over the
# 55 sets of the development suite (tables, pretrained features, small tables;
# :doc:`the development suite </evidence/dev_suite>`) this default ensemble is skood's strongest
# detector at
# default settings, ahead of every peer's default.
