"""Mean +- std over seeds of the demo flows' AUROC and fit seconds, per (tag, detector)."""
import csv
import sys
from collections import defaultdict

import numpy as np

rows = defaultdict(list)
for path in sys.argv[1:]:
    for r in csv.DictReader(open(path)):
        rows[r["tag"], r["detector"]].append(r)
print("| configuration | detector | seeds | AUROC mean ± std | per seed | FPR95 mean | fit s mean |")
print("|---|---|---|---|---|---|---|")
for (tag, det), rs in rows.items():
    a = np.array([float(r["auroc"]) for r in rs])
    print(f"| {tag} | {det} | {len(rs)} | {a.mean():.4f} ± {a.std(ddof=1):.4f} | "
          f"{' '.join(f'{x:.3f}' for x in a)} | {np.mean([float(r['fpr95']) for r in rs]):.3f} | "
          f"{np.mean([float(r['fit_s']) for r in rs]):.1f} |")
