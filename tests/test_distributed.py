"""skood on a Dask cluster (``skood[dask]``): searches under joblib's dask backend equal the
sequential ones, block-by-block scoring equals in-memory scoring, torch threads follow the worker,
and a worker killed mid-scoring loses no row. A 2-process LocalCluster on loopback."""

import os
import signal
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import joblib  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skood import (  # noqa: E402
    AMADetector,
    ClassifierFeatures,
    CLIPZeroShot,
    ConformalDetector,
    EnsembleDetector,
    GaussianMahalanobis,
    HSCDetector,
    ICEClassifier,
    KNNDetector,
    OpenSetClassifier,
    QuantileFlowDetector,
    ROSEScorer,
    VAEDetector,
)
from skood.distributed import TorchThreads, score_dataset  # noqa: E402
from skood.metrics import SCORERS  # noqa: E402
from skood.model_selection import OODStratifiedKFold  # noqa: E402
from tests._helpers import FLOAT32_RTOL  # noqa: E402
from tests._settings import AMA_CHECKS, HSC_TINY, STAGE1_CHECKS, TINY_FLOW, VAE_CHECKS  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as client:
        client.register_plugin(TorchThreads())
        yield client
    cluster.close()


def _computed(client, collection, timeout=300):
    """``collection.compute()`` on the cluster, failing instead of hanging past ``timeout`` s.

    distributed waits forever for a block whose input could not be sent between workers (it
    happened when a model did not pickle while another thread scored with it): a clear failure
    here instead of a CI run that stalls until its time limit.
    """
    return client.compute(collection).result(timeout=timeout)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(150, 3)), rng.normal(3.0, 1.0, size=(30, 3))])
    y = np.r_[np.repeat([0, 1, 2], 50), -np.ones(30, dtype=int)]
    return X, y


def test_torch_in_each_worker_uses_the_workers_threads(client):
    threads = client.run(lambda: __import__("torch").get_num_threads())
    assert set(threads.values()) == {1} and len(threads) == 2


@pytest.mark.parametrize(
    "estimator, grid",
    [
        (QuantileFlowDetector(**TINY_FLOW, random_state=0), {"q": [0.05, "mean"]}),
        (
            ICEClassifier(hidden_sizes=(8,), feature_dim=4, max_epochs=3, random_state=0),
            {"ood_weight": [0.1, 1.0]},  # the lambda of ICE's loss
        ),
    ],
    ids=["flow", "ice"],
)
def test_a_search_on_the_cluster_equals_the_sequential_one(client, data, estimator, grid):
    X, y = data
    search = lambda **kw: GridSearchCV(  # noqa: E731
        estimator, grid, cv=OODStratifiedKFold(n_splits=3, random_state=0),
        scoring=SCORERS["auroc"], **kw,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sequential = search().fit(X, y)
        with joblib.parallel_config(backend="dask"):
            on_cluster = search(n_jobs=-1).fit(X, y)
    np.testing.assert_array_equal(
        on_cluster.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(
        on_cluster.best_estimator_.score_samples(X), sequential.best_estimator_.score_samples(X)
    )


def test_ensemble_members_fit_on_the_cluster_as_in_one_process(client, data):
    X, _ = data
    members = [
        ("flow", QuantileFlowDetector(**TINY_FLOW)),
        ("gaussian", GaussianMahalanobis()),
        ("knn", KNNDetector()),
    ]
    sequential = EnsembleDetector(members, random_state=0).fit(X)
    with joblib.parallel_backend("dask"):
        on_cluster = EnsembleDetector(members, n_jobs=-1, random_state=0).fit(X)
    # Same fits; float64 products of arrays shipped to another process may round in their last
    # bit differently (BLAS takes another path for another memory alignment): 4e-16 seen.
    np.testing.assert_allclose(on_cluster.score_samples(X), sequential.score_samples(X), rtol=1e-12)


@pytest.mark.parametrize(
    "model",
    [
        GaussianMahalanobis(random_state=0),
        make_pipeline(StandardScaler(), QuantileFlowDetector(**TINY_FLOW, random_state=0)),
        VAEDetector(**VAE_CHECKS),
        HSCDetector(**HSC_TINY),
        ConformalDetector(GaussianMahalanobis(random_state=0), alpha=0.1, random_state=0),
        ICEClassifier(hidden_sizes=(8,), feature_dim=4, max_epochs=3, random_state=0),
        AMADetector(**AMA_CHECKS),
        ROSEScorer(VAEDetector(**VAE_CHECKS), random_state=0),
        OpenSetClassifier(
            ClassifierFeatures(**STAGE1_CHECKS), GaussianMahalanobis(), random_state=0
        ),
        CLIPZeroShot(precomputed=True, text_embeddings=np.eye(3)[:2] + 0.1),
        KNNDetector(random_state=0),
        EnsembleDetector(random_state=0),
    ],
    ids=[
        "gaussian",
        "flow-pipeline",
        "vae",
        "hsc",
        "conformal",
        "ice",
        "ama",
        "rose",
        "open-set",
        "clip",
        "knn",
        "ensemble",
    ],
)
def test_scoring_block_by_block_equals_scoring_in_memory(client, data, model):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(X, y if not hasattr(model, "steps") else None)
    rng = np.random.default_rng(1)
    X_new = rng.normal(size=(1000, 3))
    out = _computed(client, score_dataset(model, da.from_array(X_new, chunks=(128, 3))))
    assert len(out) == 1000 and list(out.index) == list(range(1000))
    column = "p_value" if "p_value" in out else "score"
    expected = model.score_samples(X_new)
    # float32 networks: a row's output moves by ~1e-7 with the block it is computed in
    np.testing.assert_allclose(out[column].to_numpy(), expected, rtol=FLOAT32_RTOL)
    np.testing.assert_array_equal(out["is_outlier"].to_numpy(), model.predict(X_new) == -1)


def test_a_parquet_dataset_and_a_dataframe(client, data, tmp_path):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X, _ = data
    model = GaussianMahalanobis(random_state=0).fit(X)
    frame = pd.DataFrame(np.random.default_rng(2).normal(size=(400, 3)), columns=["a", "b", "c"])
    frame["id"] = np.arange(400)
    dd.from_pandas(frame, npartitions=4).to_parquet(tmp_path / "ds")
    out = _computed(client, score_dataset(model, str(tmp_path / "ds"), columns=["a", "b", "c"]))
    np.testing.assert_array_equal(
        out["score"].to_numpy(), model.score_samples(frame[["a", "b", "c"]].to_numpy())
    )
    with pytest.raises(TypeError, match="dask array, a dask dataframe"):
        score_dataset(model, frame)


def test_a_dataset_is_scored_by_the_models_column_names_not_their_order(client, tmp_path):
    # 8c543f1 scored the columns in the file's order: a Parquet dataset with the model's columns
    # reordered flagged 19 of 20 rows, where the same frame in memory is refused.
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    rng = np.random.default_rng(7)
    train = pd.DataFrame(rng.normal(size=(300, 3)) * [1.0, 10.0, 100.0], columns=["a", "b", "c"])
    model = GaussianMahalanobis(random_state=0).fit(train)
    new = pd.DataFrame(rng.normal(size=(20, 3)) * [1.0, 10.0, 100.0], columns=["a", "b", "c"])
    reordered = new[["c", "a", "b"]].assign(id=np.arange(20))
    dd.from_pandas(reordered, npartitions=2).to_parquet(tmp_path / "ds")
    out = _computed(client, score_dataset(model, str(tmp_path / "ds")))
    np.testing.assert_allclose(out["score"].to_numpy(), model.score_samples(new), rtol=1e-12)
    assert out["is_outlier"].sum() <= 3
    frame = dd.from_pandas(reordered, npartitions=2)
    out = _computed(client, score_dataset(model, frame))
    np.testing.assert_allclose(out["score"].to_numpy(), model.score_samples(new), rtol=1e-12)
    with pytest.raises(ValueError, match=r"lacks the model's column\(s\) \['b'\]"):
        score_dataset(model, frame.drop(columns="b"))
    with pytest.raises(ValueError, match="differ from the columns the model was fitted on"):
        score_dataset(model, frame, columns=["c", "a", "b"])


def test_a_dask_fit_reads_a_string_outlier_label_as_in_memory(client):
    X = np.random.default_rng(4).normal(size=(200, 3))
    y = np.array(["a", "b"] * 90 + ["-1"] * 20)  # text labels, "-1" marks outlier rows
    memory = GaussianMahalanobis(random_state=0).fit(X, y)
    blocks = GaussianMahalanobis(random_state=0).fit(
        da.from_array(X, chunks=(50, 3)), da.from_array(y, chunks=50)
    )
    assert list(blocks.classes_) == list(memory.classes_) == ["a", "b"]
    np.testing.assert_allclose(blocks.means_, memory.means_, rtol=1e-12)
    # without classes: the "-1" rows are left out of the single Gaussian too
    one = GaussianMahalanobis(class_conditional=False, random_state=0)
    one.fit(da.from_array(X, chunks=(50, 3)), da.from_array(y, chunks=50))
    np.testing.assert_allclose(one.means_[0], X[:180].mean(0), rtol=1e-12)


def test_a_dask_fit_warns_of_too_few_rows_per_feature_as_in_memory(client):
    X = np.random.default_rng(9).normal(size=(12, 10))
    with pytest.warns(UserWarning, match="degrees of freedom") as memory:
        GaussianMahalanobis(covariance="empirical", random_state=0).fit(X)
    with pytest.warns(UserWarning, match="degrees of freedom") as blocks:
        GaussianMahalanobis(covariance="empirical", random_state=0).fit(
            da.from_array(X, chunks=(4, 10))
        )
    assert str(blocks[0].message) == str(memory[0].message)
    # the default resolves "auto" from the same counts on blocks as in memory (OAS here)
    auto = GaussianMahalanobis(random_state=0).fit(da.from_array(X, chunks=(4, 10)))
    assert auto.covariance_method_ == GaussianMahalanobis(random_state=0).fit(X).covariance_method_
    np.testing.assert_allclose(
        auto.covariance_, GaussianMahalanobis(random_state=0).fit(X).covariance_, rtol=1e-10
    )


def test_a_nan_label_in_a_dask_fit_is_named(client):
    # 8c543f1 took NaN for a class and reported the fit as TrainingDiverged ("lower lr").
    X = np.random.default_rng(8).normal(size=(400, 3))
    y = np.zeros(400)
    y[[17, 230]] = np.nan
    with pytest.raises(ValueError, match=r"y has 2 missing label\(s\) \(NaN; the first at row 17"):
        GaussianMahalanobis(random_state=0).fit(
            da.from_array(X, chunks=(100, 3)), da.from_array(y, chunks=100)
        )


def test_a_worker_killed_mid_scoring_loses_no_row(client, data):
    X, _ = data
    model = GaussianMahalanobis(random_state=0).fit(X)
    X_new = np.random.default_rng(3).normal(size=(4000, 3))

    def slow_rows(block):  # long enough blocks that a kill lands mid-computation
        import time

        time.sleep(0.05)
        return block

    slow = da.from_array(X_new, chunks=(100, 3)).map_blocks(slow_rows, dtype=np.float64)
    future = client.compute(score_dataset(model, slow))
    victim = next(iter(client.scheduler_info()["workers"]))
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)  # the nanny restarts it; the scheduler reruns its tasks
    out = future.result(timeout=120)
    assert len(out) == 4000
    np.testing.assert_array_equal(out["score"].to_numpy(), model.score_samples(X_new))


@pytest.mark.parametrize("covariance", ["empirical", "ledoit_wolf", "oas", "shrunk"])
@pytest.mark.parametrize("labelled", [False, True], ids=["one-gaussian", "classes"])
def test_a_gaussian_fitted_on_blocks_equals_the_in_memory_fit(client, covariance, labelled):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 5)) @ rng.normal(size=(5, 5)) + 3.0
    y = rng.integers(0, 3, 3000)
    y[:200] = -1  # outlier rows: left out of the fit, as in memory
    y = y if labelled else None
    blocks = da.from_array(X, chunks=(400, 5))
    y_blocks = None if y is None else da.from_array(y, chunks=400)
    params = dict(covariance=covariance, offset_cv=None, random_state=0)
    memory = GaussianMahalanobis(**params).fit(X, y)
    dist = GaussianMahalanobis(**params).fit(blocks, y_blocks)
    for name in ("means_", "covariance_", "whitening_"):
        np.testing.assert_allclose(
            getattr(dist, name), getattr(memory, name), rtol=1e-10, atol=1e-12
        )
    np.testing.assert_allclose(dist.log_det_, memory.log_det_, rtol=1e-12)
    np.testing.assert_allclose(dist.offset_, memory.offset_, rtol=1e-12)
    np.testing.assert_allclose(dist.score_samples(X), memory.score_samples(X), rtol=1e-12)
    if labelled:
        np.testing.assert_array_equal(dist.classes_, memory.classes_)
    # out-of-fold calibration (offset_cv=5): the same folds of the same inlier rows, the same
    # fold models, so the same calibration scores and offset_ (measured: offset_ 1e-14 and the
    # calibration scores 2e-13 relative)
    cv_memory = GaussianMahalanobis(covariance=covariance, random_state=0).fit(X, y)
    cv_dist = GaussianMahalanobis(covariance=covariance, random_state=0).fit(blocks, y_blocks)
    np.testing.assert_allclose(
        cv_dist.calibration_scores_, cv_memory.calibration_scores_, rtol=1e-10
    )
    np.testing.assert_allclose(cv_dist.offset_, cv_memory.offset_, rtol=1e-10)
    assert cv_dist.calibration_held_out_ is cv_memory.calibration_held_out_ is False


def test_a_dask_gaussian_beyond_the_calibration_cap_equals_the_in_memory_fit(client, monkeypatch):
    """Beyond the cap, the same random inlier rows calibrate, in the same folds (drawn on the
    client by calibration_folds), with a second pass about the means for Ledoit-Wolf."""
    monkeypatch.setattr(GaussianMahalanobis, "_MAX_CALIBRATION_ROWS", 300)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2000, 3)) + 50.0
    y = rng.integers(0, 2, 2000)
    y[::9] = -1
    for covariance in ("auto", "ledoit_wolf"):
        params = dict(covariance=covariance, random_state=0)
        memory = GaussianMahalanobis(**params).fit(X, y)
        dist = GaussianMahalanobis(**params).fit(
            da.from_array(X, chunks=(300, 3)), da.from_array(y, chunks=300)
        )
        assert dist.calibration_scores_.shape == (300,)
        np.testing.assert_allclose(dist.calibration_scores_, memory.calibration_scores_, rtol=1e-10)
        np.testing.assert_allclose(dist.covariance_, memory.covariance_, rtol=1e-10)


def test_a_gaussian_from_a_dataframe_and_what_cannot_be_fitted_from_moments(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    from sklearn.covariance import MinCovDet

    X = np.random.default_rng(5).normal(size=(800, 3))
    frame = dd.from_pandas(pd.DataFrame(X, columns=["a", "b", "c"]), npartitions=3)
    dist = GaussianMahalanobis(offset_cv=None, random_state=0).fit(frame)
    memory = GaussianMahalanobis(offset_cv=None, random_state=0).fit(X)
    np.testing.assert_allclose(dist.covariance_, memory.covariance_, rtol=1e-10)
    with pytest.raises(ValueError, match="needs the rows themselves"):
        GaussianMahalanobis(covariance=MinCovDet()).fit(da.from_array(X, chunks=(200, 3)))


def _write_parts(folder, parts, bad=None):
    folder.mkdir()
    for i, X in enumerate(parts):
        rows = [",".join(map(str, r)) for r in X]
        if i == bad:
            rows[3] = "," + rows[3].split(",", 1)[1]  # an empty cell on line 5
        (folder / f"part{i}.csv").write_text("a,b,c\n" + "\n".join(rows) + "\n")


def test_skood_score_on_a_dataset_with_a_scheduler(client, tmp_path, capsys):
    from skood.cli import main

    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(6)
    train = tmp_path / "train.csv"
    train.write_text("a,b,c\n" + "\n".join(",".join(map(str, r)) for r in rng.normal(size=(80, 3))))
    model = tmp_path / "m.skood"
    assert main(["score", str(train), "--detector", "gauss", "--alpha", "0.1",
                 "--save", str(model), "--out", str(tmp_path / "s.csv")]) == 0  # fmt: skip
    parts = [rng.normal(size=(40, 3)) * (1 + i) for i in range(3)]
    _write_parts(tmp_path / "ds", parts)
    for scheduler, data, out in [
        ([], str(tmp_path / "ds"), tmp_path / "out1"),  # threads here
        (
            ["--scheduler", client.scheduler.address],
            str(tmp_path / "ds" / "*.csv"),
            tmp_path / "out2",
        ),
    ]:
        assert main(["score", data, "--model", str(model), "--out", str(out), *scheduler]) == 0
        err = capsys.readouterr().err
        assert "scored 3 file(s)" in err
        assert "Completed" not in err and "[####" not in err  # no progress bar off a terminal
        result = pd.read_parquet(out).sort_values(["file", "row"])
        assert sorted(p.name for p in out.iterdir()) == [f"part.{i}.parquet" for i in range(3)]
        import skood

        pipe = skood.load(model)["pipeline"]
        expected = np.concatenate([pipe.score_samples(X) for X in parts])
        np.testing.assert_allclose(result["p_value"].to_numpy(), expected, rtol=1e-12)
        assert list(result.columns) == ["file", "row", "score", "p_value", "is_outlier", "threshold"]
    # a bad partition: the error names its file, and no half-written output is left
    _write_parts(tmp_path / "bad", parts, bad=1)
    assert (
        main(
            ["score", str(tmp_path / "bad"), "--model", str(model), "--out", str(tmp_path / "out3")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "part1.csv" in err and "line 5" in err and not (tmp_path / "out3").exists()
    # a dataset needs --model and a new --out directory
    assert main(["score", str(tmp_path / "ds"), "--out", str(tmp_path / "out4")]) == 2
    assert "fit on one file with --save" in capsys.readouterr().err
    assert (
        main(
            ["score", str(tmp_path / "ds"), "--model", str(model), "--out", str(tmp_path / "out1")]
        )
        == 2
    )
    assert "exists; choose a new folder" in capsys.readouterr().err


def test_sample_rows_is_an_exact_uniform_sample(client):
    from skood.distributed import sample_rows

    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X = np.arange(3000, dtype=float).reshape(1000, 3)  # row i starts with 3 i
    for data in (da.from_array(X, chunks=(130, 3)), dd.from_pandas(pd.DataFrame(X), npartitions=7)):
        sample = sample_rows(data, 200, random_state=0)
        assert sample.shape == (200, 3) and len(np.unique(sample[:, 0])) == 200
        np.testing.assert_array_equal(sample[:, 1], sample[:, 0] + 1)  # whole rows
        np.testing.assert_array_equal(sample, sample_rows(data, 200, random_state=0))
    assert sample_rows(da.from_array(X, chunks=(130, 3)), 5000).shape == (1000, 3)
    # rows drawn uniformly: over many draws every block is hit in proportion to its size
    counts = np.zeros(1000)
    for seed in range(50):
        counts[
            (
                sample_rows(da.from_array(X, chunks=(130, 3)), 100, random_state=seed)[:, 0] / 3
            ).astype(int)
        ] += 1
    assert abs(counts[:500].sum() - counts[500:].sum()) < 0.15 * counts.sum()


def test_one_gpu_per_worker_sets_each_workers_device(client):
    """The GPU recipe's code path, on CPU: each worker sees its own CUDA_VISIBLE_DEVICES, and
    device='auto' resolves to what that worker has (here the CPU)."""
    from skood.distributed import OneGPUPerWorker
    from skood.torch import resolve_device

    client.register_plugin(OneGPUPerWorker(gpus=[0, 1]))
    seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert sorted(seen.values()) == ["0", "1"]
    devices = client.run(lambda: resolve_device("auto"))
    import torch

    n_gpus = torch.cuda.device_count()
    expected = {w: "cuda" if int(seen[w]) < n_gpus else "cpu" for w in seen}
    assert devices == expected
    client.run(lambda: os.environ.pop("CUDA_VISIBLE_DEVICES", None))


class _CountedModel:
    """A fitted model that counts, per process, how often it is unpickled."""

    loads = 0

    def __init__(self, model):
        self.model = model

    def __getstate__(self):
        return {"model": self.model}

    def __setstate__(self, state):
        type(self).loads += 1
        self.model = state["model"]

    def score_samples(self, X):
        return self.model.score_samples(X)

    def predict(self, X):
        return self.model.predict(X)


def test_the_model_travels_to_each_worker_once_not_once_per_block(client, data):
    X, _ = data
    model = _CountedModel(GaussianMahalanobis(random_state=0).fit(X))
    X_new = np.random.default_rng(7).normal(size=(4000, 3))
    blocks = da.from_array(X_new, chunks=(100, 3))  # 40 blocks
    out = _computed(client, score_dataset(model, blocks))
    assert len(out) == 4000
    loads = client.run(lambda: _CountedModel.loads)
    assert sum(loads.values()) <= len(loads), loads  # at most once per worker
