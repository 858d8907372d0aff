"""Candidate ensemble members scored once per cell, and every combination of them evaluated offline.

Choosing ``EnsembleDetector``'s members and its ``combine`` rule by fitting every subset would
refit each member once per subset. Here each candidate detector is fitted once per (dataset,
seed) of the development suite, on the same split and pipeline as ``dev_suite.py run``, and its
test scores and calibration scores are kept (``--cache``, ``.npz`` per cell). ``combos`` then
combines them exactly as ``EnsembleDetector._combine`` does and writes one result row per
(combination, cell) in the suite's CSV format, so ``dev_suite.py report`` ranks them beside
the peers.

The offline members are fitted on all training rows, where ``EnsembleDetector`` fits them on the
rows it does not hold out (``validation_fraction``, 10 %): the chosen combination is then run
as the real estimator (``dev_suite.py run --detectors ensemble``) and that is the figure
reported.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dev_suite/members.py fit --cache /tmp/members \\
        --detectors knn gauss flow-mean --n-jobs 2
    .venv/bin/python benchmarks/dev_suite/members.py combos --cache /tmp/members \\
        --members gauss knn flow-mean --csv /tmp/combos.csv
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_suite import MAX_TEST, MAX_TRAIN, TRAIN_FRACTION, suite_datasets

from skood.bench import (
    make_detector,
    make_pipeline_for,
    parse_detector,
    split,
    write_csv,
)
from skood.ensemble import EnsembleDetector
from skood.metrics import aupr_out, auroc, fpr_at_tpr


def _key(spec: str) -> str:
    return hashlib.sha1(spec.encode()).hexdigest()[:10]


def _fit_cell(spec, data_split, meta, cache: Path):
    import torch

    torch.set_num_threads(1)
    path = cache / f"{meta['dataset']}__{meta['seed']}__{_key(spec)}.npz"
    if path.exists():
        return
    X_tr, _, X_te, y_te = data_split
    pipe = make_pipeline_for(make_detector(parse_detector(spec), random_state=meta["seed"]))
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe.fit(X_tr)
        fit_s = time.perf_counter() - start
        scores = pipe.score_samples(X_te)
        cal = getattr(pipe[-1], "calibration_scores_", None)
        if not np.isfinite(scores).all():
            raise ValueError("non-finite scores")
    except Exception as exc:  # recorded as a failed member of this cell
        np.savez(path, error=str(exc)[:300])
        return
    np.savez(path, scores=scores, y=y_te, calibration=cal, fit_s=fit_s)


def fit(args) -> None:
    from joblib import Parallel, delayed

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    jobs, datasets = [], suite_datasets(args.groups)
    for data in datasets:
        for seed in args.seeds:
            s = split(data, "semi", seed, train_fraction=TRAIN_FRACTION, max_train=MAX_TRAIN,
                      max_test=MAX_TEST)
            meta = dict(dataset=data.name, seed=seed, group=data.group)
            jobs += [(spec, s, meta) for spec in args.detectors]
    Parallel(n_jobs=args.n_jobs, verbose=0)(
        delayed(_fit_cell)(spec, s, meta, cache) for spec, s, meta in jobs
    )
    (cache / "groups.txt").write_text(
        "".join(f"{d.name} {d.group}\n" for d in datasets)
    )


def _combine(parts, rule):
    """``EnsembleDetector._combine`` on stored member scores."""
    ens = EnsembleDetector(combine=rule)
    refs = [np.sort(cal) for _, cal in parts]
    ens.reference_scores_ = refs
    ens.location_, ens.scale_ = ens._robust_scale(refs)
    return ens._combine(np.column_stack([s for s, _ in parts]))


def combos(args) -> None:
    cache = Path(args.cache)
    group_of = dict(line.split() for line in (cache / "groups.txt").read_text().splitlines())
    rows = []
    sizes = range(2, len(args.members) + 1) if not args.sizes else args.sizes
    for dataset, group in group_of.items():
        for seed in args.seeds:
            loaded = {}
            for spec in args.members:
                path = cache / f"{dataset}__{seed}__{_key(spec)}.npz"
                if path.exists():
                    f = np.load(path, allow_pickle=False)
                    if "scores" in f:
                        loaded[spec] = f
            for size in sizes:
                for subset in itertools.combinations(args.members, size):
                    for rule in args.rules:
                        label = f"combo-{rule}:" + "+".join(subset)
                        row = dict(protocol="semi", group=group, dataset=dataset, seed=seed,
                                   detector=label, n_train="", n_test="", n_features="")
                        if not all(m in loaded for m in subset):
                            row.update(status="error", error="a member failed")
                        else:
                            parts = [(loaded[m]["scores"], loaded[m]["calibration"])
                                     for m in subset]
                            y = loaded[subset[0]]["y"]
                            s = _combine(parts, rule)
                            row.update(status="ok", auroc=auroc(y, s), aupr=aupr_out(y, s),
                                       fpr95=fpr_at_tpr(y, s, 0.95), score_s=0.0,
                                       fit_s=sum(float(loaded[m]["fit_s"]) for m in subset))
                        rows.append(row)
            for spec, f in loaded.items():  # the members alone, for the same table
                y, s = f["y"], f["scores"]
                rows.append(dict(protocol="semi", group=group, dataset=dataset, seed=seed,
                                 detector=f"member:{spec}", status="ok", auroc=auroc(y, s),
                                 aupr=aupr_out(y, s), fpr95=fpr_at_tpr(y, s, 0.95),
                                 fit_s=float(f["fit_s"]), score_s=0.0))
    write_csv(rows, args.csv)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_fit = sub.add_parser("fit")
    p_fit.add_argument("--detectors", nargs="+", required=True)
    p_fit.add_argument("--cache", required=True)
    p_fit.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p_fit.add_argument("--groups", nargs="+", default=["tables", "features", "small"])
    p_fit.add_argument("--n-jobs", type=int, default=1)
    p_c = sub.add_parser("combos")
    p_c.add_argument("--cache", required=True)
    p_c.add_argument("--members", nargs="+", required=True)
    p_c.add_argument("--rules", nargs="+", default=["zscore", "pvalue"])
    p_c.add_argument("--sizes", type=int, nargs="+")
    p_c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p_c.add_argument("--csv", required=True)
    args = parser.parse_args(argv)
    if args.command == "fit":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        fit(args)
    else:
        combos(args)


if __name__ == "__main__":
    main()
