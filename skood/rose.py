"""ROSEScorer: the Fisher-weighted per-sample gradient score of one fitted likelihood model."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from skood.base import (
    FRACTION_CONSTRAINT,
    BaseDetector,
    finite_scores,
    iter_slices,
    warn_user,
)
from skood.nn.fisher import (
    DiagCurvature,
    EKFACCurvature,
    kronecker_factors,
    per_sample_grads,
    supports_ekfac,
)
from skood.torch import pinned_threads

__all__ = ["ROSEScorer", "likelihood_module"]

_ROOT = "(root)"  # the layer name of parameters held by the top-level module itself
# Fewer in-sample rows than this for the layer statistics gets a warning (see fit).
_FEW_STATS_ROWS = 100


def likelihood_module(estimator) -> nn.Module:
    """The fitted torch module behind ``estimator``: ``estimator.net_.module_`` or ``.module_``.

    This is the interface :class:`ROSEScorer` needs from a wrapped model: a fitted estimator
    exposing a torch module (skood's ``QuantileFlowDetector`` and ``VAEDetector`` through their
    skorch ``net_``, or a skorch net itself through ``module_``), whose ``log_prob(x)`` maps a
    float32 batch ``(n, n_features)`` to the per-row log-likelihood ``(n,)`` (or pass
    ``log_prob=`` to ROSEScorer), and which treats rows independently in eval mode.
    """
    holder = getattr(estimator, "net_", estimator)
    module = getattr(holder, "module_", None)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"ROSEScorer needs a fitted torch likelihood model, but {type(estimator).__name__} "
            "exposes no torch module as `net_.module_` (skood's QuantileFlowDetector, "
            "VAEDetector) or `module_` (a skorch net). Wrap a model that does, or build one."
        )
    return module


class ROSEScorer(BaseDetector):
    """Robust OOD score (ROSE) from one trained likelihood model's per-sample gradients.

    A likelihood model can give outliers *higher* likelihood than inliers (dimmed, blurred or
    simpler inputs). ROSE instead asks how far a test point would pull the trained parameters
    if it were added to the training data: per layer ``l``, ``S^l(x) = g^T F_l^{-1} g`` with
    ``g`` the gradient of ``log p(x)`` with respect to that layer's parameters and ``F_l`` the
    empirical Fisher of in-distribution rows (a Laplace expansion of the log-posterior ratio,
    Eqs. 1-5 of the paper). ``F_l^{-1}`` is approximated by its diagonal (``fisher="diag"``) or
    by EKFAC (``"ekfac"``: Linear and Conv2d layers; other layers fall back to the diagonal).
    Layer scores are z-scored with their mean and standard deviation on in-distribution rows and
    combined as ``ROSE = || ReLU(s_hat + beta) ||_p``; ``score_samples = -ROSE``.

    The model is a meta-estimator parameter, like ``SelectFromModel``: it is cloned and fitted
    on ``X`` (``prefit=False``) or used as already fitted (``prefit=True``). It needs only a
    per-row differentiable log-likelihood and its parameters; see :func:`likelihood_module`.

    Read more in the :ref:`User Guide <paper_rose>`.

    Parameters
    ----------
    estimator : estimator
        A skood likelihood model (``VAEDetector``, ``QuantileFlowDetector`` with any ``q``), a
        skorch net, or any estimator exposing a torch module as ``net_.module_`` / ``module_``.
    prefit : bool, default=False
        Use ``estimator`` as fitted (it is deep-copied); ``fit(X)`` then only builds the Fisher
        and the layer statistics on ``X``.
    log_prob : callable ``(module, x) -> Tensor (n,)`` or None, default=None
        The per-row log-likelihood; None calls ``module.log_prob(x)``. For a VAE it is the ELBO
        with fixed noise (the paper does not state which objective it differentiates).
    layers : "auto" or list of str, default="auto"
        ``"auto"``: every module that holds parameters directly, one layer each. A list entry
        is a module name (``"encoder.0"``; a non-leaf module is one DIAG layer over all its
        parameters; ``"(root)"`` is the parameters of the top module itself) or an ``fnmatch``
        pattern over the leaf names (``"encoder.*"``). The paper scores a VAE's encoder
        convolutions and a Glow's 1x1 convolutions only; the choice changes the score markedly
        (:doc:`the ROSE claim </evidence/rose_claim>`).
    fisher : {"ekfac", "diag"}, default="ekfac"
    n_fisher_samples : int or None, default=None
        Rows drawn (without replacement) to estimate the Fisher; None uses every inlier row.
        With ``validation_fraction=0`` the layer statistics come from the same rows, which is
        unreliable for a few hundred rows or fewer (a warning says so below 100): measured on
        digits, 10 rows inverted EKFAC ROSE (AUROC 0.19) while ``validation_fraction=0.5`` gave
        0.68-0.80 (:doc:`the ROSE claim </evidence/rose_claim>`).
    beta : float, default=0.0
        Shift of the z-scores before the ReLU.
    p : float >= 1, default=inf
        Norm over layers; ``inf`` gives ``max(0, max_l s_hat_l)`` (the paper's default).
    clip : bool, default=True
        Apply the ReLU; ``False`` takes the norm of ``|s_hat + beta|`` (two-sided). ``beta``,
        ``p``, ``clip`` and ``log_prob`` may be set on a fitted model to compare scores without
        refitting; ``predict`` then refuses until it is fitted again (``offset_`` is for the
        scores of the fitted values).
    damping : float, default=1e-8
        Added to every curvature entry, relative to their mean (the paper has none).
    validation_fraction : float in [0, 1), default=0.0
        Inlier rows kept out of the Fisher for the layer statistics and ``offset_``; 0 uses the
        Fisher rows themselves, as the paper's Alg. 1 does (an in-sample bias: with DIAG the mean
        of ``S^l`` over those rows is exactly the layer's parameter count).
    inference_batch_size : int, default=64
        Rows per per-sample-gradient pass; memory grows with it times the parameters scored.
    gradients : {"vmap", "loop"}, default="vmap"
        ``"vmap"`` vectorises per-sample gradients with ``torch.func``; ``"loop"`` runs one
        backward pass per row (slow; for modules ``vmap`` cannot trace).
    contamination : float in (0, 0.5] or "auto", default=0.1
    random_state : int, RandomState instance or None, default=None
        Draws the Fisher rows and the holdout split.
    n_threads : int or None, default=1
        Torch CPU threads while the Fisher and the layer statistics are computed (restored
        afterwards), so the fit is the same whatever ``n_jobs`` a search runs it under; None
        keeps torch's current setting. The wrapped model has its own.

    Attributes
    ----------
    estimator_ : estimator
        The fitted likelihood model.
    layer_names_ : list of str
    layer_kinds_ : list of {"ekfac", "diag"}
    curvatures_ : list
        One :class:`~skood.nn.fisher.DiagCurvature` / ``EKFACCurvature`` per layer (CPU tensors).
    mu_, sigma_ : ndarray of shape (n_layers,)
        Mean and standard deviation of each raw layer score on the statistics rows.
    n_fisher_samples_ : int
    offset_ : float
    calibration_scores_ : ndarray of float64
        The sorted scores of the rows the layer statistics come from, that ``offset_`` was set
        from.
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
    n_features_in_ : int

    Notes
    -----
    The score is one-sided with the ReLU: only larger-than-usual gradients count, and with
    ``p=inf`` many inliers tie at 0. Inputs that give *smaller* gradients than the inliers
    (low-intensity images for a flow, whose likelihood is high for dim inputs) are not flagged.

    References
    ----------
    Choi, S., Yoon, H., Bae, H., Kang, S. "Robust Out-of-Distribution Detection on Deep
    Probabilistic Generative Models".
    George, T., Laurent, C., Bouthillier, X., Ballas, N., Vincent, P. "Fast Approximate Natural
    Gradient Descent in a Kronecker-factored Eigenbasis", NeurIPS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import ROSEScorer, VAEDetector
    >>> X = np.random.RandomState(0).normal(size=(300, 4))
    >>> vae = VAEDetector(latent_dim=2, hidden_sizes=(16,), max_epochs=5, min_steps=100,
    ...                   random_state=0)
    >>> rose = ROSEScorer(vae, random_state=0).fit(X)
    >>> rose.layer_scores(X[:3]).shape
    (3, 5)
    """

    # The gradients are of log_prob; beta, p and clip combine the z-scored layer scores.
    _scoring_params = ("log_prob", "beta", "p", "clip")
    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "estimator": [HasMethods(["fit"])],
        "prefit": ["boolean"],
        "log_prob": [callable, None],
        "layers": [StrOptions({"auto"}), list, tuple],
        "fisher": [StrOptions({"ekfac", "diag"})],
        "n_fisher_samples": [Interval(Integral, 2, None, closed="left"), None],
        "beta": [Interval(Real, None, None, closed="neither")],
        "p": [Interval(Real, 1, np.inf, closed="both")],
        "clip": ["boolean"],
        "damping": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": FRACTION_CONSTRAINT,
        "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
        "gradients": [StrOptions({"vmap", "loop"})],
        "random_state": ["random_state"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        estimator,
        *,
        prefit=False,
        log_prob=None,
        layers="auto",
        fisher="ekfac",
        n_fisher_samples=None,
        beta=0.0,
        p=np.inf,
        clip=True,
        damping=1e-8,
        validation_fraction=0.0,
        inference_batch_size=64,
        gradients="vmap",
        contamination=0.1,
        random_state=None,
        n_threads=1,
    ):
        self.estimator = estimator
        self.prefit = prefit
        self.log_prob = log_prob
        self.layers = layers
        self.fisher = fisher
        self.n_fisher_samples = n_fisher_samples
        self.beta = beta
        self.p = p
        self.clip = clip
        self.damping = damping
        self.validation_fraction = validation_fraction
        self.inference_batch_size = inference_batch_size
        self.gradients = gradients
        self.contamination = contamination
        self.random_state = random_state
        self.n_threads = n_threads

    # -- the wrapped model -----------------------------------------------------------------------
    def _log_prob_fn(self, module: nn.Module) -> Callable:
        if self.log_prob is not None:
            return self.log_prob
        if not callable(getattr(module, "log_prob", None)):
            raise TypeError(
                f"ROSEScorer: the model's module {type(module).__name__} has no log_prob(x) "
                "method. Pass log_prob=lambda module, x: <per-row log-likelihood, shape (n,)>."
            )
        return lambda module, x: module.log_prob(x)

    def _select_layers(self, module: nn.Module) -> list[tuple[str, nn.Module, list[str]]]:
        """``(layer name, module, parameter names)`` for each scored layer."""
        named = {(name or _ROOT): m for name, m in module.named_modules()}

        def own(name: str, m: nn.Module, recurse: bool) -> list[str]:
            prefix = "" if name == _ROOT else name + "."
            return [prefix + k for k, v in m.named_parameters(recurse=recurse) if v.requires_grad]

        leaves = {n: m for n, m in named.items() if own(n, m, recurse=False)}
        if isinstance(self.layers, str):  # "auto"
            return [(n, m, own(n, m, recurse=False)) for n, m in leaves.items()]
        chosen: dict[str, tuple[str, nn.Module, list[str]]] = {}
        for entry in self.layers:
            if entry in named and entry not in leaves:  # a whole sub-network, one DIAG layer
                params = own(entry, named[entry], recurse=True)
                if params:
                    chosen[entry] = (entry, named[entry], params)
                    continue
            matches = [n for n in leaves if n == entry or fnmatch.fnmatchcase(n, str(entry))]
            if not matches:
                raise ValueError(
                    f"ROSEScorer: layer {entry!r} does not exist in {type(module).__name__} or "
                    f"holds no trainable parameters. Layers with parameters: {sorted(leaves)}."
                )
            for n in matches:
                chosen[n] = (n, leaves[n], own(n, leaves[n], recurse=False))
        return list(chosen.values())

    # -- fitting ---------------------------------------------------------------------------------
    _input_dtype = np.float32

    def _validate_training_data(self, X, y):
        """Validate ``X``, then fit the model ROSE reads on every row (``-1`` rows included)."""
        X_all = self._validate_X(X, reset=True, dtype=np.float32)
        if self.prefit:
            check_is_fitted(self.estimator)
            n_model = getattr(self.estimator, "n_features_in_", X_all.shape[1])
            if n_model != X_all.shape[1]:
                raise ValueError(
                    f"{type(self).__name__}: X has {X_all.shape[1]} features, but the prefit "
                    f"model was fitted on {n_model}. Pass the rows the model was trained on "
                    "(or alike)."
                )
            self.estimator_ = copy.deepcopy(self.estimator)
        else:
            self.estimator_ = clone(self.estimator).fit(X_all, y)
        return super()._validate_training_data(X_all, y)

    def _calibration_split(self, X, y, rng):
        """(Fisher rows, statistics rows): the statistics rows are those held out, else the
        Fisher rows themselves; at most ``n_fisher_samples`` rows estimate the Fisher."""
        fisher_rows, stats_rows = super()._calibration_split(X, y, rng)
        if self.n_fisher_samples is not None and self.n_fisher_samples < fisher_rows.size:
            fisher_rows = np.sort(rng.choice(fisher_rows, self.n_fisher_samples, replace=False))
        self.n_fisher_samples_ = int(fisher_rows.size)
        if stats_rows.size == 0 and fisher_rows.size < min(_FEW_STATS_ROWS, X.shape[0]):
            warn_user(
                f"{type(self).__name__}: the layer statistics (mu_, sigma_) come from the same "
                f"{fisher_rows.size} rows as the Fisher, an in-sample estimate that can invert "
                "the score for small n_fisher_samples (benchmarks/rose_claim/rose_claim.md: AUROC "
                "0.19 with 10 rows). Set validation_fraction (e.g. 0.5) to take them from other "
                "inlier rows."
            )
        return fisher_rows, stats_rows if stats_rows.size else fisher_rows

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """The Fisher of the model's log-likelihood, per layer, from the rows of ``X``."""
        module = likelihood_module(self.estimator_).eval()
        layers = self._select_layers(module)
        self.layer_names_ = [n for n, _, _ in layers]
        with pinned_threads(self.n_threads):
            self.curvatures_ = self._build_curvatures(module, self._log_prob_fn(module), layers, X)
        self.layer_kinds_ = [c.kind for c in self.curvatures_]

    def _calibration_scores(self, X: np.ndarray) -> np.ndarray:
        """Fit each layer's score mean and spread (``mu_``, ``sigma_``) on ``X``; score it."""
        # A second gradient pass: a row's score needs the finished Fisher, and keeping every
        # per-sample gradient from the first pass would cost n_rows x n_parameters of memory.
        with pinned_threads(self.n_threads):
            stats = self._raw_layer_scores(X)
        self.mu_ = stats.mean(axis=0)
        sigma = stats.std(axis=0)
        # A layer whose score never varies (e.g. every gradient 0) must not divide by zero.
        self.sigma_ = np.where(sigma > 1e-12 * np.maximum(np.abs(self.mu_), 1.0), sigma, 1.0)
        return self._aggregate_layers(stats)

    def _calibration_held_out(self, rows_held_out: bool) -> bool:
        return False  # mu_ and sigma_ are fitted on the calibration rows

    def _batches(self, X: np.ndarray, device: torch.device):
        for sl in iter_slices(X.shape[0], self.inference_batch_size):
            yield torch.tensor(X[sl], dtype=torch.float32, device=device)

    def _build_curvatures(self, module, log_prob, layers, X_fisher):
        device = next(module.parameters()).device
        ekfac = {
            n: m
            for n, m, _ in layers
            if self.fisher == "ekfac" and n != _ROOT and supports_ekfac(m)
        }
        factors: dict[str, tuple] = {}
        for xb in self._batches(X_fisher, device):  # Kronecker factors: sums over all rows
            for n, (a, b) in kronecker_factors(module, log_prob, xb, ekfac).items():
                a, b = a.double(), b.double()
                factors[n] = (a, b) if n not in factors else (factors[n][0] + a, factors[n][1] + b)
        curvatures = []
        for n, m, params in layers:
            if n in ekfac:
                bias = f"{n}.bias" if m.bias is not None else None
                curvatures.append(EKFACCurvature(f"{n}.weight", bias, factors[n]))
            else:
                curvatures.append(DiagCurvature(params))
        names = [k for c in curvatures for k in c.param_names]
        for xb in self._batches(X_fisher, device):
            grads = per_sample_grads(module, log_prob, xb, names, method=self.gradients)
            for c in curvatures:
                c.accumulate(grads)
        for c in curvatures:
            c.finalize(self.damping)
        return curvatures

    # -- scoring ---------------------------------------------------------------------------------
    def _raw_layer_scores(self, X: np.ndarray) -> np.ndarray:
        # A copy: torch.func swaps gradient-tracking tensors into the module's parameters while
        # it runs, and the fitted model must stay picklable meanwhile (Dask ships it to another
        # worker while this one scores; pickling a swapped-in tensor fails).
        module = copy.deepcopy(likelihood_module(self.estimator_)).eval()
        log_prob = self._log_prob_fn(module)
        device = next(module.parameters()).device
        names = [k for c in self.curvatures_ for k in c.param_names]
        out = []
        for xb in self._batches(X, device):
            grads = per_sample_grads(module, log_prob, xb, names, method=self.gradients)
            out.append(torch.stack([c.score(grads) for c in self.curvatures_], 1).cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.empty((0, len(names)))

    def _aggregate_layers(self, raw: np.ndarray) -> np.ndarray:
        """``-|| ReLU((S - mu) / sigma + beta) ||_p`` as finite float64 (higher = more normal)."""
        with np.errstate(invalid="ignore", over="ignore"):
            z = (raw - self.mu_) / self.sigma_ + self.beta
            if self.clip:
                z = np.maximum(z, 0.0)
            rose = np.linalg.norm(z, ord=self.p, axis=1)
        return finite_scores(0.0 - rose)  # 0.0 - x: no negative zeros

    def layer_scores(self, X) -> np.ndarray:
        """The raw per-layer scores ``S^l(x) = g^T F_l^{-1} g``, columns as ``layer_names_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples, n_layers)
        """
        return self._raw_layer_scores(self._check_fitted_and_validate(X))

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """Minus the ROSE score: higher = more normal."""
        return self._aggregate_layers(self._raw_layer_scores(X))
