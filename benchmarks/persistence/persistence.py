"""Save / load time and file size: skood.save / skood.load against joblib (issue 19).

Two models: the flow at the paper's size (QuantOD: 8 coupling blocks, 512-wide hidden layers, on
512-d features; about 10 M parameters) and a class-conditional GaussianMahalanobis on 128-d
features (10 classes). Each operation runs --repeats times in one process, on one thread; the
median is reported, with the raw floor for the flow's weights (safetensors.torch save / load of
its state_dict alone).

    .venv/bin/python benchmarks/persistence/persistence.py --out benchmarks/persistence/results.md
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import skood
from skood import GaussianMahalanobis, QuantileFlowDetector


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _models(seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(256, 512)).astype(np.float32)
    flow = QuantileFlowDetector(n_blocks=8, hidden_sizes=(512, 512, 512), max_epochs=1, min_steps=0,
                                random_state=seed)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flow.fit(X)
    n_params = sum(p.numel() for p in flow.net_.module_.parameters())
    Xg = rng.normal(size=(20_000, 128))
    yg = rng.integers(0, 10, size=20_000)
    gauss = GaussianMahalanobis(random_state=seed).fit(Xg, yg)
    return [
        (f"QuantileFlowDetector, paper size ({n_params / 1e6:.1f} M parameters, 512-d)", flow, X),
        ("GaussianMahalanobis, 10 classes, 128-d", gauss, Xg[:1000]),
    ]


def _measure(name: str, model, X, tmp: Path, repeats: int) -> list[tuple]:
    skood_path, joblib_path = tmp / "m.skood", tmp / "m.joblib"
    expected = model.score_samples(X)
    rows = []
    for how, save, load, path in [
        ("skood.save / skood.load", skood.save, skood.load, skood_path),
        ("joblib.dump / joblib.load", joblib.dump, joblib.load, joblib_path),
    ]:
        save_s = _median_seconds(lambda: save(model, path), repeats)  # noqa: B023
        load_s = _median_seconds(lambda: load(path), repeats)  # noqa: B023
        same = np.array_equal(load(path).score_samples(X), expected)
        rows.append((name, how, save_s, load_s, path.stat().st_size, same))
    if hasattr(model, "net_"):  # the floor: the weights alone, in safetensors, in memory
        state = {k: v.contiguous() for k, v in model.net_.module_.state_dict().items()}
        data = st_save(state)
        save_s = _median_seconds(lambda: st_save(state), repeats)
        load_s = _median_seconds(lambda: st_load(data), repeats)
        rows.append((name, "floor: safetensors of the state_dict, in memory", save_s, load_s,
                     len(data), None))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, X in _models(args.seed):
            rows += _measure(name, model, X, Path(tmp), args.repeats)
    lines = [
        "| model | how | save (ms) | load (ms) | file (MB) | scores identical after load |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, how, save_s, load_s, size, same in rows:
        verdict = "-" if same is None else ("yes" if same else "NO")
        lines.append(
            f"| {name} | {how} | {save_s * 1e3:.1f} | {load_s * 1e3:.1f} | {size / 1e6:.2f} | {verdict} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        header = (
            f"Recorded with `benchmarks/persistence/persistence.py` (median of {args.repeats}, one "
            f"thread, "
            f"torch {torch.__version__}, {os.cpu_count()} CPUs).\n\n"
        )
        args.out.write_text(header + table + "\n")


if __name__ == "__main__":
    main()
