"""Save and load fitted models without pickle: :func:`save`, :func:`load`, :func:`get_untrusted_types`.

A pickle (and so a joblib file) runs arbitrary code when it is loaded; scikit-learn's
documentation ranks it last for safety, and PyOD shipped the danger as a CVE. A ``.skood`` file
holds data only, so loading an untrusted or damaged file can fail but never execute code:

- ``skood.json``: the format version, the versions of skood, torch, scikit-learn, skorch and numpy
  that wrote it, and the model as a tree of typed nodes (parameters, fitted attributes, module
  structure, training history);
- ``tensors.safetensors``: every torch tensor (weights, buffers, fitted statistics), each tagged in
  the tree with the device it lived on, in `safetensors <https://github.com/huggingface/safetensors>`_;
- ``arrays.safetensors``: every numeric numpy array (string arrays stay in the JSON);
- ``skops/<n>.skops``: every scikit-learn object without skood parts inside (a
  ``StandardScaler``, a ``PCA``, ...), written by :mod:`skops.io` and read back with its explicit
  trusted-type list rather than by a serializer of sklearn's classes written here.

Objects are rebuilt from data alone: a class named in the file is looked up by name and only
among the classes skood trusts without asking (skood's own, ``torch.nn``'s modules, the optimizers
of ``torch.optim``, skorch's nets, scikit-learn's ``Pipeline`` / ``FeatureUnion`` /
``ColumnTransformer``); it is created with ``cls.__new__`` and given its saved attributes, so no
constructor, ``__setstate__`` or ``__reduce__`` of the file's choosing runs. Any other class or
function (a torch module you wrote, a factory passed as ``module=``, a PyOD detector) cannot be
rebuilt that way: :func:`load` refuses it with :class:`UntrustedTypesError` until you name it in
``trusted=`` (a dotted name, which imports its module, or the class itself, which re-supplies it).

A skorch net inside a model is stored for inference: its module, criterion, history and plain
parameters. Its optimizer state and callbacks are not (skood estimators never warm-start: ``fit``
builds a fresh net from the estimator's parameters), and neither are the weights of an external
encoder such as :class:`~skood.CLIPZeroShot`'s CLIP model, which is reloaded from its local
directory or checkpoint on first use.
"""

from __future__ import annotations

import collections
import enum
import errno
import importlib
import io
import json
import math
import os
import platform
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePath

import numpy as np
import torch

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "UntrustedTypesError",
    "VersionWarning",
    "get_untrusted_types",
    "load",
    "save",
]

#: The layout version of ``skood.json``; a reader refuses files from a newer layout.
FORMAT_VERSION = 1
_FORMAT = "skood-model"
_JSON, _TENSORS, _ARRAYS, _SKOPS = (
    "skood.json",
    "tensors.safetensors",
    "arrays.safetensors",
    "skops/",
)
_OLD_SIGNED_PICKLE = b"skood-model-v1\n"  # `skood score --save` before this format

# Classes trusted without asking, by the module that defines them (a prefix ending in "."):
# they are rebuilt from data (cls.__new__ + attributes) and never run code chosen by the file.
_TRUSTED_MODULES = ("skood.",)
_TRUSTED_TORCH_MODULES = ("torch.nn.modules.", "torchvision.models.", "torchvision.transforms.")
# scikit-learn's containers, rebuilt as objects (their steps may be skood estimators), and skorch's
# nets, rebuilt only through their constructor with checked parameters (never as plain objects).
_TRUSTED_SKLEARN = {
    "sklearn.pipeline.Pipeline",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.compose._column_transformer.ColumnTransformer",
}
_TRUSTED_SKORCH = {
    "skorch.net.NeuralNet",
    "skorch.classifier.NeuralNetClassifier",
    "skorch.classifier.NeuralNetBinaryClassifier",
    "skorch.regressor.NeuralNetRegressor",
}
# nn.Module's bookkeeping: rebuilt by nn.Module.__init__, so never stored. Hooks are functions,
# which the format does not hold: a module with hooks registered is refused when saved.
_MODULE_HOOKS = (
    "_backward_pre_hooks",
    "_backward_hooks",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_MODULE_SKIP = (*_MODULE_HOOKS, "_is_full_backward_hook")


class ModelFileError(ValueError):
    """The file is not a skood model, is damaged, or was written by an incompatible skood."""


class UntrustedTypesError(ModelFileError):
    """The file names classes or functions that skood does not rebuild without being told to.

    Attributes
    ----------
    types : list of str
        The dotted names; pass the ones you have reviewed and trust as ``load(..., trusted=)``.
    """

    def __init__(self, types: list[str], path: str) -> None:
        self.types = sorted(set(types))
        super().__init__(
            f"{path} names {len(self.types)} type(s) that skood does not rebuild without being "
            f"told: {self.types}. {_what_they_are(self.types)} If you wrote the file or trust its "
            "source, name them: skood.load(path, trusted=[...]) with these names, or with the "
            "classes themselves (MyNet rather than 'mymodule.MyNet') to re-supply them without "
            "importing anything by name."
        )


def _what_they_are(types: list[str]) -> str:
    """Why each untrusted name is asked for, by where it comes from (true of every name)."""
    top = {name: name.split(".")[0] for name in types}
    sklearn = [name for name in types if top[name] == "sklearn"]
    skood_torch = [
        name for name in types if top[name] in ("skood", "torch", "torchvision", "skorch")
    ]
    other = [name for name in types if name not in sklearn and name not in skood_torch]
    said = []
    if sklearn:  # from skops's audit of an sklearn part, or a class named as a plain object
        said.append(
            f"{_listing(sklearn)} scikit-learn's, but not among the classes rebuilt unasked "
            "(a compiled one such as a fitted tree's Tree rebuilds itself from the file's arrays "
            "with its own code, which indexes them without bounds checks)."
        )
    if skood_torch:  # a function, a plain object or a net where the format expects data
        said.append(
            f"{_listing(skood_torch)} from skood, torch or skorch, but of a kind rebuilt only when "
            "trusted: skood rebuilds unasked only skood's classes, torch.nn's and torchvision's "
            "modules, torch's optimizers, torch.nn.functional's functions, skorch's nets and "
            "sklearn's Pipeline, FeatureUnion and ColumnTransformer."
        )
    if other:
        said.append(
            f"{_listing(other)} code from outside skood, torch and scikit-learn (a torch module "
            "or function you wrote, or another library's): loading it imports that code."
        )
    return " ".join(said)


def _listing(names: list[str]) -> str:
    return f"{names[0]} is" if len(names) == 1 else f"{', '.join(names)} are"


class VersionWarning(UserWarning):
    """The file was written under other versions of skood, torch, scikit-learn or skorch."""


def _versions() -> dict[str, str]:
    import sklearn
    import skorch

    import skood

    return {
        "skood": skood.__version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "skorch": skorch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _dotted(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


# -- what a rebuilt object may hold ----------------------------------------------------------------

# Private fitted state (beyond parameters and the public fitted attributes, which end in "_"), with
# the classes whose instances keep it: an object of one of them, or of a subclass, may hold it.
# Inventoried by fitting every skood estimator class and the scikit-learn containers skood stores;
# tests/test_io.py round-trips them all, so private state added to a class but not here fails there.
_PRIVATE_STATE = {
    # the output width that ClassNamePrefixFeaturesOutMixin names features from (skood's feature
    # extractors set it in fit)
    "_n_features_out": ("sklearn.base.ClassNamePrefixFeaturesOutMixin",),
    # what set_output(transform="pandas") stores on any transformer
    "_sklearn_output_config": ("sklearn.utils._set_output._SetOutputMixin",),
    # ConformalDetector(method="cross"): the class codes of each fold's calibration rows
    "_fold_codes": ("skood.conformal.ConformalDetector",),
    "_columns": ("sklearn.compose._column_transformer.ColumnTransformer",),
    "_remainder": ("sklearn.compose._column_transformer.ColumnTransformer",),
    "_transformer_to_input_indices": ("sklearn.compose._column_transformer.ColumnTransformer",),
    "_transformers_feature_names_out": (
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.pipeline.FeatureUnion",
    ),
}

_MISSING = object()


def _class_attribute(cls: type, name: str):
    """What ``cls`` defines under ``name``, itself or through its MRO (``_MISSING`` if nothing).

    Read from the classes' ``__dict__``, as :func:`inspect.getattr_static` does, so that no
    descriptor or ``__getattr__`` runs; the metaclass's attributes are not an instance's, so they
    are not looked at.
    """
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return _MISSING


def _slot_refusal(cls: type, name: str, value) -> str | None:
    """Why no instance of ``cls`` may hold ``name = value`` (None: it may, as far as the class says).

    An instance attribute named like a method (any non-data descriptor) shadows it: set on a
    module's ``_call_impl`` or on an estimator's ``predict``, a function of the file's choosing
    (even a trusted one, a torch function) would run in the method's place. A data descriptor (a
    property) ignores the instance's value, and no fitted object holds one: refused too. A name the
    class defines as data (``nn.Module._compiled_call_impl = None``) may take data, but nothing
    callable, which the class's own code may call.
    """
    defined = _class_attribute(cls, name)
    if defined is _MISSING:
        return None
    if callable(defined) or hasattr(type(defined), "__get__"):
        return f"{name!r} ({cls.__name__} defines it as a {type(defined).__name__})"
    if callable(value):
        return (
            f"{name!r} to a {type(value).__name__} ({cls.__name__} defines it as the data "
            f"{defined!r:.40}, and a file puts nothing callable there)"
        )
    return None


def _is_estimator_state(cls: type, name: str) -> bool:
    """Whether a fitted scikit-learn estimator of class ``cls`` can hold attribute ``name``.

    Its ``__init__`` parameters, its fitted attributes (a trailing underscore, by scikit-learn's
    convention), what it leaves out of files (``__skood_not_saved__``) and the private fitted state listed
    in ``_PRIVATE_STATE``; nothing else, so that no attribute that its methods read from the class
    (``_parameter_constraints``, ``_scoring_params``, ...) can be replaced by a file.
    """
    if name in cls._get_param_names() or name in getattr(cls, "__skood_not_saved__", ()):
        return True
    if name.endswith("_"):  # dunder names never get here: _Reader._state refuses them
        return True
    owners = _PRIVATE_STATE.get(name, ())
    return any(_dotted(klass) in owners for klass in cls.__mro__)


def _object_refusals(cls: type, state: dict) -> list[str]:
    """The attributes in ``state`` that an object of ``cls`` (not a module) may not be given."""
    from sklearn.base import BaseEstimator

    estimator = issubclass(cls, BaseEstimator)
    refused = []
    for name, value in state.items():
        reason = _slot_refusal(cls, name, value)
        if reason is None and estimator and not _is_estimator_state(cls, name):
            reason = f"{name!r} (neither a parameter nor fitted state of a {cls.__name__})"
        if reason is not None:
            refused.append(reason)
    return refused


def _holds(mapping, kind: type) -> bool:
    """A dict of names to ``kind`` or None: how nn.Module registers parameters, buffers, modules."""
    return isinstance(mapping, dict) and all(
        isinstance(k, str) and (v is None or isinstance(v, kind)) for k, v in mapping.items()
    )


# The state nn.Module.__init__ sets that a file holds, and what each must be; the rest of what it
# sets is hooks (_MODULE_SKIP), which a file never holds.
_MODULE_STATE = {
    "training": (lambda v: isinstance(v, bool), "a bool"),
    "_parameters": (lambda v: _holds(v, torch.nn.Parameter), "a dict of names to Parameters"),
    "_buffers": (lambda v: _holds(v, torch.Tensor), "a dict of names to tensors"),
    "_modules": (lambda v: _holds(v, torch.nn.Module), "a dict of names to modules"),
    "_non_persistent_buffers_set": (
        lambda v: isinstance(v, set) and all(isinstance(k, str) for k in v),
        "a set of names",
    ),
}


def _module_refusals(cls: type, state: dict) -> list[str]:
    """The attributes in ``state`` that a torch module of ``cls`` may not be given.

    Its registered state, of the types torch registers, and plain attributes (what its
    ``__init__`` sets: sizes, flags, a function such as an activation) that neither shadow what
    the class defines nor hide a registered parameter, buffer or submodule of the same name
    (attribute lookup finds the instance's own attribute first, torch's registries last).
    """
    registered = set()
    for key in ("_parameters", "_buffers", "_modules"):
        if isinstance(state.get(key), dict):
            registered.update(state[key])
    refused = []
    for name, value in state.items():
        if name in _MODULE_SKIP:
            reason = f"{name!r} (hooks are functions the module would call)"
        elif name in _MODULE_STATE:
            is_valid, what = _MODULE_STATE[name]
            reason = None if is_valid(value) else f"{name!r} to anything but {what}"
        elif name in registered:
            reason = f"{name!r} (it would hide the registered parameter, buffer or submodule)"
        else:
            reason = _slot_refusal(cls, name, value)
        if reason is not None:
            refused.append(reason)
    return refused


# -- writing ---------------------------------------------------------------------------------------


class _Writer:
    """Turns an object graph into JSON nodes plus named tensors, arrays and skops blobs."""

    def __init__(self) -> None:
        self.memo: dict[int, int] = {}  # id(obj) -> node id, so shared objects stay shared
        self.keep: list = []  # keeps every memoised object alive, so no id() is reused
        self.tensors: dict[str, torch.Tensor] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.skops: dict[str, bytes] = {}

    def node(self, obj, where: str):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if type(obj) is int:
            return obj
        if type(obj) is float:
            return obj if np.isfinite(obj) else {"type": "float", "value": repr(obj)}
        if id(obj) in self.memo:
            return {"type": "ref", "id": self.memo[id(obj)]}
        if isinstance(obj, np.generic):
            return self._numpy_scalar(obj, where)
        if isinstance(obj, (list, tuple, set, frozenset)) and type(obj) in (
            list,
            tuple,
            set,
            frozenset,
        ):
            ident = self._remember(obj)
            items = [self.node(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return {"type": type(obj).__name__, "id": ident, "items": items}
        if type(obj) in (dict, collections.OrderedDict):
            return self._dict(obj, where)
        if isinstance(obj, torch.Tensor):
            return self._tensor(obj, where)
        if isinstance(obj, np.ndarray):
            return self._array(obj, where)
        if isinstance(obj, torch.device):
            return {"type": "device", "value": str(obj)}
        if isinstance(obj, torch.dtype):
            return {"type": "dtype", "value": str(obj).removeprefix("torch.")}
        if isinstance(obj, PurePath):  # a parameter such as weights_path=
            return {"type": "path", "value": str(obj)}
        if isinstance(obj, enum.Enum):  # e.g. torchvision's InterpolationMode in a transform
            self._reference(type(obj), where)
            return {
                "type": "enum",
                "class": _dotted(type(obj)),
                "value": self.node(obj.value, where),
            }
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")):
            return self._reference(obj, where)
        return self._object(obj, where)

    def _remember(self, obj) -> int:
        ident = len(self.memo)
        self.memo[id(obj)] = ident
        self.keep.append(obj)
        return ident

    def _dict(self, obj: dict, where: str):
        ident = self._remember(obj)
        ordered = type(obj) is collections.OrderedDict
        if all(type(k) is str for k in obj):
            items = {k: self.node(v, f"{where}[{k!r}]") for k, v in obj.items()}
            return {"type": "dict", "id": ident, "ordered": ordered, "items": items}
        pairs = [[self.node(k, where), self.node(v, f"{where}[{k!r}]")] for k, v in obj.items()]
        return {"type": "dict", "id": ident, "ordered": ordered, "pairs": pairs}

    def _numpy_scalar(self, obj: np.generic, where: str):
        if obj.dtype.kind not in "biufU":
            raise TypeError(f"{where}: numpy scalar of dtype {obj.dtype} is not supported")
        return {
            "type": "numpy_scalar",
            "dtype": obj.dtype.str,
            "value": self.node(obj.item(), where),
        }

    def _tensor(self, obj: torch.Tensor, where: str):
        if obj.is_sparse or obj.layout != torch.strided:
            raise TypeError(f"{where}: a {obj.layout} tensor cannot be saved; make it dense first")
        ident = self._remember(obj)
        key = f"t{len(self.tensors)}"
        order = _dense_order(obj.shape, obj.stride(), lambda o: obj.permute(o).is_contiguous())
        # A copy of its own: safetensors refuses tensors that share storage (views, tied weights
        # that are distinct tensor objects); tied weights that are one object stay one node.
        self.tensors[key] = obj.detach().permute(order).to("cpu", copy=True).contiguous()
        return {
            "type": "tensor",
            "id": ident,
            "key": key,
            "order": order,
            "dtype": str(obj.dtype).removeprefix("torch."),
            "shape": list(obj.shape),
            "device": str(obj.device),
            "parameter": isinstance(obj, torch.nn.Parameter),
            "requires_grad": obj.requires_grad,
        }

    def _array(self, obj: np.ndarray, where: str):
        ident = self._remember(obj)
        if obj.dtype.kind in "biuf" and obj.dtype.itemsize <= 8:
            key = f"a{len(self.arrays)}"
            is_dense = lambda o: obj.transpose(o).flags.c_contiguous  # noqa: E731
            order = _dense_order(obj.shape, obj.strides, is_dense)
            self.arrays[key] = np.ascontiguousarray(obj.transpose(order))
            return {
                "type": "ndarray",
                "id": ident,
                "key": key,
                "order": order,
                "dtype": obj.dtype.str,
                "shape": list(obj.shape),
            }
        if obj.dtype.kind in "UO":  # class labels, prompts, column names: kept in the JSON
            values = [self.node(v, f"{where}[{i}]") for i, v in enumerate(obj.ravel().tolist())]
            return {
                "type": "ndarray",
                "id": ident,
                "dtype": obj.dtype.str,
                "shape": list(obj.shape),
                "values": values,
            }
        raise TypeError(f"{where}: numpy arrays of dtype {obj.dtype} are not supported")

    def _reference(self, obj, where: str):
        """A class or function, stored by name (rebuilt only if trusted; see ``load``)."""
        name = _dotted(obj)
        try:
            found = _import_by_name(obj.__module__, obj.__qualname__)
        except (ImportError, AttributeError):
            found = None
        if found is not obj and obj.__module__ != "__main__":
            raise TypeError(
                f"{where}: {name} cannot be found again by its name (a lambda, a local function "
                "or class, or a functools.partial?); define it at module level to save it"
            )
        return {"type": "class" if isinstance(obj, type) else "function", "name": name}

    def _object(self, obj, where: str):
        cls = type(obj)
        name = _dotted(cls)
        self._reference(cls, where)  # importable by name, or a clear error now
        from skorch import NeuralNet

        if isinstance(obj, NeuralNet):
            return self._skorch(obj, where)
        excluded: list[str] = []
        if isinstance(obj, torch.nn.Module):
            hooked = [h for h in _MODULE_HOOKS if getattr(obj, h, None)]
            if hooked:
                raise TypeError(
                    f"{where}: the {cls.__name__} module has hooks registered ({hooked}); hooks "
                    "are functions, which a .skood file does not hold. Remove them before saving."
                )
            state = {k: v for k, v in vars(obj).items() if k not in _MODULE_SKIP}
            kind = "module"
        elif name.startswith(_TRUSTED_MODULES) and hasattr(obj, "__dict__"):
            if hasattr(obj, "__skood_check_saveable__"):
                obj.__skood_check_saveable__()
            excluded = [k for k in getattr(cls, "__skood_not_saved__", ()) if k in vars(obj)]
            state = {k: v for k, v in vars(obj).items() if k not in excluded}
            kind = "object"
        elif not _holds_skood(obj):  # scikit-learn's own objects, and any other library's
            return self._skops(obj, where)
        elif name in _TRUSTED_SKLEARN:  # a Pipeline, FeatureUnion or ColumnTransformer
            state = dict(vars(obj))
            kind = "object"
        else:
            raise TypeError(
                f"{where}: a {name} holding torch or skood objects cannot be saved: skood's format "
                "stores those only inside skood estimators and sklearn's Pipeline / FeatureUnion / "
                "ColumnTransformer (for a search, save its fitted best_estimator_)"
            )
        refused = (_module_refusals if kind == "module" else _object_refusals)(cls, state)
        if refused:  # what load would refuse: never written
            raise TypeError(
                f"{where}: the {cls.__name__} holds {'; '.join(refused)}, which a .skood file "
                f"cannot hold: it stores only the attributes a fitted {cls.__name__} has, as data"
            )
        ident = self._remember(obj)
        node = {"type": kind, "id": ident, "class": name}
        node["state"] = {k: self.node(v, f"{where}.{k}") for k, v in state.items()}
        if kind == "object" and excluded:
            node["not_saved"] = excluded  # set to None when loaded (e.g. CLIP's encoder)
        return node

    def _skorch(self, net, where: str):
        """A skorch net, for inference: module, criterion, history and its plain parameters."""
        ident = self._remember(net)
        if not getattr(net, "initialized_", False):
            raise TypeError(f"{where}: an uninitialized skorch net cannot be saved")
        params, dropped = {}, []
        for key, value in net.get_params(deep=False).items():
            if key in ("module", "criterion"):
                continue
            if _skorch_param_allowed(type(net), key, value):
                params[key] = self.node(value, f"{where}.{key}")
            else:
                dropped.append(key)
        return {
            "type": "skorch",
            "id": ident,
            "class": _dotted(type(net)),
            "module": self.node(net.module_, f"{where}.module_"),
            "criterion": self.node(net.criterion_, f"{where}.criterion_"),
            "params": params,
            "not_stored": sorted([*dropped, "optimizer state"]),
            "history": self.node([dict(row) for row in net.history_], f"{where}.history_"),
        }

    def _skops(self, obj, where: str):
        import skops.io

        ident = self._remember(obj)
        key = f"{_SKOPS}{len(self.skops)}.skops"
        try:
            self.skops[key] = skops.io.dumps(obj)
        except Exception as exc:
            raise TypeError(
                f"{where}: {_dotted(type(obj))} cannot be saved ({type(exc).__name__}: {exc})"
            ) from exc
        return {"type": "skops", "id": ident, "key": key, "class": _dotted(type(obj))}


def _dense_order(shape, strides, is_dense) -> list[int]:
    """The axis order in which a strided tensor / array is laid out densely.

    Stored in that order and permuted back when loaded, a column-major matrix (what LAPACK's
    ``eigh`` returns) keeps its layout, and with it the kernels, hence the exact roundings, of
    every product it enters. An overlapping or gappy view is stored row-major (identity order).
    """
    order = sorted(range(len(shape)), key=lambda d: -strides[d])
    return order if is_dense(order) else list(range(len(shape)))


def _inverse(order, ndim: int, fail) -> list[int]:
    if (
        not isinstance(order, list)
        or not all(type(d) is int for d in order)
        or sorted(order) != list(range(ndim))
    ):
        fail(f"a malformed axis order {order!r}")
    return [order.index(d) for d in range(ndim)]


# The parameters of a skorch net that a file may set: what inference and a plain optimizer need.
# Everything else a net accepts can run or name code later (compile=True with Inductor options,
# callbacks, dataset / iterator classes, torch_load_kwargs, module__* sizes that allocate), so it
# is neither written nor accepted.
_SKORCH_PARAMS = {"lr", "max_epochs", "batch_size", "device", "optimizer", "warm_start", "verbose"}


def _skorch_param_allowed(cls, key: str, value) -> bool:
    import inspect

    from skorch import NeuralNet

    if key == "optimizer":
        return isinstance(value, type) and issubclass(value, torch.optim.Optimizer)
    own = set(inspect.signature(cls.__init__).parameters) - set(
        inspect.signature(NeuralNet.__init__).parameters
    )  # a subclass's own settings, such as AMA's n_critic
    if key in _SKORCH_PARAMS or key in own or key.startswith("optimizer__"):
        return _is_number_like(value)
    return False


def _is_number_like(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return type(value) in (list, tuple) and all(
        v is None or isinstance(v, (bool, int, float)) for v in value
    )


def _is_plain(value) -> bool:
    """Data, or a class rebuilt without asking (an optimizer): what a skorch net's parameters
    may hold to be stored."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, type):
        return _Trust.by_default(_dotted(value), "class")
    if type(value) in (list, tuple):
        return all(_is_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain(v) for k, v in value.items())
    return False


def _holds_skood(obj, _seen=None) -> bool:
    """Whether an sklearn object has a skood or torch object anywhere inside it."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if isinstance(obj, (torch.Tensor, torch.nn.Module)) or type(obj).__module__.startswith("skood"):
        return True
    if isinstance(obj, dict):
        return any(_holds_skood(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return any(_holds_skood(v, seen) for v in obj)
    if isinstance(obj, (str, bytes, np.ndarray, type)) or not hasattr(obj, "__dict__"):
        return False
    return any(_holds_skood(v, seen) for v in vars(obj).values())


def save(model, file) -> None:
    """Write a fitted (or unfitted) model to a ``.skood`` file that holds no pickle.

    Parameters
    ----------
    model : object
        A skood estimator or transformer, a scikit-learn ``Pipeline`` / ``FeatureUnion`` /
        ``ColumnTransformer`` around them, a plain scikit-learn estimator, or a dict / list of such
        (e.g. a model with its column names).
    file : str, path-like or binary file object
        Where to write. A path is written to a temporary file beside it and renamed into place, so
        an interrupted save never leaves a half-written model where an old one was. An existing
        file there is replaced; a folder, a device or a FIFO is refused.

    Raises
    ------
    TypeError
        When something in the model cannot be stored as data: a lambda or local class, a module
        with hooks registered, a CLIP encoder given as a model object.

    Examples
    --------
    >>> import io, numpy as np, skood
    >>> from skood import GaussianMahalanobis
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> model = GaussianMahalanobis(random_state=0).fit(X)
    >>> buffer = io.BytesIO()
    >>> skood.save(model, buffer)
    >>> loaded = skood.load(io.BytesIO(buffer.getvalue()))
    >>> bool(np.array_equal(loaded.score_samples(X), model.score_samples(X)))
    True
    """
    from safetensors.numpy import save as save_arrays
    from safetensors.torch import save as save_tensors

    writer = _Writer()
    root = writer.node(model, "model")
    header = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "root": root,
    }
    tensors = save_tensors(writer.tensors) if writer.tensors else b""
    arrays = save_arrays(writer.arrays) if writer.arrays else b""
    writer.tensors.clear()  # the serialized bytes are all that is needed from here

    def write(target) -> None:
        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr(_JSON, json.dumps(header, indent=1), zipfile.ZIP_DEFLATED)
            # Weights do not compress: stored as they are, so loading reads them as they are.
            archive.writestr(_TENSORS, tensors)
            archive.writestr(_ARRAYS, arrays)
            for key, blob in writer.skops.items():
                archive.writestr(key, blob)

    if hasattr(file, "write"):
        write(file)
        return
    from skood._files import atomic_file

    with atomic_file(file, replace=True) as f:
        write(f)


# -- reading ---------------------------------------------------------------------------------------


def _import_by_name(module: str, qualname: str):
    """``module.qualname`` by import and attribute lookup (no dunder or private hops)."""
    parts = qualname.split(".")
    if not module or any(not p or p.startswith("__") or p == "<locals>" for p in parts):
        raise AttributeError(f"{module}.{qualname} is not a plain module-level name")
    obj = importlib.import_module(module)
    for part in parts:
        obj = getattr(obj, part)
    return obj


def _split_name(name: str) -> list[tuple[str, str]]:
    """Every (module, qualname) split of a dotted name, longest module first."""
    parts = name.split(".")
    return [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]


class _Trust:
    """Which names may be rebuilt: skood's defaults plus what the caller passed as ``trusted``."""

    def __init__(self, trusted) -> None:
        self.names: set[str] = set()
        self.objects: dict[str, object] = {}
        for item in [] if trusted is None else _as_list(trusted):
            if isinstance(item, str):
                self.names.add(item)
            elif hasattr(item, "__qualname__") and hasattr(item, "__module__"):
                self.objects[_dotted(item)] = item
            else:
                raise TypeError(
                    f"trusted= takes dotted names or classes / functions, not {type(item).__name__}"
                )

    def strings(self) -> list[str]:
        return sorted(self.names | set(self.objects))

    @staticmethod
    def by_default(name: str, kind: str) -> bool:
        if kind == "skorch":
            return name in _TRUSTED_SKORCH or name.startswith(_TRUSTED_MODULES)
        if kind == "module":
            return name.startswith(_TRUSTED_MODULES + _TRUSTED_TORCH_MODULES)
        if kind == "class":  # a class passed as a parameter: a module, optimizer or loss class
            return name.startswith(_TRUSTED_MODULES + _TRUSTED_TORCH_MODULES + ("torch.optim.",))
        if kind == "object":
            return name.startswith(_TRUSTED_MODULES) or name in _TRUSTED_SKLEARN
        if kind == "function":  # torch's functional ops; any other function is asked for
            return name.startswith("torch.nn.functional.")
        return False

    def allows(self, name: str, kind: str) -> bool:
        return self.by_default(name, kind) or name in self.names or name in self.objects

    def resolve(self, name: str, kind: str, path: str):
        if name in self.objects:
            return self.objects[name]
        if not self.allows(name, kind):
            raise UntrustedTypesError([name], path)
        for module, qualname in _split_name(name):
            try:
                found = _import_by_name(module, qualname)
            except ImportError:
                continue
            except AttributeError:
                break
            # The name must lead to the object defined under it: `skood.cli.score.os.system` (a name
            # skood's module happens to import) is refused, not followed.
            if getattr(found, "__module__", None) == module and found.__qualname__ == qualname:
                if kind == "function" or isinstance(found, type):
                    return found
            break
        raise ModelFileError(f"{path} names {name!r}, which is not a class here ({kind})")


def _as_list(items) -> list:
    if isinstance(items, (str, type)) or callable(items):
        return [items]
    return list(items) if isinstance(items, Iterable) else [items]


_NODE_TYPES = frozenset(
    "ref float list tuple set frozenset dict numpy_scalar device dtype path enum ndarray tensor "
    "class function object module skorch skops".split()
)
_TORCH_DTYPES = {
    str(d).removeprefix("torch."): d for d in vars(torch).values() if isinstance(d, torch.dtype)
}

# Which field of a node names the class or function it needs, and the trust kind of that name.
# The one place that decides it, for get_untrusted_types (which lists the names) and for load
# (which resolves them): a hostile node that carries both a "name" and a "class" cannot show the
# one to the listing and give the other to the loader.
_NAMED_NODES = {
    "class": ("name", "class"),
    "function": ("name", "function"),
    "enum": ("class", "class"),  # an enum's class is looked up as any class parameter is
    "object": ("class", "object"),
    "module": ("class", "module"),
    "skorch": ("class", "skorch"),
}


def _named(node: dict, path: str) -> tuple[str, str] | None:
    """The dotted name that ``node`` needs resolved and its trust kind; None for a node of data.

    Raises
    ------
    ModelFileError
        The node is of a kind that names something, but its name is missing or not a string.
    """
    kind = node.get("type")
    if not isinstance(kind, str) or kind not in _NAMED_NODES:
        return None
    field, trust_kind = _NAMED_NODES[kind]
    name = node.get(field)
    if not isinstance(name, str):
        raise ModelFileError(f"{path}: a {kind} node without a {field!r} name")
    return name, trust_kind


# Where each kind of node keeps the nodes inside it, as _Reader reads them: "node" (one node),
# "list" (a list of nodes), "map" (a dict of names to nodes). get_untrusted_types walks the tree
# by it, so it visits exactly the nodes load would rebuild, and never mistakes a plain dict saved
# in a model (whose items happen to read {"type": "function", ...}) for a node.
_CHILDREN = {
    "list": (("items", "list"),),
    "tuple": (("items", "list"),),
    "set": (("items", "list"),),
    "frozenset": (("items", "list"),),
    "numpy_scalar": (("value", "node"),),
    "enum": (("value", "node"),),
    "ndarray": (("values", "list"),),
    "object": (("state", "map"),),
    "module": (("state", "map"),),
    "skorch": (("module", "node"), ("criterion", "node"), ("params", "map"), ("history", "node")),
}


def _children(node: dict) -> list:
    """The nodes directly inside ``node`` that :class:`_Reader` would read."""
    kind = node.get("type")
    if kind == "dict":  # _Reader._dict: its [key, value] pairs if it has them, else its items
        if "pairs" in node:
            pairs = node["pairs"] if isinstance(node["pairs"], list) else []
            return [part for pair in pairs if isinstance(pair, list) for part in pair]
        fields = (("items", "map"),)
    else:
        fields = _CHILDREN.get(kind, ()) if isinstance(kind, str) else ()
    children = []
    for field, shape in fields:
        value = node.get(field)
        if shape == "node":
            children.append(value)
        elif shape == "list" and isinstance(value, list):
            children.extend(value)
        elif shape == "map" and isinstance(value, dict):
            children.extend(value.values())
    return children


class _Reader:
    def __init__(self, archive, header: dict, path: str, trust: _Trust, device) -> None:
        self.path, self.trust, self.archive = path, trust, archive
        self.memo: dict[int, object] = {}
        self.tensors, self.arrays = _read_tensor_files(archive, path)
        self.used_tensors: set[str] = set()
        self.used_arrays: set[str] = set()
        self.device = device
        self.fell_back: set[str] = set()
        self.estimators: list = []
        self.versions = header.get("versions", {})

    def fail(self, message: str):
        raise ModelFileError(f"{self.path}: {message}")

    def target(self, device: str) -> str:
        """Where a tensor saved on ``device`` goes (torch.load's ``map_location`` rule)."""
        if self.device is not None:
            return str(self.device)
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError):
            self.fail(f"unknown device {device!r}")
        if parsed.type == "cuda":
            index = parsed.index or 0
            if not torch.cuda.is_available() or index >= torch.cuda.device_count():
                self.fell_back.add(device)
                return "cpu"
        elif parsed.type not in ("cpu",) and not _device_available(parsed):
            self.fell_back.add(device)
            return "cpu"
        return device

    def node(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            self.fail(f"malformed node {str(node)[:80]!r}")
        kind = node["type"]
        if kind not in _NODE_TYPES:
            self.fail(f"unknown node type {kind!r}")
        return getattr(self, f"_{kind}")(node)

    def _keep(self, node, obj):
        ident = node.get("id")
        if ident is not None:
            if type(ident) is not int or ident in self.memo:
                self.fail(f"bad or repeated object id {ident!r}")
            self.memo[ident] = obj
        return obj

    def _ref(self, node):
        if type(node.get("id")) is not int or node["id"] not in self.memo:
            self.fail(f"reference to an unknown object id {node.get('id')!r}")
        return self.memo[node["id"]]

    def _float(self, node):
        if node.get("value") not in ("nan", "inf", "-inf"):
            self.fail(f"bad float {node.get('value')!r}")
        return float(node["value"])

    def _items(self, node, key="items", of=list):
        items = node.get(key)
        if not isinstance(items, of):
            self.fail(f"a {node['type']} node without {key}")
        return items

    def _list(self, node):
        out = self._keep(node, [])
        out.extend(self.node(v) for v in self._items(node))
        return out

    def _tuple(self, node):
        return self._keep(node, tuple(self.node(v) for v in self._items(node)))

    def _set(self, node):
        return self._keep(node, {self.node(v) for v in self._items(node)})

    def _frozenset(self, node):
        return self._keep(node, frozenset(self.node(v) for v in self._items(node)))

    def _dict(self, node):
        out = self._keep(node, collections.OrderedDict() if node.get("ordered") else {})
        if "pairs" in node:
            for pair in self._items(node, "pairs"):
                if not isinstance(pair, list) or len(pair) != 2:
                    self.fail("a malformed dict entry")
                out[self.node(pair[0])] = self.node(pair[1])
        else:
            for key, value in self._items(node, "items", dict).items():
                out[key] = self.node(value)
        return out

    def _numpy_scalar(self, node):
        dtype = _dtype(node.get("dtype"), self.path)
        return dtype.type(self.node(node.get("value")))

    def _device(self, node):
        return torch.device(self.target(str(node.get("value"))))

    def _dtype(self, node):
        if node.get("value") not in _TORCH_DTYPES:
            self.fail(f"unknown torch dtype {node.get('value')!r}")
        return _TORCH_DTYPES[node["value"]]

    def _ndarray(self, node):
        shape = self._shape(node)
        dtype = _dtype(node.get("dtype"), self.path)
        if "values" in node:
            values = [self.node(v) for v in self._items(node, "values")]
            if len(values) != math.prod(shape):
                self.fail(f"an array of shape {shape} with {len(values)} values")
            longest = max([len(v) for v in values if isinstance(v, str)], default=1)
            if dtype.kind == "U" and dtype.itemsize > 4 * max(longest, 1):
                self.fail(f"a string array of dtype {dtype} for strings of at most {longest}")
            array = np.empty(len(values), dtype=dtype)
            array[:] = values
            return self._keep(node, array.reshape(shape))
        key = self._key(node, self.arrays, _ARRAYS)
        self.used_arrays.add(key)
        stored = self.arrays[key]
        if stored.ndim != len(shape):
            self.fail(f"array {key!r} has {stored.ndim} dimensions; the model expects {shape}")
        order = node.get("order", list(range(len(shape))))
        array = stored.transpose(_inverse(order, stored.ndim, self.fail))
        if list(array.shape) != shape or array.dtype != dtype:
            self.fail(
                f"array {key!r} has shape {list(array.shape)} and dtype {array.dtype} in "
                f"{_ARRAYS}, but the model expects {shape} and {dtype}"
            )
        return self._keep(node, array)

    def _shape(self, node) -> list[int]:
        shape = node.get("shape")
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            self.fail(f"a malformed shape {shape!r}")
        return shape

    def _key(self, node, stored: dict, member: str) -> str:
        key = node.get("key")
        if type(key) is not str or key not in stored:
            self.fail(f"{node['type']} {key!r} is missing from {member}")
        return key

    def _tensor(self, node):
        key = self._key(node, self.tensors, _TENSORS)
        shape = self._shape(node)
        self.used_tensors.add(key)
        stored = self.tensors[key]
        if stored.ndim != len(shape):
            self.fail(f"tensor {key!r} has {stored.ndim} dimensions; the model expects {shape}")
        order = node.get("order", list(range(stored.ndim)))
        tensor = stored.permute(_inverse(order, stored.ndim, self.fail))
        if list(tensor.shape) != shape or str(tensor.dtype) != f"torch.{node.get('dtype')}":
            self.fail(
                f"tensor {key!r} has shape {list(tensor.shape)} and dtype {tensor.dtype} in "
                f"{_TENSORS}, but the model expects {node.get('shape')} and {node.get('dtype')}"
            )
        tensor = tensor.to(self.target(str(node.get("device", "cpu"))))
        if node.get("parameter"):
            tensor = torch.nn.Parameter(tensor, requires_grad=bool(node.get("requires_grad")))
        elif node.get("requires_grad"):
            tensor.requires_grad_(True)
        return self._keep(node, tensor)

    def _resolve(self, node):
        """The class or function a node names, as ``_named`` reads it and ``trust`` allows."""
        name, kind = _named(node, self.path)
        return self.trust.resolve(name, kind, self.path)

    def _class(self, node):
        return self._resolve(node)

    def _path(self, node):
        return Path(str(node.get("value")))

    def _enum(self, node):
        cls = self._resolve(node)
        if not issubclass(cls, enum.Enum):
            self.fail(f"{cls.__name__} is stored as an enum but is not one")
        try:
            return cls(self.node(node.get("value")))
        except ValueError:
            self.fail(f"{node.get('value')!r} is not a {cls.__name__}")

    def _function(self, node):
        return self._resolve(node)

    def _state(self, node) -> dict:
        state = self._items(node, "state", dict)
        odd = [k for k in state if not k.isidentifier() or k.startswith("__")]
        if odd:
            self.fail(f"attribute names {odd[:5]} are not plain attribute names")
        return {key: self.node(value) for key, value in state.items()}

    def _object(self, node):
        from sklearn.base import BaseEstimator
        from skorch import NeuralNet

        cls = self._resolve(node)
        if not isinstance(cls, type) or issubclass(cls, (torch.nn.Module, NeuralNet)):
            # A module or a net rebuilt from raw attributes would skip the checks of its own
            # node kind (hooks, registered state; a net's parameters): never as an object.
            self.fail(f"{getattr(cls, '__name__', cls)} is stored as a plain object")
        obj = self._keep(node, cls.__new__(cls))
        state = self._state(node)
        for name in self._items(node, "not_saved") if "not_saved" in node else []:
            if name in getattr(cls, "__skood_not_saved__", ()):
                state.setdefault(name, None)
        if isinstance(obj, BaseEstimator) and type(obj).__module__.startswith("skood"):
            # skood's own __setstate__ maps parameters renamed since (see base.py): what it
            # leaves in vars() is what gets checked.
            obj.__setstate__(state)
            self.estimators.append(obj)
        else:
            vars(obj).update(state)
        self._refuse(cls, _object_refusals(cls, vars(obj)))
        return obj

    def _refuse(self, cls: type, refused: list[str]) -> None:
        if refused:
            self.fail(
                f"its {cls.__name__} ({_dotted(cls)}) may not set {'; '.join(refused[:5])}: a "
                "model file sets only the data a fitted object of its class holds, never code to "
                "run in place of the class's own. The file was altered; nothing in it was run."
            )

    def _module(self, node):
        cls = self._resolve(node)
        if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
            self.fail(f"{getattr(cls, '__name__', cls)} is stored as a torch module but is not one")
        obj = self._keep(node, cls.__new__(cls))
        torch.nn.Module.__init__(obj)  # torch's bookkeeping (hook dicts), then the saved state
        state = self._state(node)
        self._refuse(cls, _module_refusals(cls, state))
        vars(obj).update(state)
        return obj

    def _skorch(self, node):
        from skorch import NeuralNet
        from skorch.history import History

        cls = self._resolve(node)
        if not isinstance(cls, type) or not issubclass(cls, NeuralNet):
            self.fail(f"{getattr(cls, '__name__', cls)} is stored as a skorch net but is not one")
        module, criterion = self.node(node.get("module")), self.node(node.get("criterion"))
        if not isinstance(module, torch.nn.Module) or not isinstance(criterion, torch.nn.Module):
            self.fail(f"its {cls.__name__} needs a module and a criterion instance")
        params = {k: self.node(v) for k, v in self._items(node, "params", dict).items()}
        refused = [k for k, v in params.items() if not _skorch_param_allowed(cls, k, v)]
        if refused:
            self.fail(f"its {cls.__name__} sets parameters a model file may not set: {refused}")
        if "device" in params:
            params["device"] = self.target(str(params["device"]))
        try:
            net = cls(module=module, criterion=criterion, **params)
            net.initialize()
        except Exception as exc:
            self.fail(f"its {cls.__name__} cannot be rebuilt ({type(exc).__name__}: {exc})")
        history = self.node(node.get("history"))
        if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
            self.fail(f"its {cls.__name__} has a malformed history")
        net.history_ = History(history)
        return self._keep(node, net)

    def _skops(self, node):
        import skops.io

        key = node.get("key")
        if not isinstance(key, str) or key not in self.archive.namelist():
            self.fail(f"skops part {key!r} is missing")
        blob = self.archive.read(key)
        try:
            untrusted = skops.io.get_untrusted_types(data=blob)
        except Exception as exc:
            self.fail(f"its scikit-learn part {key} is damaged ({exc})")
        refused = [t for t in untrusted if t not in self.trust.strings()]
        if refused:
            raise UntrustedTypesError(refused, self.path)
        try:
            obj = skops.io.loads(blob, trusted=[t for t in untrusted if t not in refused])
        except Exception as exc:
            self.fail(f"its scikit-learn part {key} cannot be read ({exc})")
        return self._keep(node, obj)


def _device_available(device: torch.device) -> bool:
    backend = getattr(torch, device.type, None)
    return bool(backend is not None and getattr(backend, "is_available", lambda: False)())


def _devices_here() -> list[str]:
    """The devices torch can put tensors on here, for messages."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return found + [name for name in ("mps", "xpu") if _device_available(torch.device(name))]


def _device_here(device) -> str:
    """``load``'s ``device=`` resolved (``"auto"``), or a ValueError if this machine lacks it.

    Without the check, the first tensor moved there fails inside the reader, which reports a
    damaged file ("holds values that do not make a valid model") for a wrong argument.
    """
    from skood.torch import resolve_device

    device = resolve_device(device)  # "auto"; a name that is no torch device; CUDA without GPU
    parsed = torch.device(device)
    if parsed.type == "cuda":
        available = (parsed.index or 0) < torch.cuda.device_count()
    else:
        available = parsed.type == "cpu" or _device_available(parsed)
    if not available:
        raise ValueError(
            f"device={device!r} is not available on this machine (torch sees: "
            f"{', '.join(_devices_here())}). Use device='cpu' or 'auto'."
        )
    return device


def _dtype(value, path: str) -> np.dtype:
    try:
        dtype = np.dtype(str(value))
    except TypeError:
        raise ModelFileError(f"{path}: unknown numpy dtype {value!r}") from None
    if dtype.kind not in "biufUO":
        raise ModelFileError(f"{path}: numpy dtype {dtype} is not allowed in a model file")
    return dtype


def _read_tensor_files(archive: zipfile.ZipFile, path: str):
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_arrays
    from safetensors.torch import load as load_tensors

    parts = []
    for name, reader in ((_TENSORS, load_tensors), (_ARRAYS, load_arrays)):
        data = archive.read(name)
        try:
            parts.append(reader(data) if data else {})
        except (SafetensorError, ValueError, OSError) as exc:
            raise ModelFileError(f"{path}: {name} is damaged ({exc})") from exc
    return parts


# skood writes its JSON deflated and everything else stored. A model's tree compresses 3 to 21
# times (measured on the Gaussian, flow, VAE, HSC, ICE, AMA, a Pipeline with a 300-epoch
# history and a cross-conformal flow); more than this ratio is a bomb, not a model. Parsed JSON
# takes about 25 times its text in Python objects, so memory stays proportional to the file.
_MAX_JSON_RATIO = 60


def _check_sizes(archive: zipfile.ZipFile, path: str) -> None:
    for info in archive.infolist():
        if info.filename == _JSON:
            if info.file_size > _MAX_JSON_RATIO * max(info.compress_size, 1024):
                raise ModelFileError(
                    f"{path}: {_JSON} would inflate {info.compress_size} bytes to "
                    f"{info.file_size}; a model file does not compress like that"
                )
        elif info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise ModelFileError(f"{path}: member {info.filename} is compressed; skood stores it")


def _describe(file) -> str:
    if hasattr(file, "read"):
        return str(getattr(file, "name", "the model file"))
    return str(file)


def _read(file, path: str) -> bytes:
    """The bytes of a model file: a file object's, read to its end, or a regular file's.

    A path must lead (through any symlinks) to a regular file, read no further than its size
    (:func:`skood._files.read_input_file`); no fixed cap is imposed, since a model's weights may
    take gigabytes, all of which are read into memory anyway.

    Raises
    ------
    FileNotFoundError
        Nothing exists at the path (an OSError, as are the other errors of opening the file, such
        as PermissionError: a problem with the path, not with a model file's contents).
    ModelFileError
        The path is a directory, a device, a FIFO or a socket, or the file grew while being read.
    """
    if hasattr(file, "read"):  # the caller opened it, and bounds it
        return file.read()
    from skood._files import read_input_file

    try:
        return read_input_file(file, "model file", error=ModelFileError)
    except FileNotFoundError as exc:
        raise FileNotFoundError(errno.ENOENT, "No such model file", os.fspath(file)) from exc


def _open(data: bytes, path: str) -> tuple[zipfile.ZipFile, dict]:
    """The archive and its parsed header, or a ModelFileError that says what the file is."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if data.startswith(_OLD_SIGNED_PICKLE):
            raise ModelFileError(
                f"{path} is a signed pickle written by `skood score --save` before skood 0.3; "
                "skood no longer loads pickles here. Convert it once, on the machine that signed "
                f"it: `skood convert {path} NEW.skood`."
            )
        if data[:1] in (b"\x80", b"(", b"}", b"]"):
            raise ModelFileError(
                f"{path} is a pickle (or joblib file), not a skood model file (.skood, a zip "
                "archive); nothing in it was run. If it is a pickle / joblib model that you "
                f"trust, convert it once with `skood convert {path} NEW.skood --trust-pickle` or, "
                "in Python, skood.save(joblib.load(old), new)."
            )
        raise ModelFileError(
            f"{path} is not a skood model file (.skood, a zip archive); nothing in it was run."
        )
    archive = zipfile.ZipFile(io.BytesIO(data))
    _check_sizes(archive, path)
    names = archive.namelist()
    unexpected = [
        n for n in names if n not in (_JSON, _TENSORS, _ARRAYS) and not n.startswith(_SKOPS)
    ]
    if _JSON not in names or _TENSORS not in names or _ARRAYS not in names or unexpected:
        raise ModelFileError(
            f"{path} is a zip archive but not a skood model file (members {names[:8]})"
        )
    try:
        header = json.loads(archive.read(_JSON))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: its {_JSON} is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise ModelFileError(f"{path} is not a skood model file (no skood format header)")
    unknown = sorted(set(header) - {"format", "format_version", "versions", "root"})
    if unknown:  # nothing reads them: padding, or a newer writer's data this reader would drop
        raise ModelFileError(f"{path}: its {_JSON} has keys no skood writes: {unknown[:5]}")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        versions = header.get("versions")
        written = versions.get("skood") if isinstance(versions, dict) else "an unknown version"
        import skood

        raise ModelFileError(
            f"{path} uses format version {version!r} (written by skood {written}); this skood "
            f"({skood.__version__}) reads format version {FORMAT_VERSION}. Load it with the "
            "skood version that wrote it, or upgrade skood."
        )
    return archive, header


def _warn_versions(saved: dict, path: str) -> None:
    here = _versions()
    changed = [
        f"{lib} {saved.get(lib)} (now {here[lib]})"
        for lib in ("skood", "torch", "sklearn", "skorch")
        if saved.get(lib) != here[lib]
    ]
    if changed:
        warnings.warn(
            f"{path} was written under {', '.join(changed)}. The file's format is read "
            "correctly, but scores may differ slightly across versions; refit or compare a "
            "few scores before relying on them.",
            VersionWarning,
            stacklevel=3,
        )


def _estimators_in(model) -> list:
    """Every scikit-learn estimator in a loaded model: itself, its steps, their fitted parts.

    A skorch net is not entered: it is rebuilt by its constructor from checked parameters.
    """
    from sklearn.base import BaseEstimator
    from skorch import NeuralNet

    found, seen, pending = [], set(), [model]
    while pending:
        obj = pending.pop()
        if id(obj) in seen:  # everything here is alive in the model: no id is reused
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            pending.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            pending.extend(obj)
        elif isinstance(obj, BaseEstimator) and not isinstance(obj, NeuralNet):
            found.append(obj)
            pending.extend(vars(obj).values())
    return found


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _finite(values) -> bool:
    return values.dtype.kind in "iuf" and bool(np.isfinite(values).all())


def _fitted_state_problem(state: dict) -> str | None:
    """What is wrong with the fitted attributes every estimator shares, or None.

    Each is checked where present: ``offset_`` a finite number (a float for skood's estimators, a
    1-element array for scikit-learn's OneClassSVM), ``calibration_scores_`` finite and 1-D, and
    sorted as skood keeps them (a list of such arrays for ConformalDetector's folds or classes,
    unsorted where they stay in row order), ``n_features_in_`` a positive integer, and
    ``feature_names_in_`` that many strings. A model that fails one scores nonsense, or nothing.
    """
    if "offset_" in state:
        offset = state["offset_"]
        is_number = isinstance(offset, (float, np.ndarray, np.floating)) or _is_int(offset)
        offset = np.asarray(offset) if is_number else None
        if offset is None or offset.size != 1 or not _finite(offset):
            return f"has offset_ = {state['offset_']!r:.60}, not a finite number"
    if "calibration_scores_" in state:
        scores = state["calibration_scores_"]
        parts = scores if isinstance(scores, list) else [scores]
        if not all(isinstance(p, np.ndarray) and p.ndim == 1 and _finite(p) for p in parts):
            return "has calibration_scores_ that are not 1-D arrays of finite numbers"
        if isinstance(scores, np.ndarray) and np.any(scores[1:] < scores[:-1]):
            return "has calibration_scores_ out of order (they are kept sorted)"
    n_features = state.get("n_features_in_")
    if "n_features_in_" in state and not (_is_int(n_features) and n_features > 0):
        return f"has n_features_in_ = {n_features!r:.40}, not a positive integer"
    if "feature_names_in_" in state:
        names = state["feature_names_in_"]
        if (
            not isinstance(names, np.ndarray)
            or names.ndim != 1
            or not all(isinstance(n, str) for n in names.tolist())
            or (n_features is not None and names.size != n_features)
        ):
            return f"has feature_names_in_ that are not {n_features} column names"
    return None


def _check_estimators(model, path: str) -> None:
    """Refuse a model whose estimators the file gave invalid parameters or fitted state.

    A hand-edited ``inference_batch_size: -1`` scores no rows and ``offset_ = nan`` flags every
    row, without an error: each skood estimator's parameters are validated as its ``fit``
    validates them (``_parameter_constraints``), and every estimator's shared fitted state
    (``_fitted_state_problem``) is checked.
    """
    for estimator in _estimators_in(model):
        problem = _fitted_state_problem(vars(estimator))
        skood_own = type(estimator).__module__.startswith("skood")
        if problem is None and skood_own and hasattr(estimator, "_parameter_constraints"):
            try:
                estimator._validate_params()
            except (ValueError, TypeError) as exc:  # sklearn's InvalidParameterError is both
                problem = f"has an invalid parameter ({exc})"
        if problem is not None:
            raise ModelFileError(
                f"{path}: its {type(estimator).__name__} {problem}. The file was altered or "
                "damaged; refit the model (nothing in the file was run)."
            )


def load(file, *, device=None, trusted=None):
    """Read a model written by :func:`save`; nothing in the file is executed.

    Parameters
    ----------
    file : str, path-like or binary file object
    device : str, torch.device or None, default=None
        Where tensors go. None puts each where it was saved, or on the CPU when that device is
        not available here (with a warning), as ``torch.load``'s ``map_location``; ``"cpu"`` or
        ``"cuda:0"`` moves everything there (``"auto"``: the GPU if there is one, else the CPU).
        Fitted ``device_`` attributes and skorch nets follow.
    trusted : list of str, class or function, default=None
        Types to rebuild beyond skood's defaults (see :func:`get_untrusted_types`): dotted names,
        imported by name, or the objects themselves, which re-supply a class (say, the torch
        module you passed as ``module=``) without importing anything.

    Returns
    -------
    model : object

    Raises
    ------
    ValueError
        ``device`` is not a torch device, or not one this machine has (checked before the file
        is read).
    FileNotFoundError
        Nothing is at ``file``; other OSErrors of opening it (PermissionError, ...) also pass
        through as they are.
    ModelFileError
        ``file`` is not a regular file (a directory, a device, a FIFO), or not a skood model, is
        truncated or damaged, needs a newer skood, or was altered: it sets an attribute that no
        fitted object of its class has (or code in place of a method), or parameters or fitted
        state that its estimator would never have (``inference_batch_size=-1``, a NaN
        ``offset_``).
    UntrustedTypesError
        The file names classes or functions outside skood's defaults and ``trusted``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skood import GaussianMahalanobis
    >>> from skood.io import load, save
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> model = GaussianMahalanobis().fit(X)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.skood")
    ...     save(model, path)
    ...     loaded = load(path)
    >>> type(loaded).__name__
    'GaussianMahalanobis'
    >>> bool(np.array_equal(loaded.score_samples(X), model.score_samples(X)))
    True
    """
    path = _describe(file)
    trust = _Trust(trusted)
    if device is not None:  # before the file is read: the device is not the file's fault
        device = _device_here(device)
    data = _read(file, path)  # an OSError (no such file, no permission) is not about a model
    try:
        archive, header = _open(data, path)
        untrusted = _untrusted(archive, header, trust, path)
        if untrusted:  # all of them at once, before anything is rebuilt
            raise UntrustedTypesError(untrusted, path)
        reader = _Reader(archive, header, path, trust, device)
        model = reader.node(header.get("root"))
        _check_estimators(model, path)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, RecursionError) as exc:
        raise ModelFileError(
            f"{path} is damaged or truncated ({type(exc).__name__}: {exc}); nothing in it was run"
        ) from exc
    except Exception as exc:  # a well-formed file whose values make no sense (hand-edited)
        raise ModelFileError(
            f"{path} holds values that do not make a valid model ({type(exc).__name__}: {exc}); "
            "nothing in it was run"
        ) from exc
    unused = set(reader.tensors) - reader.used_tensors, set(reader.arrays) - reader.used_arrays
    if unused[0] or unused[1]:
        raise ModelFileError(
            f"{path} holds tensors or arrays that no part of the model uses: "
            f"{sorted(unused[0] | unused[1])[:10]}; the file was altered"
        )
    for estimator in reader.estimators:
        if isinstance(getattr(estimator, "device_", None), str):
            estimator.device_ = reader.target(estimator.device_)
    if reader.fell_back:
        warnings.warn(
            f"{path} holds tensors saved on {sorted(reader.fell_back)}, which this machine does "
            "not have: they were loaded on the CPU. Pass device= to choose.",
            UserWarning,
            stacklevel=2,
        )
    _warn_versions(reader.versions if isinstance(reader.versions, dict) else {}, path)
    return model


def get_untrusted_types(file) -> list[str]:
    """The dotted names in ``file`` that :func:`load` rebuilds only when told to (``trusted=``).

    Review them before trusting them: each is code that loading the file would import.

    Parameters
    ----------
    file : str, path-like or binary file object
        As for :func:`load`.

    Returns
    -------
    names : list of str
        Sorted: exactly the names that make :func:`load` raise :class:`UntrustedTypesError`
        (it reads each node's name where ``load`` does). Trusting them does not vouch for the
        rest of the file, which ``load`` still checks.

    Raises
    ------
    FileNotFoundError, ModelFileError
        As for :func:`load`, when the file cannot be read as a skood model at all.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skood import GaussianMahalanobis
    >>> from skood.io import get_untrusted_types, load, save
    >>> model = GaussianMahalanobis().fit(np.random.default_rng(0).normal(size=(100, 3)))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     plain, extra = os.path.join(folder, "plain.skood"), os.path.join(folder, "extra.skood")
    ...     save(model, plain)
    ...     save({"model": model, "aggregate": np.median}, extra)  # a function is code
    ...     names = get_untrusted_types(plain), get_untrusted_types(extra)
    ...     bundle = load(extra, trusted=names[1])  # without trusted=: UntrustedTypesError
    >>> names
    ([], ['numpy.median'])
    >>> bundle["aggregate"] is np.median
    True
    """

    path = _describe(file)
    archive, header = _open(_read(file, path), path)
    return _untrusted(archive, header, _Trust(None), path)


def _untrusted(archive: zipfile.ZipFile, header: dict, trust: _Trust, path: str) -> list[str]:
    """Every class / function name in the file that ``trust`` does not allow (skops parts too).

    It visits the nodes that :class:`_Reader` would read (``_children``) and reads each node's name
    where the reader does (``_named``), so it lists what :func:`load` would refuse.
    """
    import skops.io

    found: set[str] = set()
    pending = [header.get("root")]
    while pending:  # iterative: a hostile file may nest deeper than Python's recursion limit
        node = pending.pop()
        if not isinstance(node, dict):
            continue
        named = _named(node, path)
        if named is not None and not trust.allows(*named):
            found.add(named[0])
        if node.get("type") == "skops" and node.get("key") in archive.namelist():
            try:
                types = skops.io.get_untrusted_types(data=archive.read(node["key"]))
            except Exception:
                types = []  # a damaged part: reading it reports that
            found.update(t for t in types if t not in trust.strings())
        pending.extend(_children(node))
    return sorted(found)
