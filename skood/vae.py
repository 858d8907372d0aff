"""VAEDetector: a Gaussian variational autoencoder scored by its per-sample ELBO."""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from skood.base import (
    FRACTION_CONSTRAINT,
    WIDTHS_CONSTRAINT,
    BaseDetector,
    check_image_shape,
)
from skood.nn.losses import QuantileNLLLoss
from skood.nn.vae import VAE, conv_depth, conv_vae_networks, mlp_vae_networks
from skood.torch import TORCH_PARAMETER_CONSTRAINTS, TorchEstimatorMixin

__all__ = ["VAEDetector"]


class VAEDetector(TorchEstimatorMixin, BaseDetector):
    """Variational autoencoder whose score is the per-sample evidence lower bound (ELBO).

    Read more in the :ref:`User Guide <paper_rose>`.

    An encoder maps each row to a Gaussian posterior ``q(z | x)``, a decoder maps codes back to
    the mean of a Gaussian ``p(x | z)`` with a learned per-feature scale, and training maximises
    the mean ELBO (one reparameterised draw per row and step). ``score_samples`` is a bound on
    ``log p(x)`` in nats, computed with ``n_mc_samples`` noise draws that are fixed when the
    model is built and shared by every row, so scores are deterministic and do not depend on
    the batch a row is scored in.

    A likelihood model like this one is the classic case where outliers can get *higher*
    likelihood than inliers (blurred, dimmed or simpler inputs); :class:`~skood.ROSEScorer`
    wraps a fitted ``VAEDetector`` to fix that (Choi et al., the ROSE paper's main model).

    Parameters
    ----------
    module : {"auto", "mlp", "conv"} or tuple (encoder, decoder), default="auto"
        ``"auto"`` builds the conv VAE when ``image_shape`` is given (kernel-4 stride-2
        convolutions without bias, as in the ROSE paper), else the MLP. A tuple of two
        ``nn.Module`` (deep-copied) is used as is: the encoder must map ``(n, n_features)`` to
        ``(n, 2 * latent_dim)`` (posterior mean and log-variance), the decoder ``(n,
        latent_dim)`` to ``(n, n_features)``.
    latent_dim : int, default=8
        Size of the code ``z``.
    hidden_sizes : tuple of int, default=(128,)
        Hidden widths of the MLP encoder (the decoder mirrors them).
    image_shape : tuple (C, H, W) or None, default=None
        Shape of one image when rows are flattened images.
    conv_width : int, default=32
        Channels of the first convolution (doubling at each of the others).
    n_mc_samples : int, default=8
        Fixed noise draws of the scoring bound.
    bound : {"elbo", "iwae"}, default="elbo"
        The scoring bound: the ELBO, or the importance-weighted bound over the same draws
        (tighter, ``<= log p(x)`` still).
    min_scale : float, default=1e-3
        Floor of the decoder's per-feature standard deviation: it keeps the likelihood bounded
        when a column is (nearly) constant in the training data.
    max_epochs : int, default=100
    min_steps : int, default=1000
        Epochs are raised until at least this many optimiser steps are taken (small data).
    batch_size : int, default=128
    lr : float, default=1e-3
        Adam learning rate (the ROSE paper's).
    weight_decay : float, default=0.0
    grad_clip : float or None, default=10.0
        Gradient-norm clipping; early VAE steps on unscaled inputs can be large.
    contamination : float in (0, 0.5] or "auto", default=0.1
    validation_fraction : float in [0, 1), default=0.2
        Inlier rows held out of training to set ``offset_``.
    device : str or torch.device, default="auto"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    callbacks : list of skorch callbacks or None, default=None
    inference_batch_size : int, default=4096
    n_threads : int or None, default=1
        Torch CPU threads while fitting (restored afterwards). A fixed count makes the fit
        reproducible whatever ``n_jobs`` a search runs it under, since float32 sums split over
        another number of threads round differently; None keeps torch's current setting.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the :class:`~skood.nn.VAE`, whose
        ``log_prob(x)`` is the scoring bound (what ``ROSEScorer`` differentiates).
    device_ : str
    n_epochs_ : int
        Epochs trained (``max_epochs``, or more to reach ``min_steps``; ``verbose`` says when).
    batch_size_ : int
        Rows per training batch (``batch_size``, at most the training rows).
    offset_ : float
    calibration_scores_ : ndarray of float64
        The sorted scores of the held-out inlier rows ``offset_`` was set from.
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)

    See Also
    --------
    ROSEScorer : Fisher-weighted gradient score on top of a fitted VAEDetector.
    QuantileFlowDetector : An exact-likelihood model (a normalizing flow).

    References
    ----------
    Kingma, D. P., Welling, M. "Auto-Encoding Variational Bayes", ICLR 2014.
    Burda, Y., Grosse, R., Salakhutdinov, R. "Importance Weighted Autoencoders", ICLR 2016.
    Choi, S., Yoon, H., Bae, H., Kang, S. "Robust Out-of-Distribution Detection on Deep
    Probabilistic Generative Models" (the ROSE paper; its conv VAE).

    Examples
    --------
    >>> import numpy as np
    >>> from skood import VAEDetector
    >>> X = np.random.RandomState(0).normal(size=(300, 4))
    >>> det = VAEDetector(latent_dim=2, hidden_sizes=(16,), max_epochs=5, min_steps=200,
    ...                   random_state=0).fit(X)
    >>> det.predict([[0.0, 0.0, 0.0, 0.0], [8.0, 8.0, 8.0, 8.0]])
    array([ 1, -1])
    """

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "module": [StrOptions({"auto", "mlp", "conv"}), tuple],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_sizes": WIDTHS_CONSTRAINT,
        "image_shape": [tuple, None],
        "conv_width": [Interval(Integral, 1, None, closed="left")],
        "n_mc_samples": [Interval(Integral, 1, None, closed="left")],
        "bound": [StrOptions({"elbo", "iwae"})],
        "min_scale": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "grad_clip": [Interval(Real, 0, None, closed="neither"), None],
        "validation_fraction": FRACTION_CONSTRAINT,
        **TORCH_PARAMETER_CONSTRAINTS,
    }

    def __init__(
        self,
        module="auto",
        *,
        latent_dim=8,
        hidden_sizes=(128,),
        image_shape=None,
        conv_width=32,
        n_mc_samples=8,
        bound="elbo",
        min_scale=1e-3,
        max_epochs=100,
        min_steps=1000,
        batch_size=128,
        lr=1e-3,
        weight_decay=0.0,
        grad_clip=10.0,
        contamination=0.1,
        validation_fraction=0.2,
        device="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
        inference_batch_size=4096,
        n_threads=1,
    ):
        self.module = module
        self.latent_dim = latent_dim
        self.hidden_sizes = hidden_sizes
        self.image_shape = image_shape
        self.conv_width = conv_width
        self.n_mc_samples = n_mc_samples
        self.bound = bound
        self.min_scale = min_scale
        self.max_epochs = max_epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.inference_batch_size = inference_batch_size
        self.n_threads = n_threads

    def _networks(self, n_features: int) -> tuple[nn.Module, nn.Module]:
        name = type(self).__name__
        if isinstance(self.module, tuple):
            if len(self.module) != 2 or not all(isinstance(m, nn.Module) for m in self.module):
                raise ValueError(
                    f"{name}: module as a tuple must be two nn.Module instances (encoder, decoder)."
                )
            return copy.deepcopy(self.module)  # jointly: shared submodules stay shared
        check_image_shape(self.image_shape, n_features, name)
        if self.image_shape is not None and len(self.image_shape) != 3:
            raise ValueError(f"{name}: image_shape must be (C, H, W); got {self.image_shape}.")
        conv_ok = self.image_shape is not None and conv_depth(self.image_shape) > 0
        if self.module == "conv" and not conv_ok:
            raise ValueError(
                f"{name}: module='conv' needs image_shape=(C, H, W) with even sides of at least "
                f"4 pixels; got image_shape={self.image_shape}. Use module='mlp'."
            )
        if self.module == "conv" or (self.module == "auto" and conv_ok):
            return conv_vae_networks(self.image_shape, self.latent_dim, self.conv_width)
        return mlp_vae_networks(n_features, self.latent_dim, tuple(self.hidden_sizes))

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """Train the VAE on ``X`` by the negative ELBO (or IWAE bound)."""
        seed = self._start_fit(rng)
        drop_last = self._plan_epochs(X.shape[0])
        with self._training(seed):
            encoder, decoder = self._networks(X.shape[1])
            vae = VAE(
                encoder,
                decoder,
                X.shape[1],
                self.latent_dim,
                n_mc_samples=self.n_mc_samples,
                iwae=self.bound == "iwae",
                min_scale=self.min_scale,
                generator=torch.Generator().manual_seed(seed),
            )
            self.net_ = self._build_net(
                vae,
                QuantileNLLLoss("mean"),
                optimizer_params={"weight_decay": self.weight_decay},
                grad_clip=self.grad_clip,
                drop_last=drop_last,
                valid_data=self._valid_data(X_calibration),
                divergence_advice="Standardise the features, or lower lr, or set grad_clip.",
            )
            self.net_.fit(X, None)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """The scoring bound (ELBO or IWAE) on ``log p(x)``, in nats."""
        return self._predict(self._score_tensor, X, self.net_.module_)

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        """The scoring bound with the fixed noise draws, differentiable in ``X``."""
        return self.net_.module_.log_prob(X)

    def reconstruct(self, X) -> np.ndarray:
        """Decoded posterior means ``dec(mu(x))``, shape ``(n_samples, n_features)``."""
        X = self._check_fitted_and_validate(X, dtype=np.float32)
        vae = self.net_.module_
        return self._predict(lambda xb: vae.decoder(vae.encode(xb)[0]), X, vae)
