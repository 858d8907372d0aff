"""`skood demo`'s two flows (q=0.05 and q='mean') over several detector seeds.

Reproduces `skood demo --random-state S` exactly: the digits split is fixed (novelty_split(...,
random_state=0), as in cli.demo) and only the detectors' random_state varies. The flows are built
by the code on PYTHONPATH's own `skood.cli.demo.demo_detectors` (`skood.cli._demo_detectors` before 0.3), so the old commit's demo flows (4 x 128
x 2, dropout 0.3, lr 9e-5, 50 epochs, min_steps 500) or the current ones are run as each demo
builds them. --params KEY=VALUE,... sets extra parameters on both flows (a candidate default).

Usage (from a directory that does not shadow PYTHONPATH, one thread):
  OMP_NUM_THREADS=1 PYTHONPATH=CODE python demo_seeds.py --tag TAG --out FILE.csv [--seeds 0 1 2 3 4]
      [--params lr=5e-4,min_steps=500]
"""
import argparse
import csv
import os
import time

try:  # skood >= 0.3: skood.cli is a package
    from skood.cli.demo import demo_detectors as _demo_detectors
except ImportError:  # the older commits these scripts are also run against
    from skood.cli import _demo_detectors
from skood.datasets import load_digits_ood, novelty_split
from skood.metrics import auroc, fpr_at_tpr
from skood.registry import parse_detector

ap = argparse.ArgumentParser()
ap.add_argument("--tag", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
ap.add_argument("--params", default="")
args = ap.parse_args()
params = parse_detector("flow:" + args.params)[1] if args.params else {}

X, y = load_digits_ood(inlier_classes=range(5))
X_train, y_train, X_test, y_test = novelty_split(X, y, train_fraction=0.5, random_state=0)
new = not os.path.exists(args.out)
with open(args.out, "a", newline="") as fh:
    w = csv.writer(fh)
    if new:
        w.writerow(["tag", "params", "detector", "seed", "auroc", "fpr95", "fit_s", "n_epochs"])
    for seed in args.seeds:
        dets = _demo_detectors(seed, 0)
        for name in ("QuantileFlowDetector(q=0.05)", "QuantileFlowDetector(q='mean')"):
            pipe, _ = dets[name]
            pipe[-1].set_params(**params)
            t = time.perf_counter()
            pipe.fit(X_train)
            fit_s = time.perf_counter() - t
            s = pipe.score_samples(X_test)
            row = [args.tag, args.params, name, seed, auroc(y_test, s), fpr_at_tpr(y_test, s, 0.95),
                   fit_s, getattr(pipe[-1], "n_epochs_", "")]
            w.writerow(row)
            fh.flush()
            print(*row, flush=True)
