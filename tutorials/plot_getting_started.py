# ruff: noqa: E402  (each step imports what it introduces, as a reader pastes it)
"""
===============
Getting started
===============

From installing skood to a detector whose false-positive rate is guaranteed, saved to a file and
loaded back, on real data that ship with scikit-learn. Every block on this page ran when the
documentation was built, and the output under each block is what it printed.

Install
=======

skood needs Python 3.10 or later and PyTorch. From a clone of skood's source, one command creates a
virtual environment ``.venv`` with torch 2.13.0 (CPU) and skood in it:

.. code-block:: bash

   make install            # then run Python as .venv/bin/python

Into an environment of your own, install the torch build you want first (the CPU wheel keeps pip
from pulling the multi-GB CUDA build), then skood from the clone:

.. code-block:: bash

   pip install torch --index-url https://download.pytorch.org/whl/cpu   # or your CUDA build
   pip install -e .            # in the clone; extras: ".[bench,dask,clip]"

:doc:`/install` lists the extras (PyOD peers, Dask, CLIP, torchvision). Nothing is downloaded at
run time: this page uses a data set that ships with scikit-learn.
"""

# %%
# 1. Real data, labelled the skood way
# =====================================
#
# scikit-learn's breast-cancer measurements: 357 benign and 212 malignant tumours, 30 numeric
# columns. The benign ones are the "normal" rows a detector learns; the malignant ones are the
# anomalies it has to find without ever seeing one. skood marks an outlier row with ``-1`` in ``y``;
# data in the ADBench / PyOD convention (``1`` = anomaly) convert with
# :func:`skood.datasets.from_anomaly_labels`. :func:`skood.datasets.novelty_split` keeps 70 % of
# the normal rows for training and tests on the rest plus every anomaly.
import numpy as np
from sklearn.datasets import load_breast_cancer

from skood.datasets import from_anomaly_labels, novelty_split

X, target = load_breast_cancer(return_X_y=True)  # scikit-learn's target: 0 = malignant
y = from_anomaly_labels(target == 0)  # -1: an anomaly (malignant), +1: normal (benign)
X_train, y_train, X_test, y_test = novelty_split(X, y, train_fraction=0.7, random_state=0)
print(
    f"train: {len(X_train)} normal rows; test: {np.sum(y_test == 1)} normal, "
    f"{np.sum(y_test == -1)} anomalies"
)

# %%
# 2. A first detector
# ===================
#
# :class:`~skood.EnsembleDetector` is skood's default: a Gaussian and the nearest-neighbour
# distance, each put on the scale of its own held-out scores, then averaged. Like every skood
# detector it is a scikit-learn estimator: it goes in a :class:`~sklearn.pipeline.Pipeline`
# behind a scaler, ``fit`` learns the normal rows, and ``score_samples`` returns one float per
# row, **higher = more normal**. AUROC (:func:`skood.metrics.auroc`) measures how well the scores
# rank the anomalies below the normal rows, whatever threshold is chosen later.
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import EnsembleDetector
from skood.metrics import auroc

detector = make_pipeline(StandardScaler(), EnsembleDetector(random_state=0))
detector.fit(X_train)
scores = detector.score_samples(X_test)
print(f"AUROC: {auroc(y_test, scores):.3f}")

# %%
# ``predict`` gives +1 (normal) or -1 (outlier), cutting at ``offset_``: by default
# (``contamination=0.05``), at the 5 % quantile of the scores of normal rows held out of the fit.
# About 5 % of new normal rows fall below it: a rough share, with no stated error.
flags = detector.predict(X_test)
print(
    f"flagged: {np.mean(flags[y_test == 1] == -1):.1%} of the normal test rows, "
    f"{np.mean(flags[y_test == -1] == -1):.1%} of the anomalies"
)

# %%
# 3. A threshold with a guarantee
# ===============================
#
# :class:`~skood.ConformalDetector` wraps any detector (skood's, scikit-learn's, PyOD's) and turns
# its scores into conformal p-values computed from normal rows it held out of the fit (Bates et
# al., 2023). ``predict`` flags a row when its p-value is at most ``alpha``: for a new normal row
# that happens with probability at most ``alpha``, whatever the detector and the data, as long as
# new normal rows resemble the training ones. The guarantee is *on average over calibration
# sets*; one run's rate varies around it (:doc:`/thresholds` says how much, and how to make it
# hold per run).
from skood import ConformalDetector

conformal = ConformalDetector(
    make_pipeline(StandardScaler(), EnsembleDetector(random_state=0)), alpha=0.05, random_state=0
).fit(X_train)
p_values = conformal.score_samples(X_test)  # one p-value per row, higher = more normal
flags = conformal.predict(X_test)  # -1 where p <= 0.05
print(f"{conformal.n_calibration_} normal rows calibrate the p-values")
print(f"false-positive rate: {np.mean(flags[y_test == 1] == -1):.3f} (promised: at most 0.05)")
print(f"anomalies found:     {np.mean(flags[y_test == -1] == -1):.3f}")

# %%
# That is one run. The promise is about the average over the draw of the normal rows (which ones
# train, calibrate and arrive later), so redraw them 100 times and look at the mean rate, and at
# the spread of single runs:
rates = []
for seed in range(100):
    X_fit, _, X_new, y_new = novelty_split(X, y, train_fraction=0.7, random_state=seed)
    run = ConformalDetector(
        make_pipeline(StandardScaler(), EnsembleDetector(random_state=0)),
        alpha=0.05,
        random_state=seed,  # which normal rows calibrate
    ).fit(X_fit)
    rates.append(np.mean(run.predict(X_new)[y_new == 1] == -1))
print(
    f"false-positive rate over 100 draws: mean {np.mean(rates):.3f}, "
    f"single runs {np.min(rates):.3f} to {np.max(rates):.3f}"
)

# %%
# A different level needs no refit: ``conformal.set_params(alpha=0.1)`` applies it to the same
# p-values (the smallest p-value is ``1 / (n + 1)``, so with 75 calibration rows no level below
# 1/76 can flag anything, and skood says so rather than flag nothing). ``fdr=True`` flags a batch
# by Benjamini-Hochberg instead, so that in expectation at most a share ``alpha`` of the *flags*
# are false; ``calibration_conditional="simes"`` makes the rate hold for this very calibration
# draw with probability ``1 - delta``. :doc:`/thresholds` compares them.

# %%
# 4. Save and reload, with no pickle
# ==================================
#
# :func:`skood.save` writes the fitted model to a ``.skood`` file: tensors as safetensors, the
# rest as plain data. :func:`skood.load` rebuilds it from skood's and scikit-learn's own classes
# only, so a model file from someone else cannot run code on your machine (a pickle can). A model
# trained on a GPU loads on a CPU-only machine.
import os
import tempfile

import skood

path = os.path.join(tempfile.mkdtemp(), "breast_cancer.skood")
skood.save(conformal, path)
reloaded = skood.load(path)
print(f"{os.path.getsize(path) / 1e3:.0f} kB on disk")
print("same p-values after reload:", np.array_equal(reloaded.score_samples(X_test), p_values))

# %%
# The same from the command line
# ------------------------------
#
# ``skood score`` does all of the above on CSV or Parquet files, with an id column, 0/1 labels and
# categorical columns; :doc:`/walkthrough` follows one table from the first fit to next week's
# rows scored by the saved model:
#
# .. code-block:: bash
#
#    skood score history.csv this_week.csv --id id --label label --alpha 0.05 --save model.skood
#    skood score next_week.csv --model model.skood --out next_scores.csv
#
# Next steps
# ==========
#
# * :doc:`/user_guide/which_detector`: which detector for which data, from the benchmarks.
# * :doc:`/thresholds`: contamination, a level, a false discovery rate, per-run and per-class
#   guarantees, calibration rows with outliers in them.
# * :doc:`/user_guide/model_selection`: tuning a detector with ``GridSearchCV`` and known outliers
#   in the folds.
# * :doc:`/persistence` and :doc:`/scaling`: model files, GPUs, Dask.
# * :doc:`/auto_examples/index`: every estimator on real data, with its figure.
# * :doc:`/faq`: the questions new users ask.
