"""The shared contract helpers: label convention, finite scores, held-out split, devices."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from skood.base import (
    SCORE_FLOOR,
    BaseDetector,
    LogitClassifierMixin,
    finite_scores,
    is_outlier_label,
    iter_slices,
    split_holdout,
    split_labels,
)
from skood.flow import grid_steps
from skood.torch import (
    GridDequantization,
    draw_seed,
    predict_batched,
    resolve_device,
    seeded,
)


def test_split_labels_follows_the_minus_one_convention():
    mask, labels = split_labels(np.array([0, -1, 2, 1, -1]), 5)
    np.testing.assert_array_equal(mask, [True, False, True, True, False])
    np.testing.assert_array_equal(labels, [0, 2, 1])
    mask, labels = split_labels(None, 3)
    assert mask.all() and labels is None
    mask, labels = split_labels(np.array(["cat", "-1", "dog"], dtype=object), 3)
    np.testing.assert_array_equal(mask, [True, False, True])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        split_labels(np.ones(4), 5)
    with pytest.raises(ValueError, match="every row as an outlier"):
        split_labels(-np.ones(3), 3)


def test_is_outlier_label_on_floats_and_strings():
    np.testing.assert_array_equal(is_outlier_label([1.0, -1.0]), [False, True])
    np.testing.assert_array_equal(is_outlier_label(["a", " -1"]), [False, True])


def test_finite_scores_floors_nan_and_infinities():
    out = finite_scores(np.array([np.nan, -np.inf, np.inf, 1.5], dtype=np.float32))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [SCORE_FLOOR, SCORE_FLOOR, -SCORE_FLOOR, 1.5])
    assert np.isfinite(out - 1e6).all() and np.isfinite(np.mean(out))


def test_split_holdout_is_reproducible_and_keeps_enough_rows():
    tr, va = split_holdout(10, 0.2, 0, min_train=2, estimator_name="X")
    assert len(tr) == 8 and len(va) == 2 and np.intersect1d(tr, va).size == 0
    tr2, _ = split_holdout(10, 0.2, 0, min_train=2, estimator_name="X")
    np.testing.assert_array_equal(tr, tr2)
    assert split_holdout(3, 0.01, 0, 2, "X")[1].size == 1  # at least one held out
    assert split_holdout(5, 0.0, 0, 2, "X")[1].size == 0
    with pytest.raises(ValueError, match="needs at least 3 inlier rows"):
        split_holdout(2, 0.2, 0, 2, "X")


def test_grid_steps_finds_the_spacing_of_grid_valued_columns_only(rng):
    n = 500
    columns = {
        "pixels": rng.randint(0, 17, n),  # 17 levels, step 1
        "binary": rng.randint(0, 2, n),
        "halves": rng.randint(0, 9, n) / 2,  # step 0.5
        "continuous": rng.normal(size=n),
        "two decimals": np.round(rng.normal(size=n), 2),  # a grid, of 0.01
        "constant": np.full(n, 3.0),
    }
    X = np.column_stack(list(columns.values())).astype(np.float64)
    scale, shift = np.array([0.3, 2.0, 1.0, 1.0, 1.0, 1.0]), np.array([1.7, -0.2, 0, 0, 0, 5])
    # a StandardScaler-like affine map, then the float32 cast every torch estimator makes
    Z = ((X - shift) * scale).astype(np.float32)
    np.testing.assert_allclose(grid_steps(Z), [0.3, 2.0, 0.5, 0.0, 0.01, 0.0], rtol=1e-4)
    assert grid_steps(np.ones((1, 2))).tolist() == [0.0, 0.0]  # one value: no spacing to find


def test_grid_dequantization_spreads_each_grid_column_over_one_step(rng):
    steps = np.array([0.5, 0.0, 2.0], dtype=np.float32)
    cb = GridDequantization(steps)
    cb.on_train_begin(type("Net", (), {"device": "cpu"})())
    X = torch.zeros(20000, 3)
    cb.on_batch_begin(None, batch=(X, None), training=True)
    moved = X.numpy()
    assert (np.abs(moved) <= steps / 2).all() and not moved[:, 1].any()
    # uniform over the cell: variance step^2 / 12
    np.testing.assert_allclose(moved[:, [0, 2]].var(axis=0), steps[[0, 2]] ** 2 / 12, rtol=0.05)
    before = X.clone()
    cb.on_batch_begin(None, batch=(X, None), training=False)  # validation batches stay exact
    assert torch.equal(X, before)


def test_offset_rejects_the_contamination_share_of_new_inliers_in_expectation():
    from skood.base import CalibratedThresholdMixin

    class Threshold(CalibratedThresholdMixin):
        contamination = 0.05

    # 19 held-out scores at contamination 0.05: the threshold is their minimum, below which a new
    # exchangeable score falls with probability 1/20. np.quantile's default interpolation would
    # put it between the two lowest scores and reject 9.5 %.
    rng = np.random.RandomState(0)
    trials = rng.normal(size=(20000, 20))
    rejected = []
    for row in trials:
        t = Threshold()
        t._set_offset(row[:19], held_out=True)
        rejected.append(row[19] < t.offset_)
    assert np.mean(rejected) == pytest.approx(0.05, abs=0.005)  # 0.05 +- 3.3 standard errors


class _Weighted(BaseDetector):
    """``score = X @ weights``: a detector with one scoring parameter, for the threshold alone."""

    _scoring_params = ("weights",)

    def __init__(self, weights=None, contamination=0.25):
        self.weights = weights
        self.contamination = contamination

    _input_dtype = np.float64

    def _fit_model(self, X, y, rng, X_calibration):
        pass  # nothing to learn: the calibration scores are those of the training rows

    def _calibration_held_out(self, rows_held_out):
        return True

    def _score_samples(self, X):
        if self.weights is None:
            return X.sum(axis=1)
        return X @ np.asarray(self.weights, dtype=np.float64)  # 1-D: fails for another width


class _Gate(LogitClassifierMixin, ClassifierMixin, BaseEstimator):
    """The logits are ``X``; the gate's score is the largest one. Written with the template's
    hooks only: it is also the smallest gate a user could write."""

    _input_dtype = np.float64  # so that the rows below sit exactly where they are put
    _trains_on_outliers = False

    def __init__(self, contamination=0.25):
        self.contamination = contamination

    def _validate_training_data(self, X, y):
        return self._validate_X(X, reset=True, dtype=np.float64), None

    def _fit_model(self, X, y, rng, X_calibration):
        self.classes_ = np.arange(X.shape[1])

    def _calibration_held_out(self, rows_held_out):
        return True

    def _logits(self, X):
        return X

    def _score_samples(self, X, *, return_logits=False):
        return (X.max(axis=1), X) if return_logits else X.max(axis=1)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_score_tied_with_the_calibration_score_at_the_threshold_is_not_flagged(sign):
    """The same row scores ~1e-7 (relative) apart in float32 batches of other sizes: such a
    difference must not flag it. decision_function stays score_samples - offset_."""
    from skood.base import TIE_RTOL

    calibration = sign * np.arange(1.0, 10.0)
    det = _Weighted(contamination=0.1).fit(calibration[:, None])
    offset = det.offset_  # the smallest of 9 scores: k = 0.1 * (9 + 1) = 1
    assert offset == calibration.min()
    tied, below = offset - 0.5 * TIE_RTOL * abs(offset), offset - 2 * TIE_RTOL * abs(offset)
    rows = np.array([[offset], [tied], [below], [offset + 1.0]])
    np.testing.assert_array_equal(det.predict(rows), [1, 1, -1, 1])
    np.testing.assert_array_equal(det.decision_function(rows), rows[:, 0] - offset)
    gate = _Gate(contamination=0.1).fit(np.c_[calibration, np.full(9, -20.0)])
    logits = np.c_[rows[:, 0], np.full(4, -20.0)]
    assert gate.offset_ == offset
    np.testing.assert_array_equal(gate.predict_outlier(logits), [1, 1, -1, 1])
    np.testing.assert_array_equal(gate.predict_open_set(logits), [0, 0, -1, 0])
    np.testing.assert_array_equal(gate.outlier_decision_function(logits), rows[:, 0] - offset)


def test_an_offset_between_two_close_calibration_scores_still_flags_the_lower_one():
    """Ties are with calibration scores, not with the interpolated offset_: 2 and 2 (1 + 1.5e-6)
    are two rows, not one, and the quantile puts offset_ between them (sklearn's
    check_outliers_fit_predict counts exactly contamination * n training rows flagged)."""
    calibration = np.array([1.0, 2.0, 2.0 * (1 + 1.5e-6), 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    det = _Weighted(contamination=0.25).fit(calibration[:, None])  # k = 2.5
    assert calibration[1] < det.offset_ < calibration[2]
    np.testing.assert_array_equal(det.predict(calibration[1:3, None]), [-1, 1])


def test_a_changed_scoring_parameter_is_refused_before_scoring_and_arrays_compare():
    X = np.random.RandomState(0).normal(size=(20, 3))
    det = _Weighted(weights=np.array([1.0, 2.0, 3.0])).fit(X)
    labels = det.predict(X)
    same = _Weighted(weights=np.array([1.0, 2.0, 3.0]))  # equal, another array object
    np.testing.assert_array_equal(det.set_params(weights=same.weights).predict(X), labels)
    det.set_params(weights=np.array([1.0, 2.0]))  # score_samples cannot even compute with it
    for method in (det.predict, det.decision_function):
        with pytest.raises(ValueError, match=r"weights=array\(\[1\., 2\., 3\.\]\).*fit again"):
            method(X)
    with pytest.raises(NotFittedError):  # unfitted: sklearn's error, not the refusal
        _Weighted().predict(X)


def test_iter_slices_covers_everything_once():
    covered = np.concatenate([np.arange(10)[s] for s in iter_slices(10, 3)])
    np.testing.assert_array_equal(covered, np.arange(10))


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_seeded_is_reproducible_and_restores_global_state():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    with seeded(draw_seed(42)):
        a = torch.rand(3)
    with seeded(draw_seed(42)):
        b = torch.rand(3)
    torch.testing.assert_close(a, b)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_predict_batched_matches_one_forward_pass_and_uses_eval_mode():
    module = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Dropout(0.9), torch.nn.Linear(4, 1)
    )
    X = np.random.RandomState(0).normal(size=(50, 3))
    out = predict_batched(lambda t: module(t).squeeze(1), X, batch_size=7, module=module)
    assert out.dtype == np.float64 and not module.training
    with torch.no_grad():
        ref = module(torch.tensor(X, dtype=torch.float32)).squeeze(1).double().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    ro = X.copy()
    ro.setflags(write=False)  # read-only input (a memmap) must not warn or fail
    predict_batched(lambda t: module(t).squeeze(1), ro, batch_size=7, module=module)


def test_import_skood_nn_needs_neither_sklearn_nor_skorch():
    """skood.nn is plain torch: importing it (or the skood package) loads no estimator."""
    import subprocess
    import sys

    code = (
        "import sys, skood, skood.nn; "
        "print(sorted(m for m in ('sklearn', 'skorch', 'skood.flow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_warnings_from_fit_point_at_the_callers_line():
    """A warning raised deep inside fit (through sklearn's and skood's wrappers) names our line."""
    import warnings

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skood import HSCDetector

    X = np.random.RandomState(0).normal(size=(30, 2))
    pipe = make_pipeline(StandardScaler(), HSCDetector(max_epochs=1, min_steps=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.fit(X)  # no outlier-exposure rows: HSCDetector warns
    ours = [w for w in caught if "outlier-exposure" in str(w.message)]
    assert ours and ours[0].filename == __file__


def test_a_model_pickled_by_skood_0_1_loads_with_its_renamed_parameters():
    """Renamed parameters take their new names; those that cannot be mapped take defaults."""
    import warnings

    from sklearn.base import clone

    from skood import GaussianMahalanobis, QuantileFlowDetector

    X = np.random.RandomState(0).normal(size=(40, 3))
    det = GaussianMahalanobis(inference_batch_size=7).fit(X)
    state = det.__getstate__()
    state["batch_size"] = state.pop("inference_batch_size")  # how skood 0.1 stored it
    old = GaussianMahalanobis.__new__(GaussianMahalanobis)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pure rename needs no warning
        old.__setstate__(state)
    assert old.inference_batch_size == 7 and "batch_size" not in vars(old)
    np.testing.assert_array_equal(old.score_samples(X), det.score_samples(X))

    flow = QuantileFlowDetector(n_blocks=1, hidden_sizes=(8, 8), max_epochs=1, min_steps=0)
    state = flow.fit(X).__getstate__()
    del state["hidden_sizes"]
    state.update(hidden_size=8, n_hidden_layers=1)  # 0.1's names for the subnet widths
    with pytest.warns(UserWarning, match=r"\['hidden_sizes'\].*take their defaults"):
        old = QuantileFlowDetector.__new__(QuantileFlowDetector)
        old.__setstate__(state)
    np.testing.assert_array_equal(old.score_samples(X), flow.score_samples(X))
    # the default: refit settings need a look
    assert clone(old).hidden_sizes == QuantileFlowDetector().hidden_sizes


# -- array_batches: the training loader ----------------------------------------------------------


def _batches_and_rng_after(loader_factory, seed=0):
    """Every batch of two epochs, and the state of torch's global generator afterwards."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        loader = loader_factory()
        batches = [[t.clone() for t in batch] for _ in range(2) for batch in loader]
        return batches, torch.get_rng_state()


def _assert_same_batches(a, b):
    (batches_a, state_a), (batches_b, state_b) = a, b
    assert len(batches_a) == len(batches_b)
    for xa, xb in zip(batches_a, batches_b):
        for ta, tb in zip(xa, xb):
            assert ta.dtype == tb.dtype and ta.shape == tb.shape
            assert torch.equal(ta, tb)
    assert torch.equal(state_a, state_b)  # the same draws from the global generator


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("y_kind", ["none", "int", "float"])
def test_array_batches_are_the_batches_of_torch_data_loader(shuffle, drop_last, y_kind):
    from skorch.dataset import Dataset

    from skood.torch import _ArrayBatches, array_batches

    rng = np.random.RandomState(0)
    X = rng.normal(size=(203, 5)).astype(np.float32)
    y = {"none": None, "int": rng.randint(3, size=203), "float": rng.normal(size=203)}[y_kind]
    params = {"batch_size": 16, "shuffle": shuffle, "drop_last": drop_last}
    fast = _batches_and_rng_after(lambda: array_batches(Dataset(X, y), **params))
    slow = _batches_and_rng_after(lambda: torch.utils.data.DataLoader(Dataset(X, y), **params))
    _assert_same_batches(fast, slow)
    assert isinstance(array_batches(Dataset(X, y), **params), _ArrayBatches)
    assert len(array_batches(Dataset(X, y), **params)) == (12 if drop_last else 13)


@pytest.mark.parametrize("plain", [True, False])
def test_validation_batches_leave_the_global_generator_as_it_was(plain):
    from skorch.dataset import Dataset

    from skood.torch import array_batches, array_batches_valid

    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    # plain arrays are cut by indexing; a collate_fn sends them through DataLoader
    params = {} if plain else {"collate_fn": torch.utils.data.default_collate}
    before = torch.get_rng_state()
    batches = array_batches_valid(Dataset(X, None), batch_size=8, **params)
    assert len(batches) == 3
    got = [b[0] for b in batches]
    assert torch.equal(torch.get_rng_state(), before)
    expected = [b[0] for b in array_batches(Dataset(X, None), batch_size=8, **params)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert not torch.equal(torch.get_rng_state(), before)  # what the training iterator does


@pytest.mark.parametrize("ratio", [1.0, 2.0, 0.3, 1.7])
@pytest.mark.parametrize("replace", [True, False])
def test_array_batches_give_the_outlier_exposure_batches_of_data_loader(ratio, replace):
    from skood.torch import (
        OutlierExposureBatches,
        OutlierExposureCollate,
        _ArrayBatches,
        array_batches,
    )

    rng = np.random.RandomState(1)
    X_in = rng.normal(size=(101, 4)).astype(np.float32)
    X_out = rng.normal(size=(13, 4)).astype(np.float32)
    y_in = rng.randint(3, size=101)

    def augment(X):  # draws from the global generator inside the collate, as HSC's does
        return X + torch.randn_like(X)

    def loader(fast):
        data = OutlierExposureBatches(X_in, y_in, X_out, ratio=ratio, replace=replace)
        make = array_batches if fast else torch.utils.data.DataLoader
        return make(data, batch_size=8, shuffle=True, collate_fn=OutlierExposureCollate(augment))

    _assert_same_batches(
        _batches_and_rng_after(lambda: loader(True)), _batches_and_rng_after(lambda: loader(False))
    )
    assert isinstance(loader(True), _ArrayBatches)


def test_array_batches_leave_other_datasets_and_options_to_data_loader():
    from skorch.dataset import Dataset

    from skood.torch import array_batches

    X = np.zeros((10, 2), dtype=np.float32)
    tensors = torch.utils.data.TensorDataset(torch.from_numpy(X))
    assert isinstance(array_batches(tensors, batch_size=4), torch.utils.data.DataLoader)
    with_workers = array_batches(Dataset(X, None), batch_size=4, num_workers=0)
    assert isinstance(with_workers, torch.utils.data.DataLoader)
    frame = pytest.importorskip("pandas").DataFrame(X)
    assert isinstance(
        array_batches(Dataset(frame, None), batch_size=4), torch.utils.data.DataLoader
    )


def _fit_with_both_loaders(make, X, y, monkeypatch):
    """``make()`` fitted with skood's loader (checking it uses the fused optimizer), and again
    with torch's ``DataLoader`` in its place."""
    import skood.torch as training

    fast = make().fit(X, y)
    assert fast.net_.optimizer_.defaults["fused"] is True
    with monkeypatch.context() as patch:
        patch.setattr(
            training, "array_batches", lambda data, **kw: torch.utils.data.DataLoader(data, **kw)
        )
        slow = make().fit(X, y)
    return fast, slow


def test_fits_are_those_of_the_data_loader_and_use_the_fused_optimizer(monkeypatch):
    """The fast loader changes the speed of a fit, not its result."""
    from skood import HSCDetector, ICEClassifier, QuantileFlowDetector

    rng = np.random.RandomState(0)
    X = rng.normal(size=(150, 6))
    y = np.r_[rng.randint(2, size=120), -np.ones(30, dtype=int)]
    makers = [
        lambda: QuantileFlowDetector(
            n_blocks=2, hidden_sizes=(16, 16), max_epochs=3, min_steps=0, random_state=0
        ),
        lambda: HSCDetector(max_epochs=3, min_steps=0, random_state=0),
        lambda: ICEClassifier(max_epochs=3, random_state=0),
    ]
    for make in makers:
        fast, slow = _fit_with_both_loaders(make, X, y, monkeypatch)
        np.testing.assert_array_equal(fast.score_samples(X), slow.score_samples(X))


def test_nets_carry_no_print_log():
    """skood draws its own progress bar; skorch's PrintLog would format a table every epoch."""
    from skood import HSCDetector

    X = np.random.RandomState(0).normal(size=(60, 4))
    net = HSCDetector(max_epochs=2, min_steps=0, random_state=0).fit(X).net_
    names = [name for name, _ in net.callbacks_]
    assert "print_log" not in names and "train_loss" in names


def test_predict_batched_reads_float32_in_place_and_read_only_arrays_by_copy():
    from skood.torch import predict_batched

    module = torch.nn.Linear(3, 1)
    X = np.random.RandomState(0).normal(size=(50, 3)).astype(np.float32)
    before = X.copy()
    expected = module(torch.from_numpy(X)).detach().double().numpy()
    got = predict_batched(module, X, batch_size=7, module=module)
    assert got.dtype == np.float64
    # Batches of 7 against one of 50: float32 kernels may round differently (a tolerance).
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(X, before)
    X.setflags(write=False)  # e.g. a memmap opened read-only: no warning, same result
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(predict_batched(module, X, batch_size=7, module=module), got)


def test_predict_batched_never_lets_user_code_write_to_the_callers_array():
    from skood.torch import predict_batched

    class WritesItsInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 1)

        def forward(self, x):
            return self.linear(x.mul_(2.0))

    module = WritesItsInput()
    X = np.ones((10, 3), dtype=np.float32)
    predict_batched(module, X, batch_size=4, module=module)
    np.testing.assert_array_equal(X, np.ones((10, 3)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fits_with_the_array_loader_match_the_data_loader(monkeypatch):
    from skood import HSCDetector, QuantileFlowDetector

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 6))
    y = np.r_[np.ones(240), -np.ones(60)]
    for make in (
        lambda: QuantileFlowDetector(max_epochs=3, min_steps=0, device="cuda", random_state=0),
        lambda: HSCDetector(max_epochs=3, min_steps=0, device="cuda", random_state=0),
    ):
        fast, slow = _fit_with_both_loaders(make, X, y, monkeypatch)
        # The same batches on the same GPU; cuBLAS may pick other kernels between runs.
        np.testing.assert_allclose(
            fast.score_samples(X), slow.score_samples(X), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("y_kind", ["int", "bool", "str"])
def test_anomaly_labels_in_the_0_1_convention_are_not_read_silently(y_kind):
    """ADBench / PyOD mark an anomaly with 1: to skood that is a second inlier class, which the
    Gaussian even models. The user is told, with the fix; -1 / +1 labels and y=None are not."""
    from skood import EnsembleDetector, GaussianMahalanobis, KNNDetector
    from skood.datasets import from_anomaly_labels

    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(180, 3)), rng.normal(4.0, size=(20, 3))])
    y01 = np.r_[np.zeros(180, dtype=int), np.ones(20, dtype=int)]
    y = {"int": y01, "bool": y01.astype(bool), "str": y01.astype(str)}[y_kind]
    for det in (GaussianMahalanobis(), KNNDetector()):
        with pytest.warns(UserWarning, match=r"only the values 0 and 1 .*from_anomaly_labels"):
            det.fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianMahalanobis().fit(X, from_anomaly_labels(y01))  # the fix: no warning
        GaussianMahalanobis().fit(X)
        GaussianMahalanobis().fit(X, np.r_[np.full(180, 1), np.full(20, 2)])  # two classes
    # An ensemble and its members say it once, at the user's line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        EnsembleDetector(random_state=0).fit(X, y)
    said = [w for w in caught if "only the values 0 and 1" in str(w.message)]
    assert len(said) == 1 and said[0].filename == __file__


def test_labels_of_mixed_types_do_not_break_the_0_1_check():
    """np.unique cannot sort 1 and 'a'; such labels are no 0 / 1 labels, and a detector that
    ignores labels still fits."""
    from skood import KNNDetector

    X = np.random.RandomState(0).normal(size=(20, 2))
    KNNDetector().fit(X, np.array([1, "a"] * 10, dtype=object))
