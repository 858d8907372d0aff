"""QuantileFlowDetector's training and scoring throughput per device, float32 and bf16 autocast.

For every device present (the CPU always; CUDA when torch sees it) and two flows (the class
defaults and ``QuantileFlowDetector.paper()``), on 20,000 x 128 synthetic float32 rows:

* training: optimiser steps per second of ``fit`` (a fixed number of steps, after a warm-up fit);
* scoring: rows per second of ``score_samples`` and of the raw forward pass in float32, and of
  the raw forward pass under ``torch.autocast(dtype=torch.bfloat16)``, with how far the bf16
  scores move (median relative difference, Spearman correlation, AUROC of in vs shifted rows
  under both) -- the evidence for or against offering mixed precision;
* CUDA only: the scoring pass's bytes (weights once per batch, plus every layer's activations
  written and read once) per second, as a fraction of the device-to-device copy bandwidth
  measured on the same GPU: the memory-bandwidth bound of a pass that did nothing else.

Usage (repo root):  .venv/bin/python benchmarks/gpu/gpu.py [--out FILE.json] [--rows N]
``benchmarks/gpu/run.sh`` runs it after the CUDA-only tests.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr

from skood import QuantileFlowDetector
from skood.metrics import auroc


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _best_of(fn, device, repeats=3):
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def _copy_bandwidth(device):
    """Bytes per second of a 1 GiB device-to-device copy (read + write)."""
    x = torch.empty(2**28, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    seconds = _best_of(lambda: y.copy_(x), device)
    return 2 * x.numel() * 4 / seconds


def _activation_widths(flow: torch.nn.Module) -> int:
    """Sum of the output widths of every Linear layer (float32 values written then read)."""
    return sum(m.out_features for m in flow.modules() if isinstance(m, torch.nn.Linear))


def measure(device: str, name: str, n_rows: int) -> dict:
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n_rows, 128)).astype(np.float32)
    X_shift = (X[: n_rows // 4] + 0.5).astype(np.float32)
    steps = 50 if name == "paper" else 200
    make = QuantileFlowDetector.paper if name == "paper" else QuantileFlowDetector
    params = {"max_epochs": 1, "min_steps": steps, "random_state": 0, "device": device}
    make(**{**params, "min_steps": 5}).fit(X[:2000])  # warm-up: kernels, allocator
    det = make(**params)
    t0 = time.perf_counter()
    det.fit(X)
    _sync(device)
    fit_s = time.perf_counter() - t0
    flow = det.net_.module_.eval()
    n_params = sum(p.numel() for p in flow.parameters())
    batch = det.inference_batch_size
    Xt = torch.from_numpy(X).to(device)

    def raw(autocast=False):
        out = []
        with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=autocast):
            for i in range(0, n_rows, batch):
                out.append(flow(Xt[i : i + batch]).float())
        return torch.cat(out)

    res = {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "flow": name,
        "n_params": n_params,
        "torch_threads": torch.get_num_threads(),
        "train_steps": steps,
        "train_steps_per_s": steps / fit_s,  # includes the fit's own setup and calibration
        "score_rows_per_s": n_rows / _best_of(lambda: det.score_samples(X), device),
        "raw_float32_rows_per_s": n_rows / _best_of(raw, device),
        "raw_bf16_autocast_rows_per_s": n_rows / _best_of(lambda: raw(True), device),
    }
    s32 = raw().double().cpu().numpy()
    s16 = raw(True).double().cpu().numpy()
    both32 = det.score_samples(np.r_[X[: n_rows // 4], X_shift])
    Xs = torch.from_numpy(np.r_[X[: n_rows // 4], X_shift]).to(device)
    with torch.inference_mode(), torch.autocast(device, torch.bfloat16):
        both16 = flow(Xs).float().double().cpu().numpy()
    labels = np.r_[np.ones(n_rows // 4), -np.ones(n_rows // 4)]
    res["bf16_median_rel_diff"] = float(np.median(np.abs(s16 - s32) / np.abs(s32).clip(1e-12)))
    res["bf16_spearman"] = float(spearmanr(s32, s16).statistic)
    res["auroc_float32_shifted"] = float(auroc(labels, both32))
    res["auroc_bf16_shifted"] = float(auroc(labels, both16))
    if device.startswith("cuda"):
        bandwidth = _copy_bandwidth(device)
        n_batches = -(-n_rows // batch)
        bytes_moved = (
            n_batches * n_params * 4  # weights, once per batch
            + n_rows * 128 * 4  # the input
            + 2 * n_rows * _activation_widths(flow) * 4  # activations written, then read
        )
        res["copy_bandwidth_GBps"] = bandwidth / 1e9
        res["scoring_GBps"] = bytes_moved * res["raw_float32_rows_per_s"] / n_rows / 1e9
        res["scoring_fraction_of_bandwidth"] = res["scoring_GBps"] / res["copy_bandwidth_GBps"]
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = [measure(d, name, args.rows) for d in devices for name in ("default", "paper")]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print(
        "| device | flow | params | train steps/s | score_samples rows/s | raw f32 rows/s | "
        "raw bf16 rows/s | bf16 median rel. diff | bf16 Spearman | AUROC f32 / bf16 | "
        "scoring / copy bandwidth |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        frac = r.get("scoring_fraction_of_bandwidth")
        print(
            f"| {r['device_name']} | {r['flow']} | {r['n_params']:,} | "
            f"{r['train_steps_per_s']:.1f} | {r['score_rows_per_s']:,.0f} | "
            f"{r['raw_float32_rows_per_s']:,.0f} | {r['raw_bf16_autocast_rows_per_s']:,.0f} | "
            f"{r['bf16_median_rel_diff']:.2g} | {r['bf16_spearman']:.4f} | "
            f"{r['auroc_float32_shifted']:.4f} / {r['auroc_bf16_shifted']:.4f} | "
            f"{'n/a (CPU)' if frac is None else f'{frac:.2f}'} |"
        )
    if "cuda" not in devices:
        print(
            "\nCUDA half skipped: torch sees no CUDA device here; the table holds the CPU "
            "half only. Run benchmarks/gpu/run.sh on a CUDA machine for the GPU figures."
        )


if __name__ == "__main__":
    main()
