"""ICE's Table 2 / Table 3 at CPU scale: ICEClassifier (Gaussian head + ICE loss) vs CE, OE, Energy-OE.

The CPU counterpart of the paper's Table 2 (CIFAR-10 WRN rows) and Table 3 (ablation), whose
numbers the report quotes for reference. Every method is the SAME
``skood.ICEClassifier`` (same MLP 64->256->128->32, same batching, same Adam optimiser, same
training data and seed); only ``head`` / ``loss`` / ``ood_weight`` differ.

Variants:
  "digits": sklearn digits / 16. Split s (0..9): np.random.RandomState(s).permutation(10) ->
      5 ID classes, 3 auxiliary-outlier classes, 2 held-out OOD classes. ID rows: stratified 70/30
      split (random_state=s). fit() gets the 70 % with their digit labels plus ALL rows of the
      3 auxiliary classes labelled -1. Test: the 30 % (inliers, +1) vs all rows of the 2 held-out
      classes (OOD, -1).
  "hard": as "digits" but (a) 25 training rows per ID class (the first 25 per class of the 70 %
      part after shuffling it with RandomState(s)), (b) Gaussian pixel noise, std 0.1 on the /16
      scale, clipped to [0, 1], on every image (noise from RandomState(1000 + s)), (c) near
      outliers: digits 1 and 4 are forced into the ID classes and 7 and 9 into the auxiliary
      classes; the remaining 6 digits, permuted by RandomState(s), fill 3 ID, 1 auxiliary and 2
      OOD slots.

Training: Adam lr 1e-3, max_epochs=100, batch_size=64 ID rows + 128 auxiliary
rows per step (outlier_batch_ratio=2). Seeds: random_state in {0, 1, 2} per split.
Fine-tune rows (the paper's dagger protocol): from the fitted "CE (MSP)" model of the same run,
``fine_tune=ce.module_``, 10 epochs, Adam lr 1e-3, cosine schedule.

Usage (from the repo root):
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/ice_table2/ice_table2.py \
      --variants digits hard --splits 0-9 --seeds 0 1 2 --n-jobs 2
  .venv/bin/python benchmarks/ice_table2/ice_table2.py --report-only
The CSV (benchmarks/ice_table2/ice_table2.csv) gets one row per (variant, split, seed, method) as runs finish;
rerunning skips rows already there. benchmarks/ice_table2/ice_table2.md is regenerated from the CSV.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import csv
import json
import platform
import shlex
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CSV_PATH = HERE / "ice_table2.csv"
MD_PATH = HERE / "ice_table2.md"
META_PATH = HERE / "ice_table2_meta.json"

# name -> (constructor kwargs, fine-tuned from the CE model?)
METHODS: dict[str, tuple[dict, bool]] = {
    "CE (MSP)": (dict(head="linear", loss="ce"), False),
    "OE": (dict(head="linear", loss="oe", ood_weight=0.5), False),
    "Energy-OE": (dict(head="linear", loss="energy", ood_weight=0.1), False),
    "ICE l=0.1": (dict(head="gaussian", loss="ice", ood_weight=0.1), False),
    "ICE l=0.5": (dict(head="gaussian", loss="ice", ood_weight=0.5), False),
    "ICE l=1": (dict(head="gaussian", loss="ice", ood_weight=1.0), False),
    "ICE- (no L_id)": (dict(head="gaussian", loss="ice_ood_only", ood_weight=0.5), False),
    "Gaussian CE": (dict(head="gaussian", loss="ice", ood_weight=0.0), False),
    "OE ft": (dict(head="linear", loss="oe", ood_weight=0.5), True),
    "Energy-OE ft": (dict(head="linear", loss="energy", ood_weight=0.1), True),
    "ICE ft l=0.5": (dict(head="gaussian", loss="ice", ood_weight=0.5), True),
}
SCRATCH = [m for m, (_, ft) in METHODS.items() if not ft]
FINETUNE = [m for m, (_, ft) in METHODS.items() if ft]
COMMON = dict(batch_size=64, max_epochs=100, outlier_batch_ratio=2.0, optimizer="adam", lr=1e-3)
FT_COMMON = dict(
    batch_size=64,
    max_epochs=10,
    outlier_batch_ratio=2.0,
    optimizer="adam",
    lr=1e-3,
    lr_schedule="cosine",
)

FIELDS = [
    "variant",
    "split",
    "seed",
    "method",
    "status",
    "id_acc",
    "auroc",
    "fpr95",
    "aupr_in",
    "aupr_out",
    "fit_s",
    "id_classes",
    "aux_classes",
    "ood_classes",
    "n_train_id",
    "n_aux",
    "n_test_id",
    "n_test_ood",
    "steps_per_epoch",
    "epochs",
    "final_train_loss",
    "log_det_cov",
    "warnings",
    "error",
]
KEY = ("variant", "split", "seed", "method")
HARD_ID, HARD_AUX = (1, 4), (7, 9)
HARD_PER_CLASS, HARD_NOISE = 25, 0.1


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def make_split(variant: str, split: int):
    """(X_fit, y_fit, X_id_test, y_id_test, X_ood, info) for one variant and class split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.RandomState(split)
    if variant == "digits":
        perm = rng.permutation(10)
        id_c, aux_c, ood_c = perm[:5], perm[5:8], perm[8:]
    elif variant == "hard":
        rest = np.array([d for d in range(10) if d not in HARD_ID + HARD_AUX])
        rest = rest[rng.permutation(rest.size)]
        id_c = np.r_[HARD_ID, rest[:3]]
        aux_c = np.r_[HARD_AUX, rest[3:4]]
        ood_c = rest[4:]
        noise = np.random.RandomState(1000 + split).normal(0.0, HARD_NOISE, size=X.shape)
        X = np.clip(X + noise, 0.0, 1.0)
    else:
        raise ValueError(variant)
    id_mask = np.isin(y, id_c)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X[id_mask], y[id_mask], test_size=0.3, stratify=y[id_mask], random_state=split
    )
    if variant == "hard":
        order = np.random.RandomState(split).permutation(len(y_tr))
        X_tr, y_tr = X_tr[order], y_tr[order]
        keep = np.concatenate([np.flatnonzero(y_tr == c)[:HARD_PER_CLASS] for c in id_c])
        keep.sort()
        X_tr, y_tr = X_tr[keep], y_tr[keep]
    X_aux = X[np.isin(y, aux_c)]
    X_fit = np.vstack([X_tr, X_aux]).astype(np.float32)
    y_fit = np.r_[y_tr, -np.ones(len(X_aux), dtype=int)]
    X_ood = X[np.isin(y, ood_c)].astype(np.float32)
    info = dict(
        id_classes=" ".join(map(str, sorted(id_c))),
        aux_classes=" ".join(map(str, sorted(aux_c))),
        ood_classes=" ".join(map(str, sorted(ood_c))),
        n_train_id=len(y_tr),
        n_aux=len(X_aux),
        n_test_id=len(y_te),
        n_test_ood=len(X_ood),
        steps_per_epoch=int(-(-len(y_tr) // 64)),
    )
    return X_fit, y_fit, X_te.astype(np.float32), y_te, X_ood, info


# ------------------------------------------------------------------------------------------------
# one (variant, split, seed): all requested methods
# ------------------------------------------------------------------------------------------------
def _evaluate(est, X_te, y_te, X_ood) -> dict:
    from skood.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr

    s_in, s_out = est.score_samples(X_te), est.score_samples(X_ood)
    yy = np.r_[np.ones(len(s_in), int), -np.ones(len(s_out), int)]
    ss = np.r_[s_in, s_out]
    return dict(
        id_acc=est.score(X_te, y_te),
        auroc=auroc(yy, ss),
        fpr95=fpr_at_tpr(yy, ss, 0.95),
        aupr_in=aupr_in(yy, ss),
        aupr_out=aupr_out(yy, ss),
    )


def _fit_one(kwargs, X_fit, y_fit, X_te, y_te, X_ood, row):
    from skood import ICEClassifier

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est = ICEClassifier(**kwargs).fit(X_fit, y_fit)
            row["fit_s"] = time.perf_counter() - t0
            row.update(_evaluate(est, X_te, y_te, X_ood))
            hist = est.history_
            row["epochs"] = len(hist)
            row["final_train_loss"] = float(hist[-1, "train_loss"])
            if "log_det_cov" in hist[-1]:
                row["log_det_cov"] = float(hist[-1, "log_det_cov"])
            row["status"] = "ok"
        except Exception as exc:  # record divergence etc., keep going
            est = None
            row["fit_s"] = time.perf_counter() - t0
            row["status"] = "error"
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
            traceback.print_exc()
    msgs = sorted({f"{w.category.__name__}: {str(w.message)[:150]}" for w in caught})
    row["warnings"] = " | ".join(msgs)
    return est, row


def run_unit(variant: str, split: int, seed: int, methods: list[str]) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    X_fit, y_fit, X_te, y_te, X_ood, info = make_split(variant, split)
    rows, ce = [], None
    need_ce_model = any(METHODS[m][1] for m in methods)
    order = [m for m in SCRATCH if m in methods or (m == "CE (MSP)" and need_ce_model)]
    for name in order + [m for m in FINETUNE if m in methods]:
        kwargs, ft = METHODS[name]
        base = dict(variant=variant, split=split, seed=seed, method=name, **info)
        if ft:
            if ce is None:
                rows.append({**base, "status": "error", "error": "no CE model to fine-tune"})
                continue
            kw = {**kwargs, **FT_COMMON, "fine_tune": ce.module_, "random_state": seed}
        else:
            kw = {**kwargs, **COMMON, "random_state": seed}
        est, row = _fit_one(kw, X_fit, y_fit, X_te, y_te, X_ood, base)
        if name == "CE (MSP)":
            ce = est
        if name in methods:
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------------
def read_rows(path: Path = CSV_PATH) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def append_rows(rows: list[dict], path: Path = CSV_PATH) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
        fh.flush()
        os.fsync(fh.fileno())


def parse_splits(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
PAPER_T2 = [  # CIFAR-10, WRN; AUPR / AUROC / FPR95 / Acc (mean over 5 OOD sets)
    ("MSP", "97.88", "90.82", "56.03", "95.11"),
    ("ODIN", "97.39", "90.39", "37.53", "95.11"),
    ("Mahalanobis", "98.47", "93.27", "35.97", "95.11"),
    ("OE† (fine-tune)", "98.90", "98.40", "7.14", "95.23"),
    ("Energy† (fine-tune)", "99.03", "98.78", "4.54", "95.88"),
    ("ICE† (fine-tune)", "99.47", "98.96", "4.35", "96.02"),
    ("OE‡ (scratch)", "99.32", "98.97", "4.03", "94.88"),
    ("Energy‡ (scratch)", "99.32", "99.10", "4.12", "94.13"),
    ("ICE‡ (scratch)", "99.55", "99.16", "3.33", "96.38"),
]
PAPER_T3 = [  # WRN scratch, CIFAR-10
    ("Energy, WRN", "99.32", "99.10", "4.12", "94.13"),
    ("Energy, WRN(G) (Gaussian head)", "99.37", "99.14", "4.01", "93.95"),
    ("BCE, WRN", "99.40", "99.02", "4.48", "95.81"),
    ("ICE⁻ (without L_ice-id)", "83.62", "74.03", "35.58", "90.44"),
    ("ICE", "99.55", "99.16", "3.33", "96.38"),
]


def _f(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _mse(vals, digits=3):
    v = np.asarray([x for x in vals if np.isfinite(x)], float)
    if v.size == 0:
        return "–"
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return f"{v.mean():.{digits}f} ± {se:.{digits}f}"


def _paired(rows, variant, method, ref, metric):
    a = {
        (r["split"], r["seed"]): _f(r[metric])
        for r in rows
        if r["variant"] == variant and r["method"] == method and r["status"] == "ok"
    }
    b = {
        (r["split"], r["seed"]): _f(r[metric])
        for r in rows
        if r["variant"] == variant and r["method"] == ref and r["status"] == "ok"
    }
    keys = sorted(set(a) & set(b))
    return np.array([a[k] - b[k] for k in keys], float)


def _delta_cell(d, higher_better=True, digits=3):
    from scipy.stats import wilcoxon

    if d.size == 0:
        return "–", "–", "–"
    se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
    eps = 1e-12
    win = int((d > eps).sum() if higher_better else (d < -eps).sum())
    loss = int((d < -eps).sum() if higher_better else (d > eps).sum())
    tie = d.size - win - loss
    if np.all(np.abs(d) <= eps):
        p = "n/a"
    else:
        try:
            p = f"{wilcoxon(d).pvalue:.2g}"
        except ValueError:
            p = "n/a"
    return f"{d.mean():+.{digits}f} ± {se:.{digits}f}", f"{win}/{loss}/{tie}", p


def write_report(path: Path = MD_PATH, csv_path: Path = CSV_PATH) -> str:
    rows = read_rows(csv_path)
    meta = json.loads(META_PATH.read_text()) if META_PATH.exists() else {"sessions": []}
    variants = [v for v in ("digits", "hard") if any(r["variant"] == v for r in rows)]
    L: list[str] = []
    L.append("# ICE (Table 2 / Table 3) at CPU scale on sklearn digits\n")
    L.append(
        "Generated by `benchmarks/ice_table2/ice_table2.py` from `benchmarks/ice_table2/ice_table2.csv` "
        "(rerun `.venv/bin/python benchmarks/ice_table2/ice_table2.py --report-only` to regenerate).\n"
    )
    L.append("## 1. How it was run\n")
    for s in meta.get("sessions", []):
        L.append(
            f"- `{s['command']}` — started {s['start']}, wall {s['wall_s'] / 60:.1f} min, "
            f"{s['n_rows']} CSV rows added ({s.get('note', '')})"
        )
    total = sum(s["wall_s"] for s in meta.get("sessions", []))
    L.append(
        f"- Total wall time: {total / 60:.1f} min. Machine: {meta.get('machine', '?')}; "
        "2 CPU cores shared with another user, joblib n_jobs=2 worker processes, "
        "OMP_NUM_THREADS=1 and `torch.set_num_threads(1)` in every worker. "
        "Fit times below are therefore noisy (two workers plus the other user's load)."
    )
    L.append("")
    L.append(
        "Protocol: sklearn `load_digits`, X / 16. For split "
        "s = 0..9, `RandomState(s).permutation(10)` → 5 ID / 3 auxiliary-outlier / 2 held-out OOD "
        "digits; ID rows split 70/30 stratified (random_state=s). `fit` gets the ID train rows "
        "(digit labels) plus all auxiliary-class rows labelled −1; test = ID test rows (+1) vs all "
        "rows of the 2 held-out digits (−1). Three training seeds (random_state 0, 1, 2) per "
        "split → up to 30 paired runs per method. Every method is the same `skood.ICEClassifier` "
        "(MLP 64→256→128→32, Adam lr 1e-3, max_epochs=100, batch_size=64 ID + 128 auxiliary rows "
        "per step); only head / loss / λ (`ood_weight`) differ. Scores = `score_samples` "
        "(auto: log MSP for CE / OE, logsumexp energy for Energy-OE, max_i h_i for the Gaussian "
        "head). Energy-OE uses Liu et al.'s margins (−25, −7) and λ = 0.1. Fine-tune rows (†): "
        "from the run's fitted CE model (`fine_tune=ce.module_`), 10 epochs, Adam lr 1e-3, cosine "
        "schedule (the Gaussian head is initialised from the data). AUROC / AUPR-In treat ID as "
        "positive, AUPR-Out treats OOD as positive, FPR95 = OOD acceptance at 95 % ID TPR.\n"
    )
    L.append(
        f"Hard variant: (a) {HARD_PER_CLASS} training rows per ID class (first 25 per class of the "
        "70 % part after shuffling with RandomState(s)); (b) Gaussian pixel noise std "
        f"{HARD_NOISE} (on the /16 scale, clipped to [0, 1]) on every image, noise from "
        "RandomState(1000 + s); (c) near outliers: digits 1 and 4 always ID, 7 and 9 always "
        "auxiliary; the other 6 digits, permuted by RandomState(s), fill 3 ID, 1 auxiliary and "
        "2 OOD slots. max_epochs stays 100.\n"
    )
    for v in variants:
        vr = [r for r in rows if r["variant"] == v]
        spe = sorted({r["steps_per_epoch"] for r in vr if r.get("steps_per_epoch")})
        ntr = sorted({r["n_train_id"] for r in vr if r.get("n_train_id")}, key=int)
        nau = sorted({r["n_aux"] for r in vr if r.get("n_aux")}, key=int)
        splits = sorted({int(r["split"]) for r in vr})
        L.append(
            f"- `{v}`: splits {splits}; ID train rows {ntr[0]}–{ntr[-1]}, auxiliary rows "
            f"{nau[0]}–{nau[-1]}; {'/'.join(spe)} optimiser steps per epoch → "
            f"{'/'.join(str(int(s) * 100) for s in spe)} steps for a 100-epoch fit, "
            f"{'/'.join(str(int(s) * 10) for s in spe)} for a 10-epoch fine-tune."
        )
    L.append("")

    L.append("## 2. Results (mean ± standard error over runs)\n")
    for v in variants:
        vr = [r for r in rows if r["variant"] == v]
        L.append(f"### Variant `{v}`\n")
        L.append("| method | ID acc | AUROC | FPR95 | AUPR-In | AUPR-Out | fit s | n runs |")
        L.append("|---|---|---|---|---|---|---|---|")
        for m in METHODS:
            mr = [r for r in vr if r["method"] == m]
            ok = [r for r in mr if r["status"] == "ok"]
            if not mr:
                continue
            n = f"{len(ok)}" + (f" (+{len(mr) - len(ok)} failed)" if len(mr) > len(ok) else "")
            cells = [
                _mse([_f(r[k]) for r in ok])
                for k in ("id_acc", "auroc", "fpr95", "aupr_in", "aupr_out")
            ]
            fit = _mse([_f(r["fit_s"]) for r in ok], 2)
            L.append(f"| {m} | " + " | ".join(cells) + f" | {fit} | {n} |")
        L.append("")
        gauss = [m for m in METHODS if METHODS[m][0]["head"] == "gaussian"]
        ld = [
            (m, [_f(r["log_det_cov"]) for r in vr if r["method"] == m and r["status"] == "ok"])
            for m in gauss
        ]
        ld = [(m, x) for m, x in ld if x]
        if ld:
            L.append(
                "Final log det(LL^T) of the Gaussian head (mean ± se; shows whether the head's "
                "scale degenerates): " + "; ".join(f"{m}: {_mse(x, 1)}" for m, x in ld) + ".\n"
            )
        warn = sorted({w for r in vr for w in r.get("warnings", "").split(" | ") if w})
        errs = [r for r in vr if r["status"] != "ok"]
        L.append(
            f"Warnings raised during fits: {len(warn)} distinct"
            + ("" if not warn else ": " + "; ".join(f"`{w}`" for w in warn[:5]))
            + ". "
            f"Failed fits: {len(errs)}"
            + (
                ""
                if not errs
                else ": "
                + "; ".join(
                    f"{r['method']} split {r['split']} seed {r['seed']}: {r['error'][:120]}"
                    for r in errs[:5]
                )
            )
            + ".\n"
        )

    L.append("## 3. Paired differences vs OE (same split and seed)\n")
    L.append(
        "Δ = method − reference per (split, seed); mean ± se over pairs; W/L/T counts the "
        "pairs where the method is better / worse / tied (higher AUROC and accuracy, lower "
        "FPR95 is better); p = two-sided Wilcoxon signed-rank test (scipy default, zero "
        "differences dropped). Fine-tune rows are also compared with OE ft (the paper's † "
        "comparison).\n"
    )
    for v in variants:
        vr = [r for r in rows if r["variant"] == v]
        present = [m for m in METHODS if any(r["method"] == m for r in vr)]
        L.append(f"### Variant `{v}`\n")
        L.append("| method | vs | n | ΔAUROC | W/L/T | p | ΔFPR95 | W/L/T | p | Δacc | W/L/T | p |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        pairs = [(m, "OE") for m in present if m != "OE"]
        if "OE ft" in present:
            pairs += [(m, "OE ft") for m in present if METHODS[m][1] and m != "OE ft"]
        for m, ref in pairs:
            cells, n = [], 0
            for metric, hb in (("auroc", True), ("fpr95", False), ("id_acc", True)):
                d = _paired(vr, v, m, ref, metric)
                n = d.size
                cells += list(_delta_cell(d, hb))
            L.append(f"| {m} | {ref} | {n} | " + " | ".join(cells) + " |")
        L.append("")
        if "ICE l=0.5" in present:
            L.append(f"Ablation, paired vs ICE l=0.5 (`{v}`):\n")
            L.append("| method | n | ΔAUROC | W/L/T | p | ΔFPR95 | W/L/T | p | Δacc | W/L/T | p |")
            L.append("|---|---|---|---|---|---|---|---|---|---|---|")
            for m in ("ICE- (no L_id)", "Gaussian CE", "ICE l=0.1", "ICE l=1", "CE (MSP)"):
                if m not in present:
                    continue
                cells = []
                for metric, hb in (("auroc", True), ("fpr95", False), ("id_acc", True)):
                    d = _paired(vr, v, m, "ICE l=0.5", metric)
                    n = d.size
                    cells += list(_delta_cell(d, hb))
                L.append(f"| {m} | {n} | " + " | ".join(cells) + " |")
            L.append("")

    L.append("## 4. The paper's numbers (for reference only)\n")
    L.append(
        "**These are the paper's GPU results on CIFAR-10 with a WideResNet (ID CIFAR-10, "
        "auxiliary 80M Tiny Images, mean over 5 OOD test sets), quoted from the paper. "
        "They were NOT reproduced here and are not comparable in absolute value with the "
        "digits numbers above (different data, network, scale; percentages).**\n"
    )
    L.append("Paper Table 2, CIFAR-10 (WRN), AUPR / AUROC / FPR95 / Acc (%):\n")
    L.append("| method (paper) | AUPR | AUROC | FPR95 | Acc |")
    L.append("|---|---|---|---|---|")
    for r in PAPER_T2:
        L.append("| " + " | ".join(r) + " |")
    L.append(
        "\nPaper Table 3 ablation (WRN from scratch, CIFAR-10; row labels are a reconstruction, "
        "not the paper's own):\n"
    )
    L.append("| variant (paper) | AUPR | AUROC | FPR95 | Acc |")
    L.append("|---|---|---|---|---|")
    for r in PAPER_T3:
        L.append("| " + " | ".join(r) + " |")
    L.append(
        "\nCorrespondence: paper OE‡/Energy‡/ICE‡ ↔ OE / Energy-OE / ICE l=… here; "
        "OE†/Energy†/ICE† ↔ the `ft` rows; MSP ↔ CE (MSP); ICE⁻ ↔ ICE- (no L_id). "
        "The paper's Energy drops Liu et al.'s hinge margins; here they are kept. "
        '"Gaussian CE" (Gaussian head, CE only) has no exact paper row; the closest is '
        "Energy, WRN(G).\n"
    )

    L.append("## 5. Conclusion\n")
    concl = META_PATH.parent / "ice_table2_conclusion.md"
    if concl.exists():
        L.append(concl.read_text().strip() + "\n")
    else:
        L.append("(to be written once the run finishes; see the tables above)\n")
    text = "\n".join(L) + "\n"
    path.write_text(text)
    return text


# ------------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["digits", "hard"])
    p.add_argument("--splits", default="0-9")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument(
        "--no-finetune-on",
        nargs="*",
        default=[],
        help="variants on which the fine-tune rows are skipped",
    )
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    if args.report_only:
        print(write_report())
        return

    from joblib import Parallel, delayed

    done = {tuple(r[k] for k in KEY) for r in read_rows()}
    units = []
    for v in args.variants:  # variant-major, so a cut-off run still finishes whole variants first
        methods_v = [m for m in args.methods if not (METHODS[m][1] and v in args.no_finetune_on)]
        for s in parse_splits(args.splits):
            for seed in args.seeds:
                todo = [m for m in methods_v if (v, str(s), str(seed), m) not in done]
                if todo:
                    units.append((v, s, seed, todo))
    print(f"{len(units)} units to run ({sum(len(u[3]) for u in units)} rows)", flush=True)
    start, t0, n_rows = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter(), 0
    meta = json.loads(META_PATH.read_text()) if META_PATH.exists() else {"sessions": []}
    meta["machine"] = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"visible, Python {platform.python_version()}"
    )
    session = dict(
        command="OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python "
        + " ".join(shlex.quote(a) for a in sys.argv),
        start=start,
        wall_s=0.0,
        n_rows=0,
        note=args.note,
    )
    meta["sessions"].append(session)
    try:
        gen = Parallel(n_jobs=args.n_jobs, return_as="generator_unordered", verbose=0)(
            delayed(run_unit)(*u) for u in units
        )
        for rows in gen:
            append_rows(rows)
            n_rows += len(rows)
            r0 = rows[0]
            el = time.perf_counter() - t0
            print(
                f"[{el / 60:6.1f} min] {r0['variant']} split {r0['split']} seed {r0['seed']}: "
                + ", ".join(
                    f"{r['method']} acc={_f(r.get('id_acc')):.3f} "
                    f"auc={_f(r.get('auroc')):.3f} t={_f(r.get('fit_s')):.1f}s"
                    for r in rows
                ),
                flush=True,
            )
            session.update(wall_s=time.perf_counter() - t0, n_rows=n_rows)
            META_PATH.write_text(json.dumps(meta, indent=1))
    finally:
        session.update(wall_s=time.perf_counter() - t0, n_rows=n_rows)
        META_PATH.write_text(json.dumps(meta, indent=1))
        write_report()
    print(f"done: {n_rows} rows in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
