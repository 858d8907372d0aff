"""Does a held-out statistics set rescue ROSE with few Fisher rows? (digits; rose_claim_holdout.csv)

With validation_fraction=0 (the paper's Alg. 1) the layer mean/std are computed on the Fisher rows
themselves, i.e. on only n_fisher_samples rows when that is small. validation_fraction=0.5 keeps
600 rows out of the Fisher for the statistics; the Fisher is then drawn from the other 600.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rose_claim/rose_claim_holdout.py 0 1 2
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
import skood
from skood.metrics import auroc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rose_claim import OOD, digits_split, make_model

warnings.filterwarnings("ignore")
OUT = Path(__file__).resolve().parent / "rose_claim_holdout.csv"
FIELDS = ["model", "seed", "fisher", "n_fisher", "validation_fraction", "ood_set", "auroc"]


def main():
    t0 = time.time()
    seeds = [int(s) for s in sys.argv[1:]] or [0]
    new = not OUT.exists()
    with open(OUT, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for seed in seeds:
            Xtr, Xte, ood = digits_split(seed)
            X_all = np.concatenate([Xte, *ood.values()])
            n = len(Xte)
            y = np.r_[np.ones(n), -np.ones(n)]
            for m in ["mlp-vae", "conv-vae"]:
                model = make_model(m, seed).fit(Xtr)
                for fisher in ["diag", "ekfac"]:
                    for nf in [10, 100, None]:
                        rose = skood.ROSEScorer(
                            model,
                            prefit=True,
                            fisher=fisher,
                            n_fisher_samples=nf,
                            validation_fraction=0.5,
                            random_state=seed,
                        ).fit(Xtr)
                        s = rose.score_samples(X_all)
                        res = [
                            auroc(y, np.r_[s[:n], s[n * (i + 1) : n * (i + 2)]])
                            for i in range(len(OOD))
                        ]
                        for k, a in zip(OOD, res):
                            w.writerow(
                                dict(
                                    model=m,
                                    seed=seed,
                                    fisher=fisher,
                                    n_fisher=rose.n_fisher_samples_,
                                    validation_fraction=0.5,
                                    ood_set=k,
                                    auroc=f"{a:.4f}",
                                )
                            )
                        f.flush()
                        print(
                            f"[{time.time() - t0:6.1f}s] {m} s{seed} {fisher} nf={rose.n_fisher_samples_} "
                            f"holdout 0.5: {np.round(res, 3)} mean {np.mean(res):.3f}",
                            flush=True,
                        )


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        sys.exit()
    main()
