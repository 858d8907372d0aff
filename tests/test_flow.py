"""QuantileFlowDetector: sklearn contract, training really happens, determinism, persistence, bad input."""

import copy
import os
import pickle
import subprocess
import sys

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from skorch.callbacks import Callback, EarlyStopping

from skood import QuantileFlowDetector
from skood.base import split_holdout
from skood.metrics import auroc
from skood.torch import plan_epochs
from tests._helpers import assert_float32_close


class _InitialState(Callback):
    """Snapshots the flow's (ActNorm-initialised, untrained) weights when training starts."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.state_ = copy.deepcopy(net.module_.state_dict())


def _untrained_scores(det, X):
    snap = next(cb for _, cb in det.net_.callbacks_ if isinstance(cb, _InitialState))
    flow = copy.deepcopy(det.net_.module_)
    flow.load_state_dict(snap.state_)
    with torch.no_grad():
        ll = flow.eval().log_prob(torch.tensor(X, dtype=torch.float32)).double().numpy()
    return np.nan_to_num(ll, nan=-1e100, neginf=-1e100), snap.state_


@pytest.mark.parametrize("q", [0.05, "mean"])
def test_training_changes_every_parameter_and_beats_the_untrained_flow(digits_split, q):
    X_train, _, X_test, y_test = digits_split
    det = QuantileFlowDetector(
        q,
        n_blocks=4,
        hidden_sizes=(64, 64),
        min_steps=300,
        lr=1e-3,
        random_state=0,
        callbacks=[_InitialState()],
    ).fit(X_train)
    untrained, initial_state = _untrained_scores(det, X_test)
    for name, value in det.net_.module_.state_dict().items():
        if name.endswith("perm"):  # fixed permutations are buffers, not parameters
            continue
        assert not torch.equal(value, initial_state[name]), f"{name} did not change"
    trained = det.score_samples(X_test)
    inliers = y_test != -1
    assert np.median(trained[inliers]) > np.median(untrained[inliers]) + 5  # nats
    assert auroc(y_test, trained) > auroc(y_test, untrained) + 0.05


def test_same_random_state_gives_identical_scores_and_another_differs(rng, flow_tiny):
    X = rng.normal(size=(200, 5))
    a = QuantileFlowDetector(**flow_tiny, random_state=3).fit(X).score_samples(X)
    b = QuantileFlowDetector(**flow_tiny, random_state=3).fit(X).score_samples(X)
    c = QuantileFlowDetector(**flow_tiny, random_state=4).fit(X).score_samples(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_leaves_global_torch_rng_untouched(rng, flow_tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    QuantileFlowDetector(**flow_tiny, random_state=0).fit(rng.normal(size=(50, 3)))
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_persistence_round_trip_gives_identical_scores(rng, tmp_path, dump, flow_tiny):
    X = rng.normal(size=(100, 4))
    det = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X)
    if dump == "pickle":
        det2 = pickle.loads(pickle.dumps(det))
    else:
        joblib.dump(det, tmp_path / "det.joblib")
        det2 = joblib.load(tmp_path / "det.joblib")
    np.testing.assert_array_equal(det.score_samples(X), det2.score_samples(X))
    np.testing.assert_array_equal(det.predict(X), det2.predict(X))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_trained_model_scores_on_a_cpu_only_process(rng, tmp_path, flow_tiny):
    X = rng.normal(size=(200, 4))
    det = QuantileFlowDetector(**flow_tiny, device="cuda", random_state=0).fit(X)
    assert next(det.net_.module_.parameters()).is_cuda
    joblib.dump(det, tmp_path / "gpu.joblib")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "scores.npy", det.score_samples(X))
    code = (
        "import joblib, numpy as np, torch; assert not torch.cuda.is_available();"
        f"d = joblib.load(r'{tmp_path}/gpu.joblib'); X = np.load(r'{tmp_path}/X.npy');"
        f"np.testing.assert_allclose(d.score_samples(X), np.load(r'{tmp_path}/scores.npy'),"
        " rtol=1e-4, atol=1e-4)"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_net_recorded_on_cuda_unpickles_and_scores_on_a_cpu_only_machine(rng, flow_tiny):
    """skorch maps a CUDA net to the CPU on load; scoring follows the parameters' device.

    This exercises the load path without a GPU (the tensors were CPU all along); the real
    GPU -> CPU round trip is the test above, which runs where CUDA exists.
    """
    X = rng.normal(size=(100, 4))
    det = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X)
    expected = det.score_samples(X)
    det.net_.device = "cuda"
    with pytest.warns(UserWarning, match="(?i)cuda"):  # skorch warns twice; both expected
        loaded = pickle.loads(pickle.dumps(det))
    assert str(loaded.net_.device) == "cpu"
    np.testing.assert_array_equal(loaded.score_samples(X), expected)


def test_outlier_rows_are_left_out_of_training(rng, flow_tiny):
    X = rng.normal(size=(120, 3))
    outliers = rng.normal(10, 1, size=(30, 3))
    ref = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X)
    det = QuantileFlowDetector(**flow_tiny, random_state=0).fit(
        np.r_[X, outliers], np.r_[np.ones(120), -np.ones(30)]
    )
    np.testing.assert_array_equal(det.score_samples(X), ref.score_samples(X))


def test_offset_is_the_contamination_quantile_of_held_out_inliers(rng, flow_tiny):
    X = rng.normal(size=(500, 3))
    det = QuantileFlowDetector(**flow_tiny, contamination=0.1, random_state=0).fit(X)
    rng_split = np.random.RandomState(0)
    held_out = np.sort(rng_split.permutation(500)[:100])
    held_out_scores = det.score_samples(X[held_out])
    assert det.offset_ == pytest.approx(np.quantile(held_out_scores, 0.1, method="weibull"))
    decision = det.decision_function(X)
    np.testing.assert_allclose(decision, det.score_samples(X) - det.offset_)
    np.testing.assert_array_equal(det.predict(X), np.where(decision >= 0, 1, -1))


def test_far_outliers_get_finite_floored_scores(rng, flow_tiny):
    det = QuantileFlowDetector(**flow_tiny, random_state=0).fit(rng.normal(size=(100, 3)))
    scores = det.score_samples(np.array([[1e30, -1e30, 1e30], [0.0, 0.0, 0.0]]))
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    assert scores[0] < scores[1]
    Z = rng.normal(size=(10, 3))
    assert det.score(Z) == pytest.approx(det.score_samples(Z).mean())


@pytest.mark.parametrize(
    "n_rows, batch, max_epochs, min_steps, drop_last, expected",
    [
        (50, 128, 50, 0, True, (50, 50, True)),  # batch capped at the data: never zero steps
        (300, 128, 50, 1000, True, (128, 500, True)),  # 2 steps/epoch -> 500 epochs
        (50_000, 128, 50, 1000, True, (128, 50, True)),  # large data: the paper's 50 epochs
        (130, 128, 1, 0, False, (128, 1, False)),
        # "auto" drops a last batch of one row only (BatchNorm cannot train on it) ...
        (257, 128, 1, 1000, "auto", (128, 500, True)),  # 2 steps/epoch once it is dropped
        (258, 128, 1, 1000, "auto", (128, 334, False)),  # a last batch of 2 rows trains
        (1, 128, 3, 0, "auto", (1, 3, False)),  # ... never the only batch
    ],
)
def test_plan_epochs(n_rows, batch, max_epochs, min_steps, drop_last, expected):
    assert plan_epochs(n_rows, batch, max_epochs, min_steps, drop_last) == expected


def test_small_data_still_takes_min_steps_optimiser_steps(rng, flow_tiny):
    det = QuantileFlowDetector(**{**flow_tiny, "batch_size": 128, "min_steps": 40}).fit(
        rng.normal(size=(30, 3))
    )
    # 24 training rows -> one batch of 24 per epoch -> 40 epochs of 1 step.
    assert det.batch_size_ == 24 and det.n_epochs_ == 40
    assert len(det.net_.history) == 40
    assert all(len(epoch["batches"]) == 1 for epoch in det.net_.history)


def test_verbose_says_when_min_steps_raises_the_epochs(rng, capsys, flow_tiny):
    """max_epochs=3 training 40 epochs without a word surprised a user (issue 34)."""
    X = rng.normal(size=(30, 3))  # 24 training rows: one batch, one step per epoch
    params = {**flow_tiny, "batch_size": 128, "max_epochs": 3, "random_state": 0, "min_steps": 40}
    det = QuantileFlowDetector(**params, verbose=1).fit(X)
    assert det.n_epochs_ == len(det.net_.history) == 40
    lines = [line for line in capsys.readouterr().err.splitlines() if "max_epochs=3" in line]
    assert lines == [
        "QuantileFlowDetector: 40 epochs instead of max_epochs=3, to reach min_steps=40 "
        "optimiser steps (24 rows at batch_size=24 make 1 per epoch; set min_steps=0 to train "
        "exactly max_epochs)"
    ]
    # Silent without verbose, and when min_steps changes nothing.
    QuantileFlowDetector(**params).fit(X)
    QuantileFlowDetector(**{**params, "min_steps": 2}, verbose=1).fit(X)
    assert "instead of" not in capsys.readouterr().err


def test_user_callbacks_get_a_validation_set_and_are_not_mutated(rng, flow_tiny):
    stopper = EarlyStopping(monitor="valid_loss", patience=2)
    det = QuantileFlowDetector(
        **{**flow_tiny, "max_epochs": 200}, callbacks=[stopper], random_state=0
    ).fit(rng.normal(size=(200, 3)))
    assert "valid_loss" in det.net_.history[-1]
    assert len(det.net_.history) < 200
    assert stopper.dynamic_threshold_ is None  # the user's object was copied, never trained


def test_a_callback_that_does_nothing_leaves_the_fit_unchanged(rng, flow_tiny):
    # A callback turns the held-out rows into skorch's validation set. Its passes must not draw
    # from torch's global generator (DataLoader does), or every later epoch's shuffle would move.
    X = rng.normal(size=(300, 4))
    params = {**flow_tiny, "max_epochs": 6, "batch_size": 32, "random_state": 0}
    plain = QuantileFlowDetector(**params).fit(X)
    watched = QuantileFlowDetector(**params, callbacks=[Callback()]).fit(X)
    assert "valid_loss" in watched.net_.history[-1]
    np.testing.assert_array_equal(watched.score_samples(X), plain.score_samples(X))


@pytest.mark.parametrize("coupling", ["glow", "realnvp", "nice", "gin"])
@pytest.mark.parametrize("permutation", ["random", "learned"])
def test_every_architecture_option_fits(rng, coupling, permutation, flow_tiny):
    X = rng.normal(size=(80, 4))
    det = QuantileFlowDetector(
        **flow_tiny, coupling=coupling, permutation=permutation, random_state=0
    ).fit(X)
    assert np.isfinite(det.score_samples(X)).all()


def test_noise_and_progress_bar(rng, capsys, flow_tiny):
    X = rng.normal(size=(80, 4))
    plain = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X).score_samples(X)
    det = QuantileFlowDetector(**flow_tiny, noise_std=0.5, verbose=1, random_state=0).fit(X)
    assert not np.allclose(det.score_samples(X), plain)
    assert "epoch" in capsys.readouterr().err
    pickle.loads(pickle.dumps(det))  # the progress bar does not stay on the fitted model


def test_dequantizing_grid_valued_pixels_beats_fitting_the_grid_points(digits_split):
    # Digits pixels take 17 values. At the paper's clamp the mean-NLL flow piles density onto
    # the training grid points (AUROC 0.78 on this split, seed 0); dequantized, 0.94.
    X_train, _, X_test, y_test = digits_split
    plain = QuantileFlowDetector("mean", clamp=3.0, random_state=0).fit(X_train)
    deq = QuantileFlowDetector("mean", clamp=3.0, dequantize=True, random_state=0).fit(X_train)
    assert not plain.grid_steps_.any()
    # every pixel is a grid column: its step is one intensity level in standardised units
    assert (deq.grid_steps_ > 0).all()
    assert (
        auroc(y_test, deq.score_samples(X_test)) > auroc(y_test, plain.score_samples(X_test)) + 0.08
    )


def test_sample_draws_from_the_fitted_density(rng, flow_tiny):
    X = rng.normal(5.0, 1.0, size=(300, 3))
    det = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X)
    s = det.sample(500, random_state=0)
    assert s.shape == (500, 3)
    assert np.abs(s.mean(0) - 5.0).max() < 1.0


# -- bad input: a clear error, never a crash deep in torch --------------------------------
@pytest.fixture
def fitted(rng, flow_tiny):
    return QuantileFlowDetector(**flow_tiny, random_state=0).fit(rng.normal(size=(60, 3)))


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 1.0]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 1.0]]), "infinity"),
        (np.array([[1.0, 2.0]]), "1 sample"),
        (np.ones((3, 1)), "1 feature"),
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), "numeric|string"),
        (sp.csr_matrix(np.eye(5)), "[Ss]parse"),
        (np.array([[1.0, 2.0], [2.0, 3.0]]), "needs at least 3 inlier rows"),
        (np.c_[np.arange(10.0), np.ones(10)], r"at least 2 columns that vary.*1 of 2 do"),
    ],
)
def test_bad_fit_input_gives_a_clear_error(X, match, flow_tiny):
    with pytest.raises((ValueError, TypeError), match=match):
        QuantileFlowDetector(**flow_tiny).fit(X)


def test_constant_columns_need_no_preprocessing_and_only_shift_the_score(rng, flow_tiny):
    """A column constant on the training rows is a narrow Gaussian beside the flow (issue 16).

    On rows that keep the constants the flow part is exactly the flow fitted without those
    columns (same seed, same permutations and training), so the scores differ by one constant;
    a row that leaves a constant loses ((x - c) / scale)^2 / 2 nats.
    """
    X_var = rng.normal(size=(120, 3))
    X = np.c_[X_var, np.zeros(120), np.full(120, 5.0)]
    with_constants = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X)
    without = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X_var)
    np.testing.assert_array_equal(with_constants.constant_columns_, [3, 4])
    assert without.constant_columns_.size == 0
    shift = with_constants.score_samples(X) - without.score_samples(X_var)
    assert_float32_close(shift, np.full_like(shift, shift[0]))
    lit = X.copy()
    lit[:5, 3] = 1.0  # a dead unit fires
    drop = with_constants.score_samples(X[:5]) - with_constants.score_samples(lit[:5])
    scale = with_constants.net_.module_.pinned_scale[0].item()
    assert_float32_close(drop, np.full(5, 0.5 * (1.0 / scale) ** 2))
    assert (with_constants.predict(lit[:5]) == -1).all()


def test_column_constant_on_the_training_split_only(rng, flow_tiny):
    """A column that varies only in the held-out rows: fitted, and those rows score low."""
    X = np.c_[rng.normal(size=(50, 3)), np.zeros(50)]
    # the rows QuantileFlowDetector(validation_fraction=0.2, random_state=0) holds out
    _, held = split_holdout(50, 0.2, np.random.RandomState(0), min_train=2, estimator_name="")
    X[held, 3] = 1.0
    det = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X)
    scores = det.score_samples(X)
    assert np.isfinite(scores).all() and det.constant_columns_.tolist() == [3]
    moved = X[:, 3] == 1.0
    assert scores[moved].max() < scores[~moved].min()


def test_y_with_only_outliers_is_rejected(rng, flow_tiny):
    with pytest.raises(ValueError, match="every row as an outlier"):
        QuantileFlowDetector(**flow_tiny).fit(rng.normal(size=(10, 3)), -np.ones(10))


def test_wrong_width_and_nan_at_predict_time(fitted):
    with pytest.raises(
        ValueError, match="X has 4 features, but QuantileFlowDetector is expecting 3"
    ):
        fitted.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        fitted.score_samples(np.array([[np.nan, 0.0, 0.0]]))


def test_invalid_parameters_are_reported_by_name(rng):
    with pytest.raises(ValueError, match="'q' parameter"):
        QuantileFlowDetector(q=1.5).fit(rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="'contamination' parameter"):
        QuantileFlowDetector(contamination=0.7).fit(rng.normal(size=(10, 3)))


def test_cuda_request_without_cuda_is_a_clear_error(rng, flow_tiny):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="no CUDA device"):
        QuantileFlowDetector(**flow_tiny, device="cuda").fit(rng.normal(size=(10, 3)))


def test_training_log_goes_nowhere_when_quiet(rng, capsys, flow_tiny):
    QuantileFlowDetector(**flow_tiny, random_state=0).fit(rng.normal(size=(40, 3)))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.numerics
def test_score_samples_is_batched_with_bounded_memory(fitted, rng):
    X = rng.normal(size=(1000, 3))
    small_batches = copy.deepcopy(fitted).set_params(inference_batch_size=7)
    assert_float32_close(small_batches.score_samples(X), fitted.score_samples(X))
