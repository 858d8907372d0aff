"""
ROSE vs. the VAE likelihood on blurred digits
=============================================

A generative model's likelihood is a tempting OOD score, yet it can rate inputs that are
smoother or simpler than the training data *higher* than real data. Choi et al. ("Robust
Out-of-Distribution Detection on Deep Probabilistic Generative Models") keep the trained model
and score instead how strongly a test point would pull its parameters: the per-sample gradient
of the log-likelihood, weighted by the inverse Fisher information of the training data, per
layer, z-scored and combined (ROSE). This example blurs held-out digits more and more and
compares the likelihood of a :class:`~skood.VAEDetector` with :class:`~skood.ROSEScorer` wrapped
around the same fitted VAE.
"""

# %%
# Digits, dequantised, and their blurred copies
# ---------------------------------------------
#
# As in :doc:`the ROSE claim </evidence/rose_claim>`: the 0..16 pixel values get uniform noise
# and are scaled to
# (0, 1), ``(X + U(0, 1)) / 17``; 1,200 random digits train, the other 597 are the test inliers.
# The OOD sets are the same 597 test digits, each 8x8 image blurred by
# ``scipy.ndimage.gaussian_filter`` with a standard deviation ``sigma`` (in pixels).
import matplotlib.pyplot as plt
import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits

from skood import ROSEScorer, VAEDetector
from skood.metrics import ScoreDistributionDisplay, auroc

rng = np.random.RandomState(0)
X = load_digits().data
X = (X + rng.rand(*X.shape)) / 17.0
order = rng.permutation(len(X))
X_train, X_test = X[order[:1200]], X[order[1200:]]
SIGMAS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0]


def blur(A, sigma):
    images = A.reshape(-1, 8, 8)
    return np.stack([gaussian_filter(im, sigma=sigma) for im in images]).reshape(A.shape)


fig, axes = plt.subplots(1, 1 + len(SIGMAS), figsize=(10, 1.9))
axes[0].imshow(X_test[0].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
axes[0].set_title("original")
for ax, sigma in zip(axes[1:], SIGMAS):
    ax.imshow(blur(X_test[:1], sigma).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(f"sigma = {sigma}")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("One test digit blurred with a Gaussian filter")
fig.tight_layout()

# %%
# One VAE, three scores
# ---------------------
#
# The VAE is at its defaults (an MLP 64 -> 128 -> 8-d latent, Gaussian decoder with a learned
# per-pixel scale, 1,000 Adam steps); its ``score_samples`` is the per-row ELBO with fixed noise.
# ``ROSEScorer(vae, prefit=True)`` reuses that fitted VAE: ``fit`` computes the empirical Fisher
# of the training rows (per layer, EKFAC by default, or its diagonal with ``fisher="diag"``) and
# the layer statistics; nothing is retrained. ROSE's ``score_samples`` is minus the ROSE score,
# so that higher is more normal, as for every skood detector.
vae = VAEDetector(random_state=0).fit(X_train)
detectors = {
    "VAE likelihood (ELBO)": vae,
    "ROSE, EKFAC (default)": ROSEScorer(vae, prefit=True, random_state=0).fit(X_train),
    "ROSE, DIAG": ROSEScorer(vae, prefit=True, fisher="diag", random_state=0).fit(X_train),
}
print("ROSE scores the VAE's layers:", detectors["ROSE, EKFAC (default)"].layer_names_)

# %%
# AUROC of test digits vs. their blurred copies
# ---------------------------------------------
#
# An AUROC below 0.5 means the detector finds the blurred copies *more* normal than the real
# digits.
y = np.r_[np.ones(len(X_test)), -np.ones(len(X_test))]
test_scores = {name: det.score_samples(X_test) for name, det in detectors.items()}
results = {name: [] for name in detectors}
for sigma in SIGMAS:
    X_blur = blur(X_test, sigma)
    for name, det in detectors.items():
        results[name].append(auroc(y, np.r_[test_scores[name], det.score_samples(X_blur)]))

print(f"{'sigma':>5s}" + "".join(f"  {name:>22s}" for name in detectors))
for i, sigma in enumerate(SIGMAS):
    print(f"{sigma:5.1f}" + "".join(f"  {results[name][i]:22.3f}" for name in detectors))

fig, ax = plt.subplots(figsize=(7, 4.5))
styles = {
    "VAE likelihood (ELBO)": ("tab:red", "o"),
    "ROSE, EKFAC (default)": ("tab:blue", "s"),
    "ROSE, DIAG": ("tab:cyan", "^"),
}
for name, values in results.items():
    color, marker = styles[name]
    ax.plot(SIGMAS, values, marker=marker, color=color, label=name)
ax.axhline(0.5, color="gray", ls=":", label="chance")
ax.set_ylim(0, 1.02)
ax.set_xlabel("blur sigma (pixels)")
ax.set_ylabel("AUROC (test digits vs. blurred copies)")
ax.set_title("Blurred digits: likelihood vs. ROSE on the same VAE")
ax.legend(loc="center right")
fig.tight_layout()

# %%
# The score distributions at sigma = 1
# ------------------------------------
#
# The likelihood puts the blurred digits (outliers) to the *right* of the real ones, that is,
# more normal; ROSE puts most of them to the left. ROSE scores of outliers span several orders
# of magnitude, so its panel shows ``-log(1 + ROSE)``, a monotone transform that changes no
# ranking, and its x axis stops at -4 (the printed count says how many blurred rows lie
# further left). The dashed line is each detector's threshold ``offset_`` (``contamination=0.1``
# of the training rows), transformed the same way.
X_blur = blur(X_test, 1.0)
y_both = np.r_[np.ones(len(X_test)), -np.ones(len(X_blur))]
rose = detectors["ROSE, EKFAC (default)"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
ScoreDistributionDisplay.from_predictions(
    y_both,
    np.r_[test_scores["VAE likelihood (ELBO)"], vae.score_samples(X_blur)],
    threshold=vae.offset_,
    name="VAE ELBO, blur sigma = 1",
    ax=axes[0],
)
shown = -np.log1p(-np.r_[test_scores["ROSE, EKFAC (default)"], rose.score_samples(X_blur)])
ScoreDistributionDisplay.from_predictions(
    y_both,
    shown,
    threshold=-np.log1p(-rose.offset_),
    name="ROSE (EKFAC), blur sigma = 1",
    ax=axes[1],
)
axes[1].set_xlim(-4, 0.2)
axes[1].set_xlabel("-log(1 + ROSE) (higher = more normal)")
print(f"ROSE panel: {np.sum(shown < -4)} blurred rows lie left of the axis (ROSE > e^4 - 1)")
fig.tight_layout()

# %%
# Which layer raises the alarm? ``layer_scores`` gives the raw per-layer scores; z-scored with
# the training statistics ``mu_`` and ``sigma_`` (what ROSE combines with a max), their medians
# show where the blurred digits stand out. ``(root)`` holds the parameters of the VAE module
# itself: the decoder's learned per-pixel scale.
z_test = (rose.layer_scores(X_test) - rose.mu_) / rose.sigma_
z_blur = (rose.layer_scores(X_blur) - rose.mu_) / rose.sigma_
print(f"{'layer':>10s}  {'median z, test':>15s}  {'median z, blurred':>18s}")
for k, layer in enumerate(rose.layer_names_):
    print(f"{layer:>10s}  {np.median(z_test[:, k]):15.2f}  {np.median(z_blur[:, k]):18.2f}")

# %%
# What to conclude
# ----------------
#
# In this run the VAE's likelihood fails on blurred digits: from a small blur on, the blurred
# copies score *higher* than the real digits (AUROC far below 0.5), the failure the ROSE paper
# starts from. ROSE, computed from the very same fitted VAE, separates them, and the more so the
# stronger the blur; the diagonal and the EKFAC Fisher give similar curves here. The smallest
# blur (sigma = 0.3) barely changes an 8x8 image and fools all three.
#
# ROSE is not a free lunch. It is one-sided (only *larger* Fisher-weighted gradients than usual
# count), it costs a per-sample backward pass (:doc:`the ROSE claim
# </evidence/rose_claim>`: about 30-50x slower to
# score than the likelihood of this VAE), and the layers it looks at matter. Here the blurred
# digits stand out mostly in the decoder's scale ``(root)`` and last layer (the medians above),
# and :doc:`the ROSE claim </evidence/rose_claim>` found the paper's choice, the encoder layers
# only, much weaker on
# blur. On a normalizing flow the same benchmark found the likelihood already good on blurred
# digits and ROSE no better.
