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
    order = _display_order(overall)
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


def _display_order(overall: dict) -> list[str]:
    """Detectors ranked on every dataset first, by mean rank; then the others, by mean rank."""
    most = max((o["n_ranked"] for o in overall.values()), default=0)
    return sorted(
        overall,
        key=lambda d: (
            overall[d]["n_ranked"] < most,
            np.nan_to_num(overall[d]["rank"], nan=1e9),
            d,
        ),
    )


def write_plots(
    summary: dict, rows: Sequence[dict], out: Path, *, replace: bool = True
) -> list[Path]:
    """Per-dataset AUROC, mean rank, and time vs AUROC as PNGs; [] without matplotlib.

    Coverage is stated on the figures: a detector ranked on fewer datasets than the others (a
    class-conditional one needs class labels) is drawn apart and labelled with its number of
    datasets in the mean-rank plot; the time plot leaves out those ranked on fewer than half of
    the datasets and names them in a note. The figures are sized to be read at about 900 pixels
    wide. An existing PNG of the same name is replaced only with ``replace``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    overall = summary["overall"]
    order = _display_order(overall)
    most = max((o["n_ranked"] for o in overall.values()), default=0)
    partial = [d for d in order if overall[d]["n_ranked"] < most]
    with plt.rc_context({"font.size": 9, "axes.titlesize": 10}):
        return [
            _heatmap(plt, summary, rows, order, out, replace),
            _mean_rank_plot(plt, overall, order, partial, most, out, replace),
            _time_plot(plt, overall, order, partial, most, out, replace),
        ]


def _heatmap(plt, summary, rows, detectors, out, replace) -> Path:
    """AUROC per dataset, rows grouped by data group; blank = not applicable, x = failed."""
    group_of = {(r["protocol"], r["dataset"]): r.get("group") or "" for r in rows}
    groups = list(dict.fromkeys(group_of.get(k, "") for k in summary["per_dataset"]))
    keys = sorted(summary["per_dataset"], key=lambda k: groups.index(group_of.get(k, "")))
    status: dict[tuple, set] = {}
    for r in rows:
        status.setdefault((r["protocol"], r["dataset"], r["detector"]), set()).add(r["status"])
    grid = np.array([[summary["per_dataset"][k][d] for d in detectors] for k in keys])
    n_rows, n_cols = grid.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 + 0.36 * n_cols), 1.5 + 0.235 * n_rows))
    ax.imshow(np.ma.masked_invalid(grid), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
    ax.xaxis.tick_top()
    ax.set_xticks(range(n_cols), detectors, rotation=60, ha="left", rotation_mode="anchor")
    several = len({k[0] for k in keys}) > 1
    ax.set_yticks(range(n_rows), [f"{d} ({p})" if several else d for p, d in keys])
    ax.tick_params(length=0)
    for i, (protocol, dataset) in enumerate(keys):
        for j, d in enumerate(detectors):
            if np.isfinite(grid[i, j]):
                color = "k" if grid[i, j] > 0.8 else "w"
                ax.text(
                    j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7.5, color=color
                )
            elif "error" in status.get((protocol, dataset, d), ()):
                ax.text(j, i, "x", ha="center", va="center", fontsize=9, color="tab:red")
    start = 0
    for g in groups:
        size = sum(group_of.get(k, "") == g for k in keys)
        if start:
            ax.axhline(start - 0.5, color="w", lw=3)
        if len(groups) > 1 and g:
            ax.text(
                n_cols - 0.3,
                start + (size - 1) / 2,
                f"{g} ({size})",
                rotation=-90,
                ha="left",
                va="center",
                fontsize=8.5,
            )
        start += size
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_title(
        "AUROC per dataset (mean of the seeds; colour scale 0.5-1.0)\n"
        "blank: does not apply (needs class labels); x: failed",
        fontsize=9,
        loc="left",
    )
    fig.tight_layout()
    return _save_png(fig, out / "auroc_per_dataset.png", replace)


def _mean_rank_plot(plt, overall, order, partial, most, out, replace) -> Path:
    """Mean AUROC rank; detectors ranked on fewer datasets set apart, grey, with their count."""
    fig, ax = plt.subplots(figsize=(6.8, max(2.2, 1.3 + 0.3 * len(order))))
    ranks = [overall[d]["rank"] for d in order]
    colors = ["0.75" if d in partial else "tab:blue" for d in order]
    ax.barh(range(len(order)), np.nan_to_num(ranks), color=colors, height=0.7)
    labels = [
        f"{d} ({overall[d]['n_ranked']} of {most} sets)" if d in partial else d for d in order
    ]
    ax.set_yticks(range(len(order)), labels)
    for i, rank in enumerate(ranks):
        if np.isfinite(rank):
            ax.text(rank, i, f" {rank:.2f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, np.nanmax([*ranks, 1.0]) * 1.12)
    ax.set_xlabel("mean AUROC rank (1 = best)")
    ax.set_title(f"Mean rank over the {most} datasets")
    if partial:
        ax.axhline(len(order) - len(partial) - 0.5, color="k", lw=0.8, ls="--")
        fig.text(
            0.01,
            0.01,
            "Grey: ranked only on the datasets it applies to, among the detectors there;\n"
            "its rank is not comparable with the blue bars.",
            fontsize=8,
            va="bottom",
        )
        fig.tight_layout(rect=(0, 0.06 if len(order) > 6 else 0.12, 1, 1))
    else:
        fig.tight_layout()
    return _save_png(fig, out / "mean_rank.png", replace)


def _time_plot(plt, overall, order, partial, most, out, replace) -> Path:
    """Time per cell vs mean AUROC, labels placed so that none overprints another."""
    left_out = [d for d in partial if overall[d]["n_ranked"] < most / 2]
    shown = [d for d in order if overall[d]["ok"] and d not in left_out]
    seconds = [(overall[d]["fit_s"] + overall[d]["score_s"]) / overall[d]["ok"] for d in shown]
    aurocs = [overall[d]["auroc"] for d in shown]
    fig, ax = plt.subplots(figsize=(6.8, 4.8))
    ax.scatter(seconds, aurocs, s=25, color="tab:blue", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("fit + score seconds per cell (mean, log scale)")
    ax.set_ylabel(f"mean AUROC over the {most} datasets")
    ax.set_title("Time vs AUROC")
    ax.grid(alpha=0.3)
    if seconds:
        lo, hi = min(seconds), max(seconds)
        ax.set_xlim(lo / 2.0, hi * 2.0)
        span = max(max(aurocs) - min(aurocs), 0.02)
        ax.set_ylim(min(aurocs) - 0.08 * span, max(aurocs) + 0.08 * span)
    if left_out:
        names = ", ".join(f"{d} ({overall[d]['n_ranked']} of {most} sets)" for d in left_out)
        fig.text(
            0.01,
            0.01,
            f"Not shown, measured on too few datasets to compare: {names}.",
            fontsize=8,
            va="bottom",
            wrap=True,
        )
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    else:
        fig.tight_layout()
    labels = [f"{d} ({overall[d]['n_ranked']} sets)" if d in partial else d for d in shown]
    _place_labels(ax, seconds, aurocs, labels)
    return _save_png(fig, out / "time_vs_auroc.png", replace)


def _place_labels(ax, xs, ys, labels, fontsize=8) -> None:
    """Label each point at the first of a few positions around it that overlaps no other label,
    no marker and stays inside the axes; farther positions get a thin leader line."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else []
    pad = 4 * fig.dpi / 72
    taken = [Bbox.from_extents(x - pad, y - pad, x + pad, y + pad) for x, y in points]
    directions = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1)]
    candidates = [(dx * r, dy * r, r) for r in (5, 12, 20, 30) for dx, dy in directions]
    # most crowded points first: they have the fewest free places
    crowd = [sum(np.hypot(*(p - q)) < 60 for q in points) for p in points]
    for i in sorted(range(len(labels)), key=lambda i: -crowd[i]):
        best = None
        for dx, dy, r in candidates:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
            text = ax.annotate(
                labels[i],
                (xs[i], ys[i]),
                xytext=(dx, dy * 0.8),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=fontsize,
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if r > 5 else None,
            )
            box = text.get_window_extent(renderer).expanded(1.04, 1.1)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            overlap = sum(_overlap(box, t) for t in taken)
            score = (not inside, overlap > 0, overlap, r)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, text, box)
            else:
                text.remove()
            if inside and not overlap:
                break
        taken.append(best[2])


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


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
