"""The code on the documentation pages runs as written."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_architecture_example_detector_runs_and_detects():
    """docs/architecture.md's eighth detector: a module, a loss, a score, and the contract."""
    blocks = _python_blocks(DOCS / "architecture.md")
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:  # the second block asserts AUROC > 0.8 on held-out digits
        exec(compile(block, "docs/architecture.md", "exec"), namespace)
    detector = namespace["AutoencoderDetector"](random_state=0)
    assert sorted(detector.get_params()) == sorted(
        [
            "module",
            "contamination",
            "validation_fraction",
            "batch_size",
            "max_epochs",
            "min_steps",
            "lr",
            "device",
            "random_state",
            "verbose",
            "callbacks",
            "inference_batch_size",
            "n_threads",
        ]
    )
    fitted = namespace["pipe"][-1]
    assert fitted.calibration_scores_.size > 0 and fitted.n_epochs_ >= 1
