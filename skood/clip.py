"""CLIPZeroShot: zero-shot anomaly score from CLIP image / prompt similarities, fully offline."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from skood.base import BaseDetector, check_image_shape
from skood.torch import predict_batched, resolve_device

__all__ = ["CLIPZeroShot"]

#: OpenAI CLIP's image normalisation (open_clip and transformers use the same constants).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _missing(package: str, extra: str) -> ImportError:
    return ImportError(
        f"This CLIPZeroShot back-end needs {package}, which is not installed: "
        f"pip install '{package}' (or pip install 'skood[{extra}]'). Nothing is downloaded at run "
        "time; weights must already be on disk."
    )


class _Backend:
    """Uniform ``encode_images`` / ``encode_texts`` over open_clip / OpenAI and transformers."""

    def __init__(self, model, tokenizer, kind: str, device: str) -> None:
        if kind == "transformers" and hasattr(tokenizer, "tokenizer"):
            tokenizer = tokenizer.tokenizer  # a CLIPProcessor: its text half
        self.model, self.tokenizer, self.kind, self.device = model, tokenizer, kind, device

    @property
    def image_size(self) -> int | None:
        if self.kind == "transformers":
            return int(self.model.config.vision_config.image_size)
        size = getattr(getattr(self.model, "visual", None), "image_size", None)
        return int(size[0] if isinstance(size, (tuple, list)) else size) if size else None

    @staticmethod
    def _tensor(out) -> torch.Tensor:
        # transformers >= 5 returns a model output whose pooler_output is the projected embedding
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.kind == "transformers":
            return self._tensor(self.model.get_image_features(pixel_values=pixels))
        return self.model.encode_image(pixels)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if self.kind == "transformers":
            tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
            return self._tensor(self.model.get_text_features(**tokens))
        tokens = self.tokenizer(texts)
        return self.model.encode_text(tokens.to(self.device))


def _load_backend(encoder, tokenizer, checkpoint, device: str) -> _Backend:
    """Build the back-end; never downloads (local files only)."""
    if isinstance(encoder, (str, os.PathLike)):
        if os.path.isdir(encoder):  # a transformers CLIP directory saved with save_pretrained
            try:
                from transformers import AutoTokenizer, CLIPModel
            except ImportError as exc:
                raise _missing("transformers", "clip") from exc
            model = CLIPModel.from_pretrained(encoder, local_files_only=True)
            tok = tokenizer or AutoTokenizer.from_pretrained(encoder, local_files_only=True)
            return _Backend(model.to(device).eval(), tok, "transformers", device)
        if checkpoint is None or not os.path.isfile(checkpoint):
            raise ValueError(
                f"CLIPZeroShot: encoder={encoder!r} is neither a local transformers directory nor "
                "an open_clip architecture with checkpoint= a local weights file "
                f"(got checkpoint={checkpoint!r}). Nothing can be downloaded here."
            )
        try:
            import open_clip
        except Exception as exc:  # not installed, or its torchvision import fails
            raise _missing("open_clip_torch", "clip") from exc
        model = open_clip.create_model(str(encoder), pretrained=str(checkpoint), device=device)
        tok = tokenizer or open_clip.get_tokenizer(str(encoder))
        return _Backend(model.eval(), tok, "open_clip", device)
    if hasattr(encoder, "get_image_features") and hasattr(encoder, "get_text_features"):
        kind = "transformers"
    elif hasattr(encoder, "encode_image") and hasattr(encoder, "encode_text"):
        kind = "open_clip"
    else:
        raise TypeError(
            f"CLIPZeroShot: encoder {type(encoder).__name__} is not a CLIP model: it needs "
            "encode_image / encode_text (open_clip, OpenAI CLIP) or get_image_features / "
            "get_text_features (transformers CLIPModel). Or pass precomputed=True with "
            "image embeddings as X and text_embeddings."
        )
    if tokenizer is None:
        raise ValueError("CLIPZeroShot: a model object needs its tokenizer= (or processor).")
    return _Backend(encoder.to(device).eval(), tokenizer, kind, device)


def _as_list(prompts) -> list[str]:
    """One prompt or a list of them (an ensemble), as a list."""
    return [prompts] if isinstance(prompts, str) else list(prompts)


def _l2(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """Rows of ``x`` scaled to unit norm; a row of zeros has no direction and is an error.

    Each row is first divided by its largest magnitude, so rows of 1e-300 or 1e300 normalise
    without their squares under- or overflowing.
    """
    peak = np.max(np.abs(x), axis=-1, keepdims=True)
    zero = np.flatnonzero(~(peak > 0))
    if zero.size:
        raise ValueError(
            f"CLIPZeroShot: {zero.size} of the {what} have zero norm (the first is row "
            f"{zero[0]}): an all-zero embedding has no direction to compare with the prompts. "
            "Check what produced them (a blank input, a broken encoder)."
        )
    x = x / peak
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class CLIPZeroShot(BaseDetector):
    """Zero-shot anomaly detection with CLIP: is the image "a photo of a {normal class}"?

    Read more in the :ref:`User Guide <paper_clip>`.

    The prompts "a photo of a {c}" for each normal class ``c`` and the anomaly prompt "a photo
    of something" are encoded once; an image's L2-normalised embedding ``f`` is compared with
    the L2-normalised prompt embeddings ``t_k`` through a softmax with the fixed scale 100::

        score_samples(x) = log P(normal | x)
                         = logsumexp_k<K(100 f.t_k) - logsumexp_k<=K(100 f.t_k)

    (Liznerski et al., Eq. 4). No training data is needed: ``fit`` trains nothing, it encodes
    the prompts into ``text_features_``. ``contamination="auto"`` puts the boundary at
    ``P(normal) = 0.5`` (``offset_ = log 0.5``).

    Back-ends, none of which downloads anything:

    * an open_clip (or OpenAI CLIP) model with ``encode_image`` / ``encode_text`` and its
      ``tokenizer``; or ``encoder="ViT-B-32", checkpoint="/path/to/weights.pt"`` (open_clip
      loads the local file);
    * a transformers ``CLIPModel`` with its tokenizer / processor, or ``encoder=`` a local
      directory written by ``save_pretrained`` (loaded with ``local_files_only=True``);
    * ``precomputed=True``: ``X`` holds image embeddings and ``text_embeddings`` the prompt
      embeddings, ordered ``[normal prompts..., anomaly prompt]``.

    Images arrive as flattened rows with ``image_shape=(C, H, W)`` and values in [0, 1]; they
    are resized to the model's input size and normalised with CLIP's mean / std (or passed
    through ``preprocess``). :class:`skood.vision.ImageFiles` turns file paths or PIL images
    into such rows inside a ``Pipeline``.

    Parameters
    ----------
    class_names : list of str or None, default=None
        The normal classes, one prompt each (the paper's one-vs-rest uses one; leave-one-out
        uses all but one). Required unless ``precomputed``.
    encoder : model, str, path or None, default=None
        See the back-ends above.
    tokenizer : callable or None, default=None
        open_clip: ``tokenizer(list_of_str) -> LongTensor``; transformers: a tokenizer or
        processor called as ``tokenizer(texts, padding=True, return_tensors="pt")``.
    checkpoint : str, path or None, default=None
        Local open_clip weights when ``encoder`` is an architecture name.
    prompt_template : str or list of str, default="a photo of a {}"
        Kept verbatim, "a" even before vowels, as in the paper's code. A list is a prompt
        ensemble: each class embedding is the normalised mean of its normalised template
        embeddings (Radford et al.).
    anomaly_prompt : str or list of str, default="a photo of something"
        A list is averaged the same way.
    logit_scale : float, default=100.0
        Fixed, as in the paper; not the model's learned scale.
    precomputed : bool, default=False
    text_embeddings : array-like of shape (n_prompts, n_features) or None, default=None
        With ``precomputed``: the normal prompts' embeddings, then the anomaly prompt's.
    image_shape : tuple (C, H, W) or None, default=None
        Required with a model back-end. C is 3, or 1 (repeated to 3 channels).
    preprocess : callable or None, default=None
        ``preprocess(images) -> pixel batch`` on a float tensor ``(n, C, H, W)``; replaces the
        default resize + normalisation.
    inference_batch_size : int, default=64
        Images per forward pass.
    device : str, default="cpu"
    contamination : "auto" or float in (0, 0.5], default="auto"
        A float sets ``offset_`` to that quantile of the scores of the rows given to ``fit``
        (rows with ``y == -1`` left out).

    Attributes
    ----------
    text_features_ : ndarray of shape (n_prompts, embed_dim)
        L2-normalised prompt embeddings, anomaly prompt last.
    prompts_ : list
        The prompt text (a list of templates for an ensemble) behind each row.
    offset_ : float
    calibration_scores_ : ndarray of float64
        The sorted scores of the rows given to ``fit`` (``y == -1`` left out).
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
    device_ : str
        The device the encoder runs on (``device`` resolved).
    n_features_in_ : int

    References
    ----------
    Liznerski, P., Ruff, L., Vandermeulen, R. A., Franks, B. J., Müller, K.-R., Kloft, M.
    "Exposing Outlier Exposure: What Can Be Learned From Few, One, and Zero Outlier Images",
    TMLR 2022.
    Radford, A. et al. "Learning Transferable Visual Models From Natural Language Supervision",
    ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import CLIPZeroShot
    >>> text = np.array([[1.0, 0.0], [0.0, 1.0]])  # "a photo of a cat", "a photo of something"
    >>> det = CLIPZeroShot(precomputed=True, text_embeddings=text).fit(np.eye(2))
    >>> det.predict([[0.9, 0.1], [0.1, 0.9]])
    array([ 1, -1])
    """

    #: P(normal) = 0.5: the normal prompts and the anomaly prompt are equally likely.
    _natural_offset = math.log(0.5)

    @property
    def _scoring_params(self) -> tuple[str, ...]:
        # images go through image_shape and preprocess; precomputed embeddings do not
        reads = ("logit_scale", "precomputed")
        return reads if self.precomputed else (*reads, "image_shape", "preprocess")

    # skood.save stores the text embeddings, not the CLIP model: its weights belong to open_clip
    # or transformers, and it is reloaded from `encoder` (a local directory or an architecture
    # with checkpoint=) at the first score after loading.
    __skood_not_saved__ = ("backend_",)

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "class_names": [list, tuple, None],
        "encoder": "no_validation",
        "tokenizer": [callable, None],
        "checkpoint": [str, os.PathLike, None],
        "prompt_template": [str, list, tuple],
        "anomaly_prompt": [str, list, tuple],
        "logit_scale": [Interval(Real, 0, None, closed="neither")],
        "precomputed": ["boolean"],
        "text_embeddings": ["array-like", None],
        "image_shape": [tuple, None],
        "preprocess": [callable, None],
        "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
    }

    def __init__(
        self,
        class_names=None,
        *,
        encoder=None,
        tokenizer=None,
        checkpoint=None,
        prompt_template="a photo of a {}",
        anomaly_prompt="a photo of something",
        logit_scale=100.0,
        precomputed=False,
        text_embeddings=None,
        image_shape=None,
        preprocess=None,
        inference_batch_size=64,
        device="cpu",
        contamination="auto",
    ):
        self.class_names = class_names
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.prompt_template = prompt_template
        self.anomaly_prompt = anomaly_prompt
        self.logit_scale = logit_scale
        self.precomputed = precomputed
        self.text_embeddings = text_embeddings
        self.image_shape = image_shape
        self.preprocess = preprocess
        self.inference_batch_size = inference_batch_size
        self.device = device
        self.contamination = contamination

    # -- fitting ---------------------------------------------------------------------------------
    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """Encode the prompts (nothing is trained on ``X``: its width is checked)."""
        self.device_ = resolve_device(self.device)
        if self.precomputed:
            self._fit_precomputed(X.shape[1])
        else:
            self._fit_encoder(X.shape[1])

    def _calibration_held_out(self, rows_held_out: bool) -> bool:
        return True  # nothing is fitted to X

    def _fit_precomputed(self, n_features: int) -> None:
        name = type(self).__name__
        if self.text_embeddings is None:
            raise ValueError(
                f"{name}(precomputed=True) needs text_embeddings: the prompt embeddings, normal "
                "prompts first and the anomaly prompt last, shape (n_prompts, embed_dim)."
            )
        text = np.asarray(self.text_embeddings, dtype=np.float64)
        if text.ndim != 2 or text.shape[0] < 2 or not np.all(np.isfinite(text)):
            raise ValueError(
                f"{name}: text_embeddings must be a finite 2-D array with at least 2 rows (one "
                f"normal prompt and the anomaly prompt); got shape {text.shape}."
            )
        if text.shape[1] != n_features:
            raise ValueError(
                f"{name}: the text embeddings have width {text.shape[1]} but X has {n_features} "
                "feature(s); X must hold image embeddings from the same CLIP model."
            )
        if self.class_names is not None and len(self.class_names) != text.shape[0] - 1:
            raise ValueError(
                f"{name}: {len(self.class_names)} class_names but {text.shape[0] - 1} normal "
                "prompt embeddings (text_embeddings has the anomaly prompt as its last row)."
            )
        self.text_features_ = _l2(text, "text embeddings")
        self.prompts_ = [*(self.class_names or [None] * (text.shape[0] - 1)), self.anomaly_prompt]
        self.backend_ = None

    def _templates(self) -> list[str]:
        templates = _as_list(self.prompt_template)
        bad = [t for t in templates if "{}" not in t]
        if not templates or bad:
            raise ValueError(
                f"CLIPZeroShot: every prompt_template needs a '{{}}' for the class name; got {bad}."
            )
        return templates

    def _fit_encoder(self, n_features: int) -> None:
        name = type(self).__name__
        if not self.class_names or not all(isinstance(c, str) for c in self.class_names):
            raise ValueError(
                f"{name}: class_names must be a non-empty list of the normal class names "
                f"(strings); got {self.class_names!r}."
            )
        if self.encoder is None:
            raise ValueError(
                f"{name}: pass encoder= (an open_clip / transformers CLIP model, a local "
                "transformers directory, or an open_clip architecture with checkpoint=), or "
                "precomputed=True with text_embeddings."
            )
        if (
            self.image_shape is None
            or len(self.image_shape) != 3
            or self.image_shape[0]
            not in (
                1,
                3,
            )
        ):
            raise ValueError(
                f"{name}: image_shape=(C, H, W) with C in (1, 3) is needed to read flattened "
                f"images; got {self.image_shape!r}."
            )
        check_image_shape(self.image_shape, n_features, name)
        self.backend_ = _load_backend(self.encoder, self.tokenizer, self.checkpoint, self.device_)
        templates = self._templates()
        anomaly = _as_list(self.anomaly_prompt)
        groups = [[t.format(c) for t in templates] for c in self.class_names] + [anomaly]
        with torch.inference_mode():
            flat = [p for g in groups for p in g]
            emb = self.backend_.encode_texts(flat).to(torch.float64).cpu().numpy()
        emb, rows, start = _l2(emb), [], 0
        for g in groups:  # a prompt ensemble: the normalised mean of the normalised embeddings
            rows.append(emb[start : start + len(g)].mean(axis=0))
            start += len(g)
        self.text_features_ = _l2(np.stack(rows))
        self.prompts_ = [g[0] if len(g) == 1 else g for g in groups]

    # -- scoring ---------------------------------------------------------------------------------
    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            return self.preprocess(images)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        size = self.backend_.image_size
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            images = torch.nn.functional.interpolate(
                images, size=(size, size), mode="bicubic", align_corners=False
            )
        mean = images.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = images.new_tensor(CLIP_STD).view(1, 3, 1, 1)
        return (images - mean) / std

    def image_features(self, X) -> np.ndarray:
        """L2-normalised image embeddings of ``X``, shape ``(n_samples, embed_dim)``.

        With a model back-end this is the batched forward pass (eval mode, no autograd), which
        can be stored and scored later with ``precomputed=True``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._image_features(X)

    def __skood_check_saveable__(self) -> None:
        """skood.save's check: the encoder must be reloadable from a name or a path."""
        for name in ("encoder", "tokenizer", "preprocess"):
            value = getattr(self, name)
            if (
                not self.precomputed
                and value is not None
                and not isinstance(value, (str, os.PathLike))
            ):
                raise TypeError(
                    f"CLIPZeroShot: {name}= is a {type(value).__name__} object, which a .skood "
                    "file does not hold (its weights belong to open_clip / transformers). Save a "
                    "model whose encoder= is a local transformers directory or an open_clip "
                    "architecture with checkpoint=, or use precomputed=True with the text "
                    "embeddings (the image_features method computes the image ones)."
                )

    def _image_features(self, X: np.ndarray) -> np.ndarray:
        if self.precomputed:
            return _l2(X.astype(np.float64), "image embeddings")
        if getattr(self, "backend_", None) is None:  # loaded by skood.load: reload the encoder
            self.backend_ = _load_backend(
                self.encoder, self.tokenizer, self.checkpoint, self.device_
            )

        def encode(xb: torch.Tensor) -> torch.Tensor:
            return self.backend_.encode_images(self._pixels(xb.view(-1, *self.image_shape)))

        feats = predict_batched(
            encode, X, batch_size=self.inference_batch_size, module=self.backend_.model
        )
        return _l2(feats, "image embeddings")

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """``log P(normal | x)``: the softmax mass of the normal prompts, in log space."""
        logits = self.logit_scale * self._image_features(X) @ self.text_features_.T
        return logsumexp(logits[:, :-1], axis=1) - logsumexp(logits, axis=1)

    def predict_proba_normal(self, X) -> np.ndarray:
        """``P(normal | x)`` in [0, 1]."""
        return np.exp(self.score_samples(X))
