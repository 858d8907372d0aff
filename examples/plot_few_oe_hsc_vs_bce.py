"""
Few-shot outlier exposure: hypersphere classifier vs. binary cross-entropy
==========================================================================

Liznerski et al. ("Exposing Outlier Exposure: What Can Be Learned From Few, One, and Zero
Outlier Images", TMLR 2022) train a detector on normal images plus a handful of known outliers
(*outlier exposure*, OE) and report that the hypersphere classifier (HSC) makes better use of
very few OE samples than a plain binary normal-vs-outlier classifier trained with binary
cross-entropy (BCE). This example draws that curve on scikit-learn's 8x8 digits: test AUROC of
:class:`~skood.HSCDetector` and :class:`~skood.OEClassifier` (``loss="bce"``) against the number
of known outliers passed in ``y`` (the rows with ``y == -1``).
"""

# %%
# One-vs-rest digits with a pool of known outliers
# ------------------------------------------------
#
# The setting of :doc:`outlier-exposure size </evidence/oe_size>` (scaled down): one digit is
# normal; the other nine are
# split once into four *OE-pool* digits, from which the known outliers are drawn, and five
# *test-anomaly* digits that the detector never sees in training. Half of the normal digit
# trains, the other half plus every test-anomaly image is the test set. The first ``n_oe`` rows
# of a fixed permutation of the OE pool are the known outliers, so the OE sets are nested.
#
# To stay fast on one CPU thread this example runs two normal digits (1 and 2) and one seed; the
# benchmark runs all ten digits with three seeds.
import warnings

import matplotlib.pyplot as plt
import numpy as np

from skood import GaussianMahalanobis, HSCDetector, OEClassifier
from skood.datasets import load_digits_ood
from skood.metrics import auroc

X, digit = load_digits_ood(inlier_classes=range(10))  # every digit is a class label here
X = X / 16.0  # pixels to [0, 1]

NORMAL_DIGITS = (1, 2)
N_OE = [0, 1, 4, 16, 64]


def make_split(c, seed=0):
    """Training normals, the permuted OE pool and the test set for normal digit ``c``."""
    others = [d for d in range(10) if d != c]
    perm = np.random.default_rng(1000 + c).permutation(others)
    oe_digits, test_digits = perm[:4], perm[4:]
    own = np.random.default_rng([seed, c]).permutation(np.flatnonzero(digit == c))
    train, test_normal = own[: len(own) // 2], own[len(own) // 2 :]
    pool = np.random.default_rng([seed, c, 7]).permutation(
        np.flatnonzero(np.isin(digit, oe_digits))
    )
    anomalies = np.flatnonzero(np.isin(digit, test_digits))
    X_test = np.concatenate([X[test_normal], X[anomalies]])
    y_test = np.r_[np.ones(len(test_normal)), -np.ones(len(anomalies))]  # -1 marks an outlier
    return X[train], X[pool], X_test, y_test, oe_digits, test_digits


# %%
# Fit both detectors for every number of known outliers
# -----------------------------------------------------
#
# ``y`` holds +1 for the normal rows and -1 for the known outliers: skood's label convention.
# Both estimators put as many OE rows as normal rows in every batch (drawn with replacement), so
# a single known outlier fills half of each batch, as in the paper. ``OEClassifier`` cannot be
# fitted without any outlier (it is a two-class classifier), so its curve starts at one. Without
# OE, ``HSCDetector`` is Deep SVDD with centre 0 and warns about it; that warning is silenced
# below.
#
# Everything is at its default except ``min_steps=150`` (the default is 1,000 optimiser steps;
# with ~90 normal rows an epoch is a single step), to keep the example fast. As a reference
# without any outlier exposure, a Ledoit-Wolf Gaussian (:class:`~skood.GaussianMahalanobis`) is
# fitted on the same normal rows.
STEPS = 150
results = {"HSC": {}, "BCE": {}, "Gaussian (no OE)": {}}
for c in NORMAL_DIGITS:
    X_normal, X_pool, X_test, y_test, oe_digits, test_digits = make_split(c)
    print(
        f"normal digit {c}: OE pool digits {sorted(oe_digits.tolist())}, test anomalies "
        f"{sorted(test_digits.tolist())}, {len(X_normal)} training normals, "
        f"{len(X_test)} test rows"
    )
    gauss = GaussianMahalanobis(covariance="ledoit_wolf", random_state=0).fit(X_normal)
    results["Gaussian (no OE)"][c] = auroc(y_test, gauss.score_samples(X_test))
    for n_oe in N_OE:
        X_fit = np.concatenate([X_normal, X_pool[:n_oe]])
        y_fit = np.r_[np.ones(len(X_normal)), -np.ones(n_oe)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*no outlier-exposure rows.*")
            hsc = HSCDetector(min_steps=STEPS, random_state=0).fit(X_fit, y_fit)
        results["HSC"][c, n_oe] = auroc(y_test, hsc.score_samples(X_test))
        if n_oe > 0:
            bce = OEClassifier(loss="bce", min_steps=STEPS, random_state=0).fit(X_fit, y_fit)
            results["BCE"][c, n_oe] = auroc(y_test, bce.score_samples(X_test))

print(f"\n{'n_oe':>5s}" + "".join(f"  HSC d{c}  BCE d{c}" for c in NORMAL_DIGITS))
for n_oe in N_OE:
    row = f"{n_oe:5d}"
    for c in NORMAL_DIGITS:
        bce = results["BCE"].get((c, n_oe))
        row += f"  {results['HSC'][c, n_oe]:6.3f}  " + ("   n/a" if bce is None else f"{bce:6.3f}")
    print(row)
print(
    "Gaussian (no OE): "
    + ", ".join(f"digit {c} {results['Gaussian (no OE)'][c]:.3f}" for c in NORMAL_DIGITS)
)

# %%
# The few-OE curve
# ----------------
#
# Thin lines are the two normal digits, thick lines their mean. The x axis is symmetric-log so
# that zero known outliers fits on it.
fig, ax = plt.subplots(figsize=(7, 5))
styles = {"HSC": ("tab:blue", "o"), "BCE": ("tab:orange", "s")}
for method, (color, marker) in styles.items():
    sizes = [n for n in N_OE if (NORMAL_DIGITS[0], n) in results[method]]
    per_digit = np.array([[results[method][c, n] for n in sizes] for c in NORMAL_DIGITS])
    for curve in per_digit:
        ax.plot(sizes, curve, color=color, marker=marker, lw=0.8, alpha=0.35, ms=4)
    ax.plot(
        sizes,
        per_digit.mean(axis=0),
        color=color,
        marker=marker,
        lw=2.5,
        label=f"{method} ({'HSCDetector' if method == 'HSC' else 'OEClassifier(loss=bce)'})",
    )
gauss_mean = np.mean(list(results["Gaussian (no OE)"].values()))
ax.axhline(gauss_mean, color="gray", ls="--", label="Ledoit-Wolf Gaussian, no OE (mean)")
ax.set_xscale("symlog", linthresh=1)
ax.set_xlim(-0.2, 80)
ax.set_xticks(N_OE, [str(n) for n in N_OE])
ax.set_xlabel("number of known outliers in y (OE samples)")
ax.set_ylabel("test AUROC (normal = positive)")
ax.set_title(f"Few-shot OE on digits {NORMAL_DIGITS} one-vs-rest ({STEPS} steps, seed 0)")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small")
fig.tight_layout()

# %%
# What to conclude
# ----------------
#
# The printed table and the figure are this run's numbers. With one or a few known outliers HSC
# is ahead of BCE on both digits, which is the paper's claim; with more known outliers BCE
# catches up (on digit 2 the two meet from 16 samples on). The size of the gap depends on the
# digit: in the 50-step run of :doc:`outlier-exposure size </evidence/oe_size>`, at one known
# outlier the two
# tie on digit 6 and BCE is slightly ahead on digit 3. Over all ten digits and three seeds with
# 500 steps, that benchmark measured HSC 0.947 vs. BCE 0.840 at one known outlier (HSC ahead on
# 30 of 30 pairs), and a gap that shrinks to +0.007 with all ~700 OE images.
#
# Two more things show in this run. HSC trained with *no* known outlier (n_oe = 0, Deep SVDD
# with centre 0) is hard to beat: on digit 1 it scores higher than with any number of known
# outliers, on digit 2 only 16 or more of them do better. Four other digits are a poor stand-in
# for the five unseen ones, and a few OE rows can pull the boundary the wrong way. And the
# Gaussian fitted on the normal rows alone beats every network here. Outlier exposure pays off
# when the known outliers resemble those met at test time; on data this simple, try the plain
# density first.
