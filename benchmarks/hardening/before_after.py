"""Issue 31's defects, measured: run against one skood source tree, print one line per case.

    git worktree add /tmp/old 8c543f1
    PYTHONPATH=/tmp/old OMP_NUM_THREADS=1 python benchmarks/hardening/before_after.py > old.txt
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/hardening/before_after.py > new.txt

Each case prints what a user gets: a share of rows flagged, a row count, or the error (first 110
characters). The tests in tests/ assert the new behaviour; this prints both sides for the record
(``results.md``).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

warnings.simplefilter("ignore")
import skood
from skood import ConformalDetector, DeepSVDDDetector, GaussianMahalanobis
from skood.cli import main

SOURCE = str(Path(skood.__file__).parents[1])


def cli(*args) -> str:
    """``skood ARGS`` in this process: exit code and the last line of stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    last = (err.getvalue().strip().splitlines() or [""])[-1]
    return f"exit {code}: {last[:110]}"


def csv(path, X, header="a,b,c"):
    rows = "\n".join(",".join(map(str, r)) for r in X)
    Path(path).write_text(header + "\n" + rows + "\n")


def case(name, fn):
    try:
        result = fn()
    except Exception as exc:  # the outcome of a case, whatever it is, is what we record
        result = f"{type(exc).__name__}: {str(exc)[:110]}"
    print(f"| {name} | {result} |")


def flagged(labels) -> str:
    labels = np.asarray(labels)
    return f"{(labels == -1).mean():.1%} flagged"


def main_cases(tmp: Path) -> None:
    rng = np.random.default_rng(0)
    os.chdir(tmp)
    csv("train.csv", rng.normal(size=(60, 3)))
    main(["score", "train.csv", "--save", "m.skood", "--out", "s.csv"])
    Path("data").mkdir()
    csv("data/part0.csv", rng.normal(size=(20, 3)))
    Path("data/part1.csv").write_text("a,b,c\n1,2,\n")  # a bad later file
    Path("notes.txt").write_text("mine\n")

    def dataset_out_dotdot():
        out = cli("score", "data", "--model", "m.skood", "--out", "nothere/..")
        left = sorted(p.name for p in tmp.iterdir())
        return f"{out}; working folder after: {left}"

    case("`score data --model m --out nothere/..` (bad 2nd file)", dataset_out_dotdot)
    for name in ["train.csv", "m.skood", "s.csv", "notes.txt"]:
        if not Path(name).exists():  # the old code emptied the folder: rebuild it for the rest
            csv("train.csv", rng.normal(size=(60, 3)))
            main(["score", "train.csv", "--save", "m.skood", "--out", "s.csv"])
            break

    csv("big.csv", rng.normal(size=(2000, 3)))
    main(["score", "big.csv", "--out", "scores.csv"])

    def write_error():
        before = Path("scores.csv").read_bytes()
        env = {**os.environ, "PYTHONPATH": SOURCE, "OMP_NUM_THREADS": "1"}
        args = "score big.csv --detector iforest --out scores.csv --force"
        done = subprocess.run(
            ["bash", "-c", f"ulimit -f 40; {sys.executable} -m skood.cli {args}"],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        after = Path("scores.csv").read_bytes()
        lines = f"{len(before.splitlines())} -> {len(after.splitlines())} lines"
        return f"exit {done.returncode}: {done.stderr.strip()[:90]}; scores.csv {lines}"

    case("`--out scores.csv --force` with the disk full part-way", write_error)

    def bench_twice():
        run = ["bench", "--detector", "gauss", "--datasets", "wine", "--seeds", "0", "--quiet"]
        with contextlib.redirect_stdout(io.StringIO()):
            main([*run, "--out", "b"])
            Path("b/results.md").write_text("my notes\n")
            out = cli(*run, "--out", "b")
        kept = Path("b/results.md").read_text() == "my notes\n"
        return f"{out}; results.md kept: {kept}"

    case("`bench --out b` over an earlier run", bench_twice)

    def glob_name():
        csv("data[1].csv", rng.normal(size=(200, 3)))
        csv("data1.csv", rng.normal(size=(5, 3)))
        return cli("score", "data[1].csv", "--model", "m.skood", "--out", "g.csv")

    case("`score data[1].csv` beside data1.csv", glob_name)

    def index_column():
        import pandas as pd

        frame = pd.DataFrame(np.random.default_rng(4).normal(size=(4000, 3)), columns=list("abc"))
        frame.iloc[:2000].to_csv("first.csv")
        frame.iloc[2000:].to_csv("next.csv")
        main(["score", "first.csv", "--save", "i.skood", "--out", "i.csv"])
        main(["score", "next.csv", "--model", "i.skood", "--out", "n.csv"])
        return flagged(pd.read_csv("n.csv")["label"]) + " of the next chunk (4000-row blobs)"

    case("pandas `to_csv()` (index column), next chunk", index_column)
    case("`--drop ''`", lambda: cli("score", "train.csv", "--drop", ""))
    case("`--model /dev/zero` (memory capped at 4 GiB)", lambda: _capped("--model", "/dev/zero"))
    case("`--model missing.skood`", lambda: cli("score", "train.csv", "--model", "missing.skood"))

    def short_key():
        import hashlib
        import hmac
        import pickle

        os.environ["SKOOD_MODEL_KEY"] = ""
        Path("cfg/skood").mkdir(parents=True, exist_ok=True)
        Path("cfg/skood/model-signing-key").write_text("\n")
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "cfg")
        payload = pickle.dumps({"pipeline": None, "columns": []})
        tag = hmac.new(b"", payload, hashlib.sha256).hexdigest().encode()
        Path("old.model").write_bytes(b"skood-model-v1\n" + tag + b"\n" + payload)
        return cli("convert", "old.model", "new.skood")

    case("`convert` with an empty signing-key file", short_key)


def _capped(flag, value) -> str:
    env = {**os.environ, "PYTHONPATH": SOURCE, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", "-c", f"ulimit -v 4000000; {sys.executable} -m skood.cli score train.csv "
         f"{flag} {value}"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    return f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:110]}"


def library_cases() -> None:
    rng = np.random.default_rng(0)
    blobs = np.vstack([rng.normal(c, 1.0, size=(300, 2)) for c in (0, 2.5, 5)])
    labels = np.repeat([0, 1, 2], 300)
    new = np.vstack([rng.normal(c, 1.0, size=(300, 2)) for c in (0, 2.5, 5)])

    def aggregate():
        det = GaussianMahalanobis(random_state=0).fit(blobs, labels)
        before = flagged(det.predict(new))
        det.set_params(aggregate="logsumexp")
        return f"{before} -> after set_params: {flagged(det.predict(new))}"

    case("class-conditional Gaussian, `set_params(aggregate='logsumexp')`", aggregate)

    def ties(X):
        det = DeepSVDDDetector(max_epochs=10, min_steps=0, contamination=0.1, random_state=0)
        return flagged(det.fit(X).predict(X)) + " of its training rows"

    case("Deep SVDD on 20 constant rows", lambda: ties(np.ones((20, 8))))
    case("Deep SVDD on 4 rows repeated 5 times",
         lambda: ties(np.repeat(rng.normal(size=(4, 8)), 5, axis=0)))  # fmt: skip

    def small_n():
        X = rng.normal(size=(12, 10))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            det = GaussianMahalanobis(random_state=0).fit(X)
        far = det.predict(np.full((1, 10), 6.0))[0]
        return f"offset_ {det.offset_:.3g}, 6-sigma point predicted {far:+d}, {len(seen)} warning(s)"

    case("Gaussian, n = 12, d = 10", small_n)

    def class_conditional(n_small, method):
        X = np.vstack([rng.normal(size=(200, 2)), rng.normal(size=(n_small, 2))])
        y = np.r_[np.zeros(200), np.ones(n_small)]
        det = ConformalDetector(GaussianMahalanobis(), alpha=0.1, method=method,
                                class_conditional=True, random_state=0).fit(X, y)  # fmt: skip
        return f"p-value at (8, 8) {det.score_samples([[8.0, 8.0]])[0]:.3g}, predict {det.predict([[8.0, 8.0]])[0]:+d}"

    case("Conformal class_conditional, a class of 1 row, split", lambda: class_conditional(1, "split"))
    case("Conformal class_conditional, a class of 5 rows, cross", lambda: class_conditional(5, "cross"))

    def alpha_after(alpha):
        det = ConformalDetector(GaussianMahalanobis(), alpha=0.1, random_state=0).fit(blobs[:300])
        det.set_params(alpha=alpha)
        return flagged(det.predict(rng.normal(size=(500, 2))))

    for alpha in (float("nan"), 1.5, 0.0):
        case(f"Conformal `set_params(alpha={alpha})` after fit", lambda a=alpha: alpha_after(a))

    def reordered():
        import dask.dataframe as dd
        import pandas as pd

        from skood.distributed import score_dataset

        train = pd.DataFrame(rng.normal(size=(300, 3)) * [1, 10, 100], columns=list("abc"))
        det = GaussianMahalanobis(random_state=0).fit(train)
        frame = pd.DataFrame(rng.normal(size=(20, 3)) * [1, 10, 100], columns=list("abc"))
        out = score_dataset(det, dd.from_pandas(frame[["c", "a", "b"]], npartitions=2))
        return flagged(out.compute(scheduler="sync")["label"]) + " (in memory: " + flagged(
            det.predict(frame)) + ")"  # fmt: skip

    case("Dask scoring, the model's columns reordered", reordered)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"skood from {SOURCE}\n\n| case | outcome |\n|---|---|")
    library_cases()
    with tempfile.TemporaryDirectory() as folder:
        main_cases(Path(folder))
