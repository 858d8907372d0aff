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


def test_landing_page_shows_the_readme_example():
    """The site's first code block is the README's, which test_compositions runs as written."""
    import textwrap

    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    shown = re.search(r"\.\. code-block:: python\n\n(.*?)\n\S", index, re.S).group(1)
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert textwrap.dedent(shown).strip() == _python_blocks_of(readme)[0].strip()


def _python_blocks_of(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)
