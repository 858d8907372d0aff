"""The README's main job: `skood demo` runs on bundled data and reports every detector."""

import warnings

import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import make_pipeline

import skood.cli.demo
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
    from skood.cli.demo import demo_detectors
    from skood.registry import make_detector

    defaults = QuantileFlowDetector().get_params()
    shared = ["n_blocks", "hidden_sizes", "dropout", "lr", "max_epochs", "min_steps"]
    for name in ["QuantileFlowDetector(q=0.05)", "QuantileFlowDetector(q='mean')"]:
        flow = demo_detectors(random_state=0, verbose=0)[name][0][-1]
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


class _ThirdPartyNoise(TransformerMixin, BaseEstimator):
    """A step whose fit warns as torch's own code would (a UserWarning from a torch module)."""

    def fit(self, X, y=None):
        warnings.warn_explicit(
            "noise from torch", UserWarning, "torch/nn/modules/module.py", 1, module="torch.nn"
        )
        return self

    def transform(self, X):
        return X


def test_a_skood_warning_in_the_demo_reaches_the_user(monkeypatch):
    """The demo silenced every UserWarning during its fits, skood's own among them; now only
    those the libraries it drives raise from their own modules."""
    from skood import GaussianMahalanobis

    def detectors(random_state, verbose):
        # 450 training rows: contamination=0.001 asks for a threshold 1 / 451 cannot reach
        gauss = GaussianMahalanobis(covariance="ledoit_wolf", contamination=0.001)
        return {"GaussianMahalanobis (tiny contamination)": (make_pipeline(gauss), False)}

    def noisy(random_state, verbose):
        gauss = GaussianMahalanobis(covariance="ledoit_wolf")
        return {"noisy": (make_pipeline(_ThirdPartyNoise(), gauss), False)}

    monkeypatch.setattr(skood.cli.demo, "demo_detectors", detectors)
    with pytest.warns(UserWarning, match=r"contamination=0\.001 asks offset_") as caught:
        assert main(["demo", "--quiet"]) == 0
    assert caught[0].filename == __file__  # skood names the caller's line (here, this test's)

    monkeypatch.setattr(skood.cli.demo, "demo_detectors", noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["demo", "--quiet"]) == 0
    assert [str(w.message) for w in caught] == []  # the libraries' own stay unsaid, as before
