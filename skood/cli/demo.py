"""``skood demo``: skood's main job on sklearn's bundled digits, beside sklearn's and PyOD's peers.

Classes 0-4 are the inliers, 5-9 the outliers; nothing is downloaded.
"""

from __future__ import annotations

import time
import warnings

__all__ = ["add_parser", "demo", "demo_detectors", "run"]

#: UserWarnings the demo's fits leave unsaid: those the libraries it drives raise from their own
#: code (the reader of a demo on bundled data can do nothing about them). skood's own warnings
#: (``skood.base.warn_user``) name the first caller outside skood and scikit-learn, so these
#: module names never hide one; a third-party warning pointed at skood's code is shown too.
THIRD_PARTY_MODULES = r"(torch|skorch|sklearn|pyod)(\.|$)"


def add_parser(subparsers) -> None:
    p_demo = subparsers.add_parser("demo", help="digits open-set demo: skood detectors vs peers")
    p_demo.add_argument("--random-state", type=int, default=0)
    p_demo.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    # The first demo (f21665f) silenced every UserWarning here, without a stated reason; skood
    # raised none then, so it was meant for the libraries above. Once skood raised its own (a
    # contamination too few calibration rows cannot reach, a covariance with too few rows per
    # feature) it hid those too. Now only the libraries' own are left unsaid.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=THIRD_PARTY_MODULES)
        demo(random_state=args.random_state, verbose=0 if args.quiet else 1)
    return 0


def demo_detectors(random_state: int, verbose: int) -> dict:
    """The demo's detectors: ``{label: (pipeline, whether it fits on the class labels)}``."""
    from sklearn.ensemble import IsolationForest
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skood import EnsembleDetector, GaussianMahalanobis, KNNDetector, QuantileFlowDetector

    def flow(q):
        return QuantileFlowDetector(q, random_state=random_state, verbose=verbose)

    def prep():
        return [VarianceThreshold(), StandardScaler()]  # pixel 0 is constant in digits

    return {
        "EnsembleDetector()": (
            make_pipeline(*prep(), EnsembleDetector(random_state=random_state)),
            False,
        ),
        "KNNDetector()": (make_pipeline(*prep(), KNNDetector()), False),
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
        "LocalOutlierFactor (sklearn)": (
            make_pipeline(*prep(), LocalOutlierFactor(novelty=True)),
            False,
        ),
        **_pyod_peers(prep),
    }


def _pyod_peers(prep) -> dict:
    from sklearn.pipeline import make_pipeline

    from skood.registry import available_detectors, make_detector

    if "pyod-knn" not in available_detectors():  # PyOD is the optional `bench` extra
        return {}
    return {
        f"{label} (PyOD)": (make_pipeline(*prep(), make_detector(name)), False)
        for label, name in [("KNN", "pyod-knn"), ("ECOD", "pyod-ecod")]
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
    for name, (pipe, uses_labels) in demo_detectors(random_state, verbose).items():
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
