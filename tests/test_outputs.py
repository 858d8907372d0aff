"""Nothing a user gave is lost: every path skood writes is resolved before it is checked, written
under a temporary name and renamed when complete, and never an input; inputs that are read wrongly
without a word (a glob-like file name, a pandas index column, a decompression bomb, a FIFO) are
refused or read right. Each case was reproduced on 8c543f1 (issue 31) and fails there."""

import hashlib
import hmac
import io
import os
import pickle
import resource
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import skood
from skood.cli import main
from skood.datasets import load_adbench


def _csv(path, X, header=("a", "b", "c")):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in X) + "\n")
    return path


def _tree(folder):
    """Every file under ``folder`` with its bytes: what must be unchanged."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A user's working folder: a training file, a model, a dataset folder and unrelated files."""
    rng = np.random.default_rng(0)
    _csv(tmp_path / "train.csv", rng.normal(size=(60, 3)))
    assert main(["score", "train.csv", "--save", "m.skood", "--out", "s.csv"]) == 0
    (tmp_path / "data").mkdir()
    _csv(tmp_path / "data" / "part0.csv", rng.normal(size=(20, 3)))
    _csv(tmp_path / "data" / "part1.csv", rng.normal(size=(20, 3)))
    (tmp_path / "notes.txt").write_text("my own notes\n")
    return tmp_path


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


# -- 1. --out can delete or overwrite the user's own files ------------------------------------------


def test_dataset_out_that_resolves_to_an_existing_folder_is_refused(workdir, capsys):
    pytest.importorskip("dask.dataframe")
    # `nothere/..` is the working folder: 8c543f1 wrote into it, then on a bad file emptied it.
    _csv(workdir / "data" / "part2.csv", [[1, 2, "x"]])  # a bad later file
    before = _tree(workdir)
    for out in ["nothere/..", "data/new/..", "data/new", ".", "data"]:
        assert main(["score", "data", "--model", "m.skood", "--out", out]) == 2, out
        err = capsys.readouterr().err
        assert "refusing to write there" in err or "exists; choose a new folder" in err, err
        assert _tree(workdir) == before, out
    assert not (workdir / "nothere").exists() and not (workdir / "data" / "new").exists()


def test_a_failed_dataset_run_removes_only_its_own_temporary_folder(workdir, capsys):
    pytest.importorskip("dask.dataframe")
    _csv(workdir / "data" / "part2.csv", [[1, 2, ""]])  # an empty cell: fails mid-run
    before = _tree(workdir)
    assert main(["score", "data", "--model", "m.skood", "--out", "scores"]) == 2
    assert "part2.csv" in capsys.readouterr().err
    assert _tree(workdir) == before
    assert sorted(p.name for p in workdir.iterdir()) == sorted(
        ["train.csv", "m.skood", "s.csv", "data", "notes.txt"]
    )  # no `scores`, no temporary folder left beside it
    (workdir / "data" / "part2.csv").unlink()
    assert main(["score", "data", "--model", "m.skood", "--out", "scores"]) == 0
    assert sorted(p.name for p in (workdir / "scores").iterdir()) == [
        "part.0.parquet",
        "part.1.parquet",
    ]


def test_out_through_a_symlink_or_hard_link_to_an_input_is_refused(workdir, capsys):
    os.symlink(workdir / "train.csv", workdir / "link.csv")
    os.link(workdir / "train.csv", workdir / "hard.csv")  # another name of the same file
    before = _tree(workdir)
    for out in ["link.csv", "nothere/../train.csv", "hard.csv"]:
        assert main(["score", "train.csv", "--out", out, "--force"]) == 2
        assert "is the input train.csv" in capsys.readouterr().err
    for flag in ["--out", "--save"]:  # "" is the working folder; 8c543f1 saved nothing silently
        assert main(["score", "train.csv", flag, ""]) == 2
        assert f"{flag} is empty" in capsys.readouterr().err
    assert _tree(workdir) == before


def _run_with_file_size_limit(args, limit_bytes, cwd):
    """``skood`` in a subprocess that may not write files beyond ``limit_bytes`` (a full disk)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "skood.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        # the skood under test, not whichever the working folder's sys.path would find
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(Path(skood.__file__).parents[1]),
        },
    )


def test_a_write_error_part_way_leaves_the_old_file_whole(workdir):
    _csv(workdir / "big.csv", np.random.default_rng(1).normal(size=(2000, 3)))
    assert main(["score", "big.csv", "--out", "scores.csv"]) == 0
    old = (workdir / "scores.csv").read_bytes()
    assert old.count(b"\n") == 2001
    # 8c543f1 wrote in place: the old 2001-line file became a 926-line CSV pandas reads happily.
    done = _run_with_file_size_limit(
        ["score", "big.csv", "--detector", "iforest", "--out", "scores.csv", "--force"],
        40_000,
        workdir,
    )
    assert done.returncode == 2, done.stderr
    assert "writing scores.csv failed" in done.stderr and "it is unchanged" in done.stderr
    assert (workdir / "scores.csv").read_bytes() == old
    assert [p.name for p in workdir.iterdir() if p.name.endswith(".tmp")] == []


def test_bench_refuses_earlier_results_unless_force_or_resume(tmp_path, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.md").write_text("my earlier run\n")
    (out / "results.csv").write_text("detector\n")
    run = ["bench", "--detector", "gauss", "--datasets", "wine", "--seeds", "0", "--quiet"]
    assert main([*run, "--out", str(out)]) == 2
    assert "holds an earlier run's results" in capsys.readouterr().err
    assert (out / "results.md").read_text() == "my earlier run\n"
    assert main([*run, "--out", str(out), "--force", "--resume"]) == 2
    assert main([*run, "--out", str(out), "--force"]) == 0
    assert (out / "results.md").read_text().startswith("# skood bench")
    assert main([*run, "--out", str(out), "--resume"]) == 0


def test_bench_resume_reruns_a_row_cut_off_mid_write(tmp_path):
    from skood import bench

    out = tmp_path / "bench"
    run = ["bench", "--detector", "gauss", "--datasets", "wine", "--seeds", "0", "1", "--quiet"]
    assert main([*run, "--out", str(out)]) == 0
    done = (out / "results.csv").read_text()
    # a crash (or a full disk) while the second cell's row was appended: its AUROC cut short
    cut = done[: done.rindex(",ok,") + len(",ok,0.9")]
    (out / "results.partial.csv").write_text(cut)
    assert len(bench.read_csv(out / "results.partial.csv")) == 1  # 8c543f1 kept 2 (AUROC 0.9)
    assert main([*run, "--out", str(out), "--resume"]) == 0
    (tmp_path / "done.csv").write_text(done)
    aurocs = [r["auroc"] for r in bench.read_csv(tmp_path / "done.csv")]
    assert [r["auroc"] for r in bench.read_csv(out / "results.csv")] == aurocs


def test_bench_out_inside_a_data_folder_is_refused(tmp_path, capsys):
    data = tmp_path / "adbench"
    data.mkdir()
    np.savez(data / "toy.npz", X=np.eye(4), y=[0, 0, 0, 1])
    for out in [data, data / "results", tmp_path]:
        assert main(["bench", "--data", str(data), "--out", str(out), "--quiet"]) == 2
        assert "refusing to write there" in capsys.readouterr().err
    assert sorted(p.name for p in data.iterdir()) == ["toy.npz"]


def test_atomic_helpers_leave_the_old_file_or_nothing(tmp_path):
    from skood._files import atomic_directory, atomic_file, check_output

    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target, "w") as f:
            f.write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["f.txt"]
    with pytest.raises(FileExistsError, match=r"f.txt failed .* it is unchanged"):
        with atomic_file(target, "w") as f:  # no replace: never over an existing file
            f.write("new")
    os.chmod(target, 0o600)
    with atomic_file(target, "w", replace=True) as f:
        f.write("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh.txt"
    with pytest.raises(FileExistsError, match="appeared while this run wrote it"):
        with atomic_file(fresh, "w") as f:
            f.write("mine")
            fresh.write_text("someone else's")  # created while the block ran: kept
    assert fresh.read_text() == "someone else's"
    fresh.unlink()
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "d") as folder:
            (folder / "x").write_text("x")
            raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]
    with atomic_directory(tmp_path / "d") as folder:
        (folder / "x").write_text("x")
    assert (tmp_path / "d" / "x").read_text() == "x"
    long_name = tmp_path / ("n" * 250)  # a legal name: the temporary one must fit beside it
    with atomic_file(long_name, "w") as f:
        f.write("x")
    assert long_name.read_text() == "x"
    long_name.unlink()
    with pytest.raises(ValueError, match=r"missing does not exist; create it first"):
        check_output(tmp_path / "missing" / "f.csv")
    with pytest.raises(ValueError, match="is a folder"):
        check_output(tmp_path / "d", replace=True)


# -- 3. model files and signing keys -----------------------------------------------------------------


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("key", ["", "   \n", "short-key"])
def test_convert_refuses_a_short_signing_key(tmp_path, monkeypatch, capsys, key):
    # 8c543f1 took an empty key file as the key b"": a pickle "signed" with it was unpickled.
    config = tmp_path / "config"
    (config / "skood").mkdir(parents=True)
    (config / "skood" / "model-signing-key").write_text(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.delenv("SKOOD_MODEL_KEY", raising=False)
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(_Marker(marker))
    tag = hmac.new(key.strip().encode(), payload, hashlib.sha256).hexdigest().encode()
    (tmp_path / "old.model").write_bytes(b"skood-model-v1\n" + tag + b"\n" + payload)
    assert main(["convert", "old.model", "new.skood"]) == 2
    assert "proves nothing" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "new.skood").exists()


def test_model_and_input_paths_that_are_not_regular_files(workdir, capsys):
    os.mkfifo(workdir / "fifo")
    cases = [
        ("missing.skood", "--model missing.skood: no such file"),
        ("fifo", "--model fifo is not a regular file"),
        ("data", "--model data is not a regular file (a directory)"),
    ]
    if os.path.exists("/dev/zero"):
        cases.append(("/dev/zero", "--model /dev/zero is not a regular file"))
    for model, message in cases:
        assert main(["score", "train.csv", "--model", model]) == 2
        assert message in capsys.readouterr().err
    assert main(["score", "fifo"]) == 2  # a FIFO to score: refused, not read forever
    assert "fifo is not a regular file" in capsys.readouterr().err
    assert main(["convert", "/dev/zero" if os.path.exists("/dev/zero") else "fifo", "n.skood"]) == 2
    assert "not a regular file" in capsys.readouterr().err


# -- 4. inputs read wrongly without a word ---------------------------------------------------------


def test_an_existing_file_name_with_glob_characters_is_that_file(workdir, capsys):
    rng = np.random.default_rng(3)
    _csv(workdir / "data[1].csv", rng.normal(size=(200, 3)))
    _csv(workdir / "data1.csv", rng.normal(size=(5, 3)))  # what the pattern data[1].csv matches
    assert main(["score", "data[1].csv", "--model", "m.skood", "--out", "o.csv"]) == 0
    assert "scored 200 rows of data[1].csv" in capsys.readouterr().err
    assert (workdir / "o.csv").read_text().count("\n") == 201


def test_a_pandas_index_column_is_left_out_saying_so(workdir, capsys):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
    frame.iloc[:200].to_csv(workdir / "first.csv")  # pandas' default: the index as column 1
    frame.iloc[200:].to_csv(workdir / "next.csv")  # the next chunk: index 200..399
    frame.iloc[200:].to_csv(workdir / "plain.csv", index=False)
    assert main(["score", "first.csv", "--save", "i.skood", "--out", "fit.csv"]) == 0
    assert "Left out the unnamed first column of first.csv (a row index" in capsys.readouterr().err
    assert main(["score", "next.csv", "--model", "i.skood", "--out", "next_scores.csv"]) == 0
    assert "Left out the unnamed first column of next.csv" in capsys.readouterr().err
    assert main(["score", "plain.csv", "--model", "i.skood", "--out", "plain_scores.csv"]) == 0
    flagged = pd.read_csv(workdir / "next_scores.csv")
    assert flagged.equals(pd.read_csv(workdir / "plain_scores.csv"))
    assert (flagged["is_outlier"] == 1).mean() < 0.15  # 8c543f1: 81 % of the next chunk flagged
    frame.sample(frac=1, random_state=0).to_csv(workdir / "shuffled.csv")  # not a row count
    assert main(["score", "shuffled.csv"]) == 2
    assert "column 1 has no name" in capsys.readouterr().err


def test_drop_of_an_empty_name_is_refused(workdir, capsys):
    for drop in ["", "a,", " "]:
        assert main(["score", "train.csv", "--drop", drop]) == 2
        assert "names an empty column" in capsys.readouterr().err


def _npz_bomb(path, shape):
    """An ``.npz`` whose ``X`` header claims ``shape`` (float64): a few bytes on disk."""
    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    y = io.BytesIO()
    np.save(y, np.zeros(shape[0], dtype=np.int8))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", header.getvalue() + b"\0" * 1024)
        archive.writestr("y.npy", y.getvalue())


def test_an_npz_that_would_inflate_past_the_bound_is_refused_unread(tmp_path, capsys):
    _npz_bomb(tmp_path / "bomb.npz", (1_000_000, 1_000))  # 7.45 GiB once read
    with pytest.raises(ValueError, match=r"about 14.9 GiB once read, more than max_bytes"):
        load_adbench(tmp_path / "bomb.npz")
    assert main(["bench", "--data", str(tmp_path), "--out", str(tmp_path.parent / "b")]) == 2
    assert "bomb.npz" in capsys.readouterr().err
    np.savez(tmp_path / "ok.npz", X=np.eye(3), y=[0, 0, 1])
    with pytest.raises(ValueError, match="max_bytes=10"):
        load_adbench(tmp_path / "ok.npz", max_bytes=10)
    assert load_adbench(tmp_path / "ok.npz")[0].shape == (3, 3)


# -- what a second hostile review found (after the first fixes) ------------------------------------


def test_a_device_or_fifo_at_an_output_path_is_never_replaced(workdir, capsys):
    import skood

    os.mkfifo(workdir / "pipe")
    os.symlink("/dev/null", workdir / "null")  # a device, reached through a link
    for out in ["pipe", "null"]:
        assert main(["score", "train.csv", "--out", out, "--force"]) == 2
        assert "not a regular file: skood replaces only files" in capsys.readouterr().err
        assert main(["score", "train.csv", "--save", out, "--force"]) == 2
        assert main(["convert", "m.skood", out, "--force"]) == 2
    with pytest.raises(ValueError, match="not a regular file"):
        skood.save(skood.load("m.skood"), workdir / "pipe")  # the Python API too
    assert stat.S_ISFIFO(os.lstat(workdir / "pipe").st_mode)
    assert os.path.islink(workdir / "null") and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_odd_output_names_are_refused_with_the_right_reason(workdir, capsys):
    os.symlink("loop", workdir / "loop")
    cases = [
        (["--out", "loop"], "leads nowhere (a loop)"),
        (["--out", "results/"], "ends with a slash"),
        (["--out", "notes.txt/o.csv"], "notes.txt is not a folder"),
        (["--out", "o.csv", "--save", "./o.csv"], "name the same file"),
    ]
    for args, message in cases:
        assert main(["score", "train.csv", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert os.path.islink(workdir / "loop") and not (workdir / "results").exists()
    assert main(["score", ""]) == 2
    assert "the path is empty" in capsys.readouterr().err
    assert main(["score", "data[2].csv", "--model", "m.skood"]) == 2  # neither file nor match
    assert "data[2].csv: no such file, and as a pattern it matches no file" in (
        capsys.readouterr().err
    )


def test_bench_never_replaces_a_users_file_or_follows_a_link(tmp_path, capsys):
    run = ["bench", "--detector", "gauss", "--datasets", "wine", "--seeds", "0", "--quiet"]
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "mean_rank.png").write_text("my own plot")
    assert main([*run, "--out", str(pics)]) == 2
    assert "mean_rank.png" in capsys.readouterr().err
    assert (pics / "mean_rank.png").read_text() == "my own plot"
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(notes, linked / "results.partial.csv")
    assert main([*run, "--out", str(linked), "--resume"]) == 2
    assert "results.partial.csv is not a regular file" in capsys.readouterr().err
    assert notes.read_text() == "my notes\n"
    # a report that cannot be written keeps the run's rows in results.partial.csv
    broken = tmp_path / "broken"
    (broken / "results.md").mkdir(parents=True)
    assert main([*run, "--out", str(broken), "--force"]) == 2  # refused before running
    assert "results.md is not a regular file" in capsys.readouterr().err


def test_a_byte_order_mark_duplicate_names_and_pandas_placeholders(workdir, capsys):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(np.random.default_rng(5).normal(size=(300, 3)), columns=["a", "b", "c"])
    frame.to_csv(workdir / "bom.csv", encoding="utf-8-sig")  # Excel's BOM, and the index
    frame.to_csv(workdir / "plain.csv", index=False)
    pd.read_csv(workdir / "plain.csv").reset_index().rename(columns={"index": "Unnamed: 0"}).to_csv(
        workdir / "roundtrip.csv", index=False
    )  # what reading to_csv() output and writing it back gives: an 'Unnamed: 0' index column
    assert main(["score", "plain.csv", "--save", "p.skood", "--out", "p.csv"]) == 0
    for name in ["bom.csv", "roundtrip.csv"]:
        assert main(["score", name, "--model", "p.skood", "--out", f"{name}.out"]) == 0, name
        assert f"Left out the unnamed first column of {name}" in capsys.readouterr().err
        assert (workdir / f"{name}.out").read_text() == (workdir / "p.csv").read_text()
    (workdir / "dup.csv").write_text("a,b,a\n1,2,3\n4,5,6\n")
    assert main(["score", "dup.csv"]) == 2
    assert "column name(s) ['a'] appear more than once" in capsys.readouterr().err


def test_a_tilde_is_a_name_for_the_check_and_the_read_alike(workdir, monkeypatch, capsys):
    home = workdir / "home"
    home.mkdir()
    _csv(home / "t.csv", np.random.default_rng(6).normal(size=(40, 3)))
    monkeypatch.setenv("HOME", str(home))
    (workdir / "~").mkdir()
    os.mkfifo(workdir / "~" / "t.csv")  # 8c543f1 checked $HOME/t.csv, then read this: a hang
    assert main(["score", "~/t.csv"]) == 2
    assert "~/t.csv is not a regular file (a FIFO" in capsys.readouterr().err


def test_npz_members_are_read_as_checked(tmp_path):
    from numpy.lib import format as npy

    def member(array):
        buffer = io.BytesIO()
        npy.write_array(buffer, array)
        return buffer.getvalue()

    decoy = tmp_path / "decoy.npz"
    with zipfile.ZipFile(decoy, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", member(np.zeros((2, 2))))
        archive.writestr("y.npy", member(np.zeros(2, dtype=int)))
        archive.writestr("X", member(np.zeros((100_000, 2))))  # what np.load reads for "X"
    with pytest.raises(ValueError, match=r"holds both \['X', 'X.npy'\]"):
        load_adbench(decoy, max_bytes=100_000)
    wide = tmp_path / "wide.npz"
    with zipfile.ZipFile(wide, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", member(np.zeros(1, dtype="V64")))
        archive.writestr("y.npy", member(np.zeros(1, dtype=int)))
    with pytest.raises(ValueError, match="X has dtype"):
        load_adbench(wide)
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(ValueError, match="not a regular file"):
        load_adbench(tmp_path / "pipe.npz")


def test_a_signing_key_that_is_not_a_file_is_refused_unread(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config"
    (config / "skood").mkdir(parents=True)
    os.mkfifo(config / "skood" / "model-signing-key")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.delenv("SKOOD_MODEL_KEY", raising=False)
    (tmp_path / "old.model").write_bytes(b"skood-model-v1\n" + b"0" * 64 + b"\n" + b"x")
    assert main(["convert", "old.model", "new.skood"]) == 2
    assert "the signing key" in (err := capsys.readouterr().err) and "a FIFO" in err
