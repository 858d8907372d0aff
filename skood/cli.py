"""The ``skood`` command.

``skood demo``: sklearn's bundled digits (classes 0-4 inliers, 5-9 outliers; no download), the
skood detectors in ``Pipeline`` s side by side with ``IsolationForest``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence

__all__ = ["main"]


def _demo_detectors(random_state: int, verbose: int):
    from sklearn.ensemble import IsolationForest
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skood import GaussianMahalanobis, QuantileFlowDetector

    # A CPU-sized flow (the spec's "H=128, L=1, 4 blocks" setting); the paper's default
    # (8 blocks, H=512, L=2, ~10 M parameters) is meant for 50,000 feature vectors.
    small_flow = dict(n_blocks=4, hidden_size=128, n_hidden_layers=1, min_steps=500)

    def flow(q):
        return QuantileFlowDetector(q, random_state=random_state, verbose=verbose, **small_flow)

    def prep():
        return [VarianceThreshold(), StandardScaler()]  # pixel 0 is constant in digits

    return {
        "QuantileFlowDetector(q=0.05)": (make_pipeline(*prep(), flow(0.05)), False),
        "QuantileFlowDetector(q='mean')": (make_pipeline(*prep(), flow("mean")), False),
        "GaussianMahalanobis (class-cond.)": (
            make_pipeline(*prep(), GaussianMahalanobis(covariance="ledoit_wolf")),
            True,
        ),
        "GaussianMahalanobis (single)": (
            make_pipeline(*prep(), GaussianMahalanobis(covariance="ledoit_wolf")),
            False,
        ),
        "IsolationForest (sklearn)": (
            make_pipeline(StandardScaler(), IsolationForest(random_state=random_state)),
            False,
        ),
    }


def demo(random_state: int = 0, verbose: int = 1) -> list[dict]:
    """Run the demo; print and return one row of results per detector."""
    from skood.datasets import load_digits_ood, novelty_split
    from skood.metrics import auroc, fpr_at_tpr

    X, y = load_digits_ood(inlier_classes=range(5))
    X_train, y_train, X_test, y_test = novelty_split(X, y, train_fraction=0.5, random_state=0)
    print(
        f"digits open set: train on {len(X_train)} images of digits 0-4; test on "
        f"{(y_test != -1).sum()} unseen 0-4 (inliers) + {(y_test == -1).sum()} of 5-9 (outliers)\n"
    )
    rows = []
    for name, (pipe, uses_labels) in _demo_detectors(random_state, verbose).items():
        start = time.perf_counter()
        pipe.fit(X_train, y_train if uses_labels else None)
        fit_s = time.perf_counter() - start
        scores = pipe.score_samples(X_test)
        rows.append(
            dict(
                detector=name,
                auroc=auroc(y_test, scores),
                fpr95=fpr_at_tpr(y_test, scores, 0.95),
                fit_s=fit_s,
            )
        )
    print(f"{'detector':36s} {'AUROC':>7s} {'FPR95':>7s} {'fit (s)':>8s}")
    for r in rows:
        print(f"{r['detector']:36s} {r['auroc']:7.3f} {r['fpr95']:7.3f} {r['fit_s']:8.1f}")
    print(
        "\nAUROC: higher is better. FPR95: outliers accepted at 95% inlier acceptance, lower is better."
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skood", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="digits open-set demo: skood detectors vs IsolationForest")
    p_demo.add_argument("--random-state", type=int, default=0)
    p_demo.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.command == "demo":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            demo(random_state=args.random_state, verbose=0 if args.quiet else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
