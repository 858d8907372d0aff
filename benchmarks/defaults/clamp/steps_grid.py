"""The flow at 10-250 optimiser steps: q=0.05 on --quick's 3 sets (bench protocol) and the demo's q='mean' flow.

Usage: OMP_NUM_THREADS=1 python steps_grid.py OUT.csv ["clamp=3.0,..." (registry-spec parameters)]
Appends rows ``params, budget, dataset, seed, auroc, fit_s, n_train`` (seeds 0-4). Run at clamp 3.0 (then the
default); pass "clamp=3.0" to rerun it now. The fit_s of the recorded steps.csv also counted the scoring.
"""

import csv
import sys
import time
import warnings

from skood import QuantileFlowDetector
from skood.bench.data import bundled_datasets, split

try:  # skood >= 0.3: skood.cli is a package
    from skood.cli.demo import demo_detectors as _demo_detectors
except ImportError:  # the older commits these scripts are also run against
    from skood.cli import _demo_detectors
from skood.datasets import load_digits_ood, novelty_split
from skood.metrics import auroc
from skood.registry import make_pipeline_for, parse_detector

out = sys.argv[1]
configs = {}  # tag -> params
for s in [10, 25, 50, 100, 250]:
    configs[f"steps{s}"] = dict(max_epochs=1, min_steps=s)
extra = sys.argv[2] if len(sys.argv) > 2 else ""
base = parse_detector("flow:" + extra)[1] if extra else {}
ds = bundled_datasets()
data = {name: ds[name]() for name in ["wine", "breast-cancer", "digits-ovr-0"]}
w = csv.writer(open(out, "a", newline=""))


def record(tag, name, seed, pipe, X_train, X_test, y_test):
    """Fit ``pipe`` (fit seconds only), score the test rows, append and print the row."""
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X_train)
    fit_s = time.perf_counter() - t
    score = auroc(y_test, pipe.score_samples(X_test))
    row = [extra, tag, name, seed, round(score, 4), round(fit_s, 2), len(X_train)]
    w.writerow(row)
    print(*row, flush=True)


X, y = load_digits_ood(inlier_classes=range(5))
demo_split = novelty_split(X, y, train_fraction=0.5, random_state=0)
for tag, p in configs.items():
    for name, d in data.items():
        for seed in range(5):
            Xtr, _, Xte, yte = split(d, "semi", seed, max_train=5000, max_test=10000)
            det = QuantileFlowDetector(q=0.05, random_state=seed, **base, **p)
            record(tag, name, seed, make_pipeline_for(det), Xtr, Xte, yte)
    for seed in range(5):
        pipe, _ = _demo_detectors(seed, 0)["QuantileFlowDetector(q='mean')"]
        pipe[-1].set_params(**base, **p)
        Xtr, _, Xte, yte = demo_split
        record(tag, "demo-mean", seed, pipe, Xtr, Xte, yte)
