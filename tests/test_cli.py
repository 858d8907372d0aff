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


def test_demo_flow_is_the_registrys_cpu_flow():
    from skood.cli import _demo_detectors
    from skood.registry import CPU_FLOW

    for name in ["QuantileFlowDetector(q=0.05)", "QuantileFlowDetector(q='mean')"]:
        flow = _demo_detectors(random_state=0, verbose=0)[name][0][-1]
        assert {k: flow.get_params()[k] for k in CPU_FLOW} == CPU_FLOW


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["nope"])
