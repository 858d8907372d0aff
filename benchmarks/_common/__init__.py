"""Helpers shared by several benchmark studies.

A study's script runs as ``python benchmarks/<study>/<script>.py`` from the repository root and
imports these after putting the root on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks._common import ADBENCH_DIR
"""

from pathlib import Path

#: The ``benchmarks`` folder: one sub-folder per study.
BENCHMARKS = Path(__file__).resolve().parents[1]
#: The ADBench-format ``.npz`` sets beside the repository (``../shared/data/adbench``): 21
#: tabular sets, and the MVTec-AD categories as ResNet-18 features in ``mvtec_resnet18/``.
ADBENCH_DIR = BENCHMARKS.parents[1] / "shared" / "data" / "adbench"
if not ADBENCH_DIR.exists():  # a copy of the repository elsewhere on the machine that has them
    ADBENCH_DIR = Path("/work/shared/data/adbench")
