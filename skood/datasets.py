"""Loaders: OOD splits of sklearn's bundled data (no download) and ADBench-format ``.npz`` files.

Every loader returns labels in skood's convention: ``-1`` marks an outlier, any other value an
inlier (a class label, or ``+1``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state

from skood.base import OUTLIER_LABEL, is_outlier_label

__all__ = [
    "MAX_ADBENCH_BYTES",
    "from_anomaly_labels",
    "list_adbench",
    "load_adbench",
    "load_digits_ood",
    "novelty_split",
]


def from_anomaly_labels(y) -> np.ndarray:
    """Convert ADBench / PyOD labels (1 = anomaly, 0 = normal) to skood's (-1 / +1).

    Examples
    --------
    >>> from_anomaly_labels([0, 1, 0, 0])
    array([ 1, -1,  1,  1])
    """
    y = np.asarray(y).ravel()
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"Expected labels in {{0, 1}} (1 = anomaly), got {sorted(values)[:10]}.")
    return np.where(y == 1, OUTLIER_LABEL, 1)


def load_digits_ood(inlier_classes=(0, 1, 2, 3, 4)) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits as an open-set problem: some classes inliers, the rest outliers.

    Returns
    -------
    X : ndarray of shape (1797, 64), float64 pixel values in [0, 16]
    y : ndarray of shape (1797,)
        The digit for inlier classes, ``-1`` for the others.

    Examples
    --------
    >>> X, y = load_digits_ood(inlier_classes=(0, 1, 2, 3, 4))
    >>> X.shape, X.dtype
    ((1797, 64), dtype('float64'))
    >>> int((y == -1).sum())  # the digits 5 to 9
    896
    >>> sorted(set(y[y != -1].tolist()))
    [0, 1, 2, 3, 4]
    """
    X, digit = load_digits(return_X_y=True)
    inlier = np.isin(digit, list(inlier_classes))
    return X.astype(np.float64), np.where(inlier, digit, OUTLIER_LABEL)


def list_adbench(folder: str | os.PathLike) -> list[Path]:
    """The ``.npz`` files in ``folder`` (sorted), e.g. ``shared/data/adbench``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for name in ("b_toy", "a_toy"):
    ...         np.savez(Path(folder) / f"{name}.npz", X=np.eye(3), y=[0, 0, 1])
    ...     names = [path.name for path in list_adbench(folder)]
    >>> names
    ['a_toy.npz', 'b_toy.npz']
    """
    paths = sorted(Path(folder).glob("*.npz"))
    if not paths:
        raise FileNotFoundError(f"No ADBench-format .npz files in {folder!s}.")
    return paths


#: The most memory :func:`load_adbench` lets one file's arrays take, as they are read (2 GiB).
MAX_ADBENCH_BYTES = 2 * 1024**3


def load_adbench(
    path: str | os.PathLike, *, max_bytes: int = MAX_ADBENCH_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Load an ADBench-format ``.npz`` (``X``, and ``y`` with 1 = anomaly).

    Returns ``X`` as float64 and ``y`` in skood's convention (``-1`` anomaly, ``+1`` normal).

    An ``.npz`` is a zip archive: a few megabytes can inflate to gigabytes. The arrays' sizes are
    read from their headers first, and a file whose ``X`` (as float64) and ``y`` would take more
    than ``max_bytes`` is refused before anything is inflated.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "toy.npz"
    ...     np.savez(path, X=np.eye(3, dtype=np.float32), y=[0, 0, 1])  # 1 = anomaly
    ...     X, y = load_adbench(path)
    >>> X.dtype, y
    (dtype('float64'), array([ 1,  1, -1]))
    """
    X, y = _read_npz(path, max_bytes)
    return np.asarray(X, dtype=np.float64), from_anomaly_labels(y)


def _read_npz(path, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``y`` of an ``.npz``, each read only once its header shows it fits ``max_bytes``.

    The members are read here, not through ``np.load``, so that the member whose header was
    checked is the one read (``np.load`` would prefer a member named ``X`` over ``X.npy``).
    """
    import zipfile

    from numpy.lib import format as npy

    from skood._files import check_input_file

    check_input_file(path)  # a FIFO would block, /dev/zero never end
    headers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            members, needed, described = {}, 0, []
            for key in ("X", "y"):
                found = [name for name in (key, f"{key}.npy") if name in names]
                if not found:
                    raise ValueError(
                        f"{path!s} is not ADBench format: expected arrays 'X' and 'y'."
                    )
                if len(found) > 1:
                    raise ValueError(f"{path!s} holds both {found}: which one is {key}?")
                with archive.open(found[0]) as f:
                    version = npy.read_magic(f)
                    if version not in headers:
                        raise ValueError(f"{path!s}: {found[0]} is .npy version {version}")
                    shape, _, dtype = headers[version](f)
                if dtype.kind not in "biuf":
                    raise ValueError(
                        f"{path!s}: {key} has dtype {dtype}; ADBench arrays are numbers."
                    )
                count = math.prod(shape)
                needed += count * (dtype.itemsize + 8)  # as stored, and as float64 / int64 labels
                members[key] = found[0]
                described.append(f"{key} of shape {shape} ({dtype})")
            if needed > max_bytes:
                raise ValueError(
                    f"{path!s} holds {', '.join(described)}: about {needed / 1024**3:.3g} GiB once "
                    f"read, more than max_bytes={max_bytes} ({max_bytes / 1024**3:.3g} GiB). "
                    "Subsample it into a smaller file, or pass a larger max_bytes if this machine "
                    "has the memory."
                )
            arrays = []
            for key in ("X", "y"):
                with archive.open(members[key]) as f:
                    arrays.append(npy.read_array(f, allow_pickle=False))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path!s} is not a readable .npz file ({exc}).") from exc
    return arrays[0], arrays[1]


def novelty_split(X, y, *, train_fraction: float = 0.5, random_state=None):
    """ADBench's semi-supervised split: train on a random fraction of the inliers only.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        ``-1`` for outliers, anything else for inliers.
    train_fraction : float, default=0.5
        Fraction of the inlier rows that form the training set (ADBench uses 0.5 or 0.7).
    random_state : int, RandomState instance or None

    Returns
    -------
    X_train, y_train, X_test, y_test
        The test set holds the remaining inliers and every outlier.

    Examples
    --------
    >>> X, y = load_digits_ood()
    >>> X_train, y_train, X_test, y_test = novelty_split(X, y, random_state=0)
    >>> X_train.shape, X_test.shape
    ((450, 64), (1347, 64))
    >>> bool((y_train != -1).all()), int((y_test == -1).sum())  # every outlier is in the test set
    (True, 896)
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}.")
    X, y = np.asarray(X), np.asarray(y).ravel()
    inliers = np.flatnonzero(~is_outlier_label(y))
    rng = check_random_state(random_state)
    train = np.sort(rng.permutation(inliers)[: round(train_fraction * inliers.size)])
    test = np.setdiff1d(np.arange(y.shape[0]), train)
    return X[train], y[train], X[test], y[test]
