"""How often the realised false discovery proportion exceeds ``false_discovery_bound``.

Issue 35, item 5. ``ConformalDetector.false_discovery_bound(X, delta)`` claims: with probability at
least ``1 - delta`` over the calibration rows and the batch, the share of inliers among the rows
``predict(X)`` flags (p-value <= alpha) is at most the bound. Per repetition and data set, rows are
drawn afresh: 1,000 clean training inliers fit ``StandardScaler`` + ``GaussianMahalanobis``, frozen
(``FrozenEstimator``); ``N_CAL`` calibration inliers calibrate it; a batch of ``N_IN`` inliers and
``N_OUT`` outliers is flagged at alpha. Reported: the share of repetitions where the realised FDP
exceeds the bound (the claim: at most delta), the mean bound, the mean realised FDP.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/fdp_bound.py --help
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks.conformal.contaminated import real, synthetic
from skood import GaussianMahalanobis
from skood.conformal import ConformalDetector

HERE = Path(__file__).resolve().parent
ALPHAS = (0.01, 0.05, 0.1)
N_TRAIN, N_CAL, N_IN, N_OUT = 1000, 500, 900, 100


def one_repetition(inliers, outliers, delta, rng):
    rows_in = rng.choice(len(inliers), size=N_TRAIN + N_CAL + N_IN, replace=False)
    train = inliers[rows_in[:N_TRAIN]]
    calibration = inliers[rows_in[N_TRAIN : N_TRAIN + N_CAL]]
    batch = np.r_[
        inliers[rows_in[N_TRAIN + N_CAL :]],
        outliers[rng.choice(len(outliers), size=N_OUT, replace=False)],
    ]
    model = make_pipeline(StandardScaler(), GaussianMahalanobis(offset_cv=None)).fit(train)
    det = ConformalDetector(FrozenEstimator(model)).fit(calibration)
    out = {}
    for alpha in ALPHAS:
        det.set_params(alpha=alpha)
        flagged = det.predict(batch) == -1
        fdp = flagged[:N_IN].sum() / max(flagged.sum(), 1)
        out[alpha] = (fdp, det.false_discovery_bound(batch, delta=delta), flagged.sum())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=1000)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument(
        "--data", nargs="+", default=["synthetic", "27_PageBlocks", "23_mammography"]
    )
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"delta = {args.delta}; {args.repetitions} repetitions per data set")
    print("| data | alpha | P(FDP > bound) | (+- 1 s.e.) | mean bound | mean FDP | mean flagged |")
    print("|---|---|---|---|---|---|---|")
    for name in args.data:
        rng = np.random.default_rng(0)
        inliers, outliers = synthetic(rng) if name == "synthetic" else real(name)
        runs = [one_repetition(inliers, outliers, args.delta, rng) for _ in range(args.repetitions)]
        for alpha in ALPHAS:
            values = np.array([run[alpha] for run in runs], dtype=float)
            miss = values[:, 0] > values[:, 1]
            se = miss.std(ddof=1) / np.sqrt(miss.size)
            print(
                f"| {name} | {alpha} | {miss.mean():.3f} | {se:.3f} | {values[:, 1].mean():.3f} "
                f"| {values[:, 0].mean():.3f} | {values[:, 2].mean():.1f} |",
                flush=True,
            )
    print(f"\nwall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
