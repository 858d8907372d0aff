"""The README's main job: `skood demo` runs on bundled data and reports every detector."""

import pytest

from skood.cli import main


def test_demo_runs_and_prints_the_side_by_side_table(capsys):
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in [
        "QuantileFlowDetector",
        "GaussianMahalanobis",
        "IsolationForest",
        "AUROC",
        "FPR95",
    ]:
        assert name in out
    rows = {line.split("  ")[0].strip(): line.split() for line in out.splitlines()}
    gaussian_auroc = float(rows["GaussianMahalanobis (class-cond.)"][-3])
    assert gaussian_auroc > 0.85  # digits 0-4 vs 5-9 is far from chance for this detector


def test_demo_flows_and_the_bench_flows_are_the_class_defaults():
    """The demo and `skood bench`'s "flow" show what `QuantileFlowDetector()` gives a user."""
    from skood import QuantileFlowDetector
    from skood.cli import _demo_detectors
    from skood.registry import make_detector

    defaults = QuantileFlowDetector().get_params()
    shared = ["n_blocks", "hidden_sizes", "dropout", "lr", "max_epochs", "min_steps"]
    for name in ["QuantileFlowDetector(q=0.05)", "QuantileFlowDetector(q='mean')"]:
        flow = _demo_detectors(random_state=0, verbose=0)[name][0][-1]
        assert {k: flow.get_params()[k] for k in shared} == {k: defaults[k] for k in shared}
    bench_flow = make_detector("flow", random_state=0)
    assert {k: bench_flow.get_params()[k] for k in shared} == {k: defaults[k] for k in shared}
    paper = make_detector("flow-paper", random_state=0).get_params()
    assert {
        k: paper[k] for k in QuantileFlowDetector.PAPER_PARAMS
    } == QuantileFlowDetector.PAPER_PARAMS


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["nope"])
