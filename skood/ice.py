"""ICE: a classifier whose Gaussian head and loss let it detect OOD inputs without losing accuracy.

Wu, Jiang, Liu, Chen, Wang, Chen. "Towards In-Distribution Compatible Out-of-Distribution
Detection", AAAI 2023.

:class:`ICEClassifier` trains a backbone and a classification head on labelled inliers plus
auxiliary outliers (the rows with ``y == -1``), every batch holding ``batch_size`` inliers and
``outlier_batch_ratio`` times as many outliers cycled from the auxiliary set. The paper's method
is the tied-covariance Gaussian head with the ICE loss; its baselines (plain cross-entropy, OE,
energy OE on a linear head) are the same estimator with other ``head`` / ``loss``, so comparisons
share the data, batching, network and optimiser.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, column_or_1d
from skorch.callbacks import Callback
from torch import nn

from skood.base import (
    FRACTION_CONSTRAINT,
    GATE_CONTAMINATION_CONSTRAINT,
    WIDTHS_CONSTRAINT,
    LogitClassifierMixin,
    check_class_labels,
    check_image_shape,
    is_outlier_label,
    warn_user,
)
from skood.nn.heads import GaussianHead
from skood.nn.losses import ClassifierOELoss, ICELoss
from skood.nn.networks import BackboneClassifier, FeaturesOf, LeNetEncoder, MLPEncoder
from skood.torch import (
    TORCH_PARAMETER_CONSTRAINTS,
    OutlierExposureBatches,
    OutlierExposureCollate,
    TorchEstimatorMixin,
    make_module,
)

__all__ = ["ICEClassifier"]

_ICE_LOSSES = ("ice", "ice_ood_only")
_OE_LOSSES = ("ice", "ice_ood_only", "oe", "energy")  # the losses that use the -1 rows


class _LogDetCovariance(Callback):
    """Record ``log det(LL^T)`` each epoch.

    The ICE loss is invariant to a joint rescaling of the features and of ``LL^T`` only up to its
    outlier term; a covariance that grows without bound (the features spreading out to push
    outliers away) shows here first.
    """

    def on_epoch_end(self, net, **kwargs):
        head = net.module_.head
        if isinstance(head, GaussianHead):
            with torch.no_grad():
                logdet = 2.0 * torch.log(head.cholesky.diagonal()).sum().item()
            net.history.record("log_det_cov", logdet)


class ICEClassifier(TorchEstimatorMixin, LogitClassifierMixin, ClassifierMixin, BaseEstimator):
    """A classifier trained with in-distribution-compatible outlier exposure (ICE).

    Read more in the :ref:`User Guide <paper_ice>`.

    The network is ``head(backbone(x))``. With the default Gaussian head the logits are
    ``h_i(z) = -(z - m_i)^T (LL^T)^{-1} (z - m_i) <= 0`` for trainable class centres ``m_i`` and a
    lower-triangular ``L`` with positive diagonal (a tied-covariance Mahalanobis / LDA layer), and
    the loss is

        CE(h, y) + ood_weight * (E_in[-h_y] + E_out[-log(1 - exp(max_i h_i))])

    on inliers (own centre pulled in) and auxiliary outliers (nearest centre pushed away). The
    input is in-distribution to the degree ``exp(max_i h_i)`` in (0, 1].

    Auxiliary outliers are the rows of ``X`` with ``y == -1``; every other label is a class. Each
    training batch holds ``batch_size`` inliers and ``outlier_batch_ratio * batch_size`` outliers
    (1:2 in the paper), the outlier set being cycled in a fresh random order each time it runs
    out; an epoch is one pass over the inliers.

    Parameters
    ----------
    head : {"gaussian", "linear"}, default="gaussian"
        ICE's Gaussian head, or the ordinary linear layer of the baselines.
    loss : {"ice", "ice_ood_only", "ce", "oe", "energy"}, default="ice"
        ``"ice"``: the paper's objective (Gaussian head only). ``"ice_ood_only"``: without the
        in-distribution term, the paper's ICE^- ablation. ``"ce"``: plain cross-entropy (auxiliary
        outliers unused). ``"oe"``: cross-entropy of the outliers' softmax to uniform (Hendrycks
        et al., 2019). ``"energy"``: energy OE with the squared-hinge margins of Liu et al. (2020),
        not the margin-free form the ICE paper writes (see ``energy_margins``). Liu et al.
        fine-tune with it; from scratch its inlier hinge (``logsumexp >= 25``) dominates early
        training: on digits 15 epochs leave 0.38 accuracy, 60 epochs 0.93 (fine-tune instead,
        or train longer).
    ood_weight : float >= 0, default=0.5
        λ, the weight of the outlier-exposure terms. The paper does not report its value; 0.5 is
        the weight of OE (Hendrycks et al., 2019). Liu et al. use 0.1 for energy OE.
    energy_margins : tuple (m_in, m_out), default=(-25.0, -7.0)
        Energy OE's margins (Liu et al.'s CIFAR-10 values).
    ood_score : {"auto", "max_logit", "msp", "energy"}, default="auto"
        What :meth:`score_samples` returns: ``"max_logit"``, ``max_i h_i`` (ICE's score, the log
        of ``exp(max h)``); ``"msp"``, the log of the maximum softmax probability; ``"energy"``,
        ``logsumexp`` of the logits (minus the free energy). ``"auto"`` is ``"max_logit"`` for the
        Gaussian head, ``"energy"`` for ``loss="energy"`` and ``"msp"`` otherwise: each method's
        own score in the paper. Set on a fitted model, it changes :meth:`score_samples` at once;
        the rejecting outputs (``predict_open_set``, ``predict_outlier``) then raise until the
        model is refitted, because ``offset_`` was set on the fitted score.
    module : torch.nn.Module, callable or None, default=None
        The backbone x -> z: an instance (deep-copied) or a factory called as
        ``module(n_features)``. None builds an MLP (``hidden_sizes`` -> ``feature_dim``), or a
        LeNet-style CNN when ``image_shape`` is given.
    fine_tune : fitted ClassifierFeatures, torch.nn.Module or None, default=None
        Start from a trained classifier instead of from scratch (the paper's fine-tuning
        protocol, with e.g. ``max_epochs=10, lr=0.01``). A fitted :class:`skood.ClassifierFeatures`
        (trained on the same classes) gives its feature map (its ``layer`` or ``features``)
        as the network's own head reads it, after the activation: fine-tuning continues that
        classifier, whatever the ClassifierFeatures's ``pre_activation`` (which only chooses
        what it hands a detector). An ``nn.Module`` with a ``features`` method gives that; any
        other module is taken as the backbone itself. A linear head starts from the network's
        ``head`` when it is an ``nn.Linear`` of the right size; the Gaussian head from the data
        (``center_init="auto"``). Overrides ``module``.
    image_shape : tuple (C, H, W) or None, default=None
        Rows of ``X`` are flattened images of this shape; the default backbone is then a CNN.
    hidden_sizes : tuple of int, default=(256, 128)
        Hidden widths of the default MLP (on digits: 64 -> 256 -> 128 -> 32).
    feature_dim : int, default=32
        Width of the features z that the head sees.
    outlier_batch_ratio : float >= 0, default=2.0
        Outlier rows per inlier row in each batch.
    batch_size : int, default=128
        Inlier rows per batch.
    max_epochs : int, default=100
        Passes over the inliers.
    min_steps : int, default=0
        Epochs are raised until at least this many optimiser steps are taken (0: exactly
        ``max_epochs``).
    optimizer : {"adam", "sgd"}, default="adam"
        Adam (skood's CPU protocol), or SGD with Nesterov momentum (OE's and the paper's
        WRN protocol: ``optimizer="sgd", lr=0.1, weight_decay=5e-4, lr_schedule="cosine"``).
        Measured on digits with the default MLP, that protocol diverges to NaN for any lr >= 0.03
        (the squared-distance logits give large gradients without the WRN's BatchNorm), so it is
        not the default; lr 0.01 trains (a diverged fit raises a clear error, never NaN scores).
    lr : float, default=1e-3
    momentum : float, default=0.9
        SGD only.
    weight_decay : float, default=0.0
        Applied to every parameter, the head's included.
    lr_schedule : "cosine", tuple of float or None, default=None
        Cosine annealing over all steps, or fractions of the epochs at which the learning rate
        is multiplied by 0.1 (``(0.5, 0.75)``: at 50 % and 75 %).
    center_init : {"auto", "random", "data"}, default="auto"
        Gaussian head initialisation: ``"random"``, standard-normal centres and ``L = I``;
        ``"data"``, the class means of the initial features and the Cholesky factor of their
        shrunk pooled covariance. ``"auto"`` is ``"data"`` when fine-tuning, else ``"random"``.
    diag_eps : float, default=1e-4
        Floor of L's diagonal.
    ood_eps : float, default=1e-6
        ``max h`` is capped at ``-ood_eps`` in the outlier term, so an outlier on a centre gives a
        large, finite loss.
    contamination : float in [0, 1) or "auto", default=0.05
        Sets ``offset_``: the ``contamination``-quantile of the calibration inliers' scores, so
        that :meth:`predict_outlier` rejects that fraction of them (0.05 is the TPR-95 operating
        point); ``"auto"`` is 0.1.
    validation_fraction : float in [0, 1), default=0.0
        Inliers held out (per class) from training to calibrate ``offset_``. With 0 the
        training inliers calibrate it, which accepts somewhat more new inliers than
        ``1 - contamination``.
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
    classes_ : ndarray of shape (n_classes,)
        The inlier classes (never ``-1``).
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is a :class:`skood.nn.BackboneClassifier`.
    module_ : torch.nn.Module
        ``net_.module_``.
    history_ : skorch.History
        ``net_.history``; with the Gaussian head it records ``log_det_cov``, ``log det(LL^T)``,
        each epoch.
    means_ : ndarray of shape (n_classes, feature_dim)
        Class centres m_i (Gaussian head only).
    cholesky_ : ndarray of shape (feature_dim, feature_dim)
        L (Gaussian head only).
    covariance_ : ndarray of shape (feature_dim, feature_dim)
        ``LL^T`` (Gaussian head only).
    offset_ : float
        :meth:`predict_outlier` rejects rows whose score is below it.
    calibration_scores_ : ndarray of float64
        The sorted scores of the calibration inliers ``offset_`` was set from.
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
    n_epochs_, batch_size_ : int
        Epochs trained (``max_epochs``, or more to reach ``min_steps``; ``verbose`` says when)
        and inlier rows per batch (``batch_size``, at most the training rows).
    n_outlier_exposure_ : int
        Auxiliary-outlier rows used in training.
    n_features_in_ : int
    feature_names_in_ : ndarray
    device_ : str

    Notes
    -----
    ``predict`` is the closed-set class, as sklearn's classifier contract requires (it passes
    sklearn's checks and scorers); :meth:`predict_open_set` returns ``-1`` for inputs whose score
    is below ``offset_``. The method names are those of :class:`skood.OpenSetClassifier`, whose
    ``predict`` is open-set instead.

    Without ``-1`` rows a warning is raised and the outlier term drops out: the Gaussian head is
    then trained by cross-entropy plus the in-distribution pull.

    References
    ----------
    Wu et al. "Towards In-Distribution Compatible Out-of-Distribution Detection", AAAI 2023.
    Hendrycks, Mazeika, Dietterich. "Deep Anomaly Detection with Outlier Exposure", ICLR 2019.
    Liu, Wang, Owens, Li. "Energy-based Out-of-distribution Detection", NeurIPS 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import ICEClassifier
    >>> from skood.datasets import load_digits_ood
    >>> X, y = load_digits_ood(inlier_classes=range(5))  # y == -1 for digits 5-9
    >>> X = X / 16.0
    >>> aux = np.isin(y, -1) & (np.arange(len(y)) % 2 == 0)  # half the outliers as auxiliary
    >>> keep = (y != -1) | aux
    >>> clf = ICEClassifier(max_epochs=20, random_state=0).fit(X[keep], y[keep])
    >>> sorted(set(clf.predict_open_set(X).tolist()))
    [-1, 0, 1, 2, 3, 4]
    """

    @property
    def _scoring_params(self) -> tuple[str, ...]:
        # ood_score="auto" picks the score from the head and, for the linear head, from the loss
        if self.ood_score != "auto":
            return ("ood_score",)
        return ("ood_score", "head") if self.head == "gaussian" else ("ood_score", "head", "loss")

    _parameter_constraints: dict = {
        "head": [StrOptions({"gaussian", "linear"})],
        "loss": [StrOptions({"ice", "ice_ood_only", "ce", "oe", "energy"})],
        "ood_weight": [Interval(Real, 0, None, closed="left")],
        "energy_margins": [tuple, list],
        "ood_score": [StrOptions({"auto", "max_logit", "msp", "energy"})],
        "module": [nn.Module, callable, None],
        "fine_tune": [HasMethods(["transform_with_logits"]), nn.Module, None],
        "image_shape": [tuple, None],
        "hidden_sizes": WIDTHS_CONSTRAINT,
        "feature_dim": [Interval(Integral, 1, None, closed="left")],
        "outlier_batch_ratio": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions({"sgd", "adam"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_schedule": [StrOptions({"cosine"}), tuple, list, None],
        "center_init": [StrOptions({"auto", "random", "data"})],
        "diag_eps": [Interval(Real, 0, None, closed="neither")],
        "ood_eps": [Interval(Real, 0, None, closed="neither")],
        "contamination": GATE_CONTAMINATION_CONSTRAINT,
        "validation_fraction": FRACTION_CONSTRAINT,
        **TORCH_PARAMETER_CONSTRAINTS,
    }

    def __init__(
        self,
        head="gaussian",
        loss="ice",
        *,
        ood_weight=0.5,
        energy_margins=(-25.0, -7.0),
        ood_score="auto",
        module=None,
        fine_tune=None,
        image_shape=None,
        hidden_sizes=(256, 128),
        feature_dim=32,
        outlier_batch_ratio=2.0,
        batch_size=128,
        max_epochs=100,
        min_steps=0,
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,
        weight_decay=0.0,
        lr_schedule=None,
        center_init="auto",
        diag_eps=1e-4,
        ood_eps=1e-6,
        contamination=0.05,
        validation_fraction=0.0,
        device="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
        inference_batch_size=4096,
        n_threads=1,
    ):
        self.head = head
        self.loss = loss
        self.ood_weight = ood_weight
        self.energy_margins = energy_margins
        self.ood_score = ood_score
        self.module = module
        self.fine_tune = fine_tune
        self.image_shape = image_shape
        self.hidden_sizes = hidden_sizes
        self.feature_dim = feature_dim
        self.outlier_batch_ratio = outlier_batch_ratio
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.min_steps = min_steps
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.center_init = center_init
        self.diag_eps = diag_eps
        self.ood_eps = ood_eps
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.inference_batch_size = inference_batch_size
        self.n_threads = n_threads

    # -- building the network ------------------------------------------------------------------
    def _backbone(self, n_features: int) -> tuple[nn.Module, nn.Module | None]:
        """(backbone, pretrained linear head or None) from ``fine_tune``, ``module`` or defaults."""
        name = type(self).__name__
        if self.fine_tune is not None:
            source, layer = self.fine_tune, None
            if not isinstance(source, nn.Module):  # a fitted ClassifierFeatures
                check_is_fitted(source)
                if not np.array_equal(np.asarray(source.classes_), self.classes_):
                    raise ValueError(
                        f"{name}: fine_tune was trained on classes {list(source.classes_)}, but "
                        f"y's inlier classes are {list(self.classes_)}; fine-tune on the same "
                        "classes."
                    )
                layer = getattr(source, "layer", None)
                source = source.module_
            network = copy.deepcopy(source).to("cpu")
            head = getattr(network, "head", None)
            if layer is not None or hasattr(network, "features"):
                return FeaturesOf(network, layer), head if isinstance(head, nn.Linear) else None
            return network, None

        def default() -> nn.Module:
            if self.image_shape is not None:
                check_image_shape(self.image_shape, n_features, name)
                return LeNetEncoder(self.image_shape, feature_dim=self.feature_dim)
            return MLPEncoder(n_features, tuple(self.hidden_sizes), self.feature_dim)

        return make_module(self.module, default, n_features), None

    def _build_module(self, X_train: np.ndarray, codes: np.ndarray) -> BackboneClassifier:
        n_classes = self.classes_.size
        backbone, pretrained_head = self._backbone(X_train.shape[1])
        init = self.center_init
        from_data = self.head == "gaussian" and (
            init == "data" or (init == "auto" and self.fine_tune is not None)
        )
        # Only a data-based initialisation needs every training row's features; otherwise two
        # rows give the width (and materialise lazy layers).
        z = self._initial_features(backbone, X_train if from_data else X_train[:2])
        if self.head == "linear":
            head = nn.Linear(z.shape[1], n_classes)
            if pretrained_head is not None and pretrained_head.weight.shape == head.weight.shape:
                head = pretrained_head
        else:
            head = GaussianHead(z.shape[1], n_classes, diag_eps=self.diag_eps)
            if from_data:
                head.init_from_data(z, torch.as_tensor(codes))
        return BackboneClassifier(backbone, head)

    def _initial_features(self, backbone: nn.Module, X: np.ndarray) -> torch.Tensor:
        """The untrained (or pretrained) backbone's features of ``X``; also sizes lazy layers."""

        def features(x):
            z = backbone(x)
            return z.reshape(z.shape[0], -1)

        if not any(True for _ in backbone.parameters()):
            raise ValueError(f"{type(self).__name__}: the backbone module has no parameters.")
        with torch.no_grad():  # materialise lazy layers outside inference mode, so they train
            backbone.eval()(torch.from_numpy(X[:2]))
        z = self._predict(features, X, backbone)
        backbone.train()
        return torch.as_tensor(z, dtype=torch.float32)

    def _criterion(self) -> nn.Module:
        if self.loss in _ICE_LOSSES:
            return ICELoss(self.ood_weight, self.ood_eps, id_term=self.loss == "ice")
        margins = tuple(float(m) for m in self.energy_margins)
        return ClassifierOELoss(self.loss, self.ood_weight, margins)

    # -- fitting -------------------------------------------------------------------------------
    def _validate_training_data(self, X, y):
        """Class labels are required; the loss must suit the head."""
        X = self._validate_X(X, reset=True, dtype=np.float32)
        _, _, self.classes_ = check_class_labels(y, X.shape[0], type(self).__name__)
        if self.head == "linear" and self.loss in _ICE_LOSSES:
            raise ValueError(
                f"{type(self).__name__}: loss={self.loss!r} needs head='gaussian' (its outlier "
                "term is -log(1 - exp(max h)), which requires logits h <= 0); the linear-head "
                "baselines are loss='ce', 'oe' or 'energy'."
            )
        return X, column_or_1d(y)

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """Train on the inlier rows (with their classes) and the auxiliary outliers (-1)."""
        outlier = is_outlier_label(y)
        X_train, codes = X[~outlier], np.searchsorted(self.classes_, y[~outlier])
        X_out = X[outlier] if self.loss in _OE_LOSSES else X[:0]  # plain CE leaves them out
        if self.loss in _OE_LOSSES and X_out.shape[0] == 0:
            warn_user(
                f"{type(self).__name__} got no auxiliary-outlier rows (y == -1), so "
                f"loss={self.loss!r} trains without its outlier-exposure term (for the Gaussian "
                "head: cross-entropy plus the in-distribution pull). Mark auxiliary outliers "
                "with -1 in y."
            )
        seed = self._start_fit(rng)
        self.n_outlier_exposure_ = int(X_out.shape[0])
        # Batches that carry outlier rows never hold a single row.
        drop_last = self._plan_epochs(X_train.shape[0], "auto" if X_out.shape[0] == 0 else False)
        with self._training(seed):
            module = self._build_module(X_train, codes)
            self.net_ = self._build_net(
                module.train(),
                self._criterion(),
                callbacks=[
                    *self._lr_schedule(X_train.shape[0], drop_last),
                    ("log_det_cov", _LogDetCovariance()),
                ],
                optimizer=torch.optim.SGD if self.optimizer == "sgd" else torch.optim.Adam,
                optimizer_params=self._optimizer_params(),
                drop_last=drop_last,
                divergence_advice="Lower lr, or use optimizer='adam' (with SGD, lr >= 0.03 "
                "diverges on digits with the Gaussian head).",
                iterator_train__collate_fn=OutlierExposureCollate(),
            )
            self.net_.fit(
                OutlierExposureBatches(
                    X_train, codes, X_out, ratio=self.outlier_batch_ratio, replace=False
                ),
                None,
            )
        if isinstance(self.module_.head, GaussianHead):
            head = self.module_.head
            with torch.no_grad():
                L = head.cholesky.detach().to("cpu", torch.float64)
                self.means_ = head.means.detach().to("cpu", torch.float64).numpy()
            self.cholesky_ = L.numpy()
            self.covariance_ = (L @ L.T).numpy()

    def _optimizer_params(self) -> dict:
        params = {"weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            params.update(momentum=self.momentum, nesterov=self.momentum > 0)
        return params

    # -- fitted views --------------------------------------------------------------------------
    @property
    def module_(self) -> nn.Module:
        """The trained network, ``net_.module_``."""
        return self.net_.module_

    @property
    def history_(self):
        """The training history, ``net_.history``."""
        return self.net_.history

    # -- inference -----------------------------------------------------------------------------
    def _logits(self, X: np.ndarray) -> np.ndarray:
        """Logits of validated ``X`` as float64 (n, n_classes), batched, eval mode."""
        module = self.module_
        return self._predict(module, X, module).reshape(X.shape[0], self.classes_.size)

    @property
    def _score_kind(self) -> str:
        if self.ood_score != "auto":
            return self.ood_score
        if self.head == "gaussian":
            return "max_logit"
        return "energy" if self.loss == "energy" else "msp"

    def _score_samples(self, X: np.ndarray, *, return_logits: bool = False):
        """The ``ood_score`` of validated rows (and their logits, from the same pass)."""
        logits = self._logits(X)
        scores = self._score_of_logits(torch.from_numpy(logits)).numpy()  # float64
        return (scores, logits) if return_logits else scores

    def _score_of_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The ``ood_score`` of each row of ``logits`` (n, n_classes), in their dtype."""
        kind = self._score_kind
        if kind == "max_logit":
            return logits.max(dim=1).values
        if kind == "msp":  # log of the maximum softmax probability
            return logits.max(dim=1).values - torch.logsumexp(logits, dim=1)
        return torch.logsumexp(logits, dim=1)

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        """The ``ood_score`` of ``X``'s logits (float32), differentiable in ``X``."""
        return self._score_of_logits(self.module_(X).reshape(X.shape[0], self.classes_.size))

    def score_samples(self, X) -> np.ndarray:
        """In-distribution score, higher = more like the inlier classes (see ``ood_score``).

        For ICE, ``max_i h_i`` (<= 0): the log of the paper's ``exp(max h)``, which ranks the
        same without float32 underflow or ties.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        return super().score_samples(X)

    def in_distribution_proba(self, X) -> np.ndarray:
        """``exp(score_samples(X))`` in (0, 1]: ICE's ``exp(max h)``, or the MSP.

        Only defined where the score is a log-probability: ``ood_score`` ``"max_logit"`` with the
        Gaussian head, or ``"msp"``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        check_is_fitted(self)
        kind = self._score_kind
        if kind == "energy" or (kind == "max_logit" and self.head != "gaussian"):
            raise ValueError(
                f"in_distribution_proba needs a score that is a log-probability; "
                f"ood_score={kind!r} with head={self.head!r} is not one. Use head='gaussian' or "
                "ood_score='msp'."
            )
        return np.exp(self.score_samples(X))

    def predict(self, X) -> np.ndarray:
        """The class with the largest logit (the nearest centre for the Gaussian head).

        sklearn's classifier contract: never rejects (:meth:`predict_open_set` does).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.predict_closed_set(X)

    def score(self, X, y, sample_weight=None) -> float:
        """Classification accuracy on the rows of ``y`` that are not ``-1``.

        Auxiliary-outlier rows have no class to predict, so they are left out (detection is
        measured by :mod:`skood.metrics` on :meth:`score_samples`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,) or None, default=None

        Returns
        -------
        float
        """
        y = np.asarray(y)
        keep = ~is_outlier_label(y)
        if not keep.any():
            raise ValueError(
                "score is the accuracy on inlier rows, but every row of y is -1; use "
                "skood.metrics on score_samples to measure detection."
            )
        X = _safe_indexing(X, np.flatnonzero(keep))
        weights = None if sample_weight is None else np.asarray(sample_weight)[keep]
        return super().score(X, y[keep], sample_weight=weights)
