"""
AMA's two-sided score on dimmed and brightened digits
=====================================================

A detector that only asks "is this input *more* unusual than the training data?" misses inputs
that are *simpler* than the training data: a likelihood model or a reconstruction error often
finds a dimmed image more normal than a real one. Somepalli et al. ("Unsupervised Anomaly
Detection with Adversarial Mirrored AutoEncoders", UAI 2021) score an input by the Gaussian
density of its critic-feature distance R under the R-values of the training data, so an R far
*below* the usual range is flagged as well as one far above (their CIFAR-10 -> SVHN result:
AUROC 0.442 for R, 0.958 for this A-score). This example multiplies the pixel intensities of
held-out digits by a factor from 0.1 to 1.5 and asks :class:`~skood.AMADetector`, its own
one-sided R, and a Gaussian density which of the altered images are anomalous.
"""

# %%
# Train on digits, test on scaled copies of unseen digits
# -------------------------------------------------------
#
# As in :doc:`AMA at CPU scale </evidence/ama_tables>` (item 2), pixels are mapped from [0, 16]
# to [-1, 1]; 600 random
# digits train, 300 others are the test inliers. A factor ``f`` multiplies the intensities
# before that mapping, so ``f < 1`` dims an image and ``f > 1`` brightens it past the training
# range.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skood import AMADetector, GaussianMahalanobis
from skood.metrics import auroc

pixels = load_digits().data  # values 0..16
rng = np.random.RandomState(0)
order = rng.permutation(len(pixels))
train, test = pixels[order[:600]], pixels[order[600:900]]


def to_model_scale(p):
    return p / 8.0 - 1.0  # [0, 16] -> [-1, 1]


FACTORS = np.round(np.arange(0.1, 1.51, 0.1), 2)

fig, axes = plt.subplots(1, 6, figsize=(9, 1.9))
for ax, f in zip(axes, [0.2, 0.5, 0.8, 1.0, 1.2, 1.5]):
    ax.imshow(test[0].reshape(8, 8) * f, cmap="gray_r", vmin=0, vmax=24)
    ax.set_title(f"f = {f}")
    ax.set_xticks([])
    ax.set_yticks([])
axes[0].set_ylabel("test digit")
fig.suptitle("One test digit with its intensities multiplied by f (same grey scale)")
fig.tight_layout()

# %%
# Fit AMA and a Gaussian density
# ------------------------------
#
# ``AMADetector`` is at its defaults (MLP encoder, decoder and critic; ``ood_score="A"``;
# ``contamination=0.1`` of the training rows sets ``offset_``) except for two changes that keep
# this example fast on one CPU thread: ``max_epochs=50`` instead of 100 (150 encoder/decoder
# steps, each with 5 critic steps), and ``lambda_inter=0``, which switches off the simplex
# interpolation term and halves the fit time (the ablation of
# :doc:`AMA at CPU scale </evidence/ama_tables>`, where it
# did not lower the A-score). The baseline is a Ledoit-Wolf Gaussian, at the same
# ``contamination=0.1``.
ama = AMADetector(max_epochs=50, lambda_inter=0.0, random_state=0)
ama.fit(to_model_scale(train))
gauss = GaussianMahalanobis(covariance="ledoit_wolf", contamination=0.1, random_state=0)
gauss.fit(to_model_scale(train))
print(f"AMA: R of the training rows ~ N({ama.mu_:.3f}, {ama.sigma_:.3f}^2)")

# %%
# Score every scaled copy
# -----------------------
#
# For each factor: AMA's raw R of the scaled test digits (``r_score``), the fraction that
# ``predict`` flags (-1), and the AUROC of the original test digits (inliers) against their
# scaled copies (outliers). ``-R`` is AMA's one-sided score (``ood_score="R"``), from the same
# fitted networks. At ``f = 1`` the copies *are* the test digits, so every AUROC is 0.5 there.
y = np.r_[np.ones(len(test)), -np.ones(len(test))]
X_test = to_model_scale(test)
NAMES = {"A": "AMA A-score (two-sided)", "-R": "AMA -R (one-sided)", "Gauss": "Gaussian density"}
base = {
    "A": ama.score_samples(X_test),
    "-R": -ama.r_score(X_test),
    "Gauss": gauss.score_samples(X_test),
}
r_quantiles, flagged, aurocs = [], {"A": [], "Gauss": []}, {k: [] for k in NAMES}
for f in FACTORS:
    X_f = to_model_scale(test * f)
    r = ama.r_score(X_f)
    r_quantiles.append(np.percentile(r, [10, 50, 90]))
    flagged["A"].append(np.mean(ama.predict(X_f) == -1))
    flagged["Gauss"].append(np.mean(gauss.predict(X_f) == -1))
    scores = {"A": ama.score_samples(X_f), "-R": -r, "Gauss": gauss.score_samples(X_f)}
    for k, s in scores.items():
        aurocs[k].append(auroc(y, np.r_[base[k], s]))
r_quantiles = np.array(r_quantiles)

print("               flagged by predict     AUROC test digits vs. scaled copies")
print("   f  median R   AMA (A)   Gauss         A        -R     Gauss")
for i, f in enumerate(FACTORS):
    print(
        f"{f:4.1f}  {r_quantiles[i, 1]:8.2f}  {flagged['A'][i]:8.2f}  {flagged['Gauss'][i]:6.2f}"
        f"    {aurocs['A'][i]:6.3f}    {aurocs['-R'][i]:6.3f}    {aurocs['Gauss'][i]:6.3f}"
    )

# %%
# Two-sided vs. one-sided
# -----------------------
#
# Left: dimming lowers R and brightening raises it (median and 10-90 % range of the scaled test
# digits' R, against the training mean and mean +- 2 standard deviations, the range where the
# A-score is high). Middle: the share of scaled test digits each detector's ``predict`` rejects
# (10 % of the training digits would be). Right: AUROC of test digits vs. their scaled copies;
# below 0.5 means the altered images look *more* normal than the real ones.
colors = {"A": "tab:blue", "-R": "tab:cyan", "Gauss": "tab:red"}
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
ax = axes[0]
ax.fill_between(
    FACTORS,
    r_quantiles[:, 0],
    r_quantiles[:, 2],
    color="gray",
    alpha=0.3,
    label="scaled test digits: 10-90 %",
)
ax.plot(FACTORS, r_quantiles[:, 1], "o-", color="k", label="scaled test digits: median")
ax.axhline(ama.mu_, color="tab:blue", label="training R: mean")
for sign in (-2, 2):
    ax.axhline(
        ama.mu_ + sign * ama.sigma_,
        color="tab:blue",
        ls="--",
        label="training R: mean +- 2 std" if sign > 0 else None,
    )
ax.set_xlabel("intensity factor f")
ax.set_ylabel("R (critic-feature distance)")
ax.set_title("AMA's R moves both ways")
ax.legend(loc="upper left", fontsize="small")

ax = axes[1]
for k, v in flagged.items():
    ax.plot(FACTORS, v, "o-", color=colors[k], label=NAMES[k])
ax.axhline(0.1, color="gray", ls=":", label="contamination (0.1)")
ax.set_xlabel("intensity factor f")
ax.set_ylabel("fraction flagged as outlier")
ax.set_title("Flagged by predict()")
ax.legend(loc="upper center", fontsize="small")

ax = axes[2]
for k, v in aurocs.items():
    ax.plot(FACTORS, v, "o-", color=colors[k], label=NAMES[k])
ax.axhline(0.5, color="gray", ls=":", label="chance")
ax.set_ylim(0, 1.02)
ax.set_xlabel("intensity factor f")
ax.set_ylabel("AUROC (test digits vs. scaled copies)")
ax.set_title("Separating scaled copies from originals")
ax.legend(loc="lower right", fontsize="small")
fig.suptitle("AMADetector on dimmed (f < 1) and brightened (f > 1) digits")
fig.tight_layout()

# %%
# What to conclude
# ----------------
#
# In this run dimming lowers R, so AMA's one-sided ``-R`` ranks every dimmed copy as *more*
# normal than the real digits (AUROC below 0.5 for all f < 1), while the two-sided A-score flags
# them, increasingly so the dimmer they get: the paper's effect. The Gaussian density has a
# blind spot of its own: moderately dimmed digits (f between about 0.5 and 0.9) get a *higher*
# density than real ones and ``predict`` flags almost none of them; only near-blank images
# (f = 0.1) fall outside it. Slight dimming (f = 0.8 to 0.9) escapes all three.
#
# Brightening is the other side, and there the A-score is *not* the best: the Gaussian separates
# brightened copies better than AMA does. So AMA's two-sided score earns its keep on inputs that
# are simpler than the training data, as the paper argues, not across the board:
# :doc:`AMA at CPU scale </evidence/ama_tables>` found it weak on near-constant images (AUROC
# 0.64) and well behind
# plain detectors in the usual one-class setting (0.66 vs. 0.99 for the Gaussian). AMA is also a
# GAN: its scores vary much more across seeds than an autoencoder's, so try several
# ``random_state`` values before trusting one fit. This example uses one seed and a shortened
# training run.
