"""Shared preprocessing for the adbench / min_steps benchmarks."""

import numpy as np


def informative_columns(X, min_rows=5):
    """Boolean mask of columns where at least ``min_rows`` rows differ from the column's mode.

    VarianceThreshold() is not enough for QuantileFlowDetector: it holds out 20% of the rows and
    refuses columns that are constant on the other 80%, which happens to sparse columns (the MVTec
    ResNet-18 features have columns that are non-zero on only one or two images).
    """
    keep = np.zeros(X.shape[1], dtype=bool)
    for j in range(X.shape[1]):
        _, counts = np.unique(X[:, j], return_counts=True)
        keep[j] = X.shape[0] - counts.max() >= min_rows
    return keep
