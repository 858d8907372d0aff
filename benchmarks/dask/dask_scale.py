"""skood on Dask (issue 21): search speed-up, scoring throughput and memory, Gaussian fit at scale.

Three measurements, each in one run, on a LocalCluster of processes (loopback, one thread each):

* ``search``: an 8-candidate x 3-fold flow grid (``GridSearchCV``) sequentially, under joblib's
  loky backend with 2 processes, and under the dask backend with 1 and 2 workers; the ratio of
  wall times, and whether ``cv_results_`` are equal to the sequential run.
* ``score``: ``skood.distributed.score_dataset`` of a fitted ``GaussianMahalanobis`` on a
  Parquet dataset of N rows x 64 features (N = 1M, 3M, 10M; 100k-row files), rows/s and the peak
  resident memory of each worker, against scoring the same rows in memory in one process.
* ``gaussian``: ``GaussianMahalanobis().fit`` on the 10M-row dataset as a dask dataframe (per-block
  moments) against the in-memory fit: wall time and peak memory.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dask/dask_scale.py all --out benchmarks/dask
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROWS_PER_FILE = 100_000
N_FEATURES = 64


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cluster(n_workers):
    from distributed import Client, LocalCluster

    from skood.distributed import TorchThreads

    cluster = LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    client.register_plugin(TorchThreads())
    return cluster, client


# -- search --------------------------------------------------------------------------------------


def _warm() -> int:
    """Import what a fit needs, as a long-running worker already has (not what is timed)."""
    import skood.flow
    import skood.metrics  # noqa: F401

    return os.getpid()


def search() -> dict:
    import joblib
    from sklearn.model_selection import GridSearchCV

    from skood import QuantileFlowDetector
    from skood.metrics import SCORERS
    from skood.model_selection import OODStratifiedKFold

    rng = np.random.default_rng(0)
    # each fit takes seconds, as a real search's do: process start-up is not what is measured
    X = np.vstack([rng.normal(size=(3000, 16)), rng.normal(2.5, 1.0, size=(300, 16))])
    y = np.r_[np.ones(3000), -np.ones(300)]
    base = QuantileFlowDetector(hidden_sizes=(64, 64), max_epochs=8, min_steps=0, random_state=0)
    grid = {"q": [0.05, "mean"], "n_blocks": [2, 4], "lr": [1e-3, 3e-3]}  # 8 candidates

    def run(**kw):
        s = GridSearchCV(base, grid, cv=OODStratifiedKFold(n_splits=3, random_state=0),
                         scoring=SCORERS["auroc"], **kw)  # fmt: skip
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s.fit(X, y)
        return time.perf_counter() - start, s.cv_results_["mean_test_score"]

    results = {}
    seq_s, seq_scores = run()
    results["sequential"] = {"seconds": seq_s}
    with joblib.parallel_config(backend="loky"):
        joblib.Parallel(n_jobs=2)(joblib.delayed(_warm)() for _ in range(4))  # reused executor
        s, scores = run(n_jobs=2)
    results["loky, 2 processes"] = {"seconds": s, "equal": bool(np.array_equal(scores, seq_scores))}
    for workers in (1, 2):
        cluster, client = _cluster(workers)
        try:
            client.run(_warm)
            with joblib.parallel_config(backend="dask"):
                s, scores = run(n_jobs=-1)
        finally:
            client.close()
            cluster.close()
        results[f"dask, {workers} worker(s)"] = {
            "seconds": s,
            "equal": bool(np.array_equal(scores, seq_scores)),
        }
    return results


# -- scoring -------------------------------------------------------------------------------------


def _write_dataset(folder: Path, n_rows: int) -> None:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    columns = [f"f{j}" for j in range(N_FEATURES)]
    for i in range(n_rows // ROWS_PER_FILE):
        rng = np.random.default_rng(i)
        frame = pd.DataFrame(rng.normal(size=(ROWS_PER_FILE, N_FEATURES)), columns=columns)
        frame.to_parquet(folder / f"part{i:04d}.parquet")


def _model(path: Path):
    import skood
    from skood import GaussianMahalanobis

    X = np.random.default_rng(123).normal(size=(20_000, N_FEATURES))
    skood.save(GaussianMahalanobis(random_state=0).fit(X), path)


def _in_memory(folder: str, model_path: str) -> dict:
    """Child process: read every file into one array, score it; time and peak memory."""
    import pandas as pd

    import skood

    model = skood.load(model_path)
    start = time.perf_counter()
    X = np.concatenate([pd.read_parquet(p).to_numpy() for p in sorted(Path(folder).iterdir())])
    scores = model.score_samples(X)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": int(scores.size), "peak_mb": _peak_mb()}


def score(sizes) -> dict:
    import skood
    from skood.distributed import score_dataset

    results = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("SKOOD_BENCH_TMP")) as tmp:
        model_path = Path(tmp) / "gauss.skood"
        _model(model_path)
        model = skood.load(model_path)
        for n_rows in sizes:
            folder = Path(tmp) / f"rows{n_rows}"
            _write_dataset(folder, n_rows)
            child = subprocess.run(
                [sys.executable, __file__, "_in_memory", str(folder), str(model_path)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            memory = json.loads(child.stdout.strip().splitlines()[-1])
            cluster, client = _cluster(2)
            try:
                start = time.perf_counter()
                out = score_dataset(model, str(folder)).to_parquet(Path(tmp) / "out", compute=False)
                client.compute(out).result()
                seconds = time.perf_counter() - start
                peaks = client.run(_peak_mb)
            finally:
                client.close()
                cluster.close()
            results[n_rows] = {
                "dask_rows_per_s": n_rows / seconds,
                "dask_seconds": seconds,
                "worker_peak_mb": max(peaks.values()),
                "memory_rows_per_s": memory["rows"] / memory["seconds"],
                "memory_peak_mb": memory["peak_mb"],
            }
            print(n_rows, results[n_rows], flush=True)
            import shutil

            shutil.rmtree(Path(tmp) / "out", ignore_errors=True)
            if n_rows != max(sizes):
                shutil.rmtree(folder)
        results["gaussian_fit"] = gaussian_fit(Path(tmp) / f"rows{max(sizes)}")
    return results


def _fit_in_memory(folder: str) -> dict:
    import pandas as pd

    from skood import GaussianMahalanobis

    start = time.perf_counter()
    X = np.concatenate([pd.read_parquet(p).to_numpy() for p in sorted(Path(folder).iterdir())])
    GaussianMahalanobis(random_state=0).fit(X)
    return {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb()}


def gaussian_fit(folder: Path) -> dict:
    import dask.dataframe as dd

    from skood import GaussianMahalanobis

    child = subprocess.run(
        [sys.executable, __file__, "_fit_in_memory", str(folder)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    memory = json.loads(child.stdout.strip().splitlines()[-1])
    cluster, client = _cluster(2)
    try:
        start = time.perf_counter()
        GaussianMahalanobis(random_state=0).fit(dd.read_parquet(str(folder)))
        seconds = time.perf_counter() - start
        peaks = client.run(_peak_mb)
    finally:
        client.close()
        cluster.close()
    return {
        "dask_seconds": seconds,
        "worker_peak_mb": max(peaks.values()),
        "client_peak_mb": _peak_mb(),
        "memory_seconds": memory["seconds"],
        "memory_peak_mb": memory["peak_mb"],
    }


def _report(results: dict) -> str:
    lines = [
        "## Search: 8 candidates x 3 folds, flow",
        "",
        "| how | wall (s) | speed-up | cv_results_ equal |",
        "|---|---:|---:|---|",
    ]
    seq = results["search"]["sequential"]["seconds"]
    for how, r in results["search"].items():
        eq = "-" if "equal" not in r else ("yes" if r["equal"] else "NO")
        lines.append(f"| {how} | {r['seconds']:.1f} | {seq / r['seconds']:.2f}x | {eq} |")
    lines += ["", "## Scoring GaussianMahalanobis, 64 features, Parquet (100k-row files)", "",
              "| rows | dask, 2 workers (rows/s) | peak per worker (MB) | in memory, 1 process (rows/s) | in-memory peak (MB) |",
              "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n, r in results["score"].items():
        if n == "gaussian_fit":
            continue
        lines.append(
            f"| {int(n):,} | {r['dask_rows_per_s']:,.0f} | {r['worker_peak_mb']:.0f} | "
            f"{r['memory_rows_per_s']:,.0f} | {r['memory_peak_mb']:.0f} |"
        )
    g = results["score"]["gaussian_fit"]
    lines += ["", "## GaussianMahalanobis.fit on the largest dataset", "",
              "| how | wall (s) | peak memory (MB) |", "|---|---:|---:|",
              f"| dask dataframe, 2 workers | {g['dask_seconds']:.1f} | {g['worker_peak_mb']:.0f} per worker, {g['client_peak_mb']:.0f} client |",
              f"| in memory, 1 process | {g['memory_seconds']:.1f} | {g['memory_peak_mb']:.0f} |"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", choices=["all", "search", "score", "report", "_in_memory", "_fit_in_memory"]
    )
    parser.add_argument("args", nargs="*")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--out", type=Path)
    a = parser.parse_args()
    if a.what == "_in_memory":
        print(json.dumps(_in_memory(*a.args)))
        return
    if a.what == "_fit_in_memory":
        print(json.dumps(_fit_in_memory(*a.args)))
        return
    if a.what == "report":  # the markdown from the recorded JSON
        results = json.loads((a.out / "dask_scale.json").read_text())
        (a.out / "dask_scale.md").write_text(_report(results))
        return
    results = {}
    if a.out and (a.out / "dask_scale.json").exists():  # keep the other part of a previous run
        results = json.loads((a.out / "dask_scale.json").read_text())
    if a.what in ("all", "search"):
        results["search"] = search()
        print(results["search"], flush=True)
    if a.what in ("all", "score"):
        results["score"] = score(a.sizes)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "dask_scale.json").write_text(json.dumps(results, indent=1, default=str))
        if "search" in results and "score" in results:
            (a.out / "dask_scale.md").write_text(_report(results))


if __name__ == "__main__":
    main()
