"""Images as sklearn transformers: a pretrained torchvision extractor and an image-file reader.

* :class:`TorchvisionFeatures` is a torchvision architecture with weights from a local file
  (torchvision is optional and imported lazily; nothing is downloaded).
* :class:`ImageFiles` reads image files into the flattened pixel rows every skood estimator takes.

They live apart from :mod:`skood.features` because they are the only code that needs torchvision
or Pillow.
"""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from skood.base import check_image_shape, fit_context, warn_user
from skood.features import BaseFeatureExtractor
from skood.torch import find_layer, layer_output, predict_batched, resolve_device

__all__ = ["ImageFiles", "TorchvisionFeatures"]


def _import_torchvision(owner: str):
    """Import torchvision lazily, turning every way it can fail into one clear ImportError."""
    try:
        import torchvision
        import torchvision.models
    except Exception as exc:  # a wheel built for another torch raises RuntimeError, not ImportError
        raise ImportError(
            f"{owner} needs torchvision, which could not be imported ({type(exc).__name__}: "
            f"{exc}). Install the torchvision build that matches your torch "
            f"(torch {torch.__version__}): pip install 'skood[vision]', or pick the matching "
            "version from https://pytorch.org/get-started/locally/."
        ) from exc
    return torchvision


class TorchvisionFeatures(BaseFeatureExtractor):
    """A torchvision architecture with weights from a local file, as a feature extractor.

    Nothing is ever downloaded: the architecture is built with random weights and then loaded
    from ``weights_path``. The model's own preprocessing (resize, centre crop, normalisation)
    comes from torchvision's weights enum named by ``weights``, which carries it as metadata.
    torchvision is an optional dependency (``pip install 'skood[vision]'``), imported in ``fit``.

    Parameters
    ----------
    arch : str, default="resnet18"
        A name from ``torchvision.models.list_models()``.
    weights_path : str, path-like or None, default=None
        A file saved with ``torch.save(model.state_dict(), path)`` (a checkpoint dict with a
        ``"state_dict"`` or ``"model"`` entry also works), loaded with ``weights_only=True``.
        None keeps the random initialisation, with a warning: only useful for testing.
    weights : str, default="DEFAULT"
        Member of the architecture's weights enum (e.g. ``"IMAGENET1K_V1"``) whose preprocessing
        matches the file; only its transforms are used, never its download URL.
    layer : str or None, default="avgpool"
        Submodule whose output is returned (forward hook), flattened to 2-D; None returns the
        model's output (the logits).
    image_shape : tuple (C, H, W), default=(3, 224, 224)
        Shape of the images that arrive flattened in the rows of ``X``: channels first, float
        pixel values in [0, 1] (as ``torchvision.transforms.functional.to_tensor`` makes them).
    preprocess : bool, default=True
        Apply the model's preprocessing to each batch; False when ``X`` is already preprocessed.
    inference_batch_size : int, default=64
    device : str or torch.device, default="auto"

    Attributes
    ----------
    module_ : torch.nn.Module
        The model, in eval mode.
    preprocess_ : callable or None
        The model's preprocessing transform.
    n_features_in_ : int
    feature_names_in_ : ndarray
    device_ : str

    Examples
    --------
    >>> from skood.vision import TorchvisionFeatures
    >>> ext = TorchvisionFeatures("resnet18", weights_path="resnet18.pth")  # doctest: +SKIP
    >>> ext.fit(X).transform(X).shape  # doctest: +SKIP
    (n_images, 512)
    """

    _parameter_constraints: dict = {
        "arch": [str],
        "weights_path": [str, os.PathLike, None],
        "weights": [str],
        "layer": [str, None],
        "image_shape": [tuple],
        "preprocess": ["boolean"],
        "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
    }

    def __init__(
        self,
        arch="resnet18",
        *,
        weights_path=None,
        weights="DEFAULT",
        layer="avgpool",
        image_shape=(3, 224, 224),
        preprocess=True,
        inference_batch_size=64,
        device="auto",
    ):
        self.arch = arch
        self.weights_path = weights_path
        self.weights = weights
        self.layer = layer
        self.image_shape = image_shape
        self.preprocess = preprocess
        self.inference_batch_size = inference_batch_size
        self.device = device

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the architecture, load the weights file and the preprocessing; nothing is trained.

        Parameters
        ----------
        X : array-like of shape (n_samples, C * H * W)
        y : ignored

        Returns
        -------
        self : TorchvisionFeatures
        """
        name = type(self).__name__
        X = self._validate_X(X, reset=True)
        check_image_shape(self.image_shape, X.shape[1], name)
        tv = _import_torchvision(name)
        available = tv.models.list_models()
        if self.arch not in available:
            close = [a for a in available if a.startswith(self.arch[:4])][:8]
            raise ValueError(
                f"{name}: unknown torchvision architecture {self.arch!r}"
                + (f"; did you mean one of {close}?" if close else ".")
            )
        model = tv.models.get_model(self.arch, weights=None)
        if self.weights_path is None:
            warn_user(
                f"{name}: no weights_path, so {self.arch} keeps its random initialisation; "
                "pass a local state_dict file for meaningful features."
            )
        else:
            state = _load_state_dict(self.weights_path, self.arch, name)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise ValueError(
                    f"{name}: the weights in {os.fspath(self.weights_path)!r} do not fit "
                    f"{self.arch}: {exc}"
                ) from exc
        self.preprocess_ = None
        if self.preprocess:
            enum = tv.models.get_model_weights(self.arch)
            try:
                self.preprocess_ = enum[self.weights].transforms()
            except KeyError:
                raise ValueError(
                    f"{name}: {self.arch} has no weights named {self.weights!r}; choose from "
                    f"{list(enum.__members__)}."
                ) from None
        self.device_ = resolve_device(self.device)
        self.module_ = model.to(self.device_).eval()
        if self.layer is not None:
            find_layer(self.module_, self.layer, name)
        self._n_features_out = self._features(X[:1]).shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        """The chosen layer's activations for each image, shape (n_samples, n_features_out).

        Parameters
        ----------
        X : array-like of shape (n_samples, C * H * W)
            Flattened channels-first images with pixel values in [0, 1].

        Returns
        -------
        ndarray of float64
        """
        check_is_fitted(self)
        return self._features(self._validate_X(X, reset=False))

    def _features(self, X: np.ndarray) -> np.ndarray:
        """:meth:`transform` of validated rows; ``fit`` calls this, since a ``transform``
        wrapped by ``set_output(transform="pandas")`` needs ``_n_features_out`` first."""
        if self.preprocess and X.size and (X.min() < 0 or X.max() > 1):
            raise ValueError(
                f"{type(self).__name__}: pixel values must lie in [0, 1] for the model's "
                f"preprocessing, got [{X.min():.3g}, {X.max():.3g}]. Divide 8-bit images by "
                "255, or pass preprocess=False if X is already normalised."
            )
        return predict_batched(
            self._extract, X, batch_size=self.inference_batch_size, module=self.module_
        )

    def _extract(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.image_shape)
        if self.preprocess_ is not None:
            x = self.preprocess_(x)
        layer = None if self.layer is None else dict(self.module_.named_modules())[self.layer]
        return layer_output(layer, self.module_, x)


def _load_state_dict(path, arch: str, owner: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{owner}: weights_path {os.fspath(path)!r} is not a file. skood never downloads "
            "weights: save them once with torch.save(model.state_dict(), path) where the "
            "internet is reachable, and pass that path."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{owner}: {os.fspath(path)!r} holds no state_dict for {arch}.")
    return state


class ImageFiles(TransformerMixin, BaseEstimator):
    """Image files or PIL images -> flattened float32 rows in [0, 1], for image detectors.

    The step that lets a ``Pipeline`` take a list of paths: ``Pipeline([("load",
    ImageFiles(224)), ("clip", CLIPZeroShot(..., image_shape=(3, 224, 224)))])``. Each image
    is converted to ``mode``, resized to ``size x size`` (bicubic) and flattened channel-first,
    so ``image_shape_`` is ``(C, size, size)``. Stateless; Pillow is imported on use.

    Parameters
    ----------
    size : int, default=224
    mode : {"RGB", "L"}, default="RGB"
    """

    _parameter_constraints: dict = {
        "size": [Interval(Integral, 1, None, closed="left")],
        "mode": [StrOptions({"RGB", "L"})],
    }

    def __init__(self, size=224, mode="RGB"):
        self.size = size
        self.mode = mode

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Nothing to learn; sets ``image_shape_``."""
        self.image_shape_ = (3 if self.mode == "RGB" else 1, self.size, self.size)
        return self

    def transform(self, X) -> np.ndarray:
        """Load and flatten; ``X`` is a list of paths or PIL images."""
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - Pillow ships with matplotlib
            raise ImportError("ImageFiles needs Pillow: pip install pillow") from exc
        check_is_fitted(self)
        rows = []
        for item in X:
            if isinstance(item, (str, os.PathLike)):
                if not os.path.isfile(item):
                    raise FileNotFoundError(f"ImageFiles: no image file at {item!r}.")
                with Image.open(item) as img:
                    img = img.convert(self.mode)
            elif isinstance(item, Image.Image):
                img = item.convert(self.mode)
            else:
                raise TypeError(
                    f"ImageFiles takes file paths or PIL images, got {type(item).__name__}; "
                    "flattened arrays go straight to the detector with image_shape=."
                )
            img = img.resize((self.size, self.size), Image.Resampling.BICUBIC)
            arr = np.asarray(img, dtype=np.float32) / 255.0
            rows.append((arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)).ravel())
        return np.stack(rows) if rows else np.empty((0, int(np.prod(self.image_shape_))))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
