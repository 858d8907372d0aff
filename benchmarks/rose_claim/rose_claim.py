"""Does ROSE (Choi et al.) restore OOD detection where a likelihood model fails? skood on CPU.

Parts (run in this order, rows appended to benchmarks/rose_claim/rose_claim.csv as each job finishes; a
rerun skips finished jobs):
  A  digits (dequantised), seeds 0-2: MLP VAE, conv VAE, flow; likelihood vs ROSE
     {diag, ekfac} x {all layers, a layer subset} on dimmed/blur/constant/noise/flipped sets.
  B  n_fisher_samples in {10, 100, 1000} (ROSE diag/ekfac, all layers) on the two VAEs,
     reusing the fitted models of A (same job).
  C  throughput: rows/s of likelihood vs ROSE (from A), plus ROSE gradients="loop" on 100 rows.
  D  ADBench (MVTec-AD ResNet-18 features, then tabular sets smallest first), seed 0: MLP VAE
     likelihood vs ROSE diag/ekfac, next to the peers already in adbench_results.csv.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rose_claim/rose_claim.py --budget-s 3000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rose_claim/rose_claim.py --report-only
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
import argparse
import csv
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits

import skood
from skood.metrics import auroc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common.adbench import PEER_CSV as PEERS
from benchmarks._common.adbench import prepare, tasks

warnings.filterwarnings("ignore")
BENCH = Path(__file__).resolve().parent
CSV = BENCH / "rose_claim.csv"
MD = BENCH / "rose_claim.md"
CONCLUSION = BENCH / "rose_claim_conclusion.md"
DIAG = BENCH / "rose_claim_diag.csv"
LOG = BENCH / "rose_claim.log"
HOLDOUT = BENCH / "rose_claim_holdout.csv"
SEEDS = [0, 1, 2]
MODELS = ["mlp-vae", "conv-vae", "flow"]
OOD = ["dimmed x0.3", "dimmed x0.6", "blur", "constant", "noise", "flipped"]
SUBSET = {"mlp-vae": ["encoder.*"], "conv-vae": ["encoder.*"], "flow": ["transforms.*.net*"]}
N_FISHER = [10, 100, 1000]
ROSE_CAP_S = 120.0  # per ADBench set: subsample the test rows so one ROSE scoring stays below
FIELDS = [
    "part",
    "job",
    "model",
    "dataset",
    "seed",
    "variant",
    "fisher",
    "layers",
    "n_fisher",
    "ood_set",
    "auroc",
    "n_train",
    "n_score",
    "model_fit_s",
    "rose_fit_s",
    "score_s",
    "rows_per_s",
    "note",
]


# -- data -------------------------------------------------------------------------------------
def digits_split(seed):
    """Dequantised digits (values in (0, 1)), 1200 train rows, 597 test inliers, OOD sets."""
    X = load_digits().data
    rng = np.random.RandomState(seed)
    X = (X + rng.rand(*X.shape)) / 17.0
    perm = rng.permutation(X.shape[0])
    Xtr, Xte = X[perm[:1200]], X[perm[1200:]]
    img = Xte.reshape(-1, 8, 8)
    jitter = rng.rand(*Xte.shape) / 17.0
    ood = {
        "dimmed x0.3": Xte * 0.3,
        "dimmed x0.6": Xte * 0.6,
        "blur": np.stack([gaussian_filter(im, sigma=0.8) for im in img]).reshape(Xte.shape),
        "constant": np.clip(Xte.mean(1, keepdims=True) + jitter, 1e-4, 1 - 1e-4),
        "noise": rng.rand(*Xte.shape),
        "flipped": img[:, :, ::-1].reshape(Xte.shape),
    }
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return f32(Xtr), f32(Xte), {k: f32(v) for k, v in ood.items()}


def make_model(name, seed):
    if name == "mlp-vae":
        return skood.VAEDetector(module="mlp", random_state=seed)
    if name == "conv-vae":
        return skood.VAEDetector(image_shape=(1, 8, 8), random_state=seed)
    return skood.QuantileFlowDetector(
        q="mean", n_blocks=4, hidden_sizes=(128, 128), random_state=seed
    )


# -- csv --------------------------------------------------------------------------------------
def done_jobs():
    if not CSV.exists():
        with open(CSV, "w", newline="") as f:
            csv.writer(f).writerow(FIELDS)
        return set()
    with open(CSV) as f:
        return {r["job"] for r in csv.DictReader(f)}


def append(rows):
    with open(CSV, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})


def fmt(x, nd=4):
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


# -- part A + B: one fitted model per (model, seed) -------------------------------------------
def digits_job(model_name, seed, log):
    job = f"AB:{model_name}:{seed}"
    Xtr, Xte, ood = digits_split(seed)
    X_all = np.concatenate([Xte, *ood.values()])
    sl = {"test": slice(0, len(Xte))}
    for i, k in enumerate(ood):
        sl[k] = slice(len(Xte) * (i + 1), len(Xte) * (i + 2))
    y = np.r_[np.ones(len(Xte)), -np.ones(len(Xte))]

    def aurocs(s):
        return {k: auroc(y, np.r_[s[sl["test"]], s[sl[k]]]) for k in ood}

    base = dict(job=job, model=model_name, dataset="digits", seed=seed, n_train=len(Xtr))
    model = make_model(model_name, seed)
    t = time.perf_counter()
    model.fit(Xtr)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    s = model.score_samples(X_all)
    sc_s = time.perf_counter() - t
    rows = []
    for k, a in aurocs(s).items():
        rows.append(
            dict(
                base,
                part="A",
                variant="likelihood",
                ood_set=k,
                auroc=fmt(a),
                n_score=len(X_all),
                model_fit_s=fmt(fit_s, 2),
                score_s=fmt(sc_s, 3),
                rows_per_s=fmt(len(X_all) / sc_s, 1),
            )
        )
    log(f"{job} fit {fit_s:.1f}s likelihood {np.round(list(aurocs(s).values()), 3)}")

    variants = []  # (part, fisher, layers label, layers, n_fisher)
    for fisher in ["diag", "ekfac"]:
        variants.append(("A", fisher, "all", "auto", None))
        variants.append(("A", fisher, "subset", SUBSET[model_name], None))
    if model_name != "flow":
        for nf in N_FISHER:
            for fisher in ["diag", "ekfac"]:
                variants.append(("B", fisher, "all", "auto", nf))
    for part, fisher, lab, layers, nf in variants:
        rose = skood.ROSEScorer(
            model, prefit=True, layers=layers, fisher=fisher, n_fisher_samples=nf, random_state=seed
        )
        t = time.perf_counter()
        rose.fit(Xtr)
        r_fit = time.perf_counter() - t
        t = time.perf_counter()
        s = rose.score_samples(X_all)
        r_sc = time.perf_counter() - t
        res = aurocs(s)
        label = f"{lab}:{'+'.join(layers) if lab == 'subset' else 'auto'}"
        for k, a in res.items():
            rows.append(
                dict(
                    base,
                    part=part,
                    variant=f"rose-{fisher}-{lab}",
                    fisher=fisher,
                    layers=label,
                    n_fisher=rose.n_fisher_samples_,
                    ood_set=k,
                    auroc=fmt(a),
                    n_score=len(X_all),
                    model_fit_s=fmt(fit_s, 2),
                    rose_fit_s=fmt(r_fit, 2),
                    score_s=fmt(r_sc, 3),
                    rows_per_s=fmt(len(X_all) / r_sc, 1),
                    note=f"{len(rose.layer_names_)} layers",
                )
            )
        log(
            f"{job} {part} rose-{fisher}-{lab} nf={rose.n_fisher_samples_} fit {r_fit:.1f}s "
            f"score {r_sc:.1f}s {np.round(list(res.values()), 3)}"
        )
    append(rows)
    return model


def loop_job(log):
    """ROSE gradients='loop' vs 'vmap' on 100 rows (conv VAE, seed 0), diag and ekfac."""
    job = "C:loop:conv-vae:0"
    Xtr, Xte, _ = digits_split(0)
    model = make_model("conv-vae", 0)
    t = time.perf_counter()
    model.fit(Xtr)
    fit_s = time.perf_counter() - t
    rows = []
    X100 = Xte[:100]
    for fisher in ["diag", "ekfac"]:
        rose = skood.ROSEScorer(
            model, prefit=True, fisher=fisher, n_fisher_samples=200, random_state=0
        )
        rose.fit(Xtr)
        ref = None
        for method in ["vmap", "loop"]:
            rose.set_params(gradients=method)
            t = time.perf_counter()
            s = rose.score_samples(X100)
            dt = time.perf_counter() - t
            ref = s if ref is None else ref
            dev = float(np.max(np.abs(s - ref)))
            rows.append(
                dict(
                    part="C",
                    job=job,
                    model="conv-vae",
                    dataset="digits",
                    seed=0,
                    variant=f"rose-{fisher}-all-{method}",
                    fisher=fisher,
                    layers="all:auto",
                    n_fisher=200,
                    n_train=len(Xtr),
                    n_score=len(X100),
                    model_fit_s=fmt(fit_s, 2),
                    score_s=fmt(dt, 3),
                    rows_per_s=fmt(len(X100) / dt, 1),
                    note=f"max |score - vmap score| = {dev:.2e}",
                )
            )
            log(f"{job} {fisher} {method}: {dt:.2f}s for 100 rows (dev {dev:.1e})")
    append(rows)


# -- part D: ADBench -------------------------------------------------------------------------
def adbench_job(group, name, path, log):
    job = f"D:{name}:0"
    Xtr, Xte, yte = prepare(path, 0)
    Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
    base = dict(part="D", job=job, model="mlp-vae", dataset=f"{group}/{name}", seed=0)
    base["n_train"] = len(Xtr)
    model = skood.VAEDetector(module="mlp", max_epochs=50, random_state=0)
    t = time.perf_counter()
    model.fit(Xtr)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    s = model.score_samples(Xte)
    sc_s = time.perf_counter() - t
    rows = [
        dict(
            base,
            variant="likelihood",
            ood_set="test",
            auroc=fmt(auroc(yte, s)),
            n_score=len(Xte),
            model_fit_s=fmt(fit_s, 2),
            score_s=fmt(sc_s, 3),
            rows_per_s=fmt(len(Xte) / sc_s, 1),
            note=f"{Xtr.shape[1]} features",
        )
    ]
    log(f"{job} n={Xtr.shape} test={len(Xte)} fit {fit_s:.1f}s lik {rows[0]['auroc']}")
    for fisher in ["diag", "ekfac"]:
        rose = skood.ROSEScorer(
            model, prefit=True, fisher=fisher, n_fisher_samples=1000, random_state=0
        )
        t = time.perf_counter()
        rose.fit(Xtr)
        r_fit = time.perf_counter() - t
        # probe the scoring speed; subsample the test rows (stratified) if it would exceed the cap
        t = time.perf_counter()
        rose.score_samples(Xte[:256])
        rate = min(256, len(Xte)) / (time.perf_counter() - t)
        Xs, ys, note = Xte, yte, ""
        if len(Xte) / rate > ROSE_CAP_S:
            n_keep = int(rate * ROSE_CAP_S)
            rng = np.random.RandomState(0)
            keep = np.sort(
                np.r_[
                    rng.choice(np.flatnonzero(yte == 1), int(n_keep * np.mean(yte == 1)), False),
                    rng.choice(np.flatnonzero(yte == -1), int(n_keep * np.mean(yte == -1)), False),
                ]
            )
            Xs, ys = Xte[keep], yte[keep]
            note = f"test subsampled {len(Xte)}->{len(Xs)} (stratified); "
        t = time.perf_counter()
        s = rose.score_samples(Xs)
        r_sc = time.perf_counter() - t
        a_lik_same = auroc(ys, model.score_samples(Xs)) if len(Xs) < len(Xte) else None
        if a_lik_same is not None:
            note += f"likelihood AUROC on the same subsample {a_lik_same:.4f}; "
        rows.append(
            dict(
                base,
                variant=f"rose-{fisher}-all",
                fisher=fisher,
                layers="all:auto",
                n_fisher=rose.n_fisher_samples_,
                ood_set="test",
                auroc=fmt(auroc(ys, s)),
                n_score=len(Xs),
                model_fit_s=fmt(fit_s, 2),
                rose_fit_s=fmt(r_fit, 2),
                score_s=fmt(r_sc, 3),
                rows_per_s=fmt(len(Xs) / r_sc, 1),
                note=note + f"{Xtr.shape[1]} features",
            )
        )
        log(f"{job} rose-{fisher} fit {r_fit:.1f}s score {r_sc:.1f}s auroc {rows[-1]['auroc']}")
    append(rows)


def adbench_tasks():
    return [(g, n, p) for g, n, p, s in tasks() if s == 0]


# -- report -----------------------------------------------------------------------------------
def read_rows():
    with open(CSV) as f:
        return list(csv.DictReader(f))


def ms(vals):
    v = np.asarray(vals, float)
    if v.size == 0:
        return "–"
    return f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v[0]:.3f}"


def report(wall_note=""):
    rows = read_rows()
    if not wall_note and LOG.exists():
        walls = [
            ln.split("wall ")[1].strip() for ln in LOG.read_text().splitlines() if "wall " in ln
        ]
        if walls:
            wall_note = f"Wall time of the run(s) that filled the CSV (from rose_claim.log): {', '.join(walls)}."
    out = [
        "# ROSE claim check: likelihood failure and ROSE on skood (CPU)",
        "",
        "Generated by `benchmarks/rose_claim/rose_claim.py --report-only` from `benchmarks/rose_claim/rose_claim.csv`.",
        f"Machine: {platform.processor() or platform.machine()}, 2 cores, 1 torch thread, CPU only; "
        f"python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "Commands:",
        "",
        "```",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rose_claim/rose_claim.py --budget-s <s> "
        "2>&1 | tee -a benchmarks/rose_claim/rose_claim.log",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rose_claim/rose_claim.py --report-only",
        "```",
        "",
    ]
    if wall_note:
        out += [wall_note, ""]
    out += [
        "Digits: sklearn `load_digits`, dequantised `(X + U(0,1)) / 17`; per seed a random split, "
        "1200 train rows, 597 test inliers; each OOD set has 597 rows built from the test inliers "
        "(dimmed = pixels x0.3 / x0.6; blur = Gaussian sigma 0.8 on the 8x8 image; constant = each "
        "image's mean pixel + U(0,1)/17 jitter; noise = U(0,1); flipped = left-right flip). "
        "AUROC with inliers positive and scores higher = more normal: < 0.5 means the OOD rows "
        "score *more* normal than the inliers. Models: `VAEDetector(module='mlp')` defaults, "
        "`VAEDetector(image_shape=(1,8,8))` defaults, `QuantileFlowDetector(q='mean', n_blocks=4, "
        "hidden_sizes=(128, 128))`. ROSE: `ROSEScorer(model, prefit=True, ...)` "
        "fitted on the 1200 train rows (Fisher on all of them unless n_fisher is set), "
        "beta=0, p=inf, clip=True. Layer subsets: VAEs `['encoder.*']`, flow "
        "`['transforms.*.net*']` (the coupling subnets; leaves out transforms.0/3/6/9).",
        "",
    ]
    dig = [r for r in rows if r["dataset"] == "digits" and r["part"] in ("A", "B")]
    # table A
    out += ["## A. AUROC per model and OOD set (mean ± std over seeds)", ""]
    varsA = [
        "likelihood",
        "rose-diag-all",
        "rose-ekfac-all",
        "rose-diag-subset",
        "rose-ekfac-subset",
    ]
    for m in MODELS:
        rm = [r for r in dig if r["model"] == m and r["part"] == "A"]
        if not rm:
            continue
        seeds = sorted({r["seed"] for r in rm})
        out += [
            f"### {m} (seeds {', '.join(seeds)})",
            "",
            "| OOD set | " + " | ".join(varsA) + " |",
            "|---" * (len(varsA) + 1) + "|",
        ]
        for k in [*OOD, "mean"]:
            cells = []
            for v in varsA:
                if k == "mean":  # per seed mean over sets, then mean ± std over seeds
                    per_seed = [
                        np.mean(
                            [float(r["auroc"]) for r in rm if r["variant"] == v and r["seed"] == s]
                        )
                        for s in seeds
                        if any(r["variant"] == v and r["seed"] == s for r in rm)
                    ]
                    cells.append(ms(per_seed))
                else:
                    cells.append(
                        ms(
                            [
                                float(r["auroc"])
                                for r in rm
                                if r["variant"] == v and r["ood_set"] == k
                            ]
                        )
                    )
            out.append(
                f"| {'**mean over sets**' if k == 'mean' else k} | " + " | ".join(cells) + " |"
            )
        out.append("")
    # table B
    out += [
        "## B. n_fisher_samples (ROSE, all layers; 1200 = all train rows, from part A)",
        "",
        "Mean AUROC over the six OOD sets; mean ± std over seeds.",
        "",
        "| model | fisher | n=10 | n=100 | n=1000 | n=1200 (all) |",
        "|---|---|---|---|---|---|",
    ]
    for m in ["mlp-vae", "conv-vae"]:
        for fisher in ["diag", "ekfac"]:
            cells = []
            for nf in ["10", "100", "1000", "1200"]:
                sel = [
                    r
                    for r in dig
                    if r["model"] == m
                    and r["variant"] == f"rose-{fisher}-all"
                    and r["n_fisher"] == nf
                ]
                seeds = sorted({r["seed"] for r in sel})
                cells.append(
                    ms([np.mean([float(r["auroc"]) for r in sel if r["seed"] == s]) for s in seeds])
                )
            if any(c != "–" for c in cells):
                out.append(f"| {m} | {fisher} | " + " | ".join(cells) + " |")
    out += ["", "Per OOD set (mean over seeds):", ""]
    out += [
        "| model | fisher | OOD set | n=10 | n=100 | n=1000 | n=1200 |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in ["mlp-vae", "conv-vae"]:
        for fisher in ["diag", "ekfac"]:
            for k in OOD:
                cells = []
                for nf in ["10", "100", "1000", "1200"]:
                    v = [
                        float(r["auroc"])
                        for r in dig
                        if r["model"] == m
                        and r["variant"] == f"rose-{fisher}-all"
                        and r["n_fisher"] == nf
                        and r["ood_set"] == k
                    ]
                    cells.append(f"{np.mean(v):.3f}" if v else "–")
                if any(c != "–" for c in cells):
                    out.append(f"| {m} | {fisher} | {k} | " + " | ".join(cells) + " |")
    # table C
    out += [
        "",
        "## C. Throughput (digits, 4179 rows = 597 test + 6 x 597 OOD; median over seeds)",
        "",
        "`score_samples` rows/s; ROSE fit = the Fisher pass + layer statistics on 1200 rows "
        "(prefit model). Model fit time for reference.",
        "",
        "| model | model fit s | likelihood rows/s | ROSE diag rows/s | ROSE ekfac rows/s | "
        "ROSE diag fit s | ROSE ekfac fit s | likelihood / ROSE-diag | likelihood / ROSE-ekfac |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in MODELS:
        rm = [r for r in dig if r["model"] == m and r["part"] == "A" and r["ood_set"] == OOD[0]]
        if not rm:
            continue

        def med(v, key, rm=rm):
            x = [float(r[key]) for r in rm if r["variant"] == v and r[key]]
            return float(np.median(x)) if x else float("nan")

        lik, rd, re = (
            med(v, "rows_per_s") for v in ["likelihood", "rose-diag-all", "rose-ekfac-all"]
        )
        out.append(
            f"| {m} | {med('likelihood', 'model_fit_s'):.1f} | {lik:,.0f} | {rd:,.0f} | {re:,.0f} | "
            f"{med('rose-diag-all', 'rose_fit_s'):.1f} | {med('rose-ekfac-all', 'rose_fit_s'):.1f} | "
            f"{lik / rd:.0f}x | {lik / re:.0f}x |"
        )
    loop = [r for r in rows if r["part"] == "C" and r["variant"] != "error"]
    if loop:
        out += [
            "",
            "ROSE per-sample gradients, `gradients='vmap'` vs `'loop'` (conv VAE seed 0, all "
            "layers, Fisher on 200 rows, scoring 100 test rows):",
            "",
            "| fisher | method | seconds / 100 rows | rows/s | note |",
            "|---|---|---|---|---|",
        ]
        for r in loop:
            out.append(
                f"| {r['fisher']} | {r['variant'].rsplit('-', 1)[1]} | {r['score_s']} | "
                f"{r['rows_per_s']} | {r['note'].replace('|', '&#124;')} |"
            )
    # table D
    drows = [r for r in rows if r["part"] == "D" and r["variant"] != "error"]
    if drows:
        out += adbench_report(drows)
    if DIAG.exists():
        out += diag_report()
    if HOLDOUT.exists():
        out += holdout_report()
    if CONCLUSION.exists():
        out += ["", CONCLUSION.read_text().strip(), ""]
    MD.write_text("\n".join(out) + "\n")
    print(f"wrote {MD}")


def diag_report():
    with open(DIAG) as f:
        rows = list(csv.DictReader(f))
    out = [
        "",
        "## Follow-up diagnostics (`benchmarks/rose_claim/rose_claim_diag.py` -> `rose_claim_diag.csv`)",
        "",
    ]
    seeds = sorted({r["seed"] for r in rows})
    fa = [r for r in rows if r["check"] == "flow-argmax"]
    if fa:
        out += [
            "Flow, ROSE diag all layers: share of rows whose max z-score is a coupling-subnet layer "
            f"(mean over seeds {', '.join(seeds)}); the rest is an ActNorm layer.",
            "",
            "| set | share coupling-subnet argmax |",
            "|---|---|",
        ]
        for k in ["test", *OOD]:
            v = [float(r["value"]) for r in fa if r["ood_set"] == k]
            out.append(f"| {k} | {np.mean(v):.3f} |")
        out.append("")
    for check, title in [
        ("ekfac-damping", "EKFAC with few Fisher rows vs damping (all layers)"),
        ("layers", "Decoder-only layer subsets (all Fisher rows)"),
    ]:
        sel = [r for r in rows if r["check"] == check]
        if not sel:
            continue
        out += [
            f"{title}; AUROC mean over seeds {', '.join(seeds)}:",
            "",
            "| model | variant | " + " | ".join(OOD) + " | mean |",
            "|---" * (len(OOD) + 3) + "|",
        ]
        for m in ["mlp-vae", "conv-vae"]:
            for v in dict.fromkeys(r["variant"] for r in sel if r["model"] == m):
                vals = [
                    np.mean(
                        [
                            float(r["value"])
                            for r in sel
                            if r["model"] == m and r["variant"] == v and r["ood_set"] == k
                        ]
                    )
                    for k in OOD
                ]
                out.append(
                    f"| {m} | {v} | "
                    + " | ".join(f"{x:.3f}" for x in vals)
                    + f" | {np.mean(vals):.3f} |"
                )
        out.append("")
    lv = [r for r in rows if r["check"] == "loop-vs-vmap"]
    if lv:
        out += [
            "`gradients='loop'` vs `'vmap'` (seed "
            f"{lv[0]['seed']}, Fisher on 200 rows, 100 test rows): max relative difference of "
            "the raw layer scores, max |loop - vmap| / max |vmap|, per layer:",
            "",
            "| model | fisher | per-layer relative difference |",
            "|---|---|---|",
        ]
        for m in ["mlp-vae", "conv-vae"]:
            for fisher in ["diag", "ekfac"]:
                cell = ", ".join(
                    f"{r['ood_set']} {r['value']}"
                    for r in lv
                    if r["model"] == m and r["variant"] == fisher
                )
                if cell:
                    out.append(f"| {m} | {fisher} | {cell} |")
        out.append("")
    return out


def holdout_report():
    with open(HOLDOUT) as f:
        rows = list(csv.DictReader(f))
    seeds = sorted({r["seed"] for r in rows})
    out = [
        "Layer statistics on held-out rows (`rose_claim_holdout.py`): `validation_fraction=0.5` (600 "
        "rows for the layer mean/std, Fisher drawn from the other 600; n=600 means all of them), "
        f"all layers; AUROC mean over the six OOD sets, mean ± std over seeds {', '.join(seeds)}. "
        "Compare with table B (validation_fraction=0, statistics on the Fisher rows themselves).",
        "",
        "| model | fisher | n=10 | n=100 | n=600 (all) |",
        "|---|---|---|---|---|",
    ]
    for m in ["mlp-vae", "conv-vae"]:
        for fisher in ["diag", "ekfac"]:
            cells = []
            for nf in ["10", "100", "600"]:
                sel = [
                    r
                    for r in rows
                    if r["model"] == m and r["fisher"] == fisher and r["n_fisher"] == nf
                ]
                ss = sorted({r["seed"] for r in sel})
                cells.append(
                    ms([np.mean([float(r["auroc"]) for r in sel if r["seed"] == x]) for x in ss])
                )
            out.append(f"| {m} | {fisher} | " + " | ".join(cells) + " |")
    return [*out, ""]


def adbench_report(drows):
    peers = {}
    if PEERS.exists():
        with open(PEERS) as f:
            for r in csv.DictReader(f):
                if r["seed"] == "0" and r["status"] == "ok" and r["auroc"]:
                    peers[(r["group"] + "/" + r["dataset"], r["detector"])] = float(r["auroc"])
    peer_names = [
        "GaussMaha-LW",
        "IForest",
        "LOF",
        "OCSVM",
        "PyOD-KNN",
        "PyOD-ECOD",
        "PyOD-AutoEncoder",
        "PyOD-DeepSVDD",
        "QuantFlow-q0.05",
        "QuantFlow-mean",
    ]
    ours = ["likelihood", "rose-diag-all", "rose-ekfac-all"]
    ours_lab = ["VAE-lik", "ROSE-diag", "ROSE-ekfac"]
    sets = list(dict.fromkeys(r["dataset"] for r in drows))
    table = {}
    info = {}
    for r in drows:
        table[(r["dataset"], ours_lab[ours.index(r["variant"])])] = float(r["auroc"])
        if r["variant"] == "likelihood":
            info[r["dataset"]] = (r["n_train"], r["n_score"], r["model_fit_s"], r["note"])
        elif r["note"].startswith("test subsampled"):
            info[r["dataset"]] = info[r["dataset"]][:3] + (r["note"],)
    for (d, p), a in peers.items():
        if d in sets:
            table[(d, p)] = a
    cols = ours_lab + [p for p in peer_names if any((d, p) in table for d in sets)]
    out = [
        "",
        "## D. ADBench: MVTec-AD ResNet-18 features and tabular sets (seed 0)",
        "",
        "Split and preprocessing of the side-by-side study (`prepare(path, 0)` in `benchmarks/_common/adbench.py`: "
        "50% of normals train, capped at 5000 rows, the rest + all anomalies test, standardised). "
        "Ours: `VAEDetector(module='mlp', max_epochs=50, random_state=0)` on float32; ROSE "
        "prefit, all layers, `n_fisher_samples=1000`. Peers are read from "
        "`benchmarks/adbench_side_by_side/adbench_results.csv` (same split, seed 0), not rerun.",
        "",
        "| set | n_train | n_test | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for d in sets:
        cells = [f"{table[(d, c)]:.3f}" if (d, c) in table else "–" for c in cols]
        best = max((table[(d, c)] for c in cols if (d, c) in table), default=None)
        cells = [f"**{c}**" if best is not None and c == f"{best:.3f}" else c for c in cells]
        out.append(f"| {d} | {info[d][0]} | {info[d][1]} | " + " | ".join(cells) + " |")
    notes = [f"- {d}: {info[d][3]}" for d in sets if "subsampled" in info[d][3]]
    if notes:
        out += ["", "Subsampled test sets (ROSE scoring capped at ~2 min):", *notes]
    out += ["", "Summary (sets where every column has a value; rank 1 = best, ties averaged):", ""]
    out += ["| group | n sets | " + " | ".join(f"{c} mean / rank" for c in cols) + " |"]
    out += ["|---" * (len(cols) + 2) + "|"]
    from scipy.stats import rankdata

    for grp in ["mvtec", "tabular", "all"]:
        gs = [
            d
            for d in sets
            if (grp == "all" or d.startswith(grp)) and all((d, c) in table for c in cols)
        ]
        if not gs:
            continue
        A = np.array([[table[(d, c)] for c in cols] for d in gs])
        R = np.array([rankdata(-a) for a in A])
        cells = [f"{A[:, j].mean():.3f} / {R[:, j].mean():.1f}" for j in range(len(cols))]
        out.append(f"| {grp} | {len(gs)} | " + " | ".join(cells) + " |")
    win = [
        d
        for d in sets
        if (d, "ROSE-diag") in table and table[(d, "ROSE-diag")] > table[(d, "VAE-lik")]
    ]
    wine = [
        d
        for d in sets
        if (d, "ROSE-ekfac") in table and table[(d, "ROSE-ekfac")] > table[(d, "VAE-lik")]
    ]
    out += [
        "",
        f"ROSE-diag beats the VAE likelihood on {len(win)}/{len(sets)} sets; ROSE-ekfac on "
        f"{len(wine)}/{len(sets)}.",
    ]
    times = [
        (
            d,
            float(r["model_fit_s"]),
            float(r["rose_fit_s"] or 0),
            float(r["rows_per_s"]),
            r["variant"],
        )
        for d in sets
        for r in drows
        if r["dataset"] == d
    ]
    for v in ours:
        rp = [t[3] for t in times if t[4] == v]
        if rp:
            out.append(f"- {v}: median scoring {np.median(rp):,.0f} rows/s over {len(rp)} sets")
    return out


# -- main -------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--budget-s", type=float, default=3000.0, help="stop starting new jobs after")
    ap.add_argument("--skip-d", action="store_true")
    args = ap.parse_args()
    if args.report_only:
        report()
        return
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    done = done_jobs()
    jobs = [("AB", m, s) for s in SEEDS for m in MODELS] + [("C", None, None)]
    if not args.skip_d:
        jobs += [("D", t, None) for t in adbench_tasks()]
    for kind, a, b in jobs:
        if kind == "AB":
            key = f"AB:{a}:{b}"
        elif kind == "C":
            key = "C:loop:conv-vae:0"
        else:
            key = f"D:{a[1]}:0"
        if key in done:
            continue
        if time.time() - t0 > args.budget_s:
            log("budget reached; stopping")
            break
        t = time.time()
        try:
            if kind == "AB":
                digits_job(a, b, log)
            elif kind == "C":
                loop_job(log)
            else:
                adbench_job(*a, log)
        except Exception as e:  # keep going; record the failure
            log(f"{key} FAILED: {type(e).__name__}: {e}")
            append([dict(part=kind[0], job=key, variant="error", note=f"{type(e).__name__}: {e}")])
        log(f"{key} done in {time.time() - t:.1f}s")
    log(f"run finished, wall {time.time() - t0:.1f}s")
    report()


if __name__ == "__main__":
    main()
