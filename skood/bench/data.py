"""The benchmark's datasets and its split protocol.

* Bundled datasets built from sklearn's data (no download) and ADBench-format ``.npz`` files.
* Protocols (as in ADBench): ``"semi"`` trains on a random share of the normal rows and tests on
  the other normals plus every anomaly; ``"unsup"`` trains on all rows, anomalies included, with
  the labels hidden, and scores the same rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

from skood.base import OUTLIER_LABEL
from skood.datasets import load_adbench, novelty_split

__all__ = ["DEFAULT_BUNDLED", "BenchData", "bundled_datasets", "load_datasets", "split"]

# -- datasets -------------------------------------------------------------------------------------


@dataclass
class BenchData:
    """One dataset: ``y`` is -1 for anomalies and a class label (or +1) for normal rows."""

    name: str
    X: np.ndarray
    y: np.ndarray
    has_classes: bool = False
    group: str = "bundled"


def _digits_ovr(digit: int) -> BenchData:
    from sklearn.datasets import load_digits

    X, d = load_digits(return_X_y=True)
    return BenchData(f"digits-ovr-{digit}", X, np.where(d == digit, 1, OUTLIER_LABEL))


def _digits_open_set() -> BenchData:
    from skood.datasets import load_digits_ood

    X, y = load_digits_ood(range(5))
    return BenchData("digits-open-set", X, y, has_classes=True)


def _breast_cancer() -> BenchData:
    from sklearn.datasets import load_breast_cancer

    X, t = load_breast_cancer(return_X_y=True)  # 0 = malignant, 1 = benign
    return BenchData("breast-cancer", X, np.where(t == 1, 1, OUTLIER_LABEL))


def _wine() -> BenchData:
    from sklearn.datasets import load_wine

    X, t = load_wine(return_X_y=True)  # cultivars 0 and 1 normal, cultivar 2 anomalous
    return BenchData("wine", X, np.where(t == 2, OUTLIER_LABEL, t), has_classes=True)


def bundled_datasets() -> dict[str, Callable[[], BenchData]]:
    """Loaders of the datasets built from sklearn's bundled data (no download).

    ``digits-ovr-<d>``: digit ``d`` normal, the nine others anomalous. ``digits-open-set``: digits
    0-4 normal (with their classes), 5-9 anomalous. ``breast-cancer``: benign normal, malignant
    anomalous. ``wine``: cultivars 0 and 1 normal (with their classes), cultivar 2 anomalous.
    """
    loaders: dict[str, Callable[[], BenchData]] = {
        f"digits-ovr-{d}": (lambda d=d: _digits_ovr(d)) for d in range(10)
    }
    loaders["digits-open-set"] = _digits_open_set
    loaders["breast-cancer"] = _breast_cancer
    loaders["wine"] = _wine
    return loaders


#: The bundled datasets a plain ``skood bench`` runs.
DEFAULT_BUNDLED = ("digits-ovr-0", "digits-open-set", "breast-cancer", "wine")


def load_datasets(names: Iterable[str] = (), folders: Iterable[str | os.PathLike] = ()):
    """Bundled datasets by name, then every ``.npz`` under each folder (searched recursively)."""
    loaders = bundled_datasets()
    out = []
    for name in names:
        if name not in loaders:
            raise ValueError(f"Unknown bundled dataset {name!r}. Available: {', '.join(loaders)}.")
        out.append(loaders[name]())
    for folder in folders:
        if Path(folder).is_file():  # one .npz file rather than a folder of them
            paths = [Path(folder)]
        else:
            paths = sorted(Path(folder).rglob("*.npz"))
        if not paths:
            raise FileNotFoundError(f"No ADBench-format .npz files under {os.fspath(folder)!r}.")
        for path in paths:
            X, y = load_adbench(path)  # y already in skood's convention (-1 / +1)
            group = path.parent.name if path.parent != Path(folder) else Path(folder).name
            out.append(BenchData(path.stem, X, y, group=group))
    return out


# -- protocol -------------------------------------------------------------------------------------


def _subsample(n: int, cap: int | None, rng, stratify=None) -> np.ndarray:
    if not cap or n <= cap:
        return np.arange(n)
    if stratify is None:
        return np.sort(rng.choice(n, cap, replace=False))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(n), train_size=cap, stratify=stratify, random_state=rng.randint(2**31 - 1)
    )
    return np.sort(keep)


def split(
    data: BenchData,
    protocol: str,
    seed: int,
    *,
    train_fraction: float = 0.5,
    max_train: int | None = 10_000,
    max_test: int | None = 20_000,
):
    """``(X_train, y_train, X_test, y_test)`` for one cell; ``y_*`` follow skood's convention.

    ``"semi"``: a random ``train_fraction`` of the normal rows trains; the other normals and every
    anomaly test. ``"unsup"``: every row trains (labels hidden from the detector) and is scored.
    Caps subsample the training rows at random and the test rows stratified.
    """
    rng = check_random_state(seed)
    if protocol == "semi":
        X_tr, y_tr, X_te, y_te = novelty_split(
            data.X, data.y, train_fraction=train_fraction, random_state=seed
        )
    elif protocol == "unsup":
        X_tr, y_tr, X_te, y_te = data.X, data.y, data.X, data.y
    else:
        raise ValueError(f"protocol must be 'semi' or 'unsup', got {protocol!r}.")
    tr = _subsample(len(X_tr), max_train, rng)
    te = _subsample(len(X_te), max_test, rng, stratify=y_te == OUTLIER_LABEL)
    return X_tr[tr], y_tr[tr], X_te[te], y_te[te]
