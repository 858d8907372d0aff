"""Speed of skood's QuantileFlowDetector and GaussianMahalanobis on CPU.

  1. Scoring throughput: QuantileFlowDetector.score_samples (default architecture) on
     100,000 x 128 rows vs the raw torch forward pass of the same module.
  2. Fit time: QuantileFlowDetector vs PyOD AutoEncoder at equal epochs, data and batch size.
  3. GaussianMahalanobis fit + score_samples on 1,000,000 x 128 float64: wall time, peak memory.

Every part runs in a fresh subprocess (clean peak-RSS, no warm caches shared between parts).
torch uses its default number of threads (run nothing else at the same time).

Usage (repo root):  .venv/bin/python benchmarks/speed/speed.py            # all parts, prints markdown
                    .venv/bin/python benchmarks/speed/speed.py throughput  # one part, prints JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np


def _median_time(fn, repeats=3, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), ts


def _alternating_medians(fns: dict, repeats=5):
    """Median seconds of each function, timed in alternation after one warm-up call each, so
    that a slow spell of a shared machine falls on every path alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (float(np.median(ts)), ts) for name, ts in times.items()}


def part_throughput(n_rows=100_000, with_float64=True, flow="paper"):
    """score_samples against the raw forward pass of the same module, at torch's default
    threads. ``flow``: "paper" (8 x 512 x 3) or "default" (the class defaults)."""
    import torch

    from skood import QuantileFlowDetector

    rng = np.random.RandomState(0)
    if flow == "paper":
        det = QuantileFlowDetector.paper(max_epochs=1, min_steps=0, random_state=0, device="cpu")
    else:
        det = QuantileFlowDetector(max_epochs=1, min_steps=0, random_state=0, device="cpu")
    det.fit(rng.normal(size=(2000, 128)))
    n_params = sum(p.numel() for p in det.net_.module_.parameters())
    X64 = rng.normal(size=(n_rows, 128))
    X32 = X64.astype(np.float32)
    X32_read_only = X32.copy()
    X32_read_only.setflags(write=False)  # as a memmap: copied batch by batch
    bs = det.inference_batch_size
    module = det.net_.module_.eval()
    Xt = torch.from_numpy(X32)

    def raw():
        out = []
        with torch.inference_mode():
            for i in range(0, Xt.shape[0], bs):
                out.append(module(Xt[i : i + bs]))
        return torch.cat(out)

    res = {
        "flow": flow,
        "n_rows": X32.shape[0],
        "n_features": 128,
        "batch_size": bs,
        "n_params": n_params,
        "torch_threads": torch.get_num_threads(),
    }
    paths = {
        "raw_torch": raw,
        "score_samples_float32": lambda: det.score_samples(X32),
        "score_samples_float32_read_only": lambda: det.score_samples(X32_read_only),
    }
    if with_float64:
        paths["score_samples_float64"] = lambda: det.score_samples(X64)
    for name, (med, ts) in _alternating_medians(paths).items():
        res[name] = {"median_s": med, "runs_s": ts, "rows_per_s": X32.shape[0] / med}
    a = det.score_samples(X32)
    b = raw().double().numpy()
    res["max_abs_diff_vs_raw"] = float(np.max(np.abs(a - b)))
    for k in list(paths)[1:]:
        res[k]["ratio_vs_raw"] = res[k]["rows_per_s"] / res["raw_torch"]["rows_per_s"]
    return res


def part_fit(both_qfd=True):
    import torch
    from pyod.models.auto_encoder import AutoEncoder

    from skood import QuantileFlowDetector

    rng = np.random.RandomState(0)
    X = rng.normal(size=(10_000, 64))
    epochs, bs = 5, 128
    res = {
        "n_rows": X.shape[0],
        "n_features": X.shape[1],
        "epochs": epochs,
        "batch_size": bs,
        "torch_threads": torch.get_num_threads(),
    }
    # QuantileFlowDetector trains on 1 - validation_fraction of the rows; also time it on all rows.
    small = {"n_blocks": 4, "hidden_sizes": (64, 64), "validation_fraction": 0.0}
    for name, kw in [
        (
            "QuantileFlowDetector.paper(validation_fraction=0)",
            {**QuantileFlowDetector.PAPER_PARAMS, "validation_fraction": 0.0},
        ),
        (
            "QuantileFlowDetector(n_blocks=4, hidden_sizes=(64, 64), validation_fraction=0)",
            small,
        ),
        ("QuantileFlowDetector.paper(validation_fraction=0.2)", QuantileFlowDetector.PAPER_PARAMS),
    ][: 3 if both_qfd else 2]:
        params = {**kw, "max_epochs": epochs, "min_steps": 0, "batch_size": bs}
        det = QuantileFlowDetector(random_state=0, device="cpu", **params)
        t0 = time.perf_counter()
        det.fit(X)
        dt = time.perf_counter() - t0
        res[name] = {
            "fit_s": dt,
            "n_params": sum(p.numel() for p in det.net_.module_.parameters()),
            "n_train_rows": round(X.shape[0] * (1 - kw.get("validation_fraction", 0.2))),
            "epochs_trained": det.n_epochs_,
        }
    ae = AutoEncoder(epoch_num=epochs, batch_size=bs, device="cpu", verbose=0, random_state=0)
    t0 = time.perf_counter()
    ae.fit(X)
    dt = time.perf_counter() - t0
    res["pyod.AutoEncoder(default [64, 32])"] = {
        "fit_s": dt,
        "n_params": sum(p.numel() for p in ae.model.parameters()),
        "n_train_rows": X.shape[0],
        "epochs_trained": epochs,
    }
    return res


def part_gauss(offset_cv):
    import resource
    import tracemalloc

    from skood import GaussianMahalanobis

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    X = np.random.RandomState(0).normal(size=(1_000_000, 128))
    rss_x = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The floor of any Gaussian fit: one X^T X product (BLAS syrk) plus one pass over X.
    t_floor, _ = _median_time(lambda: (X.T @ X, X.sum(axis=0)))
    det = GaussianMahalanobis(offset_cv=offset_cv)
    det.fit(X[:1000])  # imports and first-call costs out of the timing
    tracemalloc.start()
    t0 = time.perf_counter()
    det.fit(X)
    t_fit = time.perf_counter() - t0
    _, peak_fit = tracemalloc.get_traced_memory()
    rss_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    s = det.score_samples(X)
    t_score = time.perf_counter() - t0
    _, peak_score = tracemalloc.get_traced_memory()
    rss_score = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.stop()
    assert s.shape == (X.shape[0],) and np.all(np.isfinite(s))
    return {
        "offset_cv": offset_cv,
        "input_MiB": X.nbytes / 2**20,
        "fit_s": t_fit,
        "floor_s": t_floor,
        "fit_over_floor": t_fit / t_floor,
        "score_s": t_score,
        "fit_extra_peak_MiB_tracemalloc": peak_fit / 2**20,
        "score_extra_peak_MiB_tracemalloc": peak_score / 2**20,
        "maxrss_MiB_before_X": rss0,
        "maxrss_MiB_after_X": rss_x,
        "maxrss_MiB_after_fit": rss_fit,
        "maxrss_MiB_after_score": rss_score,
    }


def _sub(*args):
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1:
        part = sys.argv[1]
        if part == "throughput":  # optional: n_rows, "no64" (skip the float64-input variant),
            # "default" (the class's default flow instead of the paper's)
            r = part_throughput(
                int(sys.argv[2]) if len(sys.argv) > 2 else 100_000,
                "no64" not in sys.argv,
                "default" if "default" in sys.argv else "paper",
            )
        elif part == "fit":  # optional: "one" (only the default validation_fraction)
            r = part_fit("one" not in sys.argv)
        elif part == "gauss":
            r = part_gauss(None if sys.argv[2] == "none" else int(sys.argv[2]))
        else:
            raise SystemExit(f"unknown part {part}")
        print(json.dumps(r))
        return

    t_all = time.perf_counter()
    results = {
        "throughput": _sub("throughput"),
        "fit": _sub("fit"),
        "gauss_cv5": _sub("gauss", "5"),
        "gauss_none": _sub("gauss", "none"),
    }
    print(json.dumps(results, indent=1))

    r = results["throughput"]
    print(
        f"\n### 1. Scoring throughput ({r['n_rows']:,} x {r['n_features']}, batch {r['batch_size']}, "
        f"{r['n_params']:,} params, torch threads {r['torch_threads']}; median of 3 after 1 warm-up)\n"
    )
    print("| path | median s | rows/s | ratio vs raw |\n|---|---|---|---|")
    for k in (
        "raw_torch",
        "score_samples_float32",
        "score_samples_float32_read_only",
        "score_samples_float64",
    ):
        v = r[k]
        print(
            f"| {k} | {v['median_s']:.3f} | {v['rows_per_s']:,.0f} | {v.get('ratio_vs_raw', 1.0):.3f} |"
        )
    print(f"\nmax |score_samples - raw| = {r['max_abs_diff_vs_raw']:.3g}")

    r = results["fit"]
    print(
        f"\n### 2. Fit time ({r['n_rows']:,} x {r['n_features']}, {r['epochs']} epochs, batch "
        f"{r['batch_size']}, torch threads {r['torch_threads']})\n"
    )
    print("| model | params | rows trained on | fit s | s per epoch |\n|---|---|---|---|---|")
    for k, v in r.items():
        if isinstance(v, dict):
            print(
                f"| {k} | {v['n_params']:,} | {v['n_train_rows']:,} | {v['fit_s']:.2f} | "
                f"{v['fit_s'] / v['epochs_trained']:.2f} |"
            )

    print("\n### 3. GaussianMahalanobis on 1,000,000 x 128 float64\n")
    print(
        "| offset_cv | input MiB | floor s (X^T X + one pass) | fit s | fit / floor | score_samples s | fit extra peak MiB (tracemalloc) | "
        "score extra peak MiB (tracemalloc) | max RSS MiB after X / fit / score |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for k in ("gauss_cv5", "gauss_none"):
        v = results[k]
        print(
            f"| {v['offset_cv']} | {v['input_MiB']:.0f} | {v['floor_s']:.2f} | {v['fit_s']:.2f} | "
            f"{v['fit_over_floor']:.2f} | {v['score_s']:.2f} | "
            f"{v['fit_extra_peak_MiB_tracemalloc']:.0f} | {v['score_extra_peak_MiB_tracemalloc']:.0f} | "
            f"{v['maxrss_MiB_after_X']:.0f} / {v['maxrss_MiB_after_fit']:.0f} / {v['maxrss_MiB_after_score']:.0f} |"
        )
    print(f"\ntotal wall {time.perf_counter() - t_all:.1f}s")


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        sys.exit()
    main()
