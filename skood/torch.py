"""Torch models as skood estimators: skorch nets, seeding, devices, batches, callbacks.

This is skood's public extension API for torch methods. A torch estimator *composes* a skorch
:class:`~skorch.NeuralNet` and customises it through skorch's own hooks only:

* :func:`build_net` makes the net: the user's and the method's ``callbacks``, a loss that
  stops on divergence (:class:`StopOnDivergence`), ``iterator_train`` / ``iterator_valid`` =
  :func:`array_batches` / :func:`array_batches_valid`; a method that needs its own
  ``get_loss`` or ``train_step`` passes a ``NeuralNet`` subclass as ``net_cls`` (as AMA does).
* :class:`TorchEstimatorMixin` holds the parameters of :data:`TORCH_PARAMETER_CONSTRAINTS` and
  the steps a torch ``_fit_model`` takes; the fit template itself is
  :meth:`skood.base.CalibratedThresholdMixin.fit`.
* :func:`seeded` makes the same ``random_state`` give the same model without touching the
  user's global RNG; :func:`predict_batched` scores in eval mode without autograd, in batches
  (bounded memory for any number of rows).
* Callbacks for training data: :class:`InputNoise`, :class:`GridDequantization`; datasets for
  outlier exposure: :class:`OutlierExposureBatches` with :class:`OutlierExposureCollate`.

:doc:`architecture </architecture>` shows a new detector written with these names only.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.metaestimators import available_if
from skorch import NeuralNet
from skorch.callbacks import Callback, GradientNormClipping, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from skood.base import TrainingDiverged, iter_slices

__all__ = [
    "DIVERGENCE_ADVICE",
    "TORCH_PARAMETER_CONSTRAINTS",
    "EpochProgressBar",
    "EveryOptimizerLRScheduler",
    "GridDequantization",
    "InputNoise",
    "OutlierExposureBatches",
    "OutlierExposureCollate",
    "StopOnDivergence",
    "TorchEstimatorMixin",
    "array_batches",
    "build_net",
    "draw_seed",
    "find_layer",
    "layer_and_output",
    "layer_output",
    "lr_milestones",
    "lr_schedule_callbacks",
    "make_module",
    "pinned_threads",
    "plan_epochs",
    "predict_batched",
    "resolve_device",
    "seeded",
    "steps_per_epoch",
]


def resolve_device(device: str | torch.device) -> str:
    """``"auto"`` becomes ``"cuda"`` when a GPU is visible, else ``"cpu"``.

    Raises a clear error when CUDA is asked for on a machine without it, instead of a crash deep
    inside torch at the first ``.to(device)``.
    """
    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"device={device!r} is not a torch device. Use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but torch sees no CUDA device "
            f"(torch {torch.__version__}). Use device='cpu' or device='auto'."
        )
    return device


def draw_seed(random_state) -> int:
    """An int seed for torch drawn from a sklearn ``random_state`` (None, int or RandomState)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def _ctrl_c_propagates() -> Iterator[None]:
    """Make Ctrl-C (SIGINT) end the fit even though skorch catches ``KeyboardInterrupt``.

    skorch's ``fit`` treats ``KeyboardInterrupt`` as "stop training and return" (its
    ``EarlyStopping`` raises one for that). A real Ctrl-C is told apart by a SIGINT handler that
    notes it, so it is raised again once skorch has returned: the user's program stops, and
    :func:`skood.base.fit_context` leaves the estimator as before the call. Signal handlers can
    only be set from the main thread; elsewhere (a worker thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # the program ignores Ctrl-C: so do we
        yield
        return
    pressed = []

    def on_sigint(signum, frame):
        pressed.append(True)
        if callable(previous):
            previous(signum, frame)  # Python's default handler raises KeyboardInterrupt
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt("interrupted (Ctrl-C) during fit; the estimator is unchanged")


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """Run with torch's CPU thread count set to ``threads`` (None: unchanged), then restore it.

    That is what makes a fit reproducible under joblib, whose workers otherwise run torch with
    fewer threads than the parent process: float32 reductions split over another number of
    threads round differently (measured: a CNN's features changed).
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded(seed: int, device: str = "cpu", *, threads: int | None = None) -> Iterator[None]:
    """The context every torch fit runs in: seeded, with pinned threads, and interruptible.

    Torch is seeded inside a forked RNG, so the caller's global RNG state is left as it was;
    ``threads`` pins torch's CPU threads (:func:`pinned_threads`); Ctrl-C ends the fit with
    ``KeyboardInterrupt`` (see :func:`_ctrl_c_propagates`).
    """
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with _ctrl_c_propagates(), torch.random.fork_rng(devices=devices), pinned_threads(threads):
        torch.manual_seed(seed)
        yield


def plan_epochs(
    n_rows: int, batch_size: int, max_epochs: int, min_steps: int, drop_last: bool | str = "auto"
) -> tuple[int, int, bool]:
    """Effective ``(batch_size, max_epochs, drop_last)`` for a training set of ``n_rows``.

    The batch never exceeds the data (a batch larger than the data with ``drop_last`` would mean
    zero optimiser steps), and the number of epochs grows until at least ``min_steps`` optimiser
    steps are taken: defaults tuned for 50,000 rows would otherwise give a few hundred rows only
    a handful of steps.

    ``drop_last="auto"`` drops the last batch of an epoch only when it would hold a single row:
    BatchNorm cannot normalise one row in training mode, and every other batch carries signal.
    ``True`` drops any incomplete last batch (every step then sees a full batch).
    """
    batch = max(1, min(batch_size, n_rows))
    if drop_last == "auto":
        drop_last = n_rows > batch and n_rows % batch == 1
    steps = steps_per_epoch(n_rows, batch, drop_last)
    epochs = max(max_epochs, math.ceil(min_steps / steps)) if min_steps else max_epochs
    return batch, epochs, bool(drop_last)


def steps_per_epoch(n_rows: int, batch_size: int, drop_last: bool) -> int:
    """Optimiser steps in one pass over ``n_rows`` (what a cosine schedule spreads over)."""
    return max(1, n_rows // batch_size if drop_last else math.ceil(n_rows / batch_size))


def lr_milestones(lr_schedule, n_epochs: int) -> list[int]:
    """Epochs at which a step schedule multiplies the learning rate by 0.1.

    ``lr_schedule`` is a sequence of fractions of the training (``(0.5, 0.75)``: at half and at
    three quarters of the epochs); the epochs are rounded, at least 1, without repeats. The
    fractions are of the epochs actually trained (``n_epochs_``, which ``min_steps`` can raise).
    """
    bad = [f for f in lr_schedule if not 0 < float(f) <= 1]
    if bad:
        raise ValueError(
            f"lr_schedule holds fractions of the training in (0, 1] (0.5 = half-way); got {bad}. "
            "To decay at epochs e1, e2, ... pass (e1 / n_epochs, e2 / n_epochs, ...)."
        )
    return sorted({max(1, round(float(f) * n_epochs)) for f in lr_schedule})


def lr_schedule_callbacks(
    lr_schedule,
    n_epochs: int,
    steps_in_epoch: int,
    *,
    step_every: str = "batch",
    eta_min: float = 0.0,
    every_optimizer: bool = False,
) -> list:
    """The skorch callbacks of a learning-rate schedule: the one place schedules are made.

    ``lr_schedule`` is None (constant), ``"cosine"`` (annealed to ``eta_min`` over the whole
    training, stepped every batch or every epoch) or fractions of the epochs at which the rate
    is multiplied by 0.1 (:func:`lr_milestones`, stepped every epoch). skorch's
    ``LRScheduler`` steps the net's ``optimizer_``; ``every_optimizer`` schedules each optimizer
    of a net that trains several (:class:`EveryOptimizerLRScheduler`).
    """
    if lr_schedule is None or (not isinstance(lr_schedule, str) and len(lr_schedule) == 0):
        return []
    if isinstance(lr_schedule, str):  # "cosine", the only named schedule
        policy = torch.optim.lr_scheduler.CosineAnnealingLR
        total = max(1, steps_in_epoch * n_epochs) if step_every == "batch" else n_epochs
        kwargs = {"T_max": total, "eta_min": eta_min}
    else:
        policy, step_every = torch.optim.lr_scheduler.MultiStepLR, "epoch"
        kwargs = {"milestones": lr_milestones(lr_schedule, n_epochs), "gamma": 0.1}
    if every_optimizer:
        return [("lr_schedule", EveryOptimizerLRScheduler(policy, step_every, **kwargs))]
    return [("lr_schedule", LRScheduler(policy, step_every=step_every, **kwargs))]


class EveryOptimizerLRScheduler(Callback):
    """skorch's ``LRScheduler`` for a net with several optimizers: each gets the schedule.

    skorch registers every optimizer a net's ``initialize_optimizer`` sets (AMA trains three);
    its own ``LRScheduler`` steps ``optimizer_`` only.
    """

    def __init__(self, policy, step_every: str = "epoch", **kwargs) -> None:
        self.policy = policy
        self.step_every = step_every
        self.kwargs = kwargs

    def on_train_begin(self, net, **kwargs):
        self.schedulers_ = [
            self.policy(getattr(net, name + "_"), **self.kwargs) for name in net._optimizers
        ]

    def _step(self) -> None:
        for scheduler in self.schedulers_:
            scheduler.step()

    def on_batch_end(self, net, training=None, **kwargs):
        if training and self.step_every == "batch":
            self._step()

    def on_epoch_end(self, net, **kwargs):
        if self.step_every == "epoch":
            self._step()

    def on_train_end(self, net, **kwargs):
        del self.schedulers_  # they hold references to the optimizers; not needed after fit


def make_module(
    module, default: Callable[[], torch.torch.nn.Module] | None, *factory_args, **factory_kwargs
) -> torch.torch.nn.Module:
    """The network a ``module`` parameter asks for.

    An ``torch.nn.Module`` instance is deep-copied (fitting never trains the user's object); any other
    callable (a class or a factory) is called with ``factory_args`` and ``factory_kwargs``; None
    builds ``default()``, the estimator's own network.
    """
    if isinstance(module, torch.torch.nn.Module):
        return copy.deepcopy(module)
    if module is not None:
        return module(*factory_args, **factory_kwargs)
    if default is None:
        raise ValueError("module is required: an torch.nn.Module instance, a class or a factory.")
    return default()


class EpochProgressBar(Callback):
    """One tqdm bar over epochs, showing the last training loss (skorch's own bar is per epoch)."""

    def __init__(self, desc: str = "training") -> None:
        self.desc = desc

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, desc=self.desc, unit="epoch", leave=False)

    def on_epoch_end(self, net, **kwargs):
        self.bar_.set_postfix(loss=f"{net.history[-1, 'train_loss']:.4g}", refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.bar_.close()
        del self.bar_  # a tqdm bar does not pickle


class InputNoise(Callback):
    """Add N(0, std^2) jitter to every training batch's inputs (regularises small data)."""

    def __init__(self, std: float) -> None:
        self.std = std

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training and self.std > 0:
            X = batch[0]
            X.add_(torch.randn_like(X) * self.std)


class GridDequantization(Callback):
    """Spread every training batch's grid-valued columns uniformly over one grid step.

    ``steps`` holds each column's grid step (0 leaves a column as it is); row values move by
    ``U(-step/2, step/2)``, so each grid point becomes the cell around it.
    """

    def __init__(self, steps: np.ndarray) -> None:
        self.steps = steps

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._steps = torch.as_tensor(self.steps, dtype=torch.float32, device=net.device)

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training:
            X = batch[0]
            X.add_((torch.rand_like(X) - 0.5) * self._steps)


class OutlierExposureBatches(torch.utils.data.Dataset):
    """Training items for outlier exposure: inlier row ``i``, its target, and its outlier rows.

    An epoch is one pass over the inlier rows; item ``i`` carries ``floor(ratio * (i + 1)) -
    floor(ratio * i)`` rows of the outlier pool, so a batch of ``b`` inliers carries about
    ``ratio * b`` outliers (exactly, for an integer ratio), however small the pool: one outlier
    row is then in every batch. With ``replace=False`` the pool is cycled in a fresh random order
    each time it runs out (how the OE reference code iterates its auxiliary loader beside the
    inlier one); with ``replace=True`` rows are drawn independently.

    Draws use torch's global generator, which estimators seed (:func:`seeded`), so batches are
    reproducible. The pool lives here, not in the collate function, so it is never pickled with
    the fitted net.

    Parameters
    ----------
    X_in : ndarray of float32, shape (n_inliers, n_features)
    y_in : ndarray of int, shape (n_inliers,) or None
        Class codes (>= 0) of the inlier rows; None gives every inlier target 0.
    X_out : ndarray of float32, shape (n_outliers, n_features) or None
        The outlier-exposure pool; None or empty gives inlier-only batches.
    ratio : float >= 0, default=1.0
        Outlier rows per inlier row.
    replace : bool, default=True
    """

    def __init__(
        self,
        X_in: np.ndarray,
        y_in: np.ndarray | None = None,
        X_out: np.ndarray | None = None,
        ratio: float = 1.0,
        replace: bool = True,
    ) -> None:
        self.X_in = torch.from_numpy(X_in)
        n = self.X_in.shape[0]
        self.y_in = torch.zeros(n, dtype=torch.long) if y_in is None else torch.as_tensor(y_in)
        self.y_in = self.y_in.to(torch.long)
        use_pool = X_out is not None and len(X_out) > 0 and ratio > 0
        self.X_out = torch.from_numpy(X_out) if use_pool else None
        self.ratio, self.replace = float(ratio), replace
        self._order: torch.Tensor | None = None
        self._pos = 0

    def __len__(self) -> int:
        return self.X_in.shape[0]

    def _draw(self, k: int) -> torch.Tensor:
        n = self.X_out.shape[0]
        if self.replace:
            return torch.randint(n, (k,))
        parts = []
        while k > 0:
            if self._order is None or self._pos >= n:
                self._order, self._pos = torch.randperm(n), 0
            take = min(k, n - self._pos)
            parts.append(self._order[self._pos : self._pos + take])
            self._pos, k = self._pos + take, k - take
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)

    def __getitem__(self, i: int):
        if self.X_out is None:
            return self.X_in[i], self.y_in[i], self.X_in[:0]
        k = math.floor(self.ratio * (i + 1)) - math.floor(self.ratio * i)
        return self.X_in[i], self.y_in[i], self.X_out[self._draw(k)]


class OutlierExposureCollate:
    """Stack :class:`OutlierExposureBatches` items into ``(X, target)`` for a skorch net.

    The inlier rows come first with their targets, then all their outlier rows with target
    ``-1`` (skood's outlier label), so a loss splits the batch with ``target < 0``. One forward
    pass runs on the whole mixed batch (as the OE reference code does, which matters for
    BatchNorm). ``augment``, when given, is applied to the stacked inputs.
    """

    def __init__(self, augment: Callable | None = None) -> None:
        self.augment = augment

    def __call__(self, items):
        return self.combine(
            torch.stack([it[0] for it in items]),
            torch.stack([it[1] for it in items]),
            torch.cat([it[2] for it in items]),
        )

    def combine(self, X_in: torch.Tensor, y_in: torch.Tensor, X_out: torch.Tensor):
        """``(X, target)`` of a batch from its inlier rows, their targets and its outlier rows."""
        X = torch.cat([X_in, X_out])
        target = torch.cat([y_in, torch.full((X_out.shape[0],), -1)])
        if self.augment is not None:
            X = self.augment(X)
        return X, target


def array_batches(
    dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False, **loader_params
):
    """skorch's ``iterator_train`` / ``iterator_valid``: whole batches cut from in-memory tensors.

    torch's ``DataLoader`` asks the dataset for one row at a time and stacks the rows; for the
    small networks of tabular data that costs about as much as the optimiser step
    (:doc:`speed </evidence/speed>`). A skorch ``Dataset`` of numpy arrays, and
    :class:`OutlierExposureBatches` with its :class:`OutlierExposureCollate`, are batched here by
    indexing tensors made once. Anything else (another dataset, another ``collate_fn``, workers)
    goes to ``DataLoader`` unchanged.

    The batches are those ``DataLoader`` gives, made from the same draws of torch's global
    generator in the same order, so a seeded fit trains the same model with either.
    """
    collate = loader_params.get("collate_fn")
    if type(dataset) is OutlierExposureBatches and type(collate) is OutlierExposureCollate:
        if set(loader_params) == {"collate_fn"}:
            take = _outlier_exposure_rows(dataset, collate)
            return _ArrayBatches(len(dataset), take, batch_size, shuffle, drop_last)
    elif not loader_params and _holds_plain_arrays(dataset):
        return _ArrayBatches(
            len(dataset), _plain_rows(dataset.X, dataset.y), batch_size, shuffle, drop_last
        )
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **loader_params
    )


def array_batches_valid(dataset, batch_size: int = 1, **loader_params):
    """skorch's ``iterator_valid``: :func:`array_batches` that leaves torch's global generator as it was.

    ``DataLoader`` draws a base seed from the global generator on every pass, even unshuffled, so
    validation passes would shift every later epoch's shuffle: passing any callback (which turns
    the held-out rows into a validation set) would change the trained model.
    """
    return _KeepGlobalRNG(array_batches(dataset, batch_size=batch_size, **loader_params))


class _KeepGlobalRNG:
    """Iterate ``batches`` and then restore torch's global CPU generator to its state before."""

    def __init__(self, batches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        state = torch.get_rng_state()
        try:
            yield from self.batches
        finally:
            torch.set_rng_state(state)


def _holds_plain_arrays(dataset) -> bool:
    def plain(a):
        return type(a) is np.ndarray and a.ndim >= 1 and a.dtype.kind in "biuf"

    return (
        type(dataset) is Dataset
        and plain(dataset.X)
        and dataset.X.ndim >= 2
        and (dataset.y is None or plain(dataset.y))
    )


def _plain_rows(X: np.ndarray, y: np.ndarray | None) -> Callable:
    """Rows -> ``(X[rows], y[rows])`` as default collation of skorch's ``Dataset`` makes them.

    ``y=None`` gives skorch's placeholder, a float ``(n, 1)`` zero column.
    """
    # as_tensor shares memory with a writable array; a read-only one (a memmap) is copied once.
    X = torch.as_tensor(X if X.flags.writeable else X.copy())
    y = None if y is None else torch.as_tensor(y if y.flags.writeable else y.copy())

    def take(rows: torch.Tensor):
        X_rows = X.index_select(0, rows)
        return X_rows, torch.zeros(rows.shape[0], 1) if y is None else y.index_select(0, rows)

    return take


def _outlier_exposure_rows(dataset: OutlierExposureBatches, collate: OutlierExposureCollate):
    """Rows -> what ``collate([dataset[i] for i in rows])`` gives, drawn in one call.

    Item ``i``'s outlier rows are ``dataset._draw(k_i)``; one ``_draw(sum k_i)`` makes the same
    draws in the same order (torch's CPU ``randint`` draws element by element).
    """

    ratio = dataset.ratio

    def take(rows: torch.Tensor):
        if dataset.X_out is None:
            X_out = dataset.X_in[:0]
        else:
            if ratio.is_integer():  # every item carries `ratio` rows
                n_out = int(ratio) * rows.shape[0]
            else:
                i = rows.numpy().astype(np.float64)
                n_out = int((np.floor(ratio * (i + 1)) - np.floor(ratio * i)).sum())
            X_out = dataset.X_out.index_select(0, dataset._draw(n_out))
        X_in, y_in = dataset.X_in.index_select(0, rows), dataset.y_in.index_select(0, rows)
        return collate.combine(X_in, y_in, X_out)

    return take


class _ArrayBatches:
    """The batches of ``DataLoader(dataset, batch_size, shuffle, drop_last)``, by indexing.

    It draws from torch's global generator what ``DataLoader`` draws, in the same order: one
    number for the loader's base seed, then, when shuffling, the seed of the permutation.
    """

    def __init__(self, n_rows: int, take: Callable, batch_size: int, shuffle: bool, drop_last):
        self.n_rows, self.take = n_rows, take
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last

    def __len__(self) -> int:
        n, b = self.n_rows, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def __iter__(self):
        n, b = self.n_rows, self.batch_size
        torch.empty((), dtype=torch.int64).random_()  # DataLoader's base seed (unused here)
        if self.shuffle:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(n)
        for start in range(0, n - n % b if self.drop_last else n, b):
            yield self.take(order[start : start + b])


#: What :class:`StopOnDivergence` advises unless an estimator knows better.
DIVERGENCE_ADVICE = (
    "Lower lr, standardise the input (e.g. StandardScaler first), or clip the gradients."
)


class StopOnDivergence(Callback):
    """Raise :class:`TrainingDiverged` at the first training batch whose loss is not finite.

    Every net :func:`build_net` makes has it. Without it a diverged network would score every
    row NaN, which ``finite_scores`` floors to one constant: silent garbage (a threshold at the
    floor, every row an inlier). Stopping at the first bad batch also saves the remaining steps.
    """

    #: A loss this many times larger than the first batch's (and than 1) has exploded: the
    #: weights ran off (lr far too high), and the scores are astronomically large but finite.
    growth_limit = 1e8

    def __init__(self, owner: str, advice: str = DIVERGENCE_ADVICE) -> None:
        self.owner = owner
        self.advice = advice

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.first_loss_ = None

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        loss = net.history[-1, "batches", -1].get("train_loss")
        if loss is None:
            return
        loss = float(loss)
        if self.first_loss_ is None:
            self.first_loss_ = loss
        if not math.isfinite(loss):
            became = f"the loss became {loss}"
        elif abs(loss) > self.growth_limit * max(1.0, abs(self.first_loss_)):
            became = f"the loss grew from {self.first_loss_:.4g} to {loss:.4g}"
        else:
            return
        raise TrainingDiverged(
            f"{self.owner}: training diverged at epoch {len(net.history)} of {net.max_epochs}: "
            f"{became}. {self.advice}"
        )


def _has_fused_kernel(optimizer: type) -> bool:
    """Whether ``optimizer`` is one of torch's own with a ``fused`` implementation (Adam, AdamW,
    SGD, ...), which runs on CPU and CUDA alike."""
    import inspect

    own = getattr(optimizer, "__module__", "").startswith("torch.optim")
    return own and "fused" in inspect.signature(optimizer).parameters


def build_net(
    module: torch.torch.nn.Module,
    *,
    criterion: torch.torch.nn.Module | type,
    lr: float,
    batch_size: int,
    max_epochs: int,
    device: str,
    optimizer: type = torch.optim.Adam,
    optimizer_params: dict | None = None,
    grad_clip: float | None = None,
    callbacks: Sequence[Callback] | None = None,
    verbose: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    valid_data: np.ndarray | None = None,
    progress_desc: str = "training",
    divergence_advice: str = DIVERGENCE_ADVICE,
    net_cls: type = NeuralNet,
    **net_params,
) -> NeuralNet:
    """A skorch net ready to ``fit``, configured the way every skood estimator wants it.

    ``train_split`` is None unless ``valid_data`` is given (then skorch computes ``valid_loss``
    on it each epoch, for callbacks such as EarlyStopping). User callbacks are deep-copied so
    that fitting never mutates the estimator's parameters. ``net_cls`` is the skorch class
    (``NeuralNetClassifier`` for estimators that train a classifier) and ``net_params`` go to it
    unchanged (e.g. ``iterator_train__collate_fn``). A non-finite training loss raises
    :class:`TrainingDiverged` naming ``progress_desc`` and ``divergence_advice``.
    """
    cbs: list = [("stop_on_divergence", StopOnDivergence(progress_desc, divergence_advice))]
    if grad_clip is not None:
        cbs.append(("grad_clip", GradientNormClipping(gradient_clip_value=grad_clip)))
    if verbose > 0:
        cbs.append(("progress", EpochProgressBar(progress_desc)))
    for i, cb in enumerate(copy.deepcopy(list(callbacks or []))):
        cbs.append(cb if isinstance(cb, tuple) else (f"user_{i}_{type(cb).__name__}", cb))
    optimizer_params = dict(optimizer_params or {})
    if _has_fused_kernel(optimizer):
        # One kernel for the whole update instead of a handful of ops per parameter tensor:
        # 1.6x the steps/s of a small MLP on a CPU (benchmarks/speed/training.md).
        optimizer_params.setdefault("fused", True)
    params = {f"optimizer__{k}": v for k, v in optimizer_params.items()}
    train_split = None if valid_data is None else predefined_split(Dataset(valid_data, None))
    return net_cls(
        module,
        criterion=criterion,
        optimizer=optimizer,
        lr=lr,
        batch_size=batch_size,
        max_epochs=max_epochs,
        device=device,
        train_split=train_split,
        callbacks=cbs,
        iterator_train=array_batches,
        iterator_valid=array_batches_valid,
        iterator_train__shuffle=shuffle,
        iterator_train__drop_last=drop_last,
        # skorch's PrintLog table is replaced by the progress bar above. Removed, not just
        # silenced: it formats its table every epoch even at verbose=0, which is 15 % of a fit
        # whose epochs are a single step.
        verbose=0,
        callbacks__print_log=None,
        **params,
        **net_params,
    )


def predict_batched(
    fn: Callable[[torch.Tensor], torch.Tensor],
    X: np.ndarray,
    *,
    batch_size: int,
    module: torch.torch.nn.Module,
) -> np.ndarray:
    """Apply ``fn`` (a method of ``module``) to ``X`` in batches; return float64 numpy.

    Runs under :func:`torch.inference_mode` with ``module`` in eval mode, so dropout is off, no
    graph is kept, and memory is bounded by ``batch_size`` whatever ``len(X)``. Batches go to the
    device the module's parameters are on, so a GPU-trained model unpickled on a CPU-only machine
    (skorch maps it to the CPU) scores there without further ado.
    """
    module.eval()
    device = next(module.parameters()).device
    # A float32 array is read in place by skood's and torch's own layers, which never write to
    # their input. It is copied when read-only (a memmap: torch cannot wrap it), when a layer
    # is user code (which might write to it: the user's array must stay as it was), and on a
    # GPU, where every batch is copied anyway.
    in_place = (
        device.type == "cpu"
        and X.dtype == np.float32
        and X.flags.writeable
        and X.flags.c_contiguous
        and all(type(m).__module__.startswith(("skood.", "torch.nn.")) for m in module.modules())
    )
    out = None
    with torch.inference_mode():
        for sl in iter_slices(X.shape[0], batch_size):
            if in_place:
                xb = torch.from_numpy(X[sl])
            else:
                xb = torch.tensor(X[sl], dtype=torch.float32, device=device)
            yb = fn(xb).cpu().numpy()
            if out is None:
                out = np.empty((X.shape[0], *yb.shape[1:]))
            out[sl] = yb  # cast to float64 on assignment
    return out if out is not None else np.empty(0)


#: The parameters every torch estimator has, with sklearn's constraints. Each estimator lists them
#: in its ``__init__`` (sklearn reads parameters from the signature) and merges these constraints
#: into its own.
TORCH_PARAMETER_CONSTRAINTS: dict = {
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "min_steps": [Interval(Integral, 0, None, closed="left")],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "device": [str, torch.device],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "callbacks": [list, None],
    "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
    "n_threads": [Interval(Integral, 1, None, closed="left"), None],
}


class TorchEstimatorMixin:
    """The torch side of a skood estimator: device, seeding, epochs, the skorch net, inference.

    An estimator with the parameters of :data:`TORCH_PARAMETER_CONSTRAINTS` writes its
    ``_fit_model`` (see :meth:`skood.base.CalibratedThresholdMixin.fit`) as::

        seed = self._start_fit(rng)              # device_ resolved, a torch seed drawn
        drop_last = self._plan_epochs(len(X))    # batch_size_, n_epochs_ (min_steps)
        with self._training(seed):               # seeded, pinned threads, Ctrl-C ends it
            self.net_ = self._build_net(module, criterion, drop_last=drop_last,
                                        valid_data=self._valid_data(X_calibration))
            self.net_.fit(X, None)

    and its ``_score_samples`` with :meth:`_predict`. What differs between methods (the module,
    the loss, the score) stays in the estimator. An estimator that also writes its score as a
    torch function of the input, ``_score_tensor`` (usually what ``_score_samples`` predicts
    with), gains :meth:`score_gradient`.
    """

    _input_dtype = np.float32

    def _start_fit(self, rng) -> int:
        """Resolve ``device_`` and draw the torch seed of this fit from ``rng``."""
        self.device_ = resolve_device(self.device)
        return draw_seed(rng)

    def _plan_epochs(self, n_rows: int, drop_last: bool | str = "auto") -> bool:
        """Set ``batch_size_`` and ``n_epochs_`` for ``n_rows`` training rows (see plan_epochs).

        With ``verbose``, says so when ``min_steps`` raised the epochs above ``max_epochs``.
        """
        self.batch_size_, self.n_epochs_, drop_last = plan_epochs(
            n_rows, self.batch_size, self.max_epochs, self.min_steps, drop_last
        )
        if self.verbose and self.n_epochs_ > self.max_epochs:
            # A user who set max_epochs=30 and sees a bar count to 250 should learn why: stderr,
            # where the progress bar of this fit is drawn next.
            steps = steps_per_epoch(n_rows, self.batch_size_, drop_last)
            print(
                f"{type(self).__name__}: {self.n_epochs_} epochs instead of "
                f"max_epochs={self.max_epochs}, to reach min_steps={self.min_steps} optimiser "
                f"steps ({n_rows} rows at batch_size={self.batch_size_} make {steps} per epoch; "
                "set min_steps=0 to train exactly max_epochs)",
                file=sys.stderr,
            )
        return drop_last

    def _lr_schedule(self, n_rows: int, drop_last: bool, **options) -> list:
        """The callbacks of this estimator's ``lr_schedule`` parameter for ``n_rows`` rows
        (``options``: see :func:`lr_schedule_callbacks`)."""
        steps = steps_per_epoch(n_rows, self.batch_size_, drop_last)
        return lr_schedule_callbacks(self.lr_schedule, self.n_epochs_, steps, **options)

    def _valid_data(self, X_calibration: np.ndarray) -> np.ndarray | None:
        """The rows skorch reports ``valid_loss`` on: the held-out calibration rows, when the
        user passed callbacks (which may read it, e.g. EarlyStopping), else None (no cost)."""
        return X_calibration if self.callbacks and X_calibration.shape[0] else None

    def _training(self, seed: int):
        """The context a fit trains in: :func:`seeded` on ``device_`` with ``n_threads``."""
        return seeded(seed, self.device_, threads=self.n_threads)

    def _build_net(self, module, criterion, *, callbacks=(), **options) -> NeuralNet:
        """:func:`build_net` with this estimator's lr, batch, epochs, device and callbacks.

        ``callbacks`` are the method's own; the user's ``callbacks`` parameter follows them.
        """
        options.setdefault("progress_desc", type(self).__name__)
        return build_net(
            module,
            criterion=criterion,
            lr=self.lr,
            batch_size=self.batch_size_,
            max_epochs=self.n_epochs_,
            device=self.device_,
            callbacks=[*callbacks, *(self.callbacks or [])],
            verbose=self.verbose,
            **options,
        )

    def _predict(self, fn: Callable, X: np.ndarray, module: torch.torch.nn.Module) -> np.ndarray:
        """:func:`predict_batched` in batches of ``inference_batch_size``."""
        return predict_batched(fn, X, batch_size=self.inference_batch_size, module=module)

    # -- the score as a torch function of the input ------------------------------------------
    def _score_tensor(self, X: torch.Tensor) -> torch.Tensor:
        """The score of the rows ``X`` as a differentiable torch function, shape ``(n,)``.

        ``X`` is a float32 tensor on the model's device (validated rows, as
        ``_score_samples`` gets them as an array), the model is in eval mode, and the result
        is what ``_score_samples`` computes, by the same formula and module. A detector that
        defines it gains :meth:`score_gradient`; one that does not (its score has no gradient
        in torch) has no ``score_gradient`` at all.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _score_tensor")

    def _has_score_tensor(self) -> bool:
        return type(self)._score_tensor is not TorchEstimatorMixin._score_tensor

    @available_if(_has_score_tensor)
    def score_gradient(self, X) -> np.ndarray:
        """The gradient of ``score_samples`` with respect to each row of ``X``.

        Computed by autograd through the fitted network in eval mode (no dropout, no noise),
        ``inference_batch_size`` rows at a time on the model's device, so memory stays bounded
        for any number of rows. Integrated gradients (:func:`skood.explain.explain`) integrate it
        along the path from a baseline row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples, n_features)
            ``d score_samples(x) / d x`` in the estimator's input space (the columns it was
            fitted on), computed in float32. A row whose score is not finite (floored by
            ``score_samples`` to a constant) gets a gradient of 0.
        """
        X = self._check_fitted_and_validate(X)
        module = self.net_.module_
        module.eval()
        device = next(module.parameters()).device
        out = np.empty(X.shape, dtype=np.float64)
        with torch.enable_grad():
            for sl in iter_slices(X.shape[0], self.inference_batch_size):
                x = torch.tensor(X[sl], dtype=torch.float32, device=device, requires_grad=True)
                score = self._score_tensor(x)
                (grad,) = torch.autograd.grad(score.sum(), x)
                grad = torch.where(torch.isfinite(score)[:, None], grad, 0.0)
                out[sl] = grad.detach().reshape(x.shape[0], -1).cpu().numpy()
        return out


# -- reading a layer ---------------------------------------------------------------------------
def find_layer(module: torch.nn.Module, name: str, owner: str) -> torch.nn.Module:
    """The submodule of ``module`` named ``name``; a ValueError naming the layers if none."""
    layers = dict(module.named_modules())
    if name not in layers:
        shown = ", ".join(repr(n) for n in list(layers)[1:30] if n)
        raise ValueError(
            f"{owner}: layer {name!r} does not exist in {type(module).__name__}. "
            f"Named layers are: {shown}{', ...' if len(layers) > 30 else ''}."
        )
    return layers[name]


def layer_and_output(
    layer: torch.nn.Module | None, forward: Callable, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``forward(x)`` once; return ``(layer's output flattened to 2-D, forward's output)``.

    The layer's output is read with a forward hook; with ``layer=None`` it is the forward's own.
    """
    if layer is None:
        out = forward(x)
        return out.reshape(out.shape[0], -1), out
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        out = forward(x)
    finally:
        handle.remove()
    return captured[-1].reshape(captured[-1].shape[0], -1), out


def layer_output(layer: torch.nn.Module | None, forward: Callable, x: torch.Tensor) -> torch.Tensor:
    """Run ``forward(x)`` and return ``layer``'s output (a forward hook), flattened to 2-D."""
    return layer_and_output(layer, forward, x)[0]
