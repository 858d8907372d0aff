"""AMADetector: the adversarial mirrored autoencoder and its Gaussian-of-R anomaly score.

Somepalli, Wu, Balaji, Feizi, Goldstein. "Unsupervised Anomaly Detection with Adversarial
Mirrored AutoEncoders", UAI 2021.

The GAN is trained through skorch: :class:`_AMANet` is a ``NeuralNet`` whose
``initialize_optimizer`` creates the three Adams (critic, decoder, encoder, with the paper's
betas) and whose ``train_step`` runs ``n_critic`` critic steps and one encoder + decoder step on
the same minibatch; the losses are :class:`skood.nn.ama.AMALoss`. The estimator composes that net.
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.dataset import unpack_data
from torch import nn

from skood.base import (
    FRACTION_CONSTRAINT,
    WIDTHS_CONSTRAINT,
    BaseDetector,
    check_image_shape,
)
from skood.nn.ama import (
    AMALoss,
    AMAModule,
    ConvCritic,
    ConvDecoder,
    ConvEncoder,
    LeakyMLPEncoder,
    MLPCritic,
    MLPDecoder,
    atypical_negatives,
)
from skood.torch import TORCH_PARAMETER_CONSTRAINTS, TorchEstimatorMixin

__all__ = ["AMADetector"]


class _AMANet(NeuralNet):
    """skorch net for the AMA game: three optimizers, ``n_critic`` critic steps per E+G step.

    ``train_loss`` in the history is the encoder + decoder loss; ``critic_loss`` is recorded per
    batch (its epoch mean as ``critic_loss`` too) and ``n_negatives`` per batch.
    """

    def __init__(
        self,
        module,
        *args,
        n_critic=5,
        neg_direction="inward",
        neg_delta=0.5,
        neg_fraction=0.1,
        neg_weight=5.0,
        neg_warmup_epochs=10,
        **kwargs,
    ):
        super().__init__(module, *args, **kwargs)
        self.n_critic = n_critic
        self.neg_direction = neg_direction
        self.neg_delta = neg_delta
        self.neg_fraction = neg_fraction
        self.neg_weight = neg_weight
        self.neg_warmup_epochs = neg_warmup_epochs

    def initialize_optimizer(self, *args, **kwargs):
        # The paper's Adams: betas (0, 0.9) for the critic and decoder, (0.5, 0.9) for E.
        module = self.module_
        self.optimizer_ = torch.optim.Adam(module.critic.parameters(), self.lr, betas=(0.0, 0.9))
        self.decoder_optimizer_ = torch.optim.Adam(
            module.decoder.parameters(), self.lr, betas=(0.0, 0.9)
        )
        self.encoder_optimizer_ = torch.optim.Adam(
            module.encoder.parameters(), self.lr, betas=(0.5, 0.9)
        )
        return self

    def _batch_with_negatives(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace ``neg_fraction`` of the batch by synthetic negatives once warm-up is over."""
        weights = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
        epoch = len(self.history) - 1  # the current epoch's row is already in the history
        n_neg = round(self.neg_fraction * x.shape[0])
        if self.neg_direction is None or epoch < self.neg_warmup_epochs or n_neg == 0:
            return x, weights
        n_neg = min(n_neg, x.shape[0] - 2)  # keep at least two normal rows
        if n_neg <= 0:
            return x, weights
        negatives = atypical_negatives(self.module_, x, n_neg, self.neg_direction, self.neg_delta)
        x = torch.cat([x[: x.shape[0] - n_neg], negatives])
        weights[-n_neg:] = -self.neg_weight
        return x, weights

    def train_step(self, batch, **fit_params):
        self._set_training(True)
        Xi, _ = unpack_data(batch)
        x = Xi.to(self.device).reshape(Xi.shape[0], -1)
        x, weights = self._batch_with_negatives(x)
        module, loss_fn = self.module_, self.criterion_
        for _ in range(self.n_critic):  # on the same minibatch, as the authors' code does
            self.optimizer_.zero_grad()
            critic_loss = loss_fn.critic_loss(module, x, weights)
            critic_loss.backward()
            self.optimizer_.step()
        self.encoder_optimizer_.zero_grad()
        self.decoder_optimizer_.zero_grad()
        loss = loss_fn.generator_loss(module, x, weights)
        loss.backward()
        self.encoder_optimizer_.step()
        self.decoder_optimizer_.step()
        self.history.record_batch("critic_loss", critic_loss.item())
        self.history.record_batch("n_negatives", int((weights < 0).sum()))
        return {"loss": loss.detach(), "y_pred": None}


class _EpochMeanCriticLoss(Callback):
    def on_epoch_end(self, net, **kwargs):
        values = net.history[-1, "batches", :, "critic_loss"]
        net.history.record("critic_loss", float(np.mean(values)) if values else float("nan"))


class AMADetector(TorchEstimatorMixin, BaseDetector):
    """Adversarial mirrored autoencoder (AMA) with the Gaussian-of-R anomaly score.

    Read more in the :ref:`User Guide <paper_ama>`.

    An encoder E and decoder G are trained, with no pixel loss, against a Wasserstein critic D
    (gradient penalty + spectral normalisation) that sees the mirrored pairs (x, x) as real and
    (x, G(E(x))) as fake, so that each reconstruction must match its own input. Regularisers: the
    latent norm ``lambda_reg ||E(x)||``, simplex interpolation of codes (decoded mixes are fake
    pairs, ``lambda_inter``), and atypical negatives decoded from codes just inside or outside the
    normal ones, weighted ``-lambda_neg`` after a warm-up.

    The score R(x) is the L1 distance between the critic's penultimate features of (x, x) and
    (x, G(E(x))); the paper's score A is the density of R under a Gaussian fitted to the training
    R-scores. A is two-sided: it also flags inputs whose R is unusually *low* (inputs simpler than
    the training data), which R alone ranks as most normal.

    Rows with ``y == -1`` are left out of training (like every unsupervised skood detector).

    Parameters
    ----------
    module : {"auto", "mlp", "conv"}, tuple (E, G, D) or callable, default="auto"
        ``"auto"``: the convolutional networks when ``image_shape`` has sides >= 16 divisible by
        8, else the MLPs. A tuple of three ``nn.Module`` (deep-copied) or a callable
        ``(n_features, image_shape, latent_dim) -> (E, G, D)``; D needs a ``features`` method and
        takes the pair (``2 * n_features`` wide, or ``2C`` channels; ``n_features`` when
        ``mirrored=False``).
    latent_dim : int or "auto", default="auto"
        128 for the conv networks, ``max(2, min(64, n_features // 4))`` for the MLPs.
    hidden_sizes : tuple of int, default=(128, 64)
        MLP widths: E ``n -> 128 -> 64 -> d``, G mirrored, D ``2n -> 128 -> 64 -> 1``.
    image_shape : tuple (C, H, W) or None, default=None
        Rows of ``X`` are flattened images of this shape (pairs stack on the channel axis).
    mirrored : bool, default=True
        False is the "-mirrored" ablation: D sees x (real) or x_hat (fake) alone.
    lambda_inter, lambda_neg, lambda_reg, lambda_gp : float, default=0.5, 5.0, 1.0, 10.0
        Loss weights of eqs. 2-4 and the gradient penalty.
    lambda_rec : float, default=0.0
        Weight of an L1 reconstruction term for E and G. Not in the paper (0 is faithful); a
        stabiliser for small data.
    spectral_norm : bool, default=True
        Spectral normalisation on every critic layer (with the gradient penalty, as the code).
    n_critic : int, default=5
        Critic steps per encoder + decoder step, on the same minibatch.
    n_interp : int, default=3
        Codes mixed per interpolation (k).
    interp_update_generator : bool, default=True
        The paper trains G on interpolations (min over G); False detaches them as the code does.
    neg_direction : {"inward", "outward", "origin"} or None, default="inward"
        Atypical negatives: codes scaled by ``U(1 - neg_delta, 1)`` (inward) or ``U(1, 1 +
        neg_delta)`` (outward); ``"origin"`` is Sipple's ``U(0, min ||E||)^d``; None disables them.
    neg_delta : float, default=0.5
    neg_fraction : float, default=0.1
        Share of each batch replaced by negatives.
    neg_warmup : float, default=0.1
        Fraction of the epochs before negatives start (10 of 100 in the paper).
    lr : float, default=3e-4
    lr_schedule : tuple of float or None, default=(0.3, 0.6, 0.9)
        Fractions of the epochs at which every learning rate is multiplied by 0.1.
    max_epochs : int, default=100
    min_steps : int, default=0
        Epochs are raised until at least this many encoder + decoder steps are taken (0: exactly
        ``max_epochs``, the paper's schedule).
    batch_size : int, default=256
        At least 2 (interpolations mix the codes of a batch).
    ood_score : {"A", "R", "recon"}, default="A"
        ``"A"``: ``log A = -(R - mu)^2 / (2 sigma^2) - log(sigma sqrt(2 pi))`` (ranks like A and
        cannot underflow); ``"R"``: ``-R``; ``"recon"``: ``-mean |x - x_hat|``. Set on a fitted
        model, it changes :meth:`score_samples` at once (no refit); ``predict`` and
        ``decision_function`` then raise until the model is refitted, because ``offset_`` is a
        quantile of the score it was fitted with.
    validation_fraction : float in [0, 1), default=0.0
        Share of the rows held out from training to fit mu, sigma and ``offset_`` (0: the training
        rows, as the paper; training R is biased low when the model overfits).
    contamination : float in (0, 0.5] or "auto", default=0.1
        ``offset_`` is this quantile of the calibration rows' scores.
    device : str, default="auto"
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
        The trained net; ``net_.module_`` is a :class:`skood.nn.AMAModule`. Its history records
        ``train_loss`` (E + G), ``critic_loss`` and ``n_negatives``.
    mu_, sigma_ : float
        The Gaussian fitted to the calibration R-scores.
    offset_ : float
    calibration_scores_ : ndarray of float64
        The sorted scores of the calibration rows (held out, or the training rows when
        ``validation_fraction=0``) that ``offset_`` was set from.
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
    n_epochs_, batch_size_ : int
        Epochs trained (``max_epochs``, or more to reach ``min_steps``) and rows per batch.
    latent_dim_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray
    device_ : str

    Notes
    -----
    The negative term is implemented as the paper writes it, though it reads oddly: the critic
    is pushed to rate (x_n, x_hat_n) above (x_n, x_n) while G lowers D(x_n, x_hat_n). With
    D' = -D that is an ordinary WGAN game, so G still learns to reconstruct the negatives; the gain likely comes from
    the critic's features separating normal inputs from negatives. The conv decoder ends in tanh:
    scale images to [-1, 1] first (``MinMaxScaler((-1, 1))``).

    References
    ----------
    Somepalli et al. "Unsupervised Anomaly Detection with Adversarial Mirrored AutoEncoders",
    UAI 2021; Gulrajani et al. "Improved Training of Wasserstein GANs", NeurIPS 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import AMADetector
    >>> from skood.metrics import auroc
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 4))
    >>> det = AMADetector(hidden_sizes=(16,), n_critic=1, max_epochs=2, random_state=0).fit(X)
    >>> det.latent_dim_, det.n_epochs_
    (2, 2)
    >>> X_test = np.vstack([rng.normal(size=(50, 4)), rng.normal(loc=4.0, size=(50, 4))])
    >>> scores = det.score_samples(X_test)  # log A: the Gaussian log-density of R
    >>> scores.shape, scores.dtype
    ((100,), dtype('float64'))
    >>> bool(auroc(np.r_[np.ones(50), -np.ones(50)], scores) > 0.9)
    True
    >>> det.reconstruct(X_test).shape
    (100, 4)
    """

    _scoring_params = ("ood_score",)

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "module": [StrOptions({"auto", "mlp", "conv"}), tuple, callable],
        "latent_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "hidden_sizes": WIDTHS_CONSTRAINT,
        "image_shape": [tuple, None],
        "mirrored": ["boolean"],
        "lambda_inter": [Interval(Real, 0, None, closed="left")],
        "lambda_neg": [Interval(Real, 0, None, closed="left")],
        "lambda_reg": [Interval(Real, 0, None, closed="left")],
        "lambda_rec": [Interval(Real, 0, None, closed="left")],
        "lambda_gp": [Interval(Real, 0, None, closed="left")],
        "spectral_norm": ["boolean"],
        "n_critic": [Interval(Integral, 1, None, closed="left")],
        "n_interp": [Interval(Integral, 2, None, closed="left")],
        "interp_update_generator": ["boolean"],
        "neg_direction": [StrOptions({"inward", "outward", "origin"}), None],
        "neg_delta": [Interval(Real, 0, 1, closed="neither")],
        "neg_fraction": [Interval(Real, 0, 0.5, closed="left")],
        "neg_warmup": [Interval(Real, 0, 1, closed="left")],
        "lr_schedule": [tuple, list, None],
        "ood_score": [StrOptions({"A", "R", "recon"})],
        "validation_fraction": FRACTION_CONSTRAINT,
        **TORCH_PARAMETER_CONSTRAINTS,
        "batch_size": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(
        self,
        module="auto",
        *,
        latent_dim="auto",
        hidden_sizes=(128, 64),
        image_shape=None,
        mirrored=True,
        lambda_inter=0.5,
        lambda_neg=5.0,
        lambda_reg=1.0,
        lambda_rec=0.0,
        lambda_gp=10.0,
        spectral_norm=True,
        n_critic=5,
        n_interp=3,
        interp_update_generator=True,
        neg_direction="inward",
        neg_delta=0.5,
        neg_fraction=0.1,
        neg_warmup=0.1,
        lr=3e-4,
        lr_schedule=(0.3, 0.6, 0.9),
        max_epochs=100,
        min_steps=0,
        batch_size=256,
        ood_score="A",
        validation_fraction=0.0,
        contamination=0.1,
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
        self.mirrored = mirrored
        self.lambda_inter = lambda_inter
        self.lambda_neg = lambda_neg
        self.lambda_reg = lambda_reg
        self.lambda_rec = lambda_rec
        self.lambda_gp = lambda_gp
        self.spectral_norm = spectral_norm
        self.n_critic = n_critic
        self.n_interp = n_interp
        self.interp_update_generator = interp_update_generator
        self.neg_direction = neg_direction
        self.neg_delta = neg_delta
        self.neg_fraction = neg_fraction
        self.neg_warmup = neg_warmup
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.max_epochs = max_epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.ood_score = ood_score
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.inference_batch_size = inference_batch_size
        self.n_threads = n_threads

    # -- networks --------------------------------------------------------------------------------
    def _use_conv(self, n_features: int) -> bool:
        name = type(self).__name__
        check_image_shape(self.image_shape, n_features, name)
        conv_ok = self.image_shape is not None and all(
            s >= 16 and s % 8 == 0 for s in self.image_shape[1:]
        )
        if self.module == "conv" and not conv_ok:
            raise ValueError(
                f"{name}: module='conv' needs image_shape=(C, H, W) with H and W >= 16 and "
                f"divisible by 8; got image_shape={self.image_shape}. Use module='mlp'."
            )
        return self.module == "conv" or (self.module == "auto" and conv_ok)

    def _networks(self, n_features: int) -> AMAModule:
        conv = isinstance(self.module, str) and self._use_conv(n_features)
        if self.latent_dim == "auto":
            d = 128 if conv else max(2, min(64, n_features // 4))
        else:
            d = int(self.latent_dim)
        self.latent_dim_ = d
        shape = None if self.image_shape is None else tuple(self.image_shape)
        pair_width = 2 * n_features if self.mirrored else n_features
        if isinstance(self.module, tuple):
            if len(self.module) != 3 or not all(isinstance(m, nn.Module) for m in self.module):
                raise ValueError(
                    f"{type(self).__name__}: module as a tuple must be three nn.Module "
                    "instances (encoder, decoder, critic)."
                )
            E, G, D = copy.deepcopy(self.module)
        elif callable(self.module) and not isinstance(self.module, str):
            E, G, D = self.module(n_features, shape, d)
        elif conv:
            c, h, w = shape
            E, G = ConvEncoder(shape, d), ConvDecoder(shape, d)
            D = ConvCritic(2 * c if self.mirrored else c, (h, w), spectral=self.spectral_norm)
        else:
            hidden = tuple(self.hidden_sizes)
            E, G = LeakyMLPEncoder(n_features, hidden, d), MLPDecoder(n_features, hidden, d)
            D = MLPCritic(pair_width, hidden, spectral=self.spectral_norm)
        if not hasattr(D, "features"):
            raise ValueError(
                f"{type(self).__name__}: the critic {type(D).__name__} has no `features` method "
                "(its penultimate activations, which the R-score compares)."
            )
        # Pairs stack on the channel axis for the conv critic and for a user's critic on images.
        user = not isinstance(self.module, str)
        channel_pairs = shape if conv or (user and shape is not None) else None
        return AMAModule(E, G, D, image_shape=channel_pairs, mirrored=self.mirrored)

    # -- fitting ---------------------------------------------------------------------------------
    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """Train the encoder, decoder and critic on ``X`` by the AMA game."""
        seed = self._start_fit(rng)
        # A last batch of one row breaks BatchNorm and the interpolation: "auto" drops it.
        drop_last = self._plan_epochs(X.shape[0])
        callbacks = [
            ("critic_loss", _EpochMeanCriticLoss()),
            *self._lr_schedule(X.shape[0], drop_last, every_optimizer=True),  # E, G and D
        ]
        with self._training(seed):
            self.net_ = self._build_net(
                self._networks(X.shape[1]),
                AMALoss(
                    lambda_inter=self.lambda_inter,
                    lambda_reg=self.lambda_reg,
                    lambda_gp=self.lambda_gp,
                    lambda_rec=self.lambda_rec,
                    n_interp=self.n_interp,
                    interp_update_generator=self.interp_update_generator,
                ),
                callbacks=callbacks,
                drop_last=drop_last,
                divergence_advice="Lower lr, or set lambda_rec=1.0 to stabilise the adversarial "
                "game.",
                net_cls=_AMANet,
                n_critic=self.n_critic,
                neg_direction=self.neg_direction,
                neg_delta=self.neg_delta,
                neg_fraction=self.neg_fraction,
                neg_weight=self.lambda_neg,
                neg_warmup_epochs=round(self.neg_warmup * self.n_epochs_),
            )
            self.net_.fit(X, None)

    def _calibration_scores(self, X: np.ndarray) -> np.ndarray:
        """Fit the Gaussian of R (``mu_``, ``sigma_``) on the calibration rows; score them."""
        r = self._r(X)
        self.mu_ = float(np.mean(r))
        self.sigma_ = float(max(np.std(r), 1e-12))  # scipy.stats.norm.fit's MLE
        return self._score_samples(X, r)

    def _calibration_held_out(self, rows_held_out: bool) -> bool:
        return False  # mu_ and sigma_ are fitted on the calibration rows

    # -- scoring ---------------------------------------------------------------------------------
    def _r(self, X: np.ndarray) -> np.ndarray:
        module = self.net_.module_
        return self._predict(module.r_score, X, module)

    def _score_samples(self, X: np.ndarray, r: np.ndarray | None = None) -> np.ndarray:
        """log A (default), -R or ``-mean |x - x_hat|`` (see ``ood_score``); ``r``: R of X."""
        if self.ood_score == "recon":
            return self._predict(self._score_tensor, X, self.net_.module_)
        return self._score_of_r(self._r(X) if r is None else r)

    def _score_of_r(self, r):
        """The score of R-scores ``r`` (a float64 array, or a tensor): -R, or log A (the
        log-density of the Gaussian of R)."""
        if self.ood_score == "R":
            return -r
        z = (r - self.mu_) / self.sigma_
        return -0.5 * z**2 - math.log(self.sigma_ * math.sqrt(2 * math.pi))

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        """The ``ood_score`` of ``X``, differentiable in ``X`` (R's transform in float32)."""
        module = self.net_.module_
        if self.ood_score == "recon":
            x = X.reshape(X.shape[0], -1)
            return -(x - module(x)).abs().mean(dim=1)
        return self._score_of_r(module.r_score(X))

    def _reconstruct(self, X: np.ndarray) -> np.ndarray:
        module = self.net_.module_
        return self._predict(module, X, module)

    def r_score(self, X) -> np.ndarray:
        """The R-score (eq. 5), higher = more anomalous for R's one-sided use.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        return self._r(self._check_fitted_and_validate(X))

    def reconstruct(self, X) -> np.ndarray:
        """``G(E(x))`` for each row, flattened like ``X`` (eval mode, batched).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples, n_features)
        """
        return self._reconstruct(self._check_fitted_and_validate(X))
