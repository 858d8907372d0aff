"""The benchmark's report: summary and rank statistics, markdown tables, CSV files, plots."""

from __future__ import annotations

import csv
import datetime
import io
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from skood._files import atomic_file

__all__ = [
    "FIELDS",
    "REPORT_FILES",
    "headline_table",
    "per_dataset_table",
    "read_csv",
    "summarize",
    "write_csv",
    "write_plots",
    "write_report",
]

#: The columns of a result row, in the order the CSV files have them.
FIELDS = [
    "protocol",
    "group",
    "dataset",
    "seed",
    "detector",
    "status",
    "auroc",
    "aupr",
    "fpr95",
    "fit_s",
    "score_s",
    "n_train",
    "n_test",
    "n_features",
    "error",
]


def summarize(rows: Sequence[dict]) -> dict:
    """Per-detector means over datasets and the mean AUROC rank.

    Ranks are computed per (protocol, dataset) on the seed-mean AUROC, 1 = best; a detector with
    no successful cell on a dataset takes the worst rank there. Returns
    ``{"overall": {detector: {...}}, "per_dataset": {(protocol, dataset): {detector: auroc}}}``.
    """
    detectors = list(dict.fromkeys(r["detector"] for r in rows))
    cells: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        cells.setdefault((r["protocol"], r["dataset"]), {}).setdefault(r["detector"], []).append(r)
    per_dataset, ranks = {}, {d: [] for d in detectors}
    for key, by_det in cells.items():
        means = {}
        for d in detectors:
            ok = [r["auroc"] for r in by_det.get(d, []) if r["status"] == "ok"]
            means[d] = float(np.mean(ok)) if ok else np.nan
        per_dataset[key] = means
        if all(by_det.get(d) and by_det[d][0]["status"] == "n/a" for d in detectors):
            continue
        applicable = [d for d in detectors if not all(r["status"] == "n/a" for r in by_det[d])]
        values = np.array([means[d] for d in applicable])
        r = rankdata(-np.nan_to_num(values, nan=-np.inf), method="average")
        for d, rank in zip(applicable, r):
            ranks[d].append(rank)
    overall = {}
    for d in detectors:
        mine = [r for r in rows if r["detector"] == d]
        ok = [r for r in mine if r["status"] == "ok"]
        overall[d] = {
            "auroc": _mean(r["auroc"] for r in ok),
            "aupr": _mean(r["aupr"] for r in ok),
            "fpr95": _mean(r["fpr95"] for r in ok),
            "fit_s": float(sum(r["fit_s"] for r in ok)),
            "score_s": float(sum(r["score_s"] for r in ok)),
            "rank": _mean(ranks[d]),
            "n_ranked": len(ranks[d]),
            "ok": len(ok),
            "failed": sum(r["status"] == "error" for r in mine),
            "n_a": sum(r["status"] == "n/a" for r in mine),
        }
    return {"overall": overall, "per_dataset": per_dataset}


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def _fmt(x, digits=3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def headline_table(summary: dict) -> str:
    """The per-detector markdown table: detectors ranked on every dataset first, by mean rank.

    A detector that applies to fewer datasets (a class-conditional one needs class labels) is
    listed after them: its mean rank covers only those datasets and is not comparable.
    """
    overall = summary["overall"]
    most = max((o["n_ranked"] for o in overall.values()), default=0)
    order = sorted(
        overall,
        key=lambda d: (
            overall[d]["n_ranked"] < most,
            np.nan_to_num(overall[d]["rank"], nan=1e9),
            d,
        ),
    )
    lines = [
        "| detector | mean rank | datasets ranked | AUROC | AUPR (anomaly) | FPR95 | fit s (total) "
        "| score s (total) | cells ok / failed / n/a |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in order:
        o = overall[d]
        lines.append(
            f"| {d} | {_fmt(o['rank'], 2)} | {o['n_ranked']} | {_fmt(o['auroc'])} | "
            f"{_fmt(o['aupr'])} | {_fmt(o['fpr95'])} | {_fmt(o['fit_s'], 1)} | "
            f"{_fmt(o['score_s'], 1)} | {o['ok']} / {o['failed']} / {o['n_a']} |"
        )
    return "\n".join(lines)


def per_dataset_table(summary: dict) -> str:
    detectors = list(summary["overall"])
    lines = [
        "| protocol | dataset | " + " | ".join(detectors) + " |",
        "|---|---|" + "---|" * len(detectors),
    ]
    for (protocol, dataset), means in summary["per_dataset"].items():
        best = np.nanmax([v for v in means.values()] + [-np.inf])
        cells = [f"**{_fmt(means[d])}**" if means[d] == best else _fmt(means[d]) for d in detectors]
        lines.append(f"| {protocol} | {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_FLOATS = {"auroc", "aupr", "fpr95", "fit_s", "score_s"}
_INTS = {"seed", "n_train", "n_test", "n_features"}


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows written by :func:`write_csv` (or a run's ``results.partial.csv``), typed again.

    A last row without its line end was cut off mid-write (a crash, a full disk): it is left
    out, so ``--resume`` runs that cell again instead of keeping a truncated result.
    """
    text = Path(path).read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for r in rows:
        for k in _FLOATS:
            r[k] = float(r[k]) if r.get(k) else np.nan
        for k in _INTS:
            r[k] = int(r[k]) if r.get(k) else 0
    return rows


def write_csv(
    rows: Sequence[dict], path: str | os.PathLike, *, append: bool = False, replace: bool = True
) -> None:
    """Write result rows (the ``FIELDS`` columns); ``append`` adds to an existing file.

    A new file is written under a temporary name and renamed when complete, over an existing
    one only with ``replace``; appending (a run's progress file, one row per finished cell) adds
    to the file in place.
    """
    header = not (append and Path(path).exists())
    if append:
        opened = open(path, "a", newline="")
    else:
        opened = atomic_file(path, "w", replace=replace, newline="")
    with opened as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if header:
            writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in FIELDS})


#: The files :func:`write_report` writes in its folder.
REPORT_FILES = (
    "results.csv",
    "results.md",
    "auroc_per_dataset.png",
    "mean_rank.png",
    "time_vs_auroc.png",
)


def write_plots(
    summary: dict, rows: Sequence[dict], out: Path, *, replace: bool = True
) -> list[Path]:
    """Per-dataset AUROC, mean rank, and time vs AUROC as PNGs; [] without matplotlib.

    An existing PNG of the same name is replaced only with ``replace``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    overall = summary["overall"]
    detectors = list(overall)
    paths = []

    keys = list(summary["per_dataset"])
    grid = np.array([[summary["per_dataset"][k][d] for d in detectors] for k in keys])
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(detectors), max(2.5, 1.6 + 0.32 * len(keys))))
    im = ax.imshow(np.ma.masked_invalid(grid), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(detectors)), detectors, rotation=45, ha="right")
    ax.set_yticks(
        range(len(keys)), [f"{d} ({p})" if len(set(k[0] for k in keys)) > 1 else d for p, d in keys]
    )
    for i in range(len(keys)):
        for j in range(len(detectors)):
            if np.isfinite(grid[i, j]):
                color = "k" if grid[i, j] > 0.8 else "w"
                ax.text(
                    j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6, color=color
                )
    fig.colorbar(im, ax=ax, label="AUROC")
    ax.set_title("AUROC per dataset")
    fig.tight_layout()
    paths.append(_save_png(fig, out / "auroc_per_dataset.png", replace))

    order = sorted(detectors, key=lambda d: np.nan_to_num(overall[d]["rank"], nan=1e9))
    fig, ax = plt.subplots(figsize=(6, max(2.0, 1.0 + 0.35 * len(order))))
    ax.barh(range(len(order)), [overall[d]["rank"] for d in order], color="tab:blue")
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("mean AUROC rank (1 = best)")
    ax.set_title("Mean rank over datasets")
    fig.tight_layout()
    paths.append(_save_png(fig, out / "mean_rank.png", replace))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for d in detectors:
        o = overall[d]
        if o["ok"]:
            seconds = (o["fit_s"] + o["score_s"]) / o["ok"]
            ax.scatter(seconds, o["auroc"], s=30)
            ax.annotate(
                d, (seconds, o["auroc"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_xlabel("fit + score seconds per cell (mean, log scale)")
    ax.set_ylabel("mean AUROC")
    ax.set_title("Time vs AUROC")
    fig.tight_layout()
    paths.append(_save_png(fig, out / "time_vs_auroc.png", replace))
    return paths


def _save_png(fig, path: Path, replace: bool) -> Path:
    import matplotlib.pyplot as plt

    with atomic_file(path, replace=replace) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path


def write_report(
    rows: Sequence[dict], out: str | os.PathLike, *, command: str = "", replace: bool = True
) -> Path:
    """Write ``results.csv``, ``results.md`` and the plots to ``out``; return the markdown path.

    Existing files of those names (:data:`REPORT_FILES`) are replaced only with ``replace``.
    """
    import sklearn
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    write_csv(rows, out / "results.csv", replace=replace)
    plots = write_plots(summary, rows, out, replace=replace)
    errors = [r for r in rows if r["status"] == "error"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        "# skood bench",
        "",
        f"{now}; {platform.platform()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}.",
    ]
    if command:
        md += ["", "```", command, "```"]
    md += [
        "",
        "Mean over datasets of the seed-mean AUROC, AUPR (anomalies positive) and FPR at 95% TPR "
        "(normal rows positive); mean rank of AUROC per dataset (1 = best; a detector that failed "
        "on a dataset takes the worst rank there; detectors that do not apply to every dataset, "
        "such as class-conditional ones, are ranked among the applicable ones and listed last). "
        "Every cell: InformativeColumns + StandardScaler fitted on the training rows, then the "
        "detector.",
        "",
        headline_table(summary),
        "",
        "## AUROC per dataset (seed mean; best in bold)",
        "",
        per_dataset_table(summary),
    ]
    if plots:
        md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    if errors:
        md += ["", "## Failed cells", ""]
        md += [
            f"- {r['detector']} on {r['dataset']} (seed {r['seed']}): {r['error']}" for r in errors
        ]
    path = out / "results.md"
    with atomic_file(path, "w", replace=replace, encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    return path
