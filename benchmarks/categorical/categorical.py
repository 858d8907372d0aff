"""Which encoding of categorical columns for skood's default detectors: one-hot or ordinal.

Issue 34 (part 4). ``skood.preprocessing.make_table_pipeline`` encodes a table's categorical
columns before the detector; this measures the candidates on tables with categorical columns:

* ``drop``: the categorical and boolean columns left out (what ``skood score`` does today);
* ``onehot``: ``make_table_pipeline(det)``: dense OneHotEncoder, 0/1 columns, not rescaled;
* ``onehot_scaled``: the same one-hot columns, then StandardScaler (each indicator to unit
  variance, so a rare category's column weighs more);
* ``ordinal``: ``make_table_pipeline(det, encoding="ordinal")``: OrdinalEncoder (codes in the
  categories' sorted order), then StandardScaler;
* ``reference``: the ADBench matrix the table was made from, behind ``make_pipeline_for`` (the
  numeric columns before discretising; for the real tables, ADBench's own encoding).

Every variant keeps the numeric columns as ``make_pipeline_for`` does (InformativeColumns,
StandardScaler). Tables (all from ``../shared/data/adbench``, ADBench's ``.npz``):

* ``campaign`` (real): bank marketing, 41,188 rows. ADBench one-hot encodes its categorical
  columns; each block of 0/1 columns that sums to 1 on every row is folded back into one string
  column (9 columns of 3 to 12 categories: job, marital, education, default, housing, loan,
  month, day of week, previous outcome), the single 0/1 column (contact) into a boolean. The
  labels are ``c00``, ``c01``, ... in ADBench's column order, which is the alphabetical order of
  the original names (pandas' get_dummies), so OrdinalEncoder orders them as it would the
  original strings. The other 10 columns stay numeric.
* ``lymphography`` (real): 148 rows, 18 attributes that are all categorical in the UCI source;
  ADBench stores each category as a number. Every column becomes a string column, categories
  labelled ``v0``, ``v1``, ... in the order of ADBench's numbers.
* ``donors`` (real): KDD Cup 2014, a random 20,000 of its 619,326 rows (seed 0). Its first 7
  columns are true/false flags; in 5 of them ADBench replaced the missing cells (15.2 % of the
  rows) by the column's mean, a third value, which is folded back into a missing value: 7
  nullable boolean columns (5 with missing cells, a category of their own), 3 numeric.
* ``hepatitis`` (real): 80 rows; its 13 two-valued columns become booleans, 6 stay numeric.
* ``internetads`` (real): 1,966 rows, 1,555 two-valued columns, all booleans.
* semi-synthetic: eight numeric ADBench tables, whose three most informative numeric columns
  (largest ``|AUROC - 0.5|`` of the column alone against the labels, on all rows) are cut into
  4, 8 and 16 quantile bins (fewer where a column has fewer distinct values); each bin is a
  category with a random label (``k03``, ``k11``, ...; a fixed permutation per column, seed
  12345), so a category's name says nothing about its order, as with real nominal data.

Protocol (ADBench's semi-supervised setting): a random 70 % of the normal rows train, the other
normals and every anomaly test; AUROC of the score, anomalies as positives; seeds 0, 1, 2;
detectors ``EnsembleDetector()``, ``KNNDetector()``, ``GaussianMahalanobis()`` at their
defaults (``random_state=seed``).

Usage (from the repository root; two processes, one per core):
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/categorical/categorical.py run --part 0/2 --out benchmarks/categorical/results_part0.csv
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/categorical/categorical.py run --part 1/2 --out benchmarks/categorical/results_part1.csv
  .venv/bin/python benchmarks/categorical/categorical.py report benchmarks/categorical/results_part*.csv --out benchmarks/categorical/results.md
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skood import EnsembleDetector, GaussianMahalanobis, KNNDetector
from skood.datasets import load_adbench, novelty_split
from skood.preprocessing import make_table_pipeline
from skood.registry import make_pipeline_for

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root
from benchmarks._common import ADBENCH_DIR as DATA

SEEDS = (0, 1, 2)
DETECTORS = {
    "ensemble": lambda seed: EnsembleDetector(random_state=seed),
    "knn": lambda seed: KNNDetector(random_state=seed),
    "gaussian": lambda seed: GaussianMahalanobis(random_state=seed),
}
VARIANTS = ("drop", "onehot", "onehot_scaled", "ordinal", "reference")
SEMI = (
    "7_Cardiotocography",
    "27_PageBlocks",
    "29_Pima",
    "31_satimage-2",
    "23_mammography",
    "43_WDBC",
    "37_Stamps",
    "39_vertebral",
)
BINS = (4, 8, 16)
DONORS_ROWS = 20_000
LABEL_SEED = 12345


def _campaign():
    X, y = load_adbench(DATA / "5_campaign.npz")
    binary = [j for j in range(X.shape[1]) if set(np.unique(X[:, j])) <= {0.0, 1.0}]
    blocks, i = [], 0
    while i < len(binary):  # consecutive 0/1 columns whose sum is 1 on every row: one column
        block, total = [binary[i]], X[:, binary[i]].copy()
        while (
            i + len(block) < len(binary)
            and binary[i + len(block)] == block[-1] + 1
            and (total + X[:, binary[i + len(block)]]).max() <= 1
        ):
            total += X[:, binary[i + len(block)]]
            block.append(binary[i + len(block)])
        blocks.append(block)
        i += len(block)
    names = iter(["job", "marital", "education", "default", "housing", "loan", "contact",
                  "month", "day_of_week", "poutcome"])  # fmt: skip
    frame = {}
    in_block = {j for b in blocks for j in b}
    for j in range(X.shape[1]):
        if j not in in_block:
            frame[f"num{j}"] = X[:, j]
        elif j == min(b := next(b for b in blocks if j in b)):
            name = next(names)
            if len(b) == 1:
                frame[name] = X[:, j] == 1
            else:
                assert (X[:, b].sum(axis=1) == 1).all()
                frame[name] = np.array([f"c{k:02d}" for k in X[:, b].argmax(axis=1)], dtype=object)
    return pd.DataFrame(frame), X, y


def _lymphography():
    X, y = load_adbench(DATA / "21_Lymphography.npz")
    frame = {}
    for j in range(X.shape[1]):
        values = np.unique(X[:, j])
        frame[f"a{j}"] = np.array([f"v{k}" for k in np.searchsorted(values, X[:, j])], dtype=object)
    return pd.DataFrame(frame), X, y


def _booleans(name: str):
    """Every two-valued column of an ADBench table as a boolean (its larger value True)."""
    X, y = load_adbench(DATA / f"{name}.npz")
    frame = {}
    for j in range(X.shape[1]):
        values = np.unique(X[:, j])
        frame[f"x{j}"] = X[:, j] == values[-1] if len(values) == 2 else X[:, j]
    return pd.DataFrame(frame), X, y


def _donors():
    X, y = load_adbench(DATA / "11_donors.npz")
    keep = np.sort(np.random.RandomState(0).choice(len(y), DONORS_ROWS, replace=False))
    X, y = X[keep], y[keep]
    frame = {}
    for j in range(X.shape[1]):
        values = np.unique(X[:, j])
        if j < 7:  # 0/1 flags; a third value is ADBench's mean imputation of a missing cell
            assert len(values) <= 3 and set(values) >= {0.0, 1.0}
            flag = pd.array(X[:, j] == 1, dtype="boolean")
            flag[(X[:, j] != 0) & (X[:, j] != 1)] = pd.NA
            frame[f"flag{j}"] = flag
        else:
            frame[f"num{j}"] = X[:, j]
    return pd.DataFrame(frame), X, y


def _semi(name: str):
    X, y = load_adbench(DATA / f"{name}.npz")
    anomaly = (y == -1).astype(int)
    strength = [abs(roc_auc_score(anomaly, X[:, j]) - 0.5) for j in range(X.shape[1])]
    chosen = np.argsort(strength)[::-1][: len(BINS)]
    rng = np.random.RandomState(LABEL_SEED)
    frame = {f"x{j}": X[:, j] for j in range(X.shape[1]) if j not in chosen}
    for j, bins in zip(chosen, BINS):
        edges = np.unique(np.quantile(X[:, j], np.linspace(0, 1, bins + 1)[1:-1]))
        codes = np.searchsorted(edges, X[:, j], side="right")
        labels = rng.permutation(len(edges) + 1)
        frame[f"x{j}"] = np.array([f"k{labels[c]:02d}" for c in codes], dtype=object)
    return pd.DataFrame(frame)[[f"x{j}" for j in range(X.shape[1])]], X, y


def tables():
    """``[(name, kind, loader)]``: the real tables, then the semi-synthetic ones."""
    out = [
        ("campaign", "real", _campaign),
        ("lymphography", "real", _lymphography),
        ("donors", "real", _donors),
        ("hepatitis", "real", lambda: _booleans("15_Hepatitis")),
        ("internetads", "real", lambda: _booleans("17_InternetAds")),
    ]
    return out + [(n, "semi", lambda n=n: _semi(n)) for n in SEMI]


def pipeline(variant: str, detector, frame: pd.DataFrame):
    if variant == "reference":
        return make_pipeline_for(detector)
    if variant == "drop":
        return make_pipeline_for(detector)  # on the numeric columns only (see run_cell)
    if variant == "ordinal":
        return make_table_pipeline(detector, encoding="ordinal")
    pipe = make_table_pipeline(detector)
    if variant == "onehot_scaled":
        ct = pipe.named_steps["columns"]
        for name in ("boolean", "categorical"):
            enc = clone(dict((n, t) for n, t, _ in ct.transformers)[name])
            ct.set_params(**{name: Pipeline([("encode", enc), ("scale", StandardScaler())])})
    return pipe


def run_cell(table, frame, X, y, seed, det_name, variant):
    idx = np.arange(len(y))[:, None]
    tr, _, te, y_te = novelty_split(idx, y, train_fraction=0.7, random_state=seed)
    tr, te = tr.ravel(), te.ravel()
    if variant == "reference":
        train, test = X[tr], X[te]
    else:
        data = frame
        if variant == "drop":
            data = frame.select_dtypes(include="number")
            if data.shape[1] == 0:
                return None  # an all-categorical table: nothing left to score
        train, test = data.iloc[tr], data.iloc[te]
    pipe = pipeline(variant, DETECTORS[det_name](seed), frame)
    start = time.perf_counter()
    pipe.fit(train)
    fit_s = time.perf_counter() - start
    scores = pipe.score_samples(test)
    width = pipe[:-1].transform(test[:1]).shape[1]
    return roc_auc_score(y_te == -1, -scores), fit_s, width


def cmd_run(args):
    k, n = (int(v) for v in args.part.split("/"))
    cells = [
        (name, kind, loader, seed, det, variant)
        for name, kind, loader in tables()
        for seed in SEEDS
        for det in DETECTORS
        for variant in VARIANTS
    ]
    cells = cells[k::n]
    out = Path(args.out)
    done = set()
    if out.exists():
        with open(out) as f:
            done = {
                (r["table"], int(r["seed"]), r["detector"], r["variant"]) for r in csv.DictReader(f)
            }
    new_file = not out.exists()
    loaded = {}
    with open(out, "a", newline="") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(
                ["table", "kind", "seed", "detector", "variant", "auroc", "fit_s", "width"]
            )
        for name, kind, loader, seed, det, variant in cells:
            if (name, seed, det, variant) in done:
                continue
            if name not in loaded:
                loaded = {name: loader()}
            frame, X, y = loaded[name]
            result = run_cell(name, frame, X, y, seed, det, variant)
            if result is None:
                continue
            auroc, fit_s, width = result
            writer.writerow([name, kind, seed, det, variant, f"{auroc:.5f}", f"{fit_s:.3f}", width])
            f.flush()
            print(f"{name:20s} seed {seed} {det:9s} {variant:14s} AUROC {auroc:.4f} "
                  f"fit {fit_s:6.2f}s width {width}", flush=True)  # fmt: skip


def cmd_report(args):
    df = pd.concat([pd.read_csv(p) for p in args.csv], ignore_index=True)
    mean = df.groupby(["table", "kind", "detector", "variant"])["auroc"].mean().unstack("variant")
    lines = [
        "# One-hot or ordinal: AUROC of skood's default detectors on tables with categories",
        "",
        "Command (from the repository root; two processes, one per core):",
        "",
        "```",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/categorical/categorical.py run --part 0/2 "
        "--out benchmarks/categorical/results_part0.csv",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/categorical/categorical.py run --part 1/2 "
        "--out benchmarks/categorical/results_part1.csv",
        ".venv/bin/python benchmarks/categorical/categorical.py report "
        "benchmarks/categorical/results_part*.csv --out benchmarks/categorical/results.md",
        "```",
        "",
        "ADBench's semi-supervised protocol: 70 % of the normals train, the rest and every "
        "anomaly test; AUROC (anomalies positive), mean of seeds 0, 1, 2. Variants and tables: "
        "see `categorical.py`'s docstring. `reference` is the ADBench matrix the table was made "
        "from (numeric; not available to a practitioner who has the categorical table). `drop` is "
        "blank where no numeric column is left, and its means are over the other tables. Bold: "
        "the best of the four encodings.",
        "",
    ]
    cols = [v for v in VARIANTS if v in mean.columns]
    for det in DETECTORS:
        part = mean.xs(det, level="detector")
        lines += [f"## {det}", "", "| table | kind | " + " | ".join(cols) + " |",
                  "|---|---|" + "---:|" * len(cols)]  # fmt: skip
        for (table, kind), row in part.sort_index(level=["kind", "table"]).iterrows():
            best = row[[c for c in cols if c != "reference"]].max()
            cells = [
                "" if np.isnan(row[c]) else (f"**{row[c]:.4f}**" if row[c] == best and c != "reference" else f"{row[c]:.4f}")
                for c in cols
            ]  # fmt: skip
            lines.append(f"| {table} | {kind} | " + " | ".join(cells) + " |")
        for kind in ("real", "semi"):
            sub = part.xs(kind, level="kind")
            lines.append(
                f"| **mean, {kind}** ({len(sub)}) | | "
                + " | ".join(f"{sub[c].mean():.4f}" for c in cols)
                + " |"
            )
        lines.append("")
    enc = ["onehot", "onehot_scaled", "ordinal"]
    lines += [
        "## Summary",
        "",
        f"Mean AUROC over the {len(mean)} (table, detector) pairs; `real + semi` weighs the two "
        "kinds of table equally:",
        "",
        "| encoding | mean (all pairs) | mean, real | mean, semi | real + semi |",
        "|---|---:|---:|---:|---:|",
    ]
    for e in ["drop", *enc]:
        lines.append(
            f"| {e} | {mean[e].mean():.4f} | {mean[e].xs('real', level='kind').mean():.4f} | "
            f"{mean[e].xs('semi', level='kind').mean():.4f} | "
            f"{(mean[e].xs('real', level='kind').mean() + mean[e].xs('semi', level='kind').mean()) / 2:.4f} |"
        )
    lines += [
        "",
        "Paired, per (table, detector): mean AUROC difference and wins / losses / ties (|d| <= "
        "1e-4) of the first encoding over the second:",
        "",
        "| comparison | detector | real: mean d | real: W/L/T | semi: mean d | semi: W/L/T |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for a, b in [("onehot", "ordinal"), ("onehot", "onehot_scaled")]:
        d = mean[a] - mean[b]
        for det in [*DETECTORS, "all"]:
            part = d if det == "all" else d.xs(det, level="detector", drop_level=False)
            cells = []
            for kind in ("real", "semi"):
                x = part.xs(kind, level="kind")
                wlt = f"{(x > 1e-4).sum()}/{(x < -1e-4).sum()}/{(x.abs() <= 1e-4).sum()}"
                cells += [f"{x.mean():+.4f}", wlt]
            lines.append(f"| {a} - {b} | {det} | " + " | ".join(cells) + " |")
    fit = df.groupby("variant")["fit_s"].sum()
    width = df.groupby("variant")["width"].mean()
    lines += ["", "Total fit time (s) and mean encoded width per variant: "
              + ", ".join(f"{v} {fit[v]:.0f} s / {width[v]:.1f}" for v in cols), ""]  # fmt: skip
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run (a part of) the grid, appending to --out")
    run.add_argument("--part", default="0/1", help="k/n: run every n-th cell from the k-th")
    run.add_argument("--out", required=True)
    report = sub.add_parser("report", help="the markdown table of one or more CSVs")
    report.add_argument("csv", nargs="+")
    report.add_argument("--out", required=True)
    args = parser.parse_args()
    {"run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
