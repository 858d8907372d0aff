"""Models saved by older skood versions still load: the paths of skood/_compat.py."""

import pickle
import warnings

import numpy as np
import pytest

import skood
from skood import _compat


def test_the_old_module_name_of_the_torch_machinery_unpickles():
    """Every torch model saved before 0.3 holds callbacks of skood._training (now skood.torch)."""
    from skood.torch import StopOnDivergence

    old = pickle.dumps(StopOnDivergence("flow"), protocol=0).replace(
        b"skood.torch", b"skood._training"
    )
    assert b"skood._training" in old
    restored = pickle.loads(old)
    assert type(restored) is StopOnDivergence and restored.owner == "flow"
    import skood.torch

    assert skood.torch.__spec__.name == "skood.torch"  # the alias left the real module as it was


@pytest.mark.parametrize(
    "module, name, now",
    [
        ("skood.features", "TorchvisionFeatures", "skood.vision.TorchvisionFeatures"),
        ("skood.features", "ImageFiles", "skood.vision.ImageFiles"),
        ("skood.nn.ama", "MLPEncoder", "skood.nn.ama.LeakyMLPEncoder"),
    ],
)
def test_moved_classes_resolve_under_their_old_names(module, name, now):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert f"{cls.__module__}.{cls.__qualname__}" == now


def test_an_unknown_name_of_a_module_with_moved_classes_is_still_an_attribute_error():
    import skood.features

    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        skood.features.Nope  # noqa: B018


def test_a_renamed_fitted_attribute_takes_its_new_name():
    """ICE counted outlier-exposure rows as n_outliers_seen_ before 0.3."""
    det = skood.ICEClassifier()
    state = {**det.__dict__, "n_outliers_seen_": 7}
    restored = skood.ICEClassifier.__new__(skood.ICEClassifier)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no parameter is missing: no warning either
        restored.__setstate__(state)
    assert restored.n_outlier_exposure_ == 7 and not hasattr(restored, "n_outliers_seen_")


def test_upgrade_state_renames_then_defaults_and_says_so():
    det = skood.VAEDetector()
    state = {k: v for k, v in det.__dict__.items() if k not in ("hidden_sizes", "min_steps")}
    state["hidden_dims"] = (7,)
    said = []
    upgraded = _compat.upgrade_state(det, state, said.append)
    assert upgraded["hidden_sizes"] == (7,) and "hidden_dims" not in upgraded
    assert upgraded["min_steps"] == det.min_steps  # added since: its default
    assert len(said) == 1 and "['min_steps']" in said[0]


def test_compat_imports_nothing_of_skood():
    """Any module may use it without an import cycle (tests/test_architecture.py checks the rest)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(_compat.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [name for name in imported if (name or "").startswith("skood")], imported
    assert np.all(
        [
            name.split(".")[0] in {"__future__", "importlib", "inspect", "sys", "collections"}
            for name in imported
        ]
    )
