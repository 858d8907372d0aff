"""KNNDetector against PyOD's KNN, sklearn's brute-force search and the BLAS floor, in one run.

Data: 100,000 x 128 standard-normal training rows and 10,000 new rows (float64), k = 5.

* ``fit``: what each detector does at fit. PyOD's ``KNN.fit`` finds the neighbours of every
  training row (its ``decision_scores_`` / ``threshold_``); ``KNNDetector.fit`` keeps the rows
  and finds the neighbours of at most 10,000 of them (its leave-one-out calibration rows).
* ``score``: ``score_samples`` / ``decision_function`` on the 10,000 new rows, the same search
  for both: the distance of each to its 5th nearest training row.
* floor: the matrix products a brute-force search cannot avoid, new rows x training rows^T
  (10,000 x 128 by 128 x 100,000), block by block (1,024 new rows at a time, each product
  thrown away), in float32 (torch) and in float64 (NumPy).

Both run k = 5 with the k-th distance (``KNNDetector(aggregate="kth")``, PyOD's ``"largest"``),
the same computation; ``KNNDetector()``'s default, the mean of the 5, costs the same.

Every timing is the median of ``--repeats`` runs alternated between the paths (one warm-up
each), in this one process at torch's and BLAS's default threads; run nothing else meanwhile.
The two scores are compared too (max relative difference).

    .venv/bin/python benchmarks/speed/knn.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _median(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=100_000)
    parser.add_argument("--n-new", type=int, default=10_000)
    parser.add_argument("--n-features", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    from pyod.models.knn import KNN

    from skood import KNNDetector

    rng = np.random.RandomState(0)
    X = rng.normal(size=(args.n_train, args.n_features))
    X_new = rng.normal(size=(args.n_new, args.n_features))
    X32, new32 = X.astype(np.float32), X_new.astype(np.float32)
    t_x, t_new = torch.from_numpy(X32), torch.from_numpy(new32)

    def knn():
        return KNNDetector(aggregate="kth", device="cpu", random_state=0)

    ours = knn().fit(X[:1000])  # warm-up
    pyod = KNN(n_neighbors=5).fit(X[:1000])
    ours.score_samples(X_new[:100]), pyod.decision_function(X_new[:100])

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "shape": [args.n_train, args.n_features],
        "n_new": args.n_new,
    }
    result["skood_fit_s"], ours = _median(lambda: knn().fit(X), args.repeats)
    result["pyod_fit_s"], pyod = _median(lambda: KNN(n_neighbors=5).fit(X), args.repeats)
    result["skood_score_s"], s_ours = _median(lambda: ours.score_samples(X_new), args.repeats)
    result["pyod_score_s"], s_pyod = _median(lambda: pyod.decision_function(X_new), args.repeats)
    def floor32():
        for start in range(0, args.n_new, 1024):
            t_new[start : start + 1024] @ t_x.T

    def floor64():
        for start in range(0, args.n_new, 1024):
            X_new[start : start + 1024] @ X.T

    result["floor_float32_s"], _ = _median(floor32, args.repeats)
    result["floor_float64_s"], _ = _median(floor64, args.repeats)
    result["max_rel_diff_scores"] = float(np.max(np.abs(-s_ours - s_pyod) / np.abs(s_pyod)))
    result["fit_speedup_vs_pyod"] = result["pyod_fit_s"] / result["skood_fit_s"]
    result["score_speedup_vs_pyod"] = result["pyod_score_s"] / result["skood_score_s"]
    result["score_over_float32_floor"] = result["skood_score_s"] / result["floor_float32_s"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
