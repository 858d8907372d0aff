"""Training throughput of skood's torch estimators against a hand-written torch loop.

For each estimator (QuantileFlowDetector, HSCDetector with outlier exposure, ICEClassifier with
outlier exposure) one process times, alternating, ``repeats`` times each:

* ``skood``: ``est.fit(X, y)`` at a fixed number of epochs (no ``min_steps``, no held-out rows);
* ``skood, DataLoader``: the same fit with skorch's default loader, torch's ``DataLoader``, which
  fetches and stacks one row at a time: what skood used before ``skood.torch.array_batches``;
* ``raw``: a plain loop over the same module (a copy of the fitted one), criterion, optimizer
  class and settings, batch size, number of steps and gradient clipping, with batches cut from
  tensors made once (``Xt[perm[i:i + b]]``), no skorch, no callbacks.

The ratio is raw seconds / skood seconds for the same number of optimiser steps (1.0 = skood
trains at the raw loop's pace). Everything runs at one torch thread, skood's ``n_threads``
default for fitting, so the loop and the fit use the same kernels.

Usage (repo root):  .venv/bin/python benchmarks/speed/training.py [flow|hsc|ice ...] [--repeats N]
Prints one JSON object per estimator, then a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings

import numpy as np
import torch

import skood.torch as training
from skood import HSCDetector, ICEClassifier, QuantileFlowDetector

N_IN, N_OUT, N_FEATURES, N_CLASSES, EPOCHS = 4096, 1024, 32, 4, 16


def _data(rng):
    centres = rng.normal(scale=3, size=(N_CLASSES, N_FEATURES))
    classes = rng.randint(N_CLASSES, size=N_IN)
    X_in = (centres[classes] + rng.normal(size=(N_IN, N_FEATURES))).astype(np.float32)
    X_out = rng.uniform(-8, 8, size=(N_OUT, N_FEATURES)).astype(np.float32)
    return X_in, classes, X_out


def _estimators(X_in, classes, X_out):
    common = {"max_epochs": EPOCHS, "random_state": 0, "device": "cpu", "n_threads": 1}
    X_oe = np.vstack([X_in, X_out])
    return {
        "flow": (
            QuantileFlowDetector(
                n_blocks=4, hidden_sizes=(128, 128), min_steps=0, validation_fraction=0, **common
            ),
            X_in,
            None,
        ),
        "hsc": (
            HSCDetector(min_steps=0, validation_fraction=0, **common),
            X_oe,
            np.r_[np.ones(N_IN), -np.ones(N_OUT)],
        ),
        "ice": (
            ICEClassifier(validation_fraction=0, **common),
            X_oe,
            np.r_[classes, -np.ones(N_OUT, dtype=int)],
        ),
    }


def _raw_loop(est, X_in, classes, X_out, n_epochs):
    """The steps ``est.fit`` took, as a plain torch loop; returns (seconds, steps)."""
    net = est.net_
    module = copy.deepcopy(net.module_).train()
    criterion = net.criterion_
    optimizer = type(net.optimizer_)(module.parameters(), **net.optimizer_.defaults)
    clip = getattr(est, "grad_clip", None)
    ratio = getattr(est, "outlier_batch_ratio", 1.0)  # outlier rows per inlier row (ICE: 2)
    b = est.batch_size_
    Xt = torch.from_numpy(X_in)
    yt = torch.from_numpy(classes.astype(np.int64)) if isinstance(est, ICEClassifier) else None
    Ot = None if isinstance(est, QuantileFlowDetector) else torch.from_numpy(X_out)
    steps = 0
    t0 = time.perf_counter()
    for _ in range(n_epochs):
        perm = torch.randperm(Xt.shape[0])
        stop = Xt.shape[0] - Xt.shape[0] % b if est._plan_drop_last else Xt.shape[0]
        for start in range(0, stop, b):
            rows = perm[start : start + b]
            X = Xt[rows]
            if Ot is None:
                target = torch.zeros(len(rows), 1)
            else:
                out = Ot[torch.randint(Ot.shape[0], (round(ratio * len(rows)),))]
                X = torch.cat([X, out])
                inl = yt[rows] if yt is not None else torch.zeros(len(rows), dtype=torch.long)
                target = torch.cat([inl, torch.full((out.shape[0],), -1)])
            optimizer.zero_grad()
            loss = criterion(module(X), target)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
            steps += 1
    return time.perf_counter() - t0, steps


def measure(name, repeats):
    rng = np.random.RandomState(0)
    X_in, classes, X_out = _data(rng)
    est, X, y = _estimators(X_in, classes, X_out)[name]
    fast_loader = training.array_batches

    def data_loader(dataset, **params):
        return torch.utils.data.DataLoader(dataset, **params)

    times = {"skood": [], "skood, DataLoader": [], "raw": []}
    torch.set_num_threads(1)
    fitted = None
    for r in range(repeats + 1):  # the first round warms up and is not counted
        for label in ("skood", "skood, DataLoader"):
            training.array_batches = fast_loader if label == "skood" else data_loader
            try:
                t0 = time.perf_counter()
                fitted = copy.deepcopy(est).fit(X, y)
                dt = time.perf_counter() - t0
            finally:
                training.array_batches = fast_loader
            if r:
                times[label].append(dt)
        fitted._plan_drop_last = bool(fitted.net_.get_params()["iterator_train__drop_last"])
        dt, steps = _raw_loop(fitted, X_in, classes, X_out, fitted.n_epochs_)
        if r:
            times["raw"].append(dt)
    skood_steps = int(sum(fitted.net_.history[:, "train_batch_count"]))
    assert skood_steps == steps, (skood_steps, steps)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "estimator": name,
        "n_params": sum(p.numel() for p in fitted.net_.module_.parameters()),
        "steps": steps,
        "batch_size": fitted.batch_size_,
        "median_s": med,
        "runs_s": times,
        "steps_per_s": {k: steps / v for k, v in med.items()},
        "ratio_raw_over_skood": med["raw"] / med["skood"],
        "ratio_raw_over_skood_dataloader": med["raw"] / med["skood, DataLoader"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=["flow", "hsc", "ice"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for name in args.which:
        r = measure(name, args.repeats)
        print(json.dumps(r))
        rows.append(r)
    print(
        "\n| estimator | params | steps (batch) | raw loop steps/s | skood steps/s | ratio | "
        "skood with DataLoader steps/s | ratio |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        s = r["steps_per_s"]
        print(
            f"| {r['estimator']} | {r['n_params']:,} | {r['steps']} ({r['batch_size']}) | "
            f"{s['raw']:.0f} | {s['skood']:.0f} | **{r['ratio_raw_over_skood']:.2f}** | "
            f"{s['skood, DataLoader']:.0f} | {r['ratio_raw_over_skood_dataloader']:.2f} |"
        )


if __name__ == "__main__":
    main()
