"""The code on the documentation pages runs as written."""

import re
from pathlib import Path

import numpy as np
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
    assert fitted.calibration_held_out_  # validation_fraction=0.2 held rows out
    assert "fit" not in vars(namespace["AutoencoderDetector"])  # the base's template fits


#: What a detector may define with an underscore: the template's hooks and sklearn's own
#: class attribute of parameter constraints (docs/architecture.md).
_HOOKS = {
    "_fit_model",
    "_score_samples",
    "_validate_training_data",
    "_calibration_split",
    "_calibration_scores",
    "_calibration_held_out",
    "_input_dtype",
    "_min_features",
    "_min_train_rows",
    "_trains_on_outliers",
    "_stratified_calibration",
    "_parameter_constraints",
}


def test_architecture_example_detector_uses_public_names_only():
    """It imports no private module or name, reads no private attribute of skood's, and
    defines no private name but the template's hooks."""
    import ast

    tree = ast.parse(_python_blocks(DOCS / "architecture.md")[0])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or "", *(a.name for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            names = []
        found += [n for n in names if any(p.startswith("_") for p in n.split("."))]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            found.append(f"reads .{node.attr}")
        if isinstance(node, (ast.FunctionDef, ast.Name)) and not isinstance(
            getattr(node, "ctx", ast.Store()), ast.Load
        ):
            name = node.name if isinstance(node, ast.FunctionDef) else node.id
            if name.startswith("_") and not name.startswith("__") and name not in _HOOKS:
                found.append(f"defines {name}")
    assert not found, found


def test_landing_page_shows_the_readme_example():
    """The site's first code block is the README's, which test_compositions runs as written."""
    import textwrap

    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    shown = re.search(r"\.\. code-block:: python\n\n(.*?)\n\S", index, re.S).group(1)
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert textwrap.dedent(shown).strip() == _python_blocks_of(readme)[0].strip()


def _python_blocks_of(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_user_guide_code_runs_as_written():
    """The user guide's code blocks, run as a reader pastes them (the landing page's is the
    README's, run by test_compositions)."""
    import textwrap

    blocks = []
    for page in sorted((DOCS / "user_guide").rglob("*.rst")):
        text = page.read_text(encoding="utf-8")
        for code in re.findall(r"\.\. code-block:: python\n\n(.*?)(?=\n\S|\Z)", text, re.S):
            blocks.append((page.name, textwrap.dedent(code)))
    assert [name for name, _ in blocks] == ["model_selection.rst", "adadetect.rst", "tables.rst"]
    namespace: dict = {"__name__": "__docs__"}
    for name, code in blocks:
        exec(compile(code, f"docs/user_guide/{name}", "exec"), namespace)
    # AdaDetect on breast cancer: a batch screen at FDR 0.1 finds most of the 40 malignant rows
    # (35, with 7 benign ones flagged, in this seeded run).
    assert namespace["flags"][-40:].tolist().count(-1) >= 30
    assert namespace["flags"][:-40].tolist().count(-1) <= 10
    # Digits 0-4 against a few known 5-9 at the defaults: every candidate detects.
    assert namespace["search"].best_score_ > 0.75
    assert np.all(namespace["search"].cv_results_["mean_test_score"] > 0.7)


def test_explain_page_examples_run_as_written():
    """The explanations page shows an interactive session: run it as a doctest (its printed
    shapes, method and leading columns are what explain returns)."""
    import doctest

    text = (DOCS / "user_guide" / "explain.rst").read_text(encoding="utf-8")
    blocks = re.findall(r"\.\. code-block:: pycon\n\n(.*?)(?=\n\S|\Z)", text, re.S)
    assert blocks, "the page's session moved: update this test"
    import textwrap

    parser, runner = (
        doctest.DocTestParser(),
        doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE),
    )
    for i, block in enumerate(blocks):
        test = parser.get_doctest(textwrap.dedent(block), {}, f"explain.rst[{i}]", None, 0)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 8 and result.failed == 0
