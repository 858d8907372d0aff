"""Shared preprocessing for the adbench / min_steps benchmarks."""

from skood.bench import InformativeColumns


def informative_columns(X, min_rows=5):
    """Boolean mask of columns where at least ``min_rows`` rows differ from the column's mode.

    VarianceThreshold() is not enough for QuantileFlowDetector: it holds out 20% of the rows and
    refuses columns that are constant on the other 80%, which happens to sparse columns (the MVTec
    ResNet-18 features have columns that are non-zero on only one or two images). The library's
    ``skood.bench.InformativeColumns`` does this (it started here).
    """
    return InformativeColumns(min_rows=min_rows).fit(X).support_
