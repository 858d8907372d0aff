"""Loading models saved by older skood versions: every compatibility path, in one place.

Nothing else in skood knows about old versions. What changed since 0.1, and what this module
does about it when an old model is unpickled (``pickle``, ``joblib``) or read by
:func:`skood.load`:

* **Renamed parameters** (:data:`RENAMED_PARAMETERS`) take their new names; parameters added
  since take their defaults, with a warning (:func:`upgrade_state`, which
  :class:`skood.base.CalibratedThresholdMixin` calls from ``__setstate__``).
* **Renamed fitted attributes** (:data:`RENAMED_ATTRIBUTES`) take their new names.
* **Moved or renamed classes** (:data:`MOVED_CLASSES`): the old module still answers to the
  old name (:func:`moved_class`, called by that module's ``__getattr__``).
* **State that changed meaning**: :func:`upgrade_classifier_features_state` and
  :func:`add_missing_flow_buffers`, called by those classes' ``__setstate__``.
* **Renamed modules** (:data:`RENAMED_MODULES`): ``import`` of the old name gives the new module
  (:func:`install_renamed_modules`, run by ``import skood``), as unpickling needs.

:doc:`names </names>` lists the same renames for users. This module imports nothing from skood at
import time, so that any module can use it without an import cycle.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import inspect
import sys
from collections.abc import Callable

__all__ = [
    "MOVED_CLASSES",
    "RENAMED_ATTRIBUTES",
    "RENAMED_MODULES",
    "RENAMED_PARAMETERS",
    "add_missing_flow_buffers",
    "install_renamed_modules",
    "moved_class",
    "upgrade_classifier_features_state",
    "upgrade_state",
]

_OE_FAMILY = ("HSCDetector", "OEClassifier", "DeepSADDetector", "DeepSVDDDetector")

#: Estimator class name -> {old parameter name: new name}.
RENAMED_PARAMETERS: dict[str, dict[str, str]] = {
    "AMADetector": {
        "hidden_dims": "hidden_sizes",
        "lr_milestones": "lr_schedule",
        "anomaly_score": "ood_score",
        "holdout_fraction": "validation_fraction",
    },
    "CLIPZeroShot": {"batch_size": "inference_batch_size"},
    "GaussianMahalanobis": {"batch_size": "inference_batch_size"},
    "ROSEScorer": {"batch_size": "inference_batch_size", "holdout_fraction": "validation_fraction"},
    "VAEDetector": {"hidden_dims": "hidden_sizes"},
    **{name: {"rep_dim": "feature_dim"} for name in _OE_FAMILY},
}

#: Estimator class name -> {old fitted attribute: new name}.
RENAMED_ATTRIBUTES: dict[str, dict[str, str]] = {
    # 0.3: one name for the number of outlier-exposure rows a fit saw (HSC's).
    "ICEClassifier": {"n_outliers_seen_": "n_outlier_exposure_"},
}

#: (module, old class name) -> (module, class name) now.
MOVED_CLASSES: dict[tuple[str, str], tuple[str, str]] = {
    # 0.2: the torchvision extractor and the image reader moved out of skood.features.
    ("skood.features", "TorchvisionFeatures"): ("skood.vision", "TorchvisionFeatures"),
    ("skood.features", "ImageFiles"): ("skood.vision", "ImageFiles"),
    # 0.2: AMA's encoder was named MLPEncoder, as another class of skood.nn is.
    ("skood.nn.ama", "MLPEncoder"): ("skood.nn.ama", "LeakyMLPEncoder"),
}

#: Old module name -> module now. 0.3 made the torch extension API public as skood.torch;
#: every torch model saved before holds callbacks of skood._training.
RENAMED_MODULES: dict[str, str] = {"skood._training": "skood.torch"}


def upgrade_state(estimator, state: dict, warn: Callable[[str], None]) -> dict:
    """``state`` (an unpickled ``__dict__`` of ``estimator``) in today's names.

    Renamed parameters and fitted attributes take their new names. Parameters the old model
    lacks (added since, or renamed with another meaning) take their defaults, and ``warn`` is
    called with a message that says so: that leaves the fitted model as it was, but not its
    settings for a refit.
    """
    name = type(estimator).__name__
    for renames in (RENAMED_PARAMETERS.get(name, {}), RENAMED_ATTRIBUTES.get(name, {})):
        for old, new in renames.items():
            if old in state and new not in state:
                state[new] = state.pop(old)
    signature = inspect.signature(type(estimator).__init__).parameters
    defaulted = sorted(set(estimator._get_param_names()) - set(state))
    if defaulted:
        state.update({param: signature[param].default for param in defaulted})
        warn(
            f"This {name} was saved by an older skood: parameter(s) {defaulted} were renamed or "
            "added since (docs/names.md) and take their defaults. Its fitted model is unchanged; "
            "check get_params() before refitting or cloning it."
        )
    return state


def upgrade_classifier_features_state(state: dict) -> dict:
    """``ClassifierFeatures`` state saved before 0.2 in today's names and meanings."""
    # Saved before pre_activation existed: those features were the post-ReLU ones.
    state.setdefault("pre_activation", False)
    if "feature_layer" in state:
        state["layer"] = state.pop("feature_layer")
    cnn_width = state.pop("hidden_size", None)  # the CNN's one width, now hidden_sizes
    if cnn_width is not None and state.get("image_shape") is not None:
        state["hidden_sizes"] = (cnn_width,)
    state.setdefault("min_steps", 0)  # trained before min_steps existed: no minimum
    return state


def add_missing_flow_buffers(flow) -> None:
    """A flow saved before pinned columns existed has no such buffers: none are pinned."""
    for name in ("flow_columns", "pinned_columns", "pinned_loc", "pinned_scale"):
        flow._buffers.setdefault(name, None)


def moved_class(module: str, name: str):
    """The class an old model names ``module.name``; AttributeError if there is none."""
    target = MOVED_CLASSES.get((module, name))
    if target is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return getattr(importlib.import_module(target[0]), target[1])


class _RenamedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module name (``RENAMED_MODULES``) as the module it became."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in RENAMED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        self._target = importlib.import_module(RENAMED_MODULES[spec.name])
        self._target_spec = self._target.__spec__
        return self._target

    def exec_module(self, module):
        module.__spec__ = self._target_spec  # importlib set it to the old name's; put it back


def install_renamed_modules() -> None:
    """Make the old module names importable (idempotent; imports nothing until used)."""
    if not any(isinstance(f, _RenamedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_RenamedModuleFinder())
