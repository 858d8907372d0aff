"""skood.explain: per-column contributions, against a brute-force reference and planted anomalies."""

import copy
from functools import cache
from itertools import combinations
from math import factorial

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import (
    AMADetector,
    CLIPZeroShot,
    ConformalDetector,
    DeepSADDetector,
    DeepSVDDDetector,
    EnsembleDetector,
    GaussianMahalanobis,
    HSCDetector,
    ICEClassifier,
    KNNDetector,
    OEClassifier,
    OpenSetClassifier,
    QuantileFlowDetector,
    ROSEScorer,
    VAEDetector,
)
from skood.explain import explain
from skood.features import ClassifierFeatures
from skood.preprocessing import make_table_pipeline
from tests._settings import HSC_SMALL, TINY_FLOW

N_FEATURES, PLANTED = 6, 3


def _data(seed=0, n=1500):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 1] = 0.8 * X[:, 0] + 0.6 * X[:, 1]  # correlated columns: the precision matrix matters
    rows = rng.normal(size=(200, N_FEATURES))
    rows[:, 1] = 0.8 * rows[:, 0] + 0.6 * rows[:, 1]
    rows[:, PLANTED] += 6.0  # the anomaly is in one column
    return X, rows


def _brute_force_shapley(score, x, baseline):
    """Shapley values by enumerating every coalition (baseline values for absent columns)."""
    d = x.size

    def v(subset):
        z = baseline.copy()
        z[list(subset)] = x[list(subset)]
        return score(z[None, :])[0]

    phi = np.zeros(d)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for r in range(d):
            weight = factorial(r) * factorial(d - r - 1) / factorial(d)
            for subset in combinations(others, r):
                phi[i] += weight * (v((*subset, i)) - v(subset))
    return phi


def _rank_first(explanation, column=f"x{PLANTED}"):
    return np.mean(explanation.top(1)[0][:, 0] == column)


def test_gaussian_contributions_are_its_exact_shapley_values():
    X, rows = _data()
    det = GaussianMahalanobis(offset_cv=None).fit(X)
    e = explain(det, rows[:5])
    assert e.method == "exact"
    for i in range(5):  # phi_i = -0.5 z_i (A z)_i equals the enumeration over all coalitions
        reference = _brute_force_shapley(det.score_samples, rows[i], det.means_[0])
        np.testing.assert_allclose(e.values[i], reference, rtol=0, atol=1e-10)
    np.testing.assert_allclose(e.values.sum(1), e.scores - e.baseline_scores, rtol=1e-12)
    np.testing.assert_array_equal(e.scores, det.score_samples(rows[:5]))


def test_class_conditional_gaussian_explains_from_the_rows_own_class():
    rng = np.random.default_rng(1)
    shift = np.array([8.0, 0.0, 0.0, 0.0])
    X = np.r_[rng.normal(size=(500, 4)), rng.normal(size=(500, 4)) + shift]
    y = np.r_[np.zeros(500), np.ones(500)]
    det = GaussianMahalanobis(offset_cv=None).fit(X, y)
    rows = np.r_[rng.normal(size=(20, 4)), rng.normal(size=(20, 4)) + shift]
    rows[:, 2] += 5.0
    e = explain(det, rows)
    assert e.completeness_error.max() < 1e-9
    for i in (0, 25):  # each row against its own class mean: the class it scores best under
        own = det.means_[int(i >= 20)]
        reference = _brute_force_shapley(lambda P, own=own: det.score_samples(P), rows[i], own)
        np.testing.assert_allclose(e.values[i], reference, atol=1e-9)
    assert _rank_first(e, "x2") == 1.0


def test_integrated_gradients_are_complete_within_the_quadrature_error():
    X, rows = _data()
    e = explain(KNNDetector().fit(X), rows)
    assert e.method == "integrated_gradients"
    relative = e.completeness_error / np.abs(e.scores - e.baseline_scores)
    assert np.median(relative) < 0.02  # 32 Gauss-Legendre nodes on a piecewise-smooth path
    mixture = GaussianMahalanobis(offset_cv=None, aggregate="logsumexp")
    mixture.fit(np.r_[X, X + 4.0], np.r_[np.zeros(len(X)), np.ones(len(X))])
    e = explain(mixture, rows)
    assert e.method == "integrated_gradients"
    assert np.max(e.completeness_error / np.abs(e.scores - e.baseline_scores)) < 1e-3


@pytest.mark.parametrize(
    "make",
    [
        lambda: GaussianMahalanobis(offset_cv=None),
        lambda: KNNDetector(),
        lambda: EnsembleDetector(random_state=0),
        lambda: IsolationForest(random_state=0),
    ],
    ids=["gaussian", "knn", "ensemble", "iforest"],
)
def test_the_planted_column_ranks_first_for_95_percent_of_rows(make):
    X, rows = _data()
    det = make().fit(X)
    background = X[:200] if isinstance(det, IsolationForest) else None
    e = explain(det, rows, background=background, random_state=0)
    assert _rank_first(e) >= 0.95
    assert e.completeness_error.max() <= 0.05 * np.abs(e.scores - e.baseline_scores).max()


def test_ensemble_contributions_add_up_to_its_own_score():
    X, rows = _data()
    ens = EnsembleDetector(random_state=0).fit(X)
    e = explain(ens, rows)
    np.testing.assert_allclose(e.scores, ens.score_samples(rows), rtol=1e-9)
    assert e.method == "exact+integrated_gradients"


def test_permutation_shapley_values_match_the_enumeration_and_are_complete():
    X, rows = _data()
    forest = IsolationForest(random_state=0).fit(X)
    baseline = np.median(X[:200], axis=0)
    e = explain(forest, rows[:3], background=X[:200], n_permutations=400, random_state=0)
    assert e.method == "permutation"
    assert e.completeness_error.max() < 1e-12  # every permutation telescopes
    reference = _brute_force_shapley(forest.score_samples, rows[0], baseline)
    np.testing.assert_allclose(e.values[0], reference, atol=0.1 * np.abs(reference).max())


def test_through_a_pipeline_contributions_are_on_the_input_columns():
    X, rows = _data()
    frame = pd.DataFrame(X, columns=[f"c{i}" for i in range(N_FEATURES)])
    pipe = make_pipeline(StandardScaler(), GaussianMahalanobis(offset_cv=None)).fit(frame)
    e = explain(pipe, pd.DataFrame(rows, columns=frame.columns))
    assert list(e.feature_names) == list(frame.columns)
    assert _rank_first(e, f"c{PLANTED}") >= 0.95
    np.testing.assert_allclose(e.scores, pipe.score_samples(rows), rtol=1e-12)
    # standardising first changes nothing but the scale: same Shapley values as on z-scores
    z = pipe[0].transform(rows)
    direct = explain(pipe[-1], z)
    np.testing.assert_allclose(e.values, direct.values, rtol=1e-12, atol=1e-12)


def test_one_hot_columns_fold_back_to_their_source_column():
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            # "west" is rarer than min_frequency: it joins the infrequent column
            "site": rng.choice(
                ["north", "south", "east", "west"], size=n, p=[0.6, 0.3, 0.095, 0.005]
            ),
            "ok": rng.choice([True, False], size=n),  # a boolean: one 0/1 column (drop="if_binary")
        }
    )
    pipe = make_table_pipeline(GaussianMahalanobis(offset_cv=None)).fit(frame)
    rows = frame.iloc[:30].copy()
    rows["b"] += 7.0
    e = explain(pipe, rows)
    assert list(e.feature_names) == ["a", "b", "site", "ok"]
    assert e.values.shape == (30, 4)
    assert e.completeness_error.max() < 1e-9  # exact through the encoder: the block sums
    assert _rank_first(e, "b") == 1.0


def test_a_conformal_detector_is_explained_through_the_score_it_ranks():
    X, rows = _data()
    conf = ConformalDetector(GaussianMahalanobis(offset_cv=None), random_state=0).fit(X)
    e = explain(conf, rows)
    np.testing.assert_allclose(e.scores, conf.detector_scores(rows), rtol=1e-12)
    assert _rank_first(e) >= 0.95


def test_a_black_box_without_background_says_what_to_pass():
    X, rows = _data()
    with pytest.raises(ValueError, match="pass background="):
        explain(IsolationForest(random_state=0).fit(X), rows)


# -- score_gradient: the torch detectors, the nearest-neighbour detector and the Gaussian ---------

#: One small fit per torch family (a second or less each on one core), on ``_data()``'s rows.
TORCH_FAMILIES = {
    "flow": lambda: QuantileFlowDetector(**TINY_FLOW, random_state=0),
    "vae": lambda: VAEDetector(
        latent_dim=2, hidden_sizes=(16,), max_epochs=5, min_steps=200, random_state=0
    ),
    "hsc": lambda: HSCDetector(**HSC_SMALL),
    "deep_sad": lambda: DeepSADDetector(**HSC_SMALL),
    "deep_svdd": lambda: DeepSVDDDetector(**HSC_SMALL),
    "oe": lambda: OEClassifier(**HSC_SMALL),
    "ama": lambda: AMADetector(
        hidden_sizes=(32,), latent_dim=2, max_epochs=5, n_critic=1, batch_size=64, random_state=0
    ),
    "ama_recon": lambda: AMADetector(
        hidden_sizes=(32,),
        latent_dim=2,
        max_epochs=5,
        n_critic=1,
        batch_size=64,
        ood_score="recon",
        random_state=0,
    ),
    "ice": lambda: ICEClassifier(hidden_sizes=(16,), feature_dim=4, max_epochs=20, random_state=0),
}


@cache
def _fitted(family):
    """``family``'s detector fitted on ``_data()``: outlier exposure (HSC, Deep SAD, OE, ICE)
    from wide Gaussian rows labelled -1, classes (ICE) from the sign of column 2."""
    X, _ = _data()
    det = TORCH_FAMILIES[family]()
    oe = np.random.default_rng(5).normal(size=(300, N_FEATURES)) * 3.0
    if isinstance(det, ICEClassifier):
        return det.fit(np.r_[X, oe], np.r_[np.where(X[:, 2] > 0, 1, 2), -np.ones(len(oe))])
    if isinstance(det, (HSCDetector, DeepSADDetector, OEClassifier)):
        return det.fit(np.r_[X, oe], np.r_[np.ones(len(X)), -np.ones(len(oe))])
    return det.fit(X)


def _central_differences(score, P, h):
    grad = np.empty_like(P)
    for j in range(P.shape[1]):
        step = np.zeros(P.shape[1])
        step[j] = h
        grad[:, j] = (score(P + step) - score(P - step)) / (2.0 * h)
    return grad


@pytest.mark.parametrize("family", TORCH_FAMILIES)
def test_score_tensor_is_what_score_samples_computes(family):
    det = _fitted(family)
    X, rows = _data()
    P = np.r_[X[:50], rows[:50]]
    with torch.no_grad():
        tensor = det._score_tensor(torch.as_tensor(P, dtype=torch.float32)).double().numpy()
    # float32 arithmetic either way (AMA's Gaussian of R and ICE's logsumexp are float64 in
    # score_samples): equal to float32 rounding
    np.testing.assert_allclose(tensor, det.score_samples(P), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", TORCH_FAMILIES)
def test_score_gradient_matches_finite_differences_of_score_samples(family):
    det = _fitted(family)
    X, rows = _data()
    P = np.r_[X[:30], rows[:30]]
    grad = det.score_gradient(P)
    assert grad.shape == P.shape and grad.dtype == np.float64
    # Central differences of the float32 scores, h = 3e-3: measured median row error 5e-5 to
    # 2e-4 over these families; a ReLU kink within h of a row spoils its difference (up to 0.17
    # for a few rows), so most rows, not all, are held to 2e-2.
    reference = _central_differences(det.score_samples, P, 3e-3)
    error = np.linalg.norm(grad - reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert np.median(error) < 2e-3
    assert np.mean(error < 2e-2) >= 0.9


@pytest.mark.parametrize("family", TORCH_FAMILIES)
def test_torch_detectors_are_explained_by_integrated_gradients(family):
    det = _fitted(family)
    X, rows = _data()
    e = explain(det, rows, background=X[:200])
    assert e.method == "integrated_gradients"
    np.testing.assert_allclose(e.scores, det.score_samples(rows), rtol=1e-12)
    # Completeness up to the quadrature error of 32 nodes over a piecewise-smooth path
    # (measured: at most 2 % of the largest score gap, ICE's max over classes; median 2e-3).
    gap = np.abs(e.scores - e.baseline_scores)
    assert e.completeness_error.max() <= 0.05 * gap.max()
    assert np.median(e.completeness_error / gap) < 0.05
    # measured: 97.5 % (Deep SVDD) to 100 % of the rows
    assert _rank_first(e) >= 0.95


def test_a_torch_detector_without_background_says_what_to_pass():
    _, rows = _data()
    with pytest.raises(
        ValueError, match=r"QuantileFlowDetector keeps no reference rows.*background="
    ):
        explain(_fitted("flow"), rows)


def test_score_gradient_is_batched_and_validates_its_input():
    det = _fitted("flow")
    _, rows = _data()
    whole = det.score_gradient(rows)
    small_batches = copy.deepcopy(det).set_params(inference_batch_size=7)
    np.testing.assert_array_equal(small_batches.score_gradient(rows), whole)
    np.testing.assert_array_equal(det.score_gradient(pd.DataFrame(rows)), whole)
    with pytest.raises(ValueError, match="features"):
        det.score_gradient(rows[:, :3])
    with pytest.raises(NotFittedError):
        QuantileFlowDetector().score_gradient(rows)


@pytest.mark.parametrize(
    "make",
    [
        lambda: KNNDetector(),
        lambda: KNNDetector(aggregate="kth", n_neighbors=3),
        lambda: KNNDetector(normalize=True),
        lambda: GaussianMahalanobis(offset_cv=None),
        lambda: GaussianMahalanobis(offset_cv=None, class_conditional=True),
        lambda: GaussianMahalanobis(offset_cv=None, aggregate="logsumexp"),
    ],
    ids=["knn", "knn-kth", "knn-normalize", "gaussian", "gaussian-max", "gaussian-logsumexp"],
)
def test_closed_form_gradients_match_finite_differences(make):
    X, rows = _data()
    y = np.where(X[:, 0] > 0, 1, 2)  # two classes for the class-conditional Gaussians
    det = make().fit(X, y)
    P = np.r_[X[:20], rows[:20]] + 0.01  # off the reference rows themselves
    grad = det.score_gradient(P)
    reference = _central_differences(det.score_samples, P, 1e-5)  # float64 throughout
    np.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-6)


def test_detectors_without_a_gradient_have_no_score_gradient():
    # ROSE's score is a norm of parameter gradients, CLIP's goes through an external encoder,
    # OpenSetClassifier through any stage-1 transformer: none gains a score_gradient
    for det in (ROSEScorer(VAEDetector()), CLIPZeroShot(), OpenSetClassifier()):
        assert not hasattr(det, "score_gradient")
    assert not hasattr(ClassifierFeatures(), "score_gradient")  # a torch extractor, no score
    assert hasattr(QuantileFlowDetector(), "score_gradient")


def test_a_detector_fitted_on_a_dataframe_is_explained_by_column_name():
    """Columns in another order would be read as the fitted ones (explain computes on arrays):
    refused, as scikit-learn refuses it; in the fitted order, no feature-name warning."""
    import warnings

    X, rows = _data()
    columns = [f"c{i}" for i in range(N_FEATURES)]
    det = KNNDetector().fit(pd.DataFrame(X, columns=columns))
    frame = pd.DataFrame(rows, columns=columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = explain(det, frame)
    np.testing.assert_allclose(e.values, explain(det, rows).values, rtol=1e-12)
    assert list(e.feature_names) == columns
    with pytest.raises(ValueError, match="in that order"):
        explain(det, frame[columns[::-1]])
