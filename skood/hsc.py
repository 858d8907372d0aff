"""The hypersphere classifier and the outlier-exposure methods it is compared with.

Liznerski, Ruff, Vandermeulen, Franks, Müller, Kloft. "Exposing Outlier Exposure: What Can Be
Learned From Few, One, and Zero Outlier Images", TMLR 2022.

One implementation of batching and training serves all four estimators; they differ only in the
loss (:class:`skood.nn.losses.OutlierExposureLoss`), the score and the decision boundary:

* :class:`HSCDetector`: the hypersphere classifier, ``score = -h(phi(x)) = log P(normal)``.
* :class:`OEClassifier`: a binary normal-vs-OE classifier, BCE or focal loss, ``score = -logit``.
* :class:`DeepSADDetector`: Deep SAD with centre 0, ``score = -||phi(x)||^2``.
* :class:`DeepSVDDDetector`: Deep SVDD (no OE), ``score = -||phi(x) - c||^2``.

Outlier exposure (OE) arrives in ``fit(X, y)`` as the rows with ``y == -1`` (any other label,
+1 or a class, marks a normal row: skood's convention), so a ``Pipeline`` transforms them and a
CV splitter splits them. Every training batch holds ``batch_size`` normal rows plus as many OE
rows drawn from the OE pool with replacement, so even a single OE sample fills half of every
batch (what the paper measured); an epoch is one pass over the normal rows.
"""

from __future__ import annotations

import inspect
import math
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
    is_outlier_label,
    warn_user,
)
from skood.nn.losses import OutlierExposureLoss, radial
from skood.nn.networks import LeNetEncoder, MLPEncoder, OENetwork
from skood.torch import (
    TORCH_PARAMETER_CONSTRAINTS,
    OutlierExposureBatches,
    OutlierExposureCollate,
    TorchEstimatorMixin,
    make_module,
)

__all__ = ["DeepSADDetector", "DeepSVDDDetector", "HSCDetector", "OEClassifier"]


class _OutlierExposureDetector(TorchEstimatorMixin, BaseDetector):
    """What the four estimators share: label handling, the network, batching, training, scoring.

    Subclasses set ``_loss_kind`` (the :class:`OutlierExposureLoss` kind), ``_natural_offset``
    (the score at P(normal) = 0.5, or None where the method has no such boundary) and
    ``_needs_oe`` / ``_uses_oe``, and may override :meth:`_loss`, :meth:`_bias`,
    :meth:`_prepare` and :meth:`_score_output`.
    """

    _loss_kind: str = "hsc"
    _needs_oe: bool = False
    _uses_oe: bool = True

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        **TORCH_PARAMETER_CONSTRAINTS,
        "module": [nn.Module, callable, None],
        "image_shape": [tuple, None],
        "hidden_sizes": WIDTHS_CONSTRAINT,
        "feature_dim": [Interval(Integral, 1, None, closed="left"), None],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_schedule": [StrOptions({"cosine"}), tuple, list, None],
        "augment": [callable, None],
        "validation_fraction": FRACTION_CONSTRAINT,
    }

    def __init__(
        self,
        *,
        module=None,
        image_shape=None,
        hidden_sizes=(128, 64),
        feature_dim=None,
        batch_size=128,
        max_epochs=50,
        min_steps=1000,
        lr=1e-3,
        weight_decay=0.0,
        lr_schedule=None,
        augment=None,
        contamination="auto",
        validation_fraction=0.1,
        device="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
        inference_batch_size=4096,
        n_threads=1,
    ):
        self.module = module
        self.image_shape = image_shape
        self.hidden_sizes = hidden_sizes
        self.feature_dim = feature_dim
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.min_steps = min_steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.augment = augment
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.inference_batch_size = inference_batch_size
        self.n_threads = n_threads

    # -- pieces subclasses change ----------------------------------------------------------------
    def _loss(self) -> OutlierExposureLoss:
        return OutlierExposureLoss(self._loss_kind)

    def _bias(self, has_oe: bool) -> bool:
        """Whether the default network has biases (without OE they allow a collapsed solution)."""
        return has_oe

    def _prepare(self, module: OENetwork, X_train: np.ndarray) -> None:
        """Hook run on the initialised network before training (Deep SVDD sets its centre)."""

    def _score_output(self, out: torch.Tensor) -> torch.Tensor:
        return -out.reshape(out.shape[0], -1).pow(2).sum(dim=1)

    # -- fitting ---------------------------------------------------------------------------------
    _trains_on_outliers = True  # rows labelled -1 are the outlier-exposure set
    _min_train_rows = 1

    def _validate_training_data(self, X, y):
        """Refuse a fit that lacks the OE rows it needs; warn when there are none.

        Class labels are accepted as normal rows, so one ``y`` serves a Pipeline whose feature
        extractor trains a classifier; the 0 / 1 convention of the authors' code (1 = OE) gets
        the base class's warning (:func:`skood.base.warn_if_anomaly_labels`).
        """
        X, y = super()._validate_training_data(X, y)
        name = type(self).__name__
        is_oe = np.zeros(X.shape[0], dtype=bool) if y is None else is_outlier_label(y)
        if self._needs_oe and not is_oe.any():
            raise ValueError(
                f"{name} is a normal-vs-outlier classifier and needs outlier-exposure rows "
                "(y == -1) to train; for a one-class fit use HSCDetector or DeepSVDDDetector."
            )
        self._warn_about_oe(int(is_oe.sum()))
        return X, y

    def _network(self, n_features: int, bias: bool) -> nn.Module:
        def default() -> nn.Module:
            if self.image_shape is not None:
                check_image_shape(self.image_shape, n_features, type(self).__name__)
                return LeNetEncoder(self.image_shape, feature_dim=self.feature_dim, bias=bias)
            return MLPEncoder(n_features, self.hidden_sizes, self.feature_dim or 32, bias=bias)

        return make_module(self.module, default, n_features)

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """Train the network on the normal rows of ``X`` and its OE rows (``y == -1``)."""
        is_oe = np.zeros(X.shape[0], dtype=bool) if y is None else is_outlier_label(y)
        X_normal, X_oe = X[~is_oe], X[is_oe] if self._uses_oe else X[:0]
        seed = self._start_fit(rng)
        self.n_outlier_exposure_ = int(X_oe.shape[0])
        # Batches that carry OE rows never hold a single row.
        drop_last = self._plan_epochs(X_normal.shape[0], "auto" if X_oe.shape[0] == 0 else False)
        with self._training(seed):
            module = OENetwork(
                self._network(X.shape[1], self._bias(X_oe.shape[0] > 0)),
                logit_head=self._loss_kind in {"bce", "focal"},
            )
            with torch.no_grad():  # materialise lazy layers before the optimiser sees them
                module.eval()(torch.from_numpy(X_normal[:2]))
            self._prepare(module, X_normal)
            self.net_ = self._build_net(
                module.train(),
                self._loss(),
                callbacks=self._lr_schedule(X_normal.shape[0], drop_last),
                optimizer=torch.optim.Adam,
                optimizer_params={"weight_decay": self.weight_decay},
                drop_last=drop_last,
                iterator_train__collate_fn=OutlierExposureCollate(self.augment),
            )
            self.net_.fit(
                OutlierExposureBatches(X_normal, None, X_oe, ratio=1.0, replace=True), None
            )

    def _warn_about_oe(self, n_oe: int) -> None:
        if n_oe == 0 and not self._needs_oe:
            warn_user(
                f"{type(self).__name__} got no outlier-exposure rows (y == -1): it reduces to "
                "Deep SVDD with centre 0, which can collapse to a constant map; the default "
                "network is kept bias-free for that reason."
            )

    # -- scoring ---------------------------------------------------------------------------------
    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """Higher = more normal (see each estimator for what the score is)."""
        return self._predict(self._score_tensor, X, self.net_.module_)

    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        """The score of each estimator (:meth:`_score_output` of phi(x)), differentiable in X."""
        return self._score_output(self.net_.module_(X))


# -- what the four classes share ----------------------------------------------------------------
#: The parameters every class of this module has (``_OutlierExposureDetector.__init__``), as
#: their docstrings describe them: each docstring holds ``%(shared_parameters)s`` in its place.
_SHARED_PARAMETERS = """\
    module : torch.nn.Module, callable or None, default=None
        The representation network phi: an instance (deep-copied) or a factory called as
        ``module(n_features)``. None builds an MLP (``hidden_sizes`` -> ``feature_dim``), or the
        paper's LeNet-style CNN when ``image_shape`` is given.
    image_shape : tuple (C, H, W) or None, default=None
        Rows of ``X`` are flattened images of this shape (the default network is then a CNN).
    hidden_sizes : tuple of int, default=(128, 64)
        Hidden widths of the default MLP.
    feature_dim : int or None, default=None
        Output width of phi: 32 for the MLP and grey images, 256 for colour images (the paper's).
    batch_size : int, default=128
        Normal rows per batch; as many outlier-exposure rows are added.
    max_epochs : int, default=50
        Passes over the normal rows (raised to reach ``min_steps``).
    min_steps : int, default=1000
        Fewest optimiser steps: with 90 normal rows an epoch is a single batch, and 50 epochs
        left HSC at AUROC 0.871 with one OE sample on digits against 0.947 with 500 steps
        (:doc:`outlier-exposure size </evidence/oe_size>`). The paper's runs take thousands of
        steps. 0 disables it.
    lr : float, default=1e-3
        Adam's learning rate.
    weight_decay : float, default=0.0
    lr_schedule : tuple of float, "cosine" or None, default=None
        None keeps ``lr`` constant; fractions of the epochs at which it is multiplied by 0.1
        (``(0.5, 0.75)``); ``"cosine"`` anneals it to 0 over all steps.
    augment : callable or None, default=None
        Applied to every training batch tensor (normal and OE rows alike), e.g. noise or flips;
        it must be picklable for the fitted estimator to pickle.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Sets ``offset_``. A float: that quantile of the scores of held-out normal rows.
    validation_fraction : float in [0, 1), default=0.1
        Share of the normal rows held out to calibrate a quantile offset (never used when the
        offset is the method's natural boundary).
    device : str or torch.device, default="auto"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    callbacks : list of skorch callbacks or None, default=None
    inference_batch_size : int, default=4096
    n_threads : int or None, default=1
        Torch CPU threads while fitting (restored afterwards). A fixed count makes the fit
        reproducible whatever ``n_jobs`` a search runs it under, since float32 sums split over
        another number of threads round differently; None keeps torch's current setting.
"""

#: The fitted attributes every class of this module has, likewise (``%(shared_attributes)s``).
_SHARED_ATTRIBUTES = """\
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is an :class:`skood.nn.OENetwork`.
    offset_ : float
    calibration_scores_ : ndarray of float64
        The sorted scores ``offset_`` was set from: held-out normal rows, or the training rows
        when the offset is the natural boundary.
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
    n_outlier_exposure_ : int
        Number of outlier-exposure rows seen in ``fit``.
    n_epochs_ : int
        Epochs trained (``max_epochs``, or more to reach ``min_steps``).
    batch_size_ : int
        Normal rows per training batch (``batch_size``, at most the training rows).
    n_features_in_ : int
    feature_names_in_ : ndarray
    device_ : str
"""


def _with_shared_parameters(init):
    """Give ``init`` (the class's own parameters, then ``**shared``) a signature that lists the
    shared ones too, as keyword-only parameters with their defaults: sklearn's ``get_params``,
    ``clone`` and ``repr`` read parameters from the signature, and ``**shared`` hides them."""
    own = inspect.signature(init).parameters.values()
    shared = list(inspect.signature(_OutlierExposureDetector.__init__).parameters.values())[1:]
    init.__signature__ = inspect.Signature(
        [p for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD] + shared
    )
    return init


def _with_shared_docs(cls):
    """Put the shared parameter and attribute blocks into ``cls``'s docstring."""
    cls.__doc__ = cls.__doc__.replace("    %(shared_parameters)s\n", _SHARED_PARAMETERS).replace(
        "    %(shared_attributes)s\n", _SHARED_ATTRIBUTES
    )
    return cls


@_with_shared_docs
class HSCDetector(_OutlierExposureDetector):
    """Hypersphere classifier (HSC): normal rows near the origin of phi's space, OE away.

    Read more in the :ref:`User Guide <paper_hsc>`.

    Loss per row: ``h(phi(x))`` for normal rows and ``-log(1 - exp(-h(phi(x))))`` for
    outlier-exposure rows (``y == -1``), i.e. cross-entropy with ``P(normal) = exp(-h)``.
    ``score_samples`` is ``-h(phi(x)) = log P(normal)``; ``contamination="auto"`` puts the boundary
    at P(normal) = 0.5 (``offset_ = -ln 2``). Without OE rows it is Deep SVDD with centre 0: a
    warning is raised and the default network is bias-free.

    Parameters
    ----------
    radial : {"pseudo_huber", "squared", "l2", "l1"}, default="pseudo_huber"
        The radial function h; pseudo-Huber ``sqrt(||z||^2 + 1) - 1`` is the paper's best.
        The score reads it: set on a fitted model, it rescores, and ``predict`` refuses until
        the model is fitted again.
    %(shared_parameters)s

    Attributes
    ----------
    %(shared_attributes)s

    References
    ----------
    Liznerski et al. "Exposing Outlier Exposure: What Can Be Learned From Few, One, and Zero
    Outlier Images", TMLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import HSCDetector
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(200, 2)), [[6.0, 6.0]]])  # one OE sample
    >>> y = np.r_[np.ones(200), -1]
    >>> det = HSCDetector(random_state=0).fit(X, y)
    >>> det.predict([[0.0, 0.0], [5.0, 5.0]])  # towards the OE sample: rejected
    array([ 1, -1])
    """

    _loss_kind = "hsc"
    _natural_offset = -math.log(2.0)
    _scoring_params = ("radial",)  # the score is -h(phi(x)), with h the radial function
    _parameter_constraints: dict = {
        **_OutlierExposureDetector._parameter_constraints,
        "radial": [StrOptions({"pseudo_huber", "squared", "l2", "l1"})],
    }

    @_with_shared_parameters
    def __init__(self, radial="pseudo_huber", **shared):
        super().__init__(**shared)
        self.radial = radial

    def _loss(self):
        return OutlierExposureLoss("hsc", radial=self.radial)

    def _score_output(self, out):
        return -radial(out, self.radial)


@_with_shared_docs
class OEClassifier(_OutlierExposureDetector):
    """Binary normal-vs-outlier-exposure classifier: the paper's "supervised OE" baseline.

    Read more in the :ref:`User Guide <paper_hsc>`.

    ``phi(x) -> Linear(feature_dim, 1)`` gives a logit for "anomalous"; trained with binary
    cross-entropy (``loss="bce"``) or the focal loss (``loss="focal"``, Lin et al. 2017) on batches
    of normal rows and as many OE rows (``y == -1``), which it requires. ``score_samples`` is
    ``-logit`` (the log-odds of normal); ``contamination="auto"`` puts the boundary at
    P(normal) = 0.5 (``offset_ = 0``).

    Parameters
    ----------
    loss : {"bce", "focal"}, default="bce"
    gamma : float, default=2.0
        Focal loss focusing parameter (``gamma=0`` is BCE).
    alpha : float, default=0.5
        Focal loss weight; with balanced batches it only scales the loss.
    %(shared_parameters)s

    Attributes
    ----------
    %(shared_attributes)s

    References
    ----------
    Liznerski et al., TMLR 2022; Hendrycks et al. "Deep Anomaly Detection with Outlier
    Exposure", ICLR 2019; Lin et al. "Focal Loss for Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import OEClassifier
    >>> from skood.metrics import auroc
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(200, 4)), rng.normal(loc=4.0, size=(20, 4))])
    >>> y = np.r_[np.ones(200), -np.ones(20)]  # the last 20 rows are outlier exposure
    >>> clf = OEClassifier(max_epochs=2, min_steps=0, random_state=0).fit(X, y)
    >>> clf.n_outlier_exposure_, clf.offset_  # the boundary is P(normal) = 0.5
    (20, 0.0)
    >>> X_test = np.vstack([rng.normal(size=(50, 4)), rng.normal(loc=4.0, size=(50, 4))])
    >>> scores = clf.score_samples(X_test)
    >>> scores.shape, scores.dtype
    ((100,), dtype('float64'))
    >>> bool(auroc(np.r_[np.ones(50), -np.ones(50)], scores) > 0.9)
    True
    """

    _natural_offset = 0.0
    _needs_oe = True
    _parameter_constraints: dict = {
        **_OutlierExposureDetector._parameter_constraints,
        "loss": [StrOptions({"bce", "focal"})],
        "gamma": [Interval(Real, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="neither")],
    }

    @_with_shared_parameters
    def __init__(self, loss="bce", *, gamma=2.0, alpha=0.5, **shared):
        super().__init__(**shared)
        self.loss = loss
        self.gamma = gamma
        self.alpha = alpha

    @property
    def _loss_kind(self):  # the loss decides; both have the logit head
        return self.loss

    def _bias(self, has_oe):
        return True

    def _loss(self):
        return OutlierExposureLoss(self.loss, gamma=self.gamma, alpha=self.alpha)

    def _score_output(self, out):
        return -out.reshape(-1)


@_with_shared_docs
class DeepSADDetector(_OutlierExposureDetector):
    """Deep SAD (Ruff et al., 2020) with centre 0, the authors' setting in the OE paper.

    Read more in the :ref:`User Guide <paper_hsc>`.

    Loss per row: ``||phi(x)||^2`` for normal rows and ``eta / (||phi(x)||^2 + 1e-9)`` for
    outlier-exposure rows (``y == -1``). ``score_samples`` is ``-||phi(x)||^2``. The method has no
    probabilistic boundary, so ``contamination="auto"`` is the 10 % quantile of held-out normal
    scores. Without OE rows it is Deep SVDD with centre 0 (a warning; bias-free network).

    Parameters
    ----------
    eta : float, default=1.0
        Weight of the outlier-exposure term.
    %(shared_parameters)s

    Attributes
    ----------
    %(shared_attributes)s

    References
    ----------
    Ruff et al. "Deep Semi-Supervised Anomaly Detection", ICLR 2020; Liznerski et al., TMLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import DeepSADDetector
    >>> from skood.metrics import auroc
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(200, 4)), rng.normal(loc=4.0, size=(20, 4))])
    >>> y = np.r_[np.ones(200), -np.ones(20)]  # the last 20 rows are outlier exposure
    >>> det = DeepSADDetector(max_epochs=2, min_steps=0, random_state=0).fit(X, y)
    >>> det.n_outlier_exposure_
    20
    >>> X_test = np.vstack([rng.normal(size=(50, 4)), rng.normal(loc=4.0, size=(50, 4))])
    >>> scores = det.score_samples(X_test)  # -||phi(x)||^2
    >>> scores.shape, bool((scores <= 0).all())
    ((100,), True)
    >>> bool(auroc(np.r_[np.ones(50), -np.ones(50)], scores) > 0.9)
    True
    """

    _loss_kind = "sad"
    _parameter_constraints: dict = {
        **_OutlierExposureDetector._parameter_constraints,
        "eta": [Interval(Real, 0, None, closed="neither")],
    }

    @_with_shared_parameters
    def __init__(self, eta=1.0, **shared):
        super().__init__(**shared)
        self.eta = eta

    def _loss(self):
        return OutlierExposureLoss("sad", eta=self.eta)


@_with_shared_docs
class DeepSVDDDetector(_OutlierExposureDetector):
    """Deep SVDD (Ruff et al., 2018): the one-class baseline, no outlier exposure.

    Read more in the :ref:`User Guide <paper_hsc>`.

    The loss is ``||phi(x) - c||^2`` over normal rows, with the centre ``c`` the mean of the
    initial network's outputs on the training rows (coordinates with ``|c_j| < center_eps`` moved
    to ``+-center_eps``, as in the authors' code) and a bias-free network, which rules out the
    trivial constant solution. Rows with ``y == -1`` are ignored (with a warning).
    ``score_samples`` is ``-||phi(x) - c||^2``; ``contamination="auto"`` is the 10 % quantile of
    held-out normal scores.

    Parameters
    ----------
    center_eps : float, default=0.1
    %(shared_parameters)s

    Attributes
    ----------
    %(shared_attributes)s

    center_ : ndarray of shape (feature_dim,)
        The centre c.

    References
    ----------
    Ruff et al. "Deep One-Class Classification", ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import DeepSVDDDetector
    >>> from skood.metrics import auroc
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 4))  # normal rows only: Deep SVDD takes no outlier exposure
    >>> det = DeepSVDDDetector(max_epochs=2, min_steps=0, random_state=0).fit(X)
    >>> det.center_.shape  # the default MLP's 32 output features
    (32,)
    >>> X_test = np.vstack([rng.normal(size=(50, 4)), rng.normal(loc=4.0, size=(50, 4))])
    >>> scores = det.score_samples(X_test)  # -||phi(x) - c||^2
    >>> scores.shape, scores.dtype
    ((100,), dtype('float64'))
    >>> bool(auroc(np.r_[np.ones(50), -np.ones(50)], scores) > 0.9)
    True
    >>> sorted(set(det.predict(X_test).tolist()))
    [-1, 1]
    """

    _loss_kind = "svdd"
    _uses_oe = False
    _parameter_constraints: dict = {
        **_OutlierExposureDetector._parameter_constraints,
        "center_eps": [Interval(Real, 0, None, closed="left")],
    }

    @_with_shared_parameters
    def __init__(self, center_eps=0.1, **shared):
        super().__init__(**shared)
        self.center_eps = center_eps

    def _warn_about_oe(self, n_oe):
        if n_oe:
            warn_user(
                f"DeepSVDDDetector ignores the {n_oe} outlier-exposure rows (y == -1); "
                "HSCDetector or DeepSADDetector use them."
            )

    def _bias(self, has_oe):
        return False

    def _prepare(self, module, X_train):
        encoder = module.encoder
        center = self._predict(encoder, X_train, encoder).mean(axis=0)
        small = np.abs(center) < self.center_eps
        center[small] = np.where(center[small] < 0, -self.center_eps, self.center_eps)
        module.set_center(torch.as_tensor(center, dtype=torch.float32))
        self.center_ = center
