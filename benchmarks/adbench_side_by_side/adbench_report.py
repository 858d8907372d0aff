"""Markdown report for adbench_results.csv (used by ``adbench_side_by_side.py report``)."""

import csv

import numpy as np

DET_ORDER = [
    "QuantFlow-q0.05",
    "QuantFlow-mean",
    "GaussMaha-LW",
    "GaussMaha-emp",
    "IForest",
    "LOF",
    "OCSVM",
    "PyOD-KNN",
    "PyOD-ECOD",
    "PyOD-AutoEncoder",
    "PyOD-DeepSVDD",
]


def _rank_desc(vals):
    """Average ranks, 1 = highest; NaN (failed) get the worst rank."""
    v = np.array([-np.inf if np.isnan(x) else x for x in vals])
    order = (-v).argsort(kind="stable")
    ranks = np.empty(len(v))
    i = 0
    sv = v[order]
    while i < len(v):
        j = i
        while j + 1 < len(v) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def write_report(csv_path, md_path, header_lines):
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    dets = [d for d in DET_ORDER if any(r["detector"] == d for r in rows)]
    by = {}
    for r in rows:
        by.setdefault((r["group"], r["dataset"], int(r["seed"])), {})[r["detector"]] = r
    # only (dataset, seed) pairs where every detector was attempted
    complete = {k: v for k, v in by.items() if all(d in v for d in dets)}
    ds = {}
    for (g, d, s), v in complete.items():
        ds.setdefault((g, d), []).append(s)
    fails = [r for r in rows if r["status"] != "ok"]

    def mean_of(g, d, det, key):
        vals = [complete[(g, d, s)][det][key] for s in ds[(g, d)]]
        vals = [float(x) for x in vals if x != ""]
        return float(np.mean(vals)) if vals else float("nan")

    per = {
        k: {
            det: {
                m: mean_of(*k, det, m) for m in ("auroc", "aupr_out", "fpr95", "fit_s", "score_s")
            }
            for det in dets
        }
        for k in ds
    }
    ranks = {k: dict(zip(dets, _rank_desc([per[k][det]["auroc"] for det in dets]))) for k in ds}
    groups = {
        "MVTec": [k for k in ds if k[0] == "mvtec"],
        "tabular": [k for k in ds if k[0] == "tabular"],
        "overall": list(ds),
    }

    L = list(header_lines)
    P = L.append
    nmv, ntab = len(groups["MVTec"]), len(groups["tabular"])
    seeds_mv = sorted({s for (g, d, s) in complete if g == "mvtec"})
    seeds_tab = sorted({s for (g, d, s) in complete if g == "tabular"})
    P(
        f"Completed (dataset, seed) pairs: MVTec {nmv} categories, seeds {seeds_mv} "
        f"({sum(len(ds[k]) for k in groups['MVTec'])} pairs); tabular {ntab} sets, seeds {seeds_tab} "
        f"({sum(len(ds[k]) for k in groups['tabular'])} pairs). Per dataset, metrics are averaged over "
        "its completed seeds first; group means are then over datasets. Ranks: within each dataset by "
        "mean AUROC (1 = best, ties averaged, a failed detector gets the worst rank), then averaged.\n"
    )

    def nm(x, f="{:.3f}"):
        return "—" if np.isnan(x) else f.format(x)

    P("## Summary\n")
    P(
        "| detector | AUROC MVTec | AUROC tabular | AUROC overall | rank MVTec | rank tabular | rank overall "
        "| AUPR-out overall | FPR95 overall | fit s MVTec | fit s tabular | failures |"
    )
    P("|---|" + "---|" * 11)
    summ = {}
    for det in dets:
        c = []
        for gname in ("MVTec", "tabular", "overall"):
            ks = groups[gname]
            vals = [per[k][det]["auroc"] for k in ks if not np.isnan(per[k][det]["auroc"])]
            c.append(float(np.mean(vals)) if vals else float("nan"))
        rk = [
            float(np.mean([ranks[k][det] for k in groups[g]])) if groups[g] else float("nan")
            for g in ("MVTec", "tabular", "overall")
        ]
        ap = np.nanmean([per[k][det]["aupr_out"] for k in ds]) if ds else float("nan")
        fp = np.nanmean([per[k][det]["fpr95"] for k in ds]) if ds else float("nan")
        ft = [
            np.nanmean([per[k][det]["fit_s"] for k in groups[g]]) if groups[g] else float("nan")
            for g in ("MVTec", "tabular")
        ]
        nf = sum(1 for r in fails if r["detector"] == det)
        summ[det] = (c, rk)
        P(
            f"| {det} | "
            + " | ".join(nm(x) for x in c)
            + " | "
            + " | ".join(nm(x, "{:.2f}") for x in rk)
            + f" | {nm(ap)} | {nm(fp)} | "
            + " | ".join(nm(x, "{:.2f}") for x in ft)
            + f" | {nf} |"
        )
    for gi, gname in enumerate(("MVTec", "tabular", "overall")):
        if not groups[gname]:
            continue
        best_r = min(dets, key=lambda d: summ[d][1][gi])
        best_a = max(dets, key=lambda d: -1 if np.isnan(summ[d][0][gi]) else summ[d][0][gi])
        P(
            f"\n- {gname}: best mean rank **{best_r}** ({summ[best_r][1][gi]:.2f}); best mean AUROC "
            f"**{best_a}** ({summ[best_a][0][gi]:.3f})."
        )

    for gname in ("MVTec", "tabular"):
        ks = sorted(groups[gname], key=lambda k: k[1])
        if not ks:
            continue
        P(f"\n## Per-dataset AUROC, {gname} (mean over seeds; best in bold)\n")
        P("| dataset | seeds | n_train / n_test / d | " + " | ".join(dets) + " |")
        P("|---|---|---|" + "---|" * len(dets))
        for k in ks:
            v = [per[k][det]["auroc"] for det in dets]
            best = np.nanmax(v)
            r0 = complete[(k[0], k[1], ds[k][0])][dets[0]]
            cells = [
                ("**" + nm(x) + "**") if (not np.isnan(x) and x >= best - 1e-9) else nm(x)
                for x in v
            ]
            P(
                f"| {k[1]} | {len(ds[k])} | {r0['n_train']} / {r0['n_test']} / {r0['n_features']} | "
                + " | ".join(cells)
                + " |"
            )

    P("\n## Failures\n")
    if not fails:
        P("None.")
    for r in fails:
        P(f"- {r['detector']} on {r['dataset']} seed {r['seed']}: `{r['error']}`")
    md_path.write_text("\n".join(L) + "\n")
    return "\n".join(L)
