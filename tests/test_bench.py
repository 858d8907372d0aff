"""The detector registry (skood.registry), the benchmark harness (skood.bench) and `skood bench`:
detector specs, metrics, ranks, failures, the report."""

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from skood import bench
from skood.bench import BenchData, run_benchmark, summarize
from skood.cli import main
from skood.metrics import auroc
from skood.registry import InformativeColumns, make_detector, make_pipeline_for, parse_detector


def _blobs(n_in=120, n_out=30, d=3, seed=0, classes=False):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(size=(n_in, d)), rng.normal(4.0, 1.0, size=(n_out, d))])
    y = np.r_[rng.randint(0, 2, n_in) if classes else np.ones(n_in, int), -np.ones(n_out, int)]
    return BenchData("blobs", X, y, has_classes=classes)


def test_parse_detector():
    assert parse_detector("flow") == ("flow", {})
    assert parse_detector("flow:q=0.05, n_blocks=4,coupling=realnvp") == (
        "flow",
        {"q": 0.05, "n_blocks": 4, "coupling": "realnvp"},
    )
    assert parse_detector("pyod-ae:hidden_neuron_list=[16, 8],epoch_num=2")[1] == {
        "hidden_neuron_list": [16, 8],
        "epoch_num": 2,
    }
    with pytest.raises(ValueError, match=r"Unknown detector 'flw'.*flow"):
        parse_detector("flw")
    with pytest.raises(ValueError, match="key=value"):
        parse_detector("flow:0.05")


def test_an_ensemble_spec_builds_its_members_by_name():
    det = make_detector(
        "ensemble:members=('gauss','knn:n_neighbors=3,aggregate=mean'),combine=pvalue",
        random_state=4,
    )
    assert det.combine == "pvalue" and det.random_state == 4
    (_, gauss), (_, knn) = det.estimators
    assert type(gauss).__name__ == "GaussianMahalanobis" and gauss.covariance == "ledoit_wolf"
    assert (knn.n_neighbors, knn.aggregate) == (3, "mean")
    assert make_detector("ensemble").estimators is None  # the default members
    rows = run_benchmark(["ensemble:members=('gauss','knn')"], [_blobs()], seeds=[0],
                         progress=False)
    assert rows[0]["status"] == "ok" and rows[0]["auroc"] > 0.9


def test_harness_auroc_is_sklearns_on_the_same_split():
    data = _blobs()
    rows = run_benchmark(["gauss", "iforest"], [data], seeds=[3], progress=False)
    X_tr, _, X_te, y_te = bench.split(data, "semi", 3)
    for row in rows:
        assert row["status"] == "ok", row
        name = row["detector"]
        pipe = make_pipeline_for(make_detector(name, random_state=3)).fit(X_tr)
        expected = roc_auc_score(y_te != -1, pipe.score_samples(X_te))
        assert row["auroc"] == pytest.approx(expected, abs=1e-12)
        assert row["n_train"] == 60 and row["n_test"] == 90  # half the normals; the rest + all
    # Seeds fix splits and random_state: the same table twice.
    again = run_benchmark(["gauss", "iforest"], [data], seeds=[3], progress=False)
    assert [r["auroc"] for r in again] == [r["auroc"] for r in rows]


def test_a_failing_cell_is_reported_not_fatal():
    rows = run_benchmark(
        ["gauss:no_such_param=1", "gauss", "mahalanobis"], [_blobs()], seeds=[0], progress=False
    )
    by = {r["detector"]: r for r in rows}
    assert by["gauss:no_such_param=1"]["status"] == "error"
    assert "no_such_param" in by["gauss:no_such_param=1"]["error"]
    assert by["gauss"]["status"] == "ok"
    assert by["mahalanobis"]["status"] == "n/a"  # no class labels in this dataset
    overall = summarize(rows)["overall"]
    assert overall["gauss"]["rank"] == 1.0  # the failed detector ranks last, n/a is not ranked
    assert overall["gauss:no_such_param=1"]["rank"] == 2.0
    assert np.isnan(overall["mahalanobis"]["rank"])


def test_unsupervised_protocol_trains_on_contaminated_rows():
    data = _blobs(classes=True)
    rows = run_benchmark(
        ["gauss", "mahalanobis"], [data], seeds=[0], protocols=["semi", "unsup"], progress=False
    )
    by = {(r["protocol"], r["detector"]): r for r in rows}
    assert by["unsup", "gauss"]["n_train"] == by["unsup", "gauss"]["n_test"] == 150
    assert by["unsup", "mahalanobis"]["status"] == "n/a"  # labels are hidden there
    assert by["semi", "mahalanobis"]["status"] == "ok"


def test_summary_ranks_by_hand():
    def row(dataset, detector, auc, seed=0):
        return dict(
            protocol="semi", dataset=dataset, detector=detector, seed=seed, status="ok",
            auroc=auc, aupr=0.5, fpr95=0.5, fit_s=1.0, score_s=0.1,
        )  # fmt: skip

    rows = [
        row("a", "x", 0.9), row("a", "y", 0.8), row("a", "z", 0.8),
        row("b", "x", 0.6, 0), row("b", "x", 0.8, 1), row("b", "y", 0.75), row("b", "z", 0.9),
    ]  # fmt: skip
    overall = summarize(rows)["overall"]
    # a: x=1, y=z=2.5 (tie); b: x mean 0.7 -> 3, y -> 2, z -> 1
    assert overall["x"]["rank"] == 2.0
    assert overall["y"]["rank"] == 2.25
    assert overall["z"]["rank"] == 1.75
    assert overall["x"]["fit_s"] == 3.0


def test_informative_columns_drop_nearly_constant_ones():
    X = np.zeros((20, 3))
    X[:, 0] = np.arange(20)
    X[:2, 1] = 1.0  # non-zero on two rows only
    cols = InformativeColumns(min_rows=5).fit(X)
    assert cols.support_.tolist() == [True, False, False]
    assert cols.transform(X).shape == (20, 1)


def test_pyod_deepsvdd_is_sized_after_preprocessing():
    pytest.importorskip("pyod")
    X = _blobs().X
    X[:, 1] = 0.0  # InformativeColumns drops it: DeepSVDD must see 2 columns, not 3
    det = make_detector("pyod-deepsvdd:epochs=1", random_state=0)
    pipe = make_pipeline_for(det).fit(X)
    assert pipe[-1].model_.n_features == 2
    assert np.all(np.isfinite(pipe.score_samples(X)))


def test_pyod_adapter_negates_pyod_scores():
    pytest.importorskip("pyod")
    from pyod.models.knn import KNN

    X = _blobs().X
    adapter = make_detector("pyod-knn").fit(X)
    raw = KNN().fit(X)
    np.testing.assert_allclose(adapter.score_samples(X), -raw.decision_function(X))
    np.testing.assert_array_equal(adapter.predict(X) == -1, raw.predict(X) == 1)


def test_bench_quick_writes_table_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| detector | mean rank | datasets ranked | AUROC" in printed
    table = [line for line in printed.splitlines() if line.startswith("| ")][2:]
    # mahalanobis (class-conditional) runs on 1 of the 3 sets: whatever its rank there, it is
    # listed last, after the detectors ranked on all 3
    name, _, n_ranked = (cell.strip() for cell in table[-1].strip("|").split("|")[:3])
    assert (name, n_ranked) == ("mahalanobis", "1")
    assert all(row.split("|")[3].strip() == "3" for row in table[:-1])
    md = (out / "results.md").read_text()
    for name in bench.QUICK_DETECTORS:
        assert f"| {name} |" in md
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(bench.QUICK_DETECTORS)  # 3 bundled sets, 1 seed
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 3 * len(bench.QUICK_DETECTORS) - 2  # mahalanobis is n/a on 2 sets
    assert all(0.5 < float(r["auroc"]) <= 1.0 for r in ok if r["detector"] == "gauss")
    pytest.importorskip("matplotlib")
    for png in ["auroc_per_dataset.png", "mean_rank.png", "time_vs_auroc.png"]:
        assert (out / png).stat().st_size > 1000


def test_bench_on_an_adbench_folder(tmp_path, capsys):
    data = _blobs()
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "blobs.npz", X=data.X, y=(data.y == -1).astype(int))  # 1 = anomaly
    out = tmp_path / "out"
    code = main(
        ["bench", "--data", str(folder), "--detector", "gauss", "--detector", "lof",
         "--seeds", "0", "1", "--protocol", "both", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["dataset"] for r in rows} == {"blobs"}
    assert len(rows) == 2 * 2 * 2 and all(r["status"] == "ok" for r in rows)
    assert all(float(r["auroc"]) > 0.95 for r in rows if r["protocol"] == "semi")
    # Trained on contaminated rows (20% anomalies in one cluster) it is harder, as in ADBench.
    assert all(
        float(r["auroc"]) > 0.8
        for r in rows
        if r["protocol"] == "unsup" and r["detector"] == "gauss"
    )


def test_bench_errors_are_one_line(tmp_path, capsys):
    assert main(["bench", "--detector", "nope", "--out", str(tmp_path)]) == 2
    assert "Unknown detector 'nope'" in capsys.readouterr().err
    assert main(["bench", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "No ADBench-format .npz" in capsys.readouterr().err
    assert main(["bench", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "detector  flow" in listed and "dataset   digits-open-set" in listed


def test_resume_reuses_finished_cells_and_retries_errors(tmp_path):
    data = _blobs()
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "blobs.npz", X=data.X, y=(data.y == -1).astype(int))
    out = tmp_path / "out"
    out.mkdir()
    fields = ["protocol", "dataset", "seed", "detector", "status", "auroc", "error"]
    with open(out / "results.partial.csv", "w", newline="") as f:  # as an interrupted run left it
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerow(dict(protocol="semi", dataset="blobs", seed=0, detector="gauss", status="ok",
                        auroc=0.123))  # fmt: skip
        w.writerow(dict(protocol="semi", dataset="blobs", seed=0, detector="lof", status="error",
                        error="boom"))  # fmt: skip
    args = ["bench", "--data", str(folder), "--detector", "gauss", "--detector", "lof",
            "--seeds", "0", "--out", str(out), "--quiet", "--resume"]  # fmt: skip
    assert main(args) == 0
    rows = {r["detector"]: r for r in bench.read_csv(out / "results.csv")}
    assert rows["gauss"]["auroc"] == 0.123  # reused, not recomputed
    assert rows["lof"]["status"] == "ok" and rows["lof"]["auroc"] > 0.9  # the error was retried
    assert not (out / "results.partial.csv").exists()


def test_resume_extends_a_finished_run_with_a_seed(tmp_path):
    data = _blobs()
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "blobs.npz", X=data.X, y=(data.y == -1).astype(int))
    out = tmp_path / "out"
    base = ["bench", "--data", str(folder), "--detector", "gauss", "--out", str(out), "--quiet"]
    assert main([*base, "--seeds", "0"]) == 0
    first = bench.read_csv(out / "results.csv")
    assert main([*base, "--seeds", "0", "1", "--resume"]) == 0
    rows = bench.read_csv(out / "results.csv")
    assert sorted(r["seed"] for r in rows) == [0, 1]
    assert next(r for r in rows if r["seed"] == 0)["fit_s"] == first[0]["fit_s"]  # reused


def test_parallel_cells_give_the_same_table():
    data = _blobs()
    kwargs = dict(seeds=[0, 1], progress=False)
    serial = run_benchmark(["gauss", "iforest", "flow:max_epochs=2,min_steps=0"], [data], **kwargs)
    parallel = run_benchmark(
        ["gauss", "iforest", "flow:max_epochs=2,min_steps=0"], [data], n_jobs=2, **kwargs
    )
    assert [(r["detector"], r["seed"]) for r in parallel] == [
        (r["detector"], r["seed"]) for r in serial
    ]
    assert [r["auroc"] for r in parallel] == [r["auroc"] for r in serial]


def test_transductive_pyod_models_score_each_row_against_the_training_data():
    pytest.importorskip("pyod")
    data = bench.bundled_datasets()["digits-ovr-0"]()
    X_tr, _, X_te, y_te = bench.split(data, "semi", 0)
    pipe = make_pipeline_for(make_detector("pyod-ecod")).fit(X_tr)
    scores = pipe.score_samples(X_te)
    one_by_one = np.concatenate([pipe.score_samples(X_te[i : i + 1]) for i in range(0, 300)])
    np.testing.assert_allclose(scores[:300], one_by_one, rtol=0.05)
    assert auroc(y_te, scores) > 0.95  # 0.50 when PyOD's ECDF absorbs ~1,600 test anomalies


def test_ctrl_c_during_skood_bench_exits_130_and_writes_no_result(tmp_path, monkeypatch, capsys):
    from skood import bench as harness
    from skood.cli import main

    def interrupted(*args, on_row=None, **kwargs):
        on_row({"protocol": "semi", "dataset": "wine", "seed": 0, "detector": "gauss",
                "status": "ok", "auroc": 0.9})  # fmt: skip
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "run_benchmark", interrupted)
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--detector", "gauss", "--out", str(out), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (out / "results.csv").exists() and not (out / "results.md").exists()
    assert (out / "results.partial.csv").exists()  # the finished cells, for --resume
