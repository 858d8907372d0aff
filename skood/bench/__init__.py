"""The benchmark harness behind ``skood bench``: detectors x datasets x seeds under one protocol.

* Detectors by name, with parameters (``"flow:q=0.05,n_blocks=4"``), come from
  :mod:`skood.registry`: skood's, sklearn's peers and, when installed, PyOD's.
* :mod:`skood.bench.data`: the bundled datasets, ADBench-format ``.npz`` folders and the split
  protocols (``"semi"``: train on a share of the normal rows; ``"unsup"``: train on every row,
  labels hidden).
* :mod:`skood.bench.run`: every (protocol, dataset, seed, detector) cell fitted as
  ``Pipeline([InformativeColumns, StandardScaler, detector])`` on its training rows, in joblib
  workers; a failing cell is recorded with its error, never fatal.
* :mod:`skood.bench.report`: per-detector summary and mean ranks, markdown tables, CSV, plots.

The registry's names are re-exported here for the ``skood bench`` command and the benchmark
scripts; ``InformativeColumns`` and ``PyODAdapter`` also keep loading from models pickled when
they lived in this module.
"""

from skood.bench.data import DEFAULT_BUNDLED, BenchData, bundled_datasets, load_datasets, split
from skood.bench.report import (
    FIELDS,
    REPORT_FILES,
    headline_table,
    per_dataset_table,
    read_csv,
    summarize,
    write_csv,
    write_plots,
    write_report,
)
from skood.bench.run import run_benchmark, run_cell
from skood.registry import (
    QUICK_DETECTORS,
    InformativeColumns,
    PyODAdapter,
    available_detectors,
    make_detector,
    make_pipeline_for,
    parse_detector,
    uses_classes,
)

__all__ = [
    "DEFAULT_BUNDLED",
    "FIELDS",
    "QUICK_DETECTORS",
    "REPORT_FILES",
    "BenchData",
    "InformativeColumns",
    "PyODAdapter",
    "available_detectors",
    "bundled_datasets",
    "headline_table",
    "load_datasets",
    "make_detector",
    "make_pipeline_for",
    "parse_detector",
    "per_dataset_table",
    "read_csv",
    "run_benchmark",
    "run_cell",
    "split",
    "summarize",
    "uses_classes",
    "write_csv",
    "write_plots",
    "write_report",
]
