"""Print the tables of clamp.md from the CSVs in this folder (and the seed-0/1 default cells in ..).

Usage: python benchmarks/defaults/clamp/clamp_tables.py
"""

import collections
import csv
import statistics as st
from pathlib import Path

HERE = Path(__file__).parent
DEFAULTS = HERE.parent
# The default (clamp 3.0) cells of seeds 0 and 1 come from the study that chose the other defaults.
DEFAULT_SPEC = (
    "flow:n_blocks=4,hidden_sizes=(64,64),lr=1e-3,min_steps=250,max_epochs=10,dropout=0.0"
)
QUICK_SETS = ("wine", "breast-cancer", "digits-ovr-0")


def cells(path, detector=None):
    """{dataset: row} of the successful cells of one bench results.csv."""
    out = {}
    for row in csv.DictReader(open(path)):
        if row["status"] == "ok" and (detector is None or row["detector"] == detector):
            out[row["dataset"]] = dict(
                auroc=float(row["auroc"]),
                fpr95=float(row["fpr95"]),
                fit_s=float(row["fit_s"]),
                group=row["group"],
            )
    return out


def forty(config, seed):
    if config == "clamp3" and seed == 0:
        return cells(DEFAULTS / "screen_seed0_c.csv", DEFAULT_SPEC)
    if config == "clamp3" and seed == 1:
        return cells(DEFAULTS / "default_seed1.csv")
    return cells(HERE / f"40sets_{config}_seed{seed}.csv")


def table_three_seeds():
    print("## 40 sets, 3 seeds: clamp 3.0 (the default before) against 0.5\n")
    runs = {c: [forty(c, s) for s in (0, 1, 2)] for c in ("clamp3", "clamp0.5")}
    sets = sorted(set.intersection(*(set(r) for rs in runs.values() for r in rs)))
    mean = {c: {d: st.mean(r[d]["auroc"] for r in rs) for d in sets} for c, rs in runs.items()}
    print(
        "| clamp | seed 0 | seed 1 | seed 2 | mean AUROC | mean FPR95 | sets ahead | total fit s (seed 2) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c, rs in runs.items():
        other = "clamp0.5" if c == "clamp3" else "clamp3"
        per_seed = " | ".join(f"{st.mean(r[d]['auroc'] for d in sets):.4f}" for r in rs)
        fpr = st.mean(st.mean(r[d]["fpr95"] for r in rs) for d in sets)
        ahead = sum(mean[c][d] > mean[other][d] for d in sets)
        fit = sum(rs[2][d]["fit_s"] for d in sets)
        print(
            f"| {c[5:]} | {per_seed} | {st.mean(mean[c].values()):.4f} | {fpr:.3f} | {ahead}/{len(sets)} | {fit:.0f} |"
        )
    groups = collections.defaultdict(list)
    for d in sets:
        groups[runs["clamp3"][0][d]["group"]].append(mean["clamp0.5"][d] - mean["clamp3"][d])
    print("\nPer group, 0.5 minus 3.0 (3-seed means):")
    for g, v in groups.items():
        print(f"- {g}: {st.mean(v):+.4f} over {len(v)} sets, 0.5 ahead on {sum(x > 0 for x in v)}")
    diffs = sorted((mean["clamp0.5"][d] - mean["clamp3"][d], d) for d in sets)
    print("- worst:", ", ".join(f"{d} {x:+.3f}" for x, d in diffs[:5]))
    print("- best:", ", ".join(f"{d} {x:+.3f}" for x, d in diffs[-5:][::-1]))


def table_seed0_screen():
    print("\n## Seed-0 screen: each candidate against the clamp-3.0 default\n")
    base = forty("clamp3", 0)
    print(
        "| candidate | mean AUROC | Δ | sets ahead | ADBench Δ | MVTec Δ | bundled Δ | worst cells |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for config in (
        "clamp1",
        "clamp0.5",
        "clamp0.25",
        "nice",
        "dequantize",
        "dequantize_clamp1",
        "dequantize_clamp0.5",
        "mean_clamp0.5",
        "min_steps50",
        "min_steps100",
    ):
        path = HERE / f"40sets_{config}_seed0.csv"
        if not path.exists():
            continue
        c = cells(path)
        sets = sorted(set(base) & set(c))
        d = {k: c[k]["auroc"] - base[k]["auroc"] for k in sets}
        by = collections.defaultdict(list)
        for k in sets:
            by[base[k]["group"]].append(d[k])
        worst = ", ".join(f"{k} {v:+.2f}" for v, k in sorted((v, k) for k, v in d.items())[:3])
        print(
            f"| {config} | {st.mean(c[k]['auroc'] for k in sets):.4f} | {st.mean(d.values()):+.4f} | "
            f"{sum(v > 0 for v in d.values())}/{len(sets)} | {st.mean(by['adbench']):+.4f} | "
            f"{st.mean(by['mvtec_resnet18']):+.4f} | {st.mean(by['bundled']):+.4f} | {worst} |"
        )
    print(f"\n(default, clamp 3.0: {st.mean(v['auroc'] for v in base.values()):.4f})")


def table_quick():
    print("\n## `skood bench --quick`'s flow, seeds 0-4, paired with the old CPU flow\n")
    old = {}
    for row in csv.DictReader(open(DEFAULTS / "bundled_check" / "item1_old_quick.csv")):
        if row["detector"] == "flow" and row["status"] == "ok":
            old[(row["dataset"], int(row["seed"]))] = float(row["auroc"])
    runs = collections.defaultdict(dict)
    for row in csv.DictReader(open(HERE / "quick.csv")):
        runs[row["spec"]][(row["dataset"], int(row["seed"]))] = float(row["auroc"])
    per_old = [st.mean(old[(d, s)] for d in QUICK_SETS) for s in range(5)]
    print(
        "| spec | mean AUROC ± std (seeds) | wine | breast-cancer | digits-ovr-0 | minus old, per seed | mean ± std | cells ahead |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| old CPU flow (fdb2ccb) | {st.mean(per_old):.4f} ± {st.stdev(per_old):.4f} | "
        + " | ".join(f"{st.mean(old[(d, s)] for s in range(5)):.3f}" for d in QUICK_SETS)
        + " | | | |"
    )
    for spec, r in runs.items():
        per = [st.mean(r[(d, s)] for d in QUICK_SETS) for s in range(5)]
        diff = [a - b for a, b in zip(per, per_old)]
        ahead = sum(r[k] > old[k] for k in old)
        sets = " | ".join(f"{st.mean(r[(d, s)] for s in range(5)):.3f}" for d in QUICK_SETS)
        print(
            f"| `{spec}` | {st.mean(per):.4f} ± {st.stdev(per):.4f} | {sets} | "
            f"{' '.join(f'{x:+.3f}' for x in diff)} | {st.mean(diff):+.4f} ± {st.stdev(diff):.4f} | {ahead}/15 |"
        )


def table_demo():
    print("\n## `skood demo`'s two flows, detector seeds 0-4\n")
    rows = collections.defaultdict(list)
    for path in (DEFAULTS / "bundled_check" / "item1_demo.csv", HERE / "demo.csv"):
        for row in csv.DictReader(open(path)):
            rows[(row["tag"], row["detector"])].append((float(row["auroc"]), float(row["fpr95"])))
    print("| configuration | q=0.05 AUROC | q=0.05 FPR95 | q='mean' AUROC | q='mean' FPR95 |")
    print("|---|---|---|---|---|")
    for tag in ("old", "new", "clamp1.5", "clamp1.0", "clamp0.5", "clamp0.25", "deq", "deq_c0.5"):
        out = []
        for det in ("QuantileFlowDetector(q=0.05)", "QuantileFlowDetector(q='mean')"):
            v = rows[(tag, det)]
            a = [x[0] for x in v]
            out += [f"{st.mean(a):.3f} ± {st.stdev(a):.3f}", f"{st.mean(x[1] for x in v):.3f}"]
        print(f"| {tag} | " + " | ".join(out) + " |")


def table_steps():
    print(
        "\n## Steps at clamp 3.0 (q=0.05 on --quick's sets; the demo's q='mean' flow), seeds 0-4\n"
    )
    rows = collections.defaultdict(list)
    for row in csv.DictReader(open(HERE / "steps.csv")):
        rows[(row["budget"], row["dataset"])].append(float(row["auroc"]))
    print("| steps | wine | breast-cancer | digits-ovr-0 | --quick mean | demo q='mean' |")
    print("|---|---|---|---|---|---|")
    for budget in ("steps10", "steps25", "steps50", "steps100", "steps250"):
        per = [st.mean(rows[(budget, d)]) for d in QUICK_SETS]
        print(
            f"| {budget[5:]} | "
            + " | ".join(f"{x:.3f}" for x in per)
            + f" | {st.mean(per):.4f} | {st.mean(rows[(budget, 'demo-mean')]):.3f} |"
        )


if __name__ == "__main__":
    table_three_seeds()
    table_seed0_screen()
    table_quick()
    table_demo()
    table_steps()
