"""
=====================================================
Quantile loss vs mean likelihood: training curves
=====================================================

QuantOD (Taghikhah et al., "Quantile-based Maximum Likelihood Training for Outlier Detection",
AAAI 2024) trains a normalizing flow on the inliers with an unusual loss: instead of the mean
negative log-likelihood of each mini-batch, it minimises minus the ``q``-quantile of the batch's
log-likelihoods (``q=0.05``). Every step therefore works on the least likely inliers, the ones
that sit where an outlier detector draws its boundary. This example trains
:class:`skood.QuantileFlowDetector` both ways on digits and follows, epoch by epoch, the training
losses, the log-likelihood of the test inliers and the test AUROC.
"""

# %%
# Data: digits 0-4 are inliers, 5-9 are outliers
# -----------------------------------------------
# Half of the 0-4 images train the flow; the test set holds the other half and every 5-9 image
# (``y == -1``). The pixels are standardised with the training rows' statistics outside the
# detector, so that the callback below can score the test rows with the flow directly.
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FixedLocator, NullLocator, StrMethodFormatter
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback

from skood import QuantileFlowDetector
from skood.datasets import load_digits_ood, novelty_split
from skood.metrics import auroc

X, y = load_digits_ood(inlier_classes=range(5))
X_train, y_train, X_test, y_test = novelty_split(X, y, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train = scaler.transform(X_train)
X_test = scaler.transform(X_test).astype(np.float32)
is_inlier = y_test != -1

# %%
# Recording test metrics during training
# ---------------------------------------
# ``QuantileFlowDetector`` trains through skorch and accepts skorch callbacks. This one scores
# the test rows every ``every`` epochs with the flow being trained (``net.module_.log_prob``, in
# eval mode and without gradients) and keeps the 5th percentile and the median of the test
# inliers' log-likelihoods, and the AUROC of inliers against outliers. A name given with the
# callback, ``("test_scores", callback)``, finds its fitted copy in ``net_.callbacks_``.
#
# Giving any callback also makes skorch evaluate the loss on the rows the detector holds out to
# set its threshold (``validation_fraction=0.2``), so ``net_.history`` records a ``valid_loss``
# next to the ``train_loss`` of every epoch.


class EpochMetrics(Callback):
    """Every ``every`` epochs: tail and median test-inlier log-likelihood, and test AUROC."""

    def __init__(self, X, y, every=5):
        self.X, self.y, self.every = X, y, every

    def initialize(self):
        self.epochs_, self.tail_, self.median_, self.auroc_ = [], [], [], []
        return self

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch % self.every and epoch != 1 and epoch != net.max_epochs:
            return
        flow = net.module_
        was_training = flow.training
        flow.eval()
        with torch.no_grad():
            log_likelihood = flow.log_prob(torch.from_numpy(self.X)).double().numpy()
        flow.train(was_training)
        inliers = log_likelihood[self.y != -1]
        self.epochs_.append(epoch)
        self.tail_.append(np.percentile(inliers, 5))
        self.median_.append(np.median(inliers))
        self.auroc_.append(auroc(self.y, log_likelihood))


# %%
# Two flows, one loss apart
# --------------------------
# Both use skood's default settings (4 coupling blocks, log-scales soft-clamped at 0.5, lr 1e-3,
# at least 250 optimiser steps: 125 epochs of 2 batches on these 360 training rows); only ``q``
# differs.
flows, records = {}, {}
for q in (0.05, "mean"):
    callback = EpochMetrics(X_test, y_test)
    flows[q] = QuantileFlowDetector(q, random_state=0, callbacks=[("test_scores", callback)])
    flows[q].fit(X_train)
    records[q] = dict(flows[q].net_.callbacks_)["test_scores"]
    final = auroc(y_test, flows[q].score_samples(X_test))
    print(f"q={q!s:5s} epochs {flows[q].n_epochs_}, final test AUROC {final:.3f}")

# %%
# The curves
# ----------
# Top: the two losses, as ``net_.history`` records them. They measure different things (minus
# the 5 % quantile of a batch's log-likelihoods, or minus its mean), so compare each one's
# training and held-out curves, not the two models' levels. The losses cross zero and have
# one-epoch spikes, so this panel uses an ``asinh`` axis (linear near zero, logarithmic beyond)
# with round ticks. Middle: the log-likelihood of the test inliers, in nats: their 5th percentile
# (solid, the tail a threshold at TPR 95 % sits in) and their median (dashed). Bottom: the test
# AUROC. The three panels share the epoch axis.
colors = {0.05: "C0", "mean": "C1"}
labels = {0.05: "q = 0.05", "mean": 'q = "mean"'}
fig, axes = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
for q, flow in flows.items():
    history = flow.net_.history
    epochs = history[:, "epoch"]
    kw = {"color": colors[q]}
    axes[0].plot(epochs, history[:, "train_loss"], label=f"{labels[q]}: training", **kw)
    axes[0].plot(epochs, history[:, "valid_loss"], ":", label=f"{labels[q]}: held out", **kw)
    rec = records[q]
    axes[1].plot(rec.epochs_, rec.tail_, label=f"{labels[q]}: 5th percentile", **kw)
    axes[1].plot(rec.epochs_, rec.median_, "--", label=f"{labels[q]}: median", **kw)
    axes[2].plot(rec.epochs_, rec.auroc_, marker=".", label=labels[q], **kw)
axes[0].set_yscale("asinh", linear_width=10)
axes[0].yaxis.set_major_locator(FixedLocator([-10, 0, 10, 20, 50, 100, 200]))
axes[0].yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
axes[0].yaxis.set_minor_locator(NullLocator())
axes[0].set(ylabel="loss (nats, asinh scale)", title="Loss per epoch (net_.history)")
axes[1].set(ylabel="log-likelihood (nats)", title="Test inliers' log-likelihood")
axes[2].set(ylabel="AUROC (0-4 vs 5-9)", title="Test AUROC", xlabel="epoch")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize="small")
fig.suptitle("QuantileFlowDetector on digits: quantile (q = 0.05) vs mean-likelihood training")
fig.tight_layout()

# %%
# The numbers behind the middle and bottom panels, at the first, a middle and the last recorded
# epoch:
for q, rec in records.items():
    for i in (0, len(rec.epochs_) // 2, -1):
        print(
            f"{labels[q]:11s} epoch {rec.epochs_[i]:3d}: test inliers' 5th percentile "
            f"{rec.tail_[i]:9.1f}, median {rec.median_[i]:7.1f} nats, AUROC {rec.auroc_[i]:.3f}"
        )

# %%
# What to conclude
# -----------------
# * **Mean likelihood** raises the typical (median) inlier's likelihood quickly, from -73.6 to
#   -22.5 nats by epoch 65, and then holds it. Its training loss keeps falling, but the loss on
#   the held-out rows turns up after about 35 epochs and ends at more than three times its lowest,
#   and the 5th percentile of the test inliers, after a brief rise, falls to -176.0 nats, far
#   below where it started (-103.1): the flow fits the bulk of the training rows and leaves the
#   tail behind. Its AUROC rises fast, to 0.926 at epoch 65, and slips only a little, to 0.921.
# * **The quantile loss** only ever lifts the lowest likelihoods of each batch. Its median rises
#   more slowly (-74.7 to -29.8 nats), and the test inliers' tail rises from -104.0 and then stays
#   between about -65 and -79 nats instead of collapsing. Its training loss has a few one-epoch
#   spikes (a batch whose least likely rows scored very low), from which training recovers. But
#   its AUROC is slower to rise and ends below the mean-trained flow's, at 0.888.
#
# So the mechanism the paper argues from is visible (mean likelihood leaves the inliers' tail
# behind; the quantile loss holds it), yet in this run it does not decide the ranking: the
# mean-trained flow has the higher AUROC at every recorded epoch. skood's default soft clamp on
# the coupling log-scales (``clamp=0.5``) keeps a flow trained on a few hundred rows from piling
# density onto its training points, the failure that hurts mean-likelihood training most on
# grid-valued pixels (:doc:`/evidence/clamp`); with the paper's ``clamp=3.0`` the
# mean-trained flow's held-out loss grows by orders of magnitude here and the quantile-trained
# flow ends ahead. This is one run (one split, one seed) on raw pixels; skood's benchmark of the
# paper's claim over several seeds, on a classifier's features, is
# :doc:`/evidence/quantile_claim`.
