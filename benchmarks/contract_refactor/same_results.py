"""Fit every estimator with small settings on digits and save its scores, for old vs new code.

Run once with the code before the contract refactor (commit d7227ef, old parameter names) and once
with today's, then compare (see README.md):

    python same_results.py {old|new} out.npz      # PYTHONPATH selects the code
    python same_results.py compare old.npz new.npz
"""

import sys
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

warnings.simplefilter("ignore")
if len(sys.argv) < 3 or sys.argv[1] not in ("old", "new", "compare"):
    print(__doc__)
    sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
if sys.argv[1] == "compare":
    a, b = np.load(sys.argv[2]), np.load(sys.argv[3])
    for k in a.files:
        same = np.array_equal(a[k], b[k], equal_nan=True)
        diff = np.nanmax(np.abs(a[k] - b[k])) if a[k].shape == b[k].shape else "shape"
        print(f"{k:16s} identical={same} max|diff|={diff}")
    sys.exit(0)

from skood import (
    AMADetector,
    ClassifierFeatures,
    DeepSADDetector,
    DeepSVDDDetector,
    GaussianMahalanobis,
    HSCDetector,
    ICEClassifier,
    OEClassifier,
    OpenSetClassifier,
    QuantileFlowDetector,
    ROSEScorer,
    VAEDetector,
)

mode, out = sys.argv[1], sys.argv[2]
old = mode == "old"
X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float64)
inl = y < 5
Xtr, ytr = X[inl][:400], y[inl][:400]
Xte = X[::3]
yoe = np.where(y[:600] < 5, 1, -1)
Xoe = X[:600]
Z = StandardScaler().fit_transform(Xtr[:, X[inl][:400].std(0) > 0])


def P(old_kw, new_kw):
    return old_kw if old else new_kw


cfg = {
    "hsc": (HSCDetector(random_state=0, max_epochs=3, min_steps=0), Xoe, yoe, Xte),
    "hsc_quant": (
        HSCDetector(random_state=0, max_epochs=3, min_steps=0, contamination=0.1),
        Xoe,
        yoe,
        Xte,
    ),
    "sad": (DeepSADDetector(random_state=0, max_epochs=3, min_steps=0), Xoe, yoe, Xte),
    "oe": (OEClassifier(random_state=0, max_epochs=3, min_steps=0), Xoe, yoe, Xte),
    "svdd_oe": (DeepSVDDDetector(random_state=0, max_epochs=3, min_steps=0), Xoe, yoe, Xte),
    "flow": (
        QuantileFlowDetector(
            n_blocks=2,
            **P(dict(hidden_size=32, n_hidden_layers=1), dict(hidden_sizes=(32, 32))),
            max_epochs=3,
            min_steps=0,
            random_state=0,
        ),
        Z,
        None,
        Z,
    ),
    "vae": (
        VAEDetector(
            **P(dict(hidden_dims=(32,)), dict(hidden_sizes=(32,))),
            max_epochs=3,
            min_steps=0,
            random_state=0,
        ),
        Xtr,
        None,
        Xte,
    ),
    "ice": (
        ICEClassifier(max_epochs=3, random_state=0),
        Xoe,
        np.where(y[:600] < 5, y[:600], -1),
        Xte,
    ),
    "ice_step": (
        ICEClassifier(
            max_epochs=4,
            random_state=0,
            **P(dict(lr_schedule="step"), dict(lr_schedule=(0.5, 0.75))),
        ),
        Xoe,
        np.where(y[:600] < 5, y[:600], -1),
        Xte,
    ),
    "ama": (
        AMADetector(
            max_epochs=3, random_state=0, **P(dict(hidden_dims=(32,)), dict(hidden_sizes=(32,)))
        ),
        Xtr,
        None,
        Xte,
    ),
    "gauss": (GaussianMahalanobis(), Xtr, ytr, Xte),
    "feats": (ClassifierFeatures(max_epochs=3, random_state=0), Xtr, ytr, Xte),
    "openset": (
        OpenSetClassifier(ClassifierFeatures(max_epochs=3, random_state=0), "msp", random_state=0),
        Xtr,
        ytr,
        Xte,
    ),
    "rose": (
        ROSEScorer(
            VAEDetector(
                **P(dict(hidden_dims=(32,)), dict(hidden_sizes=(32,))),
                max_epochs=3,
                min_steps=0,
                random_state=0,
            ),
            random_state=0,
        ),
        Xtr,
        None,
        Xte,
    ),
}
res = {}
for name, (est, Xf, yf, Xs) in cfg.items():
    est.fit(Xf, yf)
    if name == "feats":
        res[name] = est.transform(Xs)
    else:
        res[name] = est.score_samples(Xs)
    res[name + "_offset"] = np.array([getattr(est, "offset_", np.nan)])
    print(name, res[name].ravel()[:3], res[name + "_offset"], flush=True)
np.savez(out, **res)
