"""`skood score`: the fit / save / load / score round trip and every bad file, through the
console entry point (a subprocess) and in-process."""

import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from skood.cli import main
from skood.tables import TableError, read_table


def _write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 3))
    header = ["id", "a", "b", "c", "name"]
    train = _write_csv(tmp_path / "train.csv", header, [[i, *x, f"n{i}"] for i, x in enumerate(X)])
    test = _write_csv(
        tmp_path / "test.csv", header, [[i, *(x * 4), f"t{i}"] for i, x in enumerate(X[:10])]
    )
    return tmp_path, train, test


def _read_scores(path):
    data = np.genfromtxt(path, delimiter=",", names=True)
    labels = np.where(data["is_outlier"].astype(int) == 1, -1, 1)  # back to predict's +1 / -1
    return data["score"], labels, data["threshold"]


def test_fit_save_load_score_round_trip(files):
    tmp, train, test = files
    first = subprocess.run(
        [sys.executable, "-m", "skood.cli", "score", str(train), str(test),
         "--detector", "gauss", "--drop", "id", "--contamination", "0.1",
         "--save", str(tmp / "m.skood"), "--out", str(tmp / "s1.csv")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "Dropped non-numeric column(s): name" in first.stderr
    s1, labels, threshold = _read_scores(tmp / "s1.csv")
    assert len(s1) == 10 and np.all(np.isfinite(s1))
    assert set(labels) <= {-1, 1} and np.all(labels == np.where(s1 >= threshold, 1, -1))
    assert (labels == -1).mean() > 0.5  # the test rows are scaled far out
    assert zipfile.is_zipfile(tmp / "m.skood")  # skood's format, not a pickle
    assert main(["score", str(test), "--model", str(tmp / "m.skood"), "--drop", "id",
                 "--out", str(tmp / "s2.csv")]) == 0  # fmt: skip
    s2, labels2, _ = _read_scores(tmp / "s2.csv")
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(labels, labels2)


def test_scores_match_the_library(files, capsys):
    from skood.registry import make_detector, make_pipeline_for

    _, train, _ = files
    assert main(["score", str(train), "--detector", "iforest:n_estimators=20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "row,score,is_outlier,threshold"
    scores = np.array([float(line.split(",")[1]) for line in out[1:]])
    X = read_table(train).X
    det = make_detector("iforest:n_estimators=20", random_state=0)
    np.testing.assert_allclose(scores, make_pipeline_for(det).fit(X).score_samples(X))


def test_score_resolves_the_detector_without_the_benchmark_harness(files):
    _, train, _ = files
    code = (
        "import sys; from skood.cli import main; "
        f"assert main(['score', {str(train)!r}, '--drop', 'id', '--detector', 'iforest']) == 0; "
        "print(sorted(m for m in sys.modules if m.startswith('skood.bench')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "[]"


def test_parquet_round_trip(files):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    tmp, train, _ = files
    frame = pd.read_csv(train)
    frame.to_parquet(tmp / "train.parquet")
    table = read_table(tmp / "train.parquet")
    assert table.columns == ["id", "a", "b", "c"] and table.dropped == ["name"]
    np.testing.assert_allclose(table.X, read_table(train).X)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b\n1,2\n3,\n", "column 'b' at line 3"),
        ("a,b\n1,2\n3,nan\n", "empty or NaN"),
        ("a,b\n1,2\n3,inf\n", "infinite"),
        ("a,b\n1,2\n3\n", "line 3: 1 cells where the header has 2"),
        ("", "empty"),
        ("a,b\n", "no data rows"),
    ],
)
def test_bad_files_exit_with_a_message_not_a_traceback(tmp_path, content, message, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["score", str(path)]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(TableError):
        read_table(path)


def test_console_entry_point_prints_no_traceback(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3\n")
    run = subprocess.run(
        [sys.executable, "-m", "skood.cli", "score", str(path)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.startswith("skood score: error:") and "Traceback" not in run.stderr


def test_other_columns_missing_file_and_bad_model(files, capsys):
    tmp, train, _ = files
    other = _write_csv(tmp / "other.csv", ["id", "a", "b", "d"], [[1, 2, 3, 4]])
    assert main(["score", str(train), str(other)]) == 2
    err = capsys.readouterr().err  # columns are picked by name: the extra 'd' would not matter
    assert "lacks the model's column(s) ['c']" in err
    assert main(["score", str(tmp / "nope.csv")]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err
    assert main(["score", str(train), "--model", str(train)]) == 2
    assert "is not a skood model file" in capsys.readouterr().err
    assert main(["score", str(train), "--drop", "zzz"]) == 2
    assert "no column(s) ['zzz']" in capsys.readouterr().err
    assert main(["score", str(train), "--detector", "ocsvm", "--contamination", "0.1"]) == 2
    assert "contamination" in capsys.readouterr().err


def test_a_diverged_fit_exits_2_with_one_line_and_writes_nothing(files, capsys):
    tmp, train, _ = files
    out = tmp / "scores.csv"
    spec = "flow:lr=1e6,n_blocks=2,hidden_sizes=(8, 8, 8),max_epochs=3,min_steps=0"
    assert main(["score", str(train), "--drop", "id", "--detector", spec, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "TrainingDiverged" in err[-1] and "training diverged" in err[-1]
    assert not out.exists()  # on main: exit 0, "0 flagged", every score -1e100


def test_ctrl_c_exits_130_and_writes_nothing(files, capsys, monkeypatch):
    import skood.cli

    tmp, train, _ = files

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("skood.registry.make_pipeline_for", interrupted)
    out, model = tmp / "scores.csv", tmp / "m.joblib"
    code = skood.cli.main(
        ["score", str(train), "--drop", "id", "--out", str(out), "--save", str(model)]
    )
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert not out.exists() and not model.exists()


def test_a_crafted_pickle_is_refused_without_being_unpickled(files, capsys):
    import joblib

    tmp, train, _ = files
    marker = tmp / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # creating a file on load = code execution

    joblib.dump(Payload(), tmp / "evil.joblib")
    assert main(["score", str(train), "--model", str(tmp / "evil.joblib"), "--drop", "id"]) == 2
    err = capsys.readouterr().err
    assert "is a pickle" in err and "nothing in it was run" in err and "skood convert" in err
    assert not marker.exists()
    # nor does `skood convert` unpickle it unless told the file is trusted
    assert main(["convert", str(tmp / "evil.joblib"), str(tmp / "new.skood")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err and not marker.exists()
    assert not (tmp / "new.skood").exists()
    # a .skood file changed after it was saved: refused as damaged
    assert main(["score", str(train), "--drop", "id", "--save", str(tmp / "m.skood")]) == 0
    data = bytearray((tmp / "m.skood").read_bytes())
    data[len(data) // 3] ^= 1
    (tmp / "m.skood").write_bytes(bytes(data))
    assert main(["score", str(train), "--model", str(tmp / "m.skood"), "--drop", "id"]) == 2
    assert "damaged" in capsys.readouterr().err


@pytest.mark.parametrize(
    "detector, trust",
    [
        ("flow:n_blocks=2,hidden_sizes=(8, 8),max_epochs=2,min_steps=0", []),
        ("vae:max_epochs=2,min_steps=0", []),
        ("iforest", ["sklearn.tree._tree.Tree"]),
        ("ocsvm", []),  # its offset_ is a 1-element array: `skood score` used to fail on it
        ("pyod-ecod", ["pyod.models.ecod.ECOD"]),
    ],
)
def test_save_and_model_for_torch_and_sklearn_detectors(files, capsys, detector, trust):
    tmp, train, test = files
    model = tmp / "m.skood"
    fit = ["score", str(train), str(test), "--drop", "id", "--detector", detector]
    assert main([*fit, "--save", str(model), "--out", str(tmp / "s1.csv")]) == 0
    score = ["score", str(test), "--drop", "id", "--model", str(model)]
    if trust:  # an sklearn tree's raw node arrays: skops asks before it trusts them
        assert main([*score, "--out", str(tmp / "refused.csv")]) == 2
        err = capsys.readouterr().err
        assert "--trust NAME" in err and trust[0] in err and not (tmp / "refused.csv").exists()
    flags = [f"--trust={name}" for name in trust]
    assert main([*score, *flags, "--out", str(tmp / "s2.csv")]) == 0
    np.testing.assert_array_equal(_read_scores(tmp / "s1.csv")[0], _read_scores(tmp / "s2.csv")[0])


def test_convert_an_old_signed_file_and_a_trusted_pickle(files, capsys, monkeypatch):
    import hashlib
    import hmac
    import io

    import joblib

    from skood.registry import make_detector, make_pipeline_for

    tmp, _, test = files
    columns = ["a", "b", "c"]
    pipe = make_pipeline_for(make_detector(("gauss", {}), random_state=0))
    pipe.fit(np.random.default_rng(0).normal(size=(30, 3)))
    saved = {"pipeline": pipe, "columns": columns, "detector": "gauss"}
    buffer = io.BytesIO()
    joblib.dump(saved, buffer)
    payload = buffer.getvalue()
    # the layout `skood score --save` wrote before skood's own format: magic, HMAC tag, pickle
    key = "skood-tests-" + "k" * 32  # keys under 32 bytes are refused
    tag = hmac.new(key.encode(), payload, hashlib.sha256).hexdigest().encode()
    (tmp / "old.model").write_bytes(b"skood-model-v1\n" + tag + b"\n" + payload)
    assert main(["score", str(test), "--drop", "id", "--model", str(tmp / "old.model")]) == 2
    assert "skood convert" in capsys.readouterr().err
    monkeypatch.setenv("SKOOD_MODEL_KEY", "someone-else-" + "k" * 32)
    assert main(["convert", str(tmp / "old.model"), str(tmp / "new.skood")]) == 2
    assert "not signed with this user's key" in capsys.readouterr().err
    monkeypatch.setenv("SKOOD_MODEL_KEY", key)
    assert main(["convert", str(tmp / "old.model"), str(tmp / "new.skood")]) == 0
    assert main(["convert", str(tmp / "old.model"), str(tmp / "new.skood")]) == 2  # no overwrite
    assert "exists; pass --force" in capsys.readouterr().err
    out = tmp / "scores.csv"
    assert main(["score", str(test), "--drop", "id", "--model", str(tmp / "new.skood"),
                 "--out", str(out)]) == 0  # fmt: skip
    expected = pipe.score_samples(np.genfromtxt(test, delimiter=",", names=True)[columns].tolist())
    np.testing.assert_allclose(_read_scores(out)[0], expected, rtol=0, atol=0)
    # a plain joblib file the user vouches for
    joblib.dump(saved, tmp / "plain.joblib")
    assert main(["convert", str(tmp / "plain.joblib"), str(tmp / "p.skood"), "--trust-pickle"]) == 0
    assert main(["score", str(test), "--drop", "id", "--model", str(tmp / "p.skood"),
                 "--out", str(tmp / "p.csv")]) == 0  # fmt: skip
    np.testing.assert_array_equal(_read_scores(tmp / "p.csv")[0], _read_scores(out)[0])


def test_outputs_never_overwrite_inputs_or_existing_files(files, capsys):
    tmp, train, test = files
    before = train.read_bytes()
    for flag in ("--out", "--save"):
        assert main(["score", str(train), str(test), "--drop", "id", flag, str(train)]) == 2
        assert "train.csv is the input" in capsys.readouterr().err
    assert train.read_bytes() == before
    out = tmp / "scores.csv"
    out.write_text("keep me")
    assert main(["score", str(train), "--drop", "id", "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(["score", str(train), "--drop", "id", "--out", str(out), "--force"]) == 0
    assert out.read_text().startswith("row,score,is_outlier,threshold")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a,b\n" + b"1," + b"9" * 140_000 + b"\n2,3\n", "not a readable CSV file: field larger"),
        (b"\xfe\xff\x00a\x00,\x00b\n1,2\n", r"is not UTF-8 text \(byte 0xfe at offset 0\)"),
        (b"a,b\n1,2\n1e300,3\n4,5\n", r"too large to score .* column 'a' at line 3"),
    ],
    ids=["huge field", "not utf-8", "1e300"],
)
def test_unreadable_files_name_the_file_in_one_line(tmp_path, content, message, capsys):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    assert main(["score", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    assert re.search(message, err[0]), err[0]


def test_alpha_writes_p_values_and_flags_by_level_or_fdr(files, capsys):
    tmp, train, test = files
    out, model = tmp / "p.csv", tmp / "c.skood"
    fit = ["score", str(train), str(test), "--drop", "id", "--detector", "iforest"]
    assert main([*fit, "--alpha", "0.2", "--out", str(out), "--save", str(model)]) == 0
    assert "a false-positive rate of at most 0.2" in capsys.readouterr().err
    data = np.genfromtxt(out, delimiter=",", names=True)
    assert data.dtype.names == ("row", "score", "p_value", "is_outlier", "threshold")
    p, labels = data["p_value"], np.where(data["is_outlier"].astype(int) == 1, -1, 1)
    assert np.all((p > 0) & (p <= 1)) and np.all(data["threshold"] == 0.2)
    np.testing.assert_array_equal(labels, np.where(p <= 0.2, -1, 1))
    assert (labels == -1).mean() > 0.5  # the test rows are scaled far out
    # the saved conformal model, at another level and with BH
    trust = ["--trust", "sklearn.tree._tree.Tree"]
    again = ["score", str(test), "--drop", "id", "--model", str(model), *trust]
    assert main([*again, "--alpha", "0.05", "--fdr", "--out", str(tmp / "q.csv")]) == 0
    assert "Benjamini-Hochberg at false discovery rate 0.05" in capsys.readouterr().err
    q = np.genfromtxt(tmp / "q.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(q["p_value"], p)  # same model, same p-values
    from skood.conformal import benjamini_hochberg

    np.testing.assert_array_equal(q["is_outlier"] == 1, benjamini_hochberg(p, 0.05))


def test_alpha_and_fdr_misuse_is_named(files, capsys):
    tmp, train, _ = files
    assert main(["score", str(train), "--drop", "id", "--fdr"]) == 2
    assert "--fdr needs --alpha" in capsys.readouterr().err
    assert main(["score", str(train), "--drop", "id", "--alpha", "0.001"]) == 2
    assert "can never be reached" in capsys.readouterr().err  # 24 calibration rows
    assert main(["score", str(train), "--drop", "id", "--save", str(tmp / "m.skood")]) == 0
    capsys.readouterr()
    assert main(["score", str(train), "--drop", "id", "--model", str(tmp / "m.skood"),
                 "--alpha", "0.1"]) == 2  # fmt: skip
    assert "saved without: refit it with --alpha" in capsys.readouterr().err


def test_what_the_fit_warns_of_reaches_the_user_once(tmp_path, capsys):
    # 8c543f1 silenced every UserWarning of the fit: 12 rows cannot set a 5 % threshold.
    path = _write_csv(
        tmp_path / "small.csv", ["a", "b"], np.random.RandomState(0).normal(size=(12, 2))
    )
    out = str(tmp_path / "s.csv")
    assert main(["score", str(path), "--detector", "gauss", "--out", out]) == 0
    err = capsys.readouterr().err
    assert err.count("skood score: warning:") == 1
    assert "12 calibration score(s) can reject no fewer than 1/(12 + 1) = 7.7%" in err


# -- the practitioner's table: an id, a 0/1 label, numeric features (issue 34) --------------------


@pytest.fixture
def adbench_csv(tmp_path):
    """ADBench-style files: ``id``, features, ``label`` (1 = anomaly); the new file's columns
    come in another order."""
    rng = np.random.RandomState(0)
    normal, anomalies = rng.normal(size=(300, 3)), rng.normal(3.5, size=(30, 3))
    X = np.vstack([normal, anomalies])
    label = np.r_[np.zeros(300, int), np.ones(30, int)]
    ids = [f"c{i:04d}" for i in range(len(X))]
    train = _write_csv(
        tmp_path / "train.csv",
        ["id", "a", "b", "c", "label"],
        [[ids[i], *X[i], label[i]] for i in range(0, len(X), 2)],
    )
    new = _write_csv(
        tmp_path / "new.csv",
        ["c", "label", "a", "id", "b"],  # reordered, with the id and the label
        [[X[i, 2], label[i], X[i, 0], ids[i], X[i, 1]] for i in range(1, len(X), 2)],
    )
    return tmp_path, train, new


def _csv(path):
    import pandas as pd

    return pd.read_csv(path, dtype={"id": str})


def test_a_0_1_label_column_is_named_and_taken_as_labels(adbench_csv, capsys):
    tmp, train, _ = adbench_csv
    # As a feature (8c543f1: silently), the user is told what it probably is and what to pass.
    assert main(["score", str(train), "--id", "id", "--detector", "gauss"]) == 0
    assert "column 'label' holds only 0 and 1 and is used as a feature" in capsys.readouterr().err
    # --label: not a feature, its anomalies leave the fit, and the AUROC against it is shown.
    out = tmp / "s.csv"
    assert main(["score", str(train), "--id", "id", "--label", "label", "--detector", "gauss",
                 "--out", str(out)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "holds only 0 and 1" not in err
    auroc = float(re.search(r"AUROC against the label column: ([0-9.]+)", err).group(1))
    assert auroc > 0.95
    scores = _csv(out)
    assert list(scores.columns) == ["id", "row", "score", "is_outlier", "threshold"]
    assert scores["id"].iloc[0] == "c0000" and set(scores["is_outlier"]) <= {0, 1}
    # Dropping an id or the label as well is harmless (they are never features anyway).
    assert main(["score", str(train), "--id", "id", "--label", "label", "--drop", "id,label",
                 "--detector", "gauss", "--out", str(tmp / "s2.csv")]) == 0  # fmt: skip
    np.testing.assert_array_equal(_csv(tmp / "s2.csv")["score"], scores["score"])
    bad = _write_csv(tmp / "bad.csv", ["a", "label"], [[0.1, 2], [0.2, 0], [0.3, 1]])
    assert main(["score", str(bad), "--label", "label"]) == 2
    assert "1 = anomaly and 0 = normal" in capsys.readouterr().err


def test_a_saved_model_remembers_its_columns_and_ids(adbench_csv, capsys):
    """8c543f1: '--model' on a file with the id / label columns, or reordered ones, was refused
    ('has other numeric columns than the training data'); the ids never reached the output."""
    tmp, train, new = adbench_csv
    model = tmp / "m.skood"
    assert main(["score", str(train), "--id", "id", "--label", "label", "--detector", "gauss",
                 "--save", str(model), "--out", str(tmp / "train_scores.csv")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["score", str(new), "--model", str(model), "--out", str(tmp / "s.csv")]) == 0
    err = capsys.readouterr().err
    assert "Not in the model, left out: label" in err  # picked by name; the id is an id
    scores = _csv(tmp / "s.csv")
    assert scores.columns[0] == "id" and scores["id"].iloc[0] == "c0001"  # remembered
    table = read_table(new, ids=["id"], label="label")
    expected = _fitted(train).score_samples(table.select(["a", "b", "c"]))
    np.testing.assert_allclose(scores["score"], expected, rtol=1e-12)


def _fitted(train):
    from skood.registry import make_detector, make_pipeline_for

    table = read_table(train, ids=["id"], label="label")
    return make_pipeline_for(make_detector("gauss", random_state=0)).fit(table.X, table.y)


def test_a_model_saved_from_python_scores_from_the_command_line(adbench_csv, capsys):
    """8c543f1: 'holds a GaussianMahalanobis, not a model saved by skood score --save'."""
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import skood

    tmp, train, new = adbench_csv
    frame = pd.read_csv(train)
    pipe = make_pipeline(StandardScaler(), skood.GaussianMahalanobis(random_state=0))
    pipe.fit(frame[["a", "b", "c"]])
    skood.save(pipe, tmp / "py.skood")
    out = tmp / "s.csv"
    assert main(["score", str(new), "--model", str(tmp / "py.skood"), "--id", "id",
                 "--out", str(out)]) == 0  # fmt: skip
    scores = _csv(out)
    np.testing.assert_allclose(
        scores["score"], pipe.score_samples(pd.read_csv(new)[["a", "b", "c"]]), rtol=1e-12
    )
    assert scores["id"].iloc[-1] == "c0329"
    # Without column names (fitted on an array): the numeric columns in order, if they fit.
    skood.save(skood.GaussianMahalanobis().fit(frame[["a", "b", "c"]].to_numpy()), tmp / "a.skood")
    assert main(["score", str(new), "--model", str(tmp / "a.skood"), "--id", "id"]) == 2
    assert "fitted on 3 unnamed column(s)" in capsys.readouterr().err


def test_options_that_cannot_apply_to_a_saved_model_are_refused(adbench_csv, capsys):
    """8c543f1 ignored --detector, --params, --save and --contamination with --model."""
    tmp, train, new = adbench_csv
    model = tmp / "m.skood"
    assert main(["score", str(train), "--id", "id", "--label", "label", "--detector", "gauss",
                 "--save", str(model)]) == 0  # fmt: skip
    for extra in (["--detector", "knn"], ["--params", "n_neighbors=3"], ["--random-state", "1"],
                  ["--save", str(tmp / "again.skood")]):  # fmt: skip
        assert main(["score", str(new), "--model", str(model), *extra]) == 2
        assert "--model is fitted already" in capsys.readouterr().err


def test_contamination_at_scoring_time_sets_the_threshold_from_the_calibration_scores(
    adbench_csv, capsys
):
    tmp, train, new = adbench_csv
    fitted_at = tmp / "fit02.csv"
    assert main(["score", str(train), str(new), "--id", "id", "--label", "label",
                 "--detector", "gauss", "--contamination", "0.2", "--out", str(fitted_at)]) == 0  # fmt: skip
    model = tmp / "m.skood"
    assert main(["score", str(train), "--id", "id", "--label", "label", "--detector", "gauss",
                 "--save", str(model)]) == 0  # fmt: skip
    capsys.readouterr()
    again = tmp / "again02.csv"
    assert main(["score", str(new), "--model", str(model), "--contamination", "0.2",
                 "--out", str(again)]) == 0  # fmt: skip
    assert "Threshold set again at contamination 0.2 from the model's" in capsys.readouterr().err
    a, b = _csv(fitted_at), _csv(again)
    np.testing.assert_allclose(a["threshold"], b["threshold"], rtol=1e-12)
    np.testing.assert_array_equal(a["is_outlier"], b["is_outlier"])


def test_conformal_options_the_errors_name_are_reachable_and_the_guarantee_is_worded_right(
    adbench_csv, capsys
):
    _tmp, train, new = adbench_csv
    # 8c543f1: the too-few-calibration-rows error named calibration_fraction, which no option set.
    assert main(["score", str(train), str(new), "--id", "id", "--label", "label",
                 "--detector", "gauss", "--alpha", "0.01", "--calibration-fraction", "0.05"]) == 2  # fmt: skip
    assert "calibration_fraction" in capsys.readouterr().err
    assert main(["score", str(train), str(new), "--id", "id", "--label", "label",
                 "--detector", "gauss", "--alpha", "0.05", "--calibration-fraction", "0.8"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "in expectation over calibration sets of 120 rows" in err  # 0.8 of the 150 inliers
    assert "--per-run DELTA bounds it per run" in err
    # The per-run statement (issue 35): calibration-conditional p-values, and what they promise.
    assert main(["score", str(train), str(new), "--id", "id", "--label", "label", "--detector",
                 "gauss", "--alpha", "0.1", "--per-run", "0.1", "--calibration-fraction", "0.8"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "with probability at least 0.9 over the 120 calibration rows, this model's " in err
    assert "false-positive rate is at most 0.1 (calibration-conditional p-values, simes)" in err
    assert main(["score", str(train), "--per-run", "0.1"]) == 2
    assert "--per-run needs --alpha" in capsys.readouterr().err
    # Scoring the training rows themselves: said, not passed off as valid p-values.
    assert main(["score", str(train), "--id", "id", "--label", "label", "--detector", "gauss",
                 "--alpha", "0.05"]) == 0  # fmt: skip
    assert "their p-values are not valid" in capsys.readouterr().err


def test_a_categorical_column_is_encoded_and_kept_with_the_model(tmp_path, capsys):
    """79c6eae dropped every non-numeric column ('Dropped non-numeric column(s): site'), so a
    site-dependent anomaly went unseen; now the category is one-hot encoded, the encoder is saved
    with the model, and a category never seen in the fit is flagged (or refused on request)."""
    rng = np.random.RandomState(0)
    n = 300
    site = rng.choice(["north", "south", "east"], size=n)
    x = rng.normal(size=(n, 2)) + np.where(site == "north", 3.0, 0.0)[:, None]
    rows = [[f"r{i}", site[i], *x[i]] for i in range(n)]
    train = _write_csv(tmp_path / "train.csv", ["id", "site", "a", "b"], rows)
    # New rows: typical values for their site, and two that are typical for 'north' but are not.
    new_rows = [  # columns a, site, id, b: another order than the training file's
        [3.0, "north", "n0", 3.0],
        [3.0, "south", "n1", 3.0],
        [0.0, "west", "n2", 0.0],
        [0.1, "south", "n3", -0.2],
    ]
    new = _write_csv(tmp_path / "new.csv", ["a", "site", "id", "b"], new_rows)
    model = tmp_path / "m.skood"
    assert main(["score", str(train), "--id", "id", "--detector", "gauss", "--save", str(model),
                 "--out", str(tmp_path / "fit.csv")]) == 0  # fmt: skip
    assert "Encoded as categories: site" in capsys.readouterr().err
    out = tmp_path / "s.csv"
    assert main(["score", str(new), "--model", str(model), "--out", str(out)]) == 0
    assert "1 row(s) hold a category the fit never saw" in capsys.readouterr().err
    scores = _csv(out).set_index("id")
    assert list(scores["unseen"].fillna("")) == ["", "", "site", ""]
    # (3, 3) is normal in the north and an outlier in the south: only the encoding tells.
    assert scores.loc["n1", "score"] < scores.loc["n0", "score"] - 5
    assert scores.loc["n1", "is_outlier"] == 1 and scores.loc["n0", "is_outlier"] == 0
    assert main(["score", str(new), "--model", str(model), "--unknown", "error"]) == 2
    assert "Column 'site' holds 'west'" in capsys.readouterr().err
    # --drop leaves a categorical column out as it leaves a numeric one out.
    assert main(["score", str(train), "--id", "id", "--drop", "site", "--detector", "gauss"]) == 0
    assert "Encoded as categories" not in capsys.readouterr().err
    # A table of categories only (79c6eae: "no numeric column") is scored too.
    only = _write_csv(tmp_path / "only.csv", ["site"], [[v] for v in site])
    assert main(["score", str(only), "--detector", "knn", "--out", str(tmp_path / "o.csv")]) == 0
    assert len(_csv(tmp_path / "o.csv")) == n


def test_a_text_column_with_a_value_per_row_is_an_identifier_not_a_category(files, capsys):
    _, train, _ = files  # 'name' holds n0 ... n79
    assert main(["score", str(train), "--detector", "gauss"]) == 0
    err = capsys.readouterr().err
    assert "Dropped non-numeric column(s): name (a different value on almost every row" in err
    assert "--id NAME" in err


def test_a_categorical_model_on_a_dataset_is_refused_with_the_way_out(tmp_path, capsys):
    pytest.importorskip("dask.dataframe")
    rows = [[f"r{i}", ["a", "b"][i % 2], float(i % 7)] for i in range(60)]
    train = _write_csv(tmp_path / "train.csv", ["id", "kind", "x"], rows)
    model = tmp_path / "m.skood"
    assert main(["score", str(train), "--id", "id", "--detector", "gauss", "--save", str(model),
                 "--out", str(tmp_path / "s.csv")]) == 0  # fmt: skip
    (tmp_path / "ds").mkdir()
    _write_csv(tmp_path / "ds" / "part0.csv", ["id", "kind", "x"], rows[:10])
    capsys.readouterr()
    assert main(["score", str(tmp_path / "ds"), "--model", str(model),
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert "score the files one by one" in capsys.readouterr().err


def test_review_then_reviewed_trims_the_calibration_set_and_flags_what_contamination_hid(
    tmp_path, capsys
):
    """A training file with unlabelled anomalies (5 %): --review lists the calibration rows to
    check, --reviewed drops those labelled anomalies (Label-Trim) and the same model flags the
    test anomalies it missed before; every misuse is refused with a message."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    X[:30] += 4
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    _write_csv(train, ["id", *"abcd"], [[f"r{i}", *x] for i, x in enumerate(X)])
    T = rng.normal(size=(300, 4))
    T[:30] += 3
    _write_csv(test, ["id", *"abcd"], [[f"t{i}", *x] for i, x in enumerate(T)])
    model, review = tmp_path / "m.skood", tmp_path / "m.skood.review.csv"
    assert main(["score", str(train), "--id", "id", "--detector", "gauss", "--alpha", "0.05",
                 "--review", "20"]) == 2  # fmt: skip
    assert "give --save MODEL too" in capsys.readouterr().err
    assert main(["score", str(train), "--id", "id", "--review", "20", "--save", str(model)]) == 2
    assert "--review needs --alpha" in capsys.readouterr().err
    assert main(["score", str(train), str(test), "--id", "id", "--detector", "gauss", "--alpha",
                 "0.05", "--review", "20", "--save", str(model),
                 "--out", str(tmp_path / "before.csv")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert f"Review the 20 rows listed in {review}" in err
    listed = review.read_text().splitlines()
    assert listed[0] == "id,row,score,is_outlier" and len(listed) == 21
    rows = [line.split(",") for line in listed[1:]]
    assert all(f"r{r[1]}" == r[0] and r[3] == "" for r in rows)
    # the review file is not overwritten by a second fit
    assert main(["score", str(train), "--id", "id", "--detector", "gauss", "--alpha", "0.05",
                 "--review", "20", "--save", str(tmp_path / "other.skood")]) == 0  # fmt: skip
    capsys.readouterr()
    half = tmp_path / "half.csv"
    half.write_text("\n".join([listed[0], *(",".join(r[:3]) + ",1" for r in rows[:10])]) + "\n")
    assert main(["score", str(test), "--model", str(model), "--reviewed", str(half)]) == 2
    assert "every row of it, and no other row" in capsys.readouterr().err
    blank = tmp_path / "blank.csv"
    blank.write_text("\n".join([listed[0], *(",".join(r) for r in rows)]) + "\n")
    assert main(["score", str(test), "--model", str(model), "--reviewed", str(blank)]) == 2
    assert "20 row(s) have no is_outlier verdict" in capsys.readouterr().err
    filled = tmp_path / "filled.csv"
    truth = ["1" if int(r[1]) < 30 else "0" for r in rows]
    filled.write_text(
        "\n".join([listed[0], *(",".join([*r[:3], t]) for r, t in zip(rows, truth))]) + "\n"
    )
    assert main(["score", str(test), "--model", str(model), "--reviewed", str(filled),
                 "--save", str(tmp_path / "trimmed.skood"),
                 "--out", str(tmp_path / "after.csv")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    n_out = truth.count("1")
    assert n_out >= 5 and f"Label-Trim: {n_out} of the 20 reviewed rows are anomalies" in err
    assert f"Label-Trim left out {n_out} reviewed anomalies" in err
    flagged_before = _csv(tmp_path / "before.csv")["is_outlier"][:30].sum()
    flagged_after = _csv(tmp_path / "after.csv")["is_outlier"][:30].sum()
    assert flagged_after > flagged_before + 10  # the test anomalies contamination hid
    # the trimmed model, saved, scores the same without the review file
    assert main(["score", str(test), "--model", str(tmp_path / "trimmed.skood"),
                 "--out", str(tmp_path / "again.csv")]) == 0  # fmt: skip
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "after.csv").read_text()
    assert main(["score", str(test), "--reviewed", str(filled)]) == 2
    assert "--reviewed trims a saved model" in capsys.readouterr().err
    # a spreadsheet's TRUE / FALSE reads as 1 / 0; --review 0 lists nothing to review
    excel = tmp_path / "excel.csv"
    excel.write_text(
        "\n".join(
            [
                listed[0],
                *(",".join([*r[:3], "TRUE" if t == "1" else "FALSE"]) for r, t in zip(rows, truth)),
            ]
        )
        + "\n"
    )
    assert main(["score", str(test), "--model", str(model), "--reviewed", str(excel),
                 "--out", str(tmp_path / "excel_out.csv")]) == 0  # fmt: skip
    assert (tmp_path / "excel_out.csv").read_text() == (tmp_path / "after.csv").read_text()
    capsys.readouterr()
    assert main(["score", str(train), "--id", "id", "--detector", "gauss", "--alpha", "0.05",
                 "--review", "0", "--save", str(tmp_path / "zero.skood")]) == 2  # fmt: skip
    assert "1 or more" in capsys.readouterr().err


# -- --explain K: the columns that pushed each row towards "outlier" ------------------------------


@pytest.fixture
def planted(tmp_path):
    """Normal rows of five columns; the new file's first 30 rows are far out in column 'c'."""
    rng = np.random.default_rng(0)
    header = ["id", "a", "b", "c", "d", "e"]
    X = rng.normal(size=(400, 5))
    X[:, 1] += 0.7 * X[:, 0]  # correlated columns: not a per-column test in disguise
    T = rng.normal(size=(100, 5))
    T[:, 1] += 0.7 * T[:, 0]
    T[:30, 2] += 6.0
    train = _write_csv(tmp_path / "train.csv", header, [[f"r{i}", *x] for i, x in enumerate(X)])
    test = _write_csv(tmp_path / "test.csv", header, [[f"t{i}", *x] for i, x in enumerate(T)])
    return tmp_path, train, test


def _explain_columns(k):
    return [f"explain_{i}{end}" for i in range(1, k + 1) for end in ("", "_share")]


@pytest.mark.parametrize(
    "detector, method",
    [
        ([], "exact Shapley values (the Gaussian's quadratic form) + integrated gradients"),
        (["--detector", "gauss"], "exact Shapley values (the Gaussian's quadratic form), from"),
        (["--detector", "iforest"], "permutation Shapley values (16 column orders a row)"),
    ],
)
def test_explain_names_the_planted_column_of_the_flagged_rows(planted, capsys, detector, method):
    tmp, train, test = planted
    out = tmp / "s.csv"
    assert main(["score", str(train), str(test), "--id", "id", *detector, "--explain", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    scores = _csv(out)
    assert list(scores.columns) == [
        "id", "row", "score", "is_outlier", "threshold", *_explain_columns(3),
    ]  # fmt: skip
    flagged = scores[scores["is_outlier"] == 1]
    planted_rows = flagged["id"].isin([f"t{i}" for i in range(30)])
    assert planted_rows.sum() >= 25
    assert (flagged["explain_1"][planted_rows] == "c").mean() >= 0.95
    assert (flagged["explain_1"] == "c").mean() > 0.5  # iforest flags 11 normal rows as well
    shares = scores[["explain_1_share", "explain_2_share", "explain_3_share"]].to_numpy()
    assert np.all((shares >= 0) & (shares <= 1)) and np.all(shares.sum(1) <= 1 + 1e-3)
    assert np.all(np.diff(shares, axis=1) <= 1e-4)  # the biggest push first
    # a name is empty exactly where its share is 0 (fewer columns pushed that way)
    names = scores[["explain_1", "explain_2", "explain_3"]].fillna("").to_numpy()
    np.testing.assert_array_equal(names == "", shares == 0)
    assert set(names.ravel()) <= {"", "a", "b", "c", "d", "e"}  # the user's columns
    assert method in err
    error = float(re.search(r"within ([0-9.e+-]+) \(largest completeness error\)", err).group(1))
    if "iforest" in detector or "gauss" in detector:  # exact, or telescoping permutations
        assert error < 1e-9
        assert ("from the median of 400 training rows" in err) == ("iforest" in detector)
    else:
        assert "from the detector's own baseline" in err


def test_explain_matches_the_library(planted, capsys):
    from skood.explain import explain
    from skood.registry import make_detector, make_pipeline_for

    tmp, train, test = planted
    assert main(["score", str(train), str(test), "--id", "id", "--detector", "gauss",
                 "--explain", "5", "--out", str(tmp / "s.csv")]) == 0  # fmt: skip
    scores = _csv(tmp / "s.csv")
    pipe = make_pipeline_for(make_detector("gauss", random_state=0))
    pipe.fit(read_table(train, ids=["id"]).X)
    e = explain(pipe, read_table(test, ids=["id"]).X)
    names, shares = e.top(5)
    np.testing.assert_array_equal(
        scores[[f"explain_{i}" for i in range(1, 6)]].fillna("").to_numpy(),
        np.where(shares > 0, np.array(list("abcde"))[[int(n[1:]) for n in names.ravel()]]
                 .reshape(names.shape), ""),
    )  # fmt: skip
    np.testing.assert_allclose(
        scores[[f"explain_{i}_share" for i in range(1, 6)]], np.round(shares, 4), atol=1e-12
    )


def test_explain_with_a_saved_model_keeps_its_background(planted, capsys):
    """A detector with no reference rows (IsolationForest) is explained from the median of the
    training rows saved with the model; a model saved from Python without them is refused with
    the way out."""
    import pandas as pd
    from sklearn.ensemble import IsolationForest

    import skood

    tmp, train, test = planted
    model = tmp / "m.skood"
    assert main(["score", str(train), str(test), "--id", "id", "--detector", "iforest",
                 "--save", str(model), "--explain", "2", "--out", str(tmp / "fit.csv")]) == 0  # fmt: skip
    saved = skood.load(model, trusted=["sklearn.tree._tree.Tree"])
    assert sorted(saved["background"]) == list("abcde")
    assert len(saved["background"]["a"]) == 400  # every training row, up to 1,000
    capsys.readouterr()
    assert main(["score", str(test), "--model", str(model), "--trust", "sklearn.tree._tree.Tree",
                 "--explain", "2", "--out", str(tmp / "later.csv")]) == 0  # fmt: skip
    assert "from the median of 400 training rows" in capsys.readouterr().err
    assert (tmp / "later.csv").read_text() == (tmp / "fit.csv").read_text()
    # Saved from Python: the detector alone, with nothing to measure contributions from.
    frame = pd.read_csv(train).drop(columns="id")
    skood.save(IsolationForest(random_state=0).fit(frame), tmp / "py.skood")
    assert main(["score", str(test), "--model", str(tmp / "py.skood"), "--explain", "2",
                 "--trust", "sklearn.tree._tree.Tree"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "keeps no reference rows" in err and "skood score TRAIN --save MODEL" in err
    assert "background=" in err
    # ... while a Gaussian saved from Python needs none: it is explained from its mean.
    skood.save(skood.GaussianMahalanobis().fit(frame), tmp / "g.skood")
    assert main(["score", str(test), "--model", str(tmp / "g.skood"), "--explain", "1",
                 "--out", str(tmp / "g.csv")]) == 0  # fmt: skip
    assert "feature names" not in capsys.readouterr().err  # scored by name, as it was fitted
    assert (_csv(tmp / "g.csv")["explain_1"][:30] == "c").mean() >= 0.95


def test_explain_folds_a_categorical_column_back_to_its_name(tmp_path, capsys):
    rng = np.random.RandomState(0)
    site = rng.choice(["north", "south", "east"], size=300, p=[0.49, 0.49, 0.02])
    x = rng.normal(size=(300, 2))
    train = _write_csv(tmp_path / "train.csv", ["site", "a", "b"],
                       [[site[i], *x[i]] for i in range(300)])  # fmt: skip
    new = _write_csv(tmp_path / "new.csv", ["site", "a", "b"],
                     [["east", 0.1, -0.1], ["north", 0.0, 7.0], ["south", 0.2, 0.1]])  # fmt: skip
    out = tmp_path / "s.csv"
    assert main(["score", str(train), str(new), "--detector", "gauss", "--explain", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    scores = _csv(out)
    names = scores[["explain_1", "explain_2", "explain_3"]].fillna("").to_numpy()
    assert set(names.ravel()) <= {"", "site", "a", "b"}  # one name per user column
    assert list(scores["explain_1"][:2]) == ["site", "b"]


@pytest.mark.parametrize("k, message", [
    ("0", "--explain 0: K is the number of columns to name per row, 1 or more"),
    ("-2", "--explain -2: K is the number of columns"),
    ("6", "--explain 6: the model has 5 column(s), so at most --explain 5"),
])  # fmt: skip
def test_a_bad_explain_k_is_refused_with_a_message(planted, capsys, k, message):
    tmp, train, test = planted
    out = tmp / "s.csv"
    assert main(["score", str(train), str(test), "--id", "id", "--explain", k,
                 "--out", str(out)]) == 2  # fmt: skip
    assert message in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):  # argparse: an int
        main(["score", str(train), "--explain", "two"])
    assert "argument --explain: invalid int value: 'two'" in capsys.readouterr().err


def test_explain_on_a_dataset_gives_the_file_modes_columns(planted, capsys):
    """Each partition explained on its own, with the same model: the same names and shares as
    the whole file (and a bad K refused before anything runs)."""
    pytest.importorskip("dask.dataframe")
    import pandas as pd

    tmp, train, test = planted
    model = tmp / "m.skood"
    assert main(["score", str(train), "--id", "id", "--save", str(model),
                 "--out", str(tmp / "fit.csv")]) == 0  # fmt: skip
    assert main(["score", str(test), "--model", str(model), "--explain", "3",
                 "--out", str(tmp / "file.csv")]) == 0  # fmt: skip
    capsys.readouterr()
    lines = test.read_text().splitlines()
    (tmp / "ds").mkdir()
    for i, part in enumerate((lines[1:41], lines[41:])):  # two files of 40 and 60 rows
        (tmp / "ds" / f"part{i}.csv").write_text("\n".join([lines[0], *part]) + "\n")
    out = tmp / "out"
    assert main(["score", str(tmp / "ds"), "--model", str(model), "--explain", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "explain_1..3" in err and "largest completeness error" in err
    result = pd.read_parquet(out).sort_values(["file", "row"]).reset_index(drop=True)
    assert list(result.columns) == [
        "id", "file", "row", "score", "is_outlier", "threshold", *_explain_columns(3),
    ]  # fmt: skip
    whole = _csv(tmp / "file.csv")
    for column in _explain_columns(3):
        if column.endswith("_share"):
            np.testing.assert_allclose(result[column], whole[column], atol=1e-12)
        else:
            assert list(result[column].fillna("")) == list(whole[column].fillna(""))
    assert main(["score", str(tmp / "ds"), "--model", str(model), "--explain", "9",
                 "--out", str(tmp / "out2")]) == 2  # fmt: skip
    assert "at most --explain 5" in capsys.readouterr().err and not (tmp / "out2").exists()
