"""The ADBench split shared by the side-by-side, min_steps, AMA and ROSE studies.

:func:`prepare` gives every detector of every study the same rows of a (dataset, seed): half the
normals to train, the other normals and every anomaly to test, capped, the informative columns
kept and standardised on the training rows. The peers' results of the side-by-side study
(:data:`PEER_CSV`) are on exactly these rows, so the AMA and ROSE studies set theirs beside them.
"""

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from benchmarks._common import ADBENCH_DIR, BENCHMARKS
from skood.datasets import load_adbench, novelty_split
from skood.registry import InformativeColumns

#: The side-by-side study's per-(dataset, seed, detector) results.
PEER_CSV = BENCHMARKS / "adbench_side_by_side" / "adbench_results.csv"
TRAIN_CAP, TEST_CAP = 5000, 20000


def informative_columns(X, min_rows=5):
    """Boolean mask of columns where at least ``min_rows`` rows differ from the column's mode.

    VarianceThreshold() is not enough for a detector that holds out a share of its rows (the
    flow's validation split): a column can be constant on the rest, which happens to sparse
    columns (the MVTec ResNet-18 features have columns that are non-zero on only one or two
    images). ``skood.registry.InformativeColumns`` does this (it started here).
    """
    return InformativeColumns(min_rows=min_rows).fit(X).support_


def prepare(path, seed):
    """``(X_train, X_test, y_test)`` of one ADBench set for one seed (see the module docstring)."""
    X, y = load_adbench(path)
    Xtr, _, Xte, yte = novelty_split(X, y, train_fraction=0.5, random_state=seed)
    rng = np.random.RandomState(seed)
    if Xtr.shape[0] > TRAIN_CAP:
        Xtr = Xtr[np.sort(rng.choice(Xtr.shape[0], TRAIN_CAP, replace=False))]
    if Xte.shape[0] > TEST_CAP:
        Xte, _, yte, _ = train_test_split(
            Xte, yte, train_size=TEST_CAP, stratify=yte, random_state=seed
        )
    keep = informative_columns(Xtr)  # drop constant / near-constant columns
    Xtr, Xte = Xtr[:, keep], Xte[:, keep]
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), yte


def tasks():
    """Yield ``(group, name, path, seed)``: MVTec seed 0, tabular seed 0, MVTec 1-2, tabular 1."""
    mv = sorted((ADBENCH_DIR / "mvtec_resnet18").glob("*.npz"))
    # tabular sets smallest first (rows), so a budget cut drops the big ones
    tab = sorted(ADBENCH_DIR.glob("*.npz"), key=lambda p: np.load(p)["y"].shape[0])
    mvt = [("mvtec", p.stem.replace("MVTec-AD_", "mvtec_"), p) for p in mv]
    tb = [("tabular", p.stem, p) for p in tab]
    # seed-major, MVTec first: a budget cut leaves whole seeds, MVTec favoured
    order = [(mvt, 0), (tb, 0), (mvt, 1), (mvt, 2), (tb, 1)]
    for group, seed in order:
        for g, name, p in group:
            yield g, name, p, seed
