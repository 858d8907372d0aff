"""What pinning torch's CPU threads during fit costs (``n_threads``, issue 16).

Fits the same flow (and stage-1 classifier) with ``n_threads=1`` (the default: reproducible under
any ``n_jobs``) and ``n_threads=None`` (torch's own count, all physical cores), alternating the
two so that load on a shared machine hits both alike, and reports the median fit time of each.
The scores of the two fits are compared too: on x86-64 CPUs whose BLAS splits reductions by
thread, they differ, and that is what the pin removes.

Usage (from the repo root, on an otherwise quiet machine):
  .venv/bin/python benchmarks/threads/threads.py > benchmarks/threads/threads.md
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
import torch

from skood import ClassifierFeatures, QuantileFlowDetector
from skood.datasets import load_digits_ood

REPEATS = 3
CONFIGS = {
    "flow 4 x 128 x 1, 300 steps": lambda n: QuantileFlowDetector(
        n_blocks=4,
        hidden_sizes=(128, 128),
        lr=1e-3,
        max_epochs=1,
        min_steps=300,
        random_state=0,
        n_threads=n,
        device="cpu",
    ),
    "flow 8 x 512 x 2 (paper), 100 steps": lambda n: QuantileFlowDetector(
        max_epochs=1, min_steps=100, random_state=0, n_threads=n, device="cpu"
    ),
    "ClassifierFeatures CNN, 10 epochs": lambda n: ClassifierFeatures(
        image_shape=(1, 8, 8), max_epochs=10, random_state=0, n_threads=n, device="cpu"
    ),
}


def main():
    X, y = load_digits_ood(range(6))
    X = (X / 16.0)[y != -1]
    y = y[y != -1]
    Z = ClassifierFeatures(max_epochs=10, random_state=0, device="cpu").fit(X, y).transform(X)
    print("# Cost of pinning torch threads during fit (`n_threads`)\n")
    print(
        f"Command: `.venv/bin/python benchmarks/threads/threads.py`; {time.strftime('%Y-%m-%d %H:%M')} UTC"
    )
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__}, torch's default threads {torch.get_num_threads()}\n"
    )
    print("| fit | n_threads=1 (s) | n_threads=None (s) | ratio | same scores |")
    print("|---|---|---|---|---|")
    for name, make in CONFIGS.items():
        data = (X, y) if "Classifier" in name else (Z,)
        times = {1: [], None: []}
        outputs = {}
        for _ in range(REPEATS):
            for n in (1, None):
                start = time.perf_counter()
                est = make(n).fit(*data)
                times[n].append(time.perf_counter() - start)
                out = est.transform(X) if "Classifier" in name else est.score_samples(Z)
                outputs[n] = out
        t1, tn = np.median(times[1]), np.median(times[None])
        same = np.array_equal(outputs[1], outputs[None])
        print(f"| {name} | {t1:.2f} | {tn:.2f} | {t1 / tn:.2f} | {same} |")


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        sys.exit()
    main()
