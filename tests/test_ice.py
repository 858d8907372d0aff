"""ICEClassifier: the fitted head against numpy, training on digits, batching, fine-tuning, bad input.

The head's logits and the ICE loss against numpy / hand computations are in test_nn_heads.py;
sklearn's estimator checks run with every other estimator's in test_estimator_checks.py.
"""

import copy
import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.special import logsumexp, softmax
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import ClassifierFeatures, ICEClassifier
from skood.metrics import SCORERS, auroc
from skood.nn import BackboneClassifier, ClassifierOELoss, GaussianHead
from skood.torch import OutlierExposureBatches, OutlierExposureCollate
from tests._helpers import assert_float32_close


@pytest.fixture(scope="module")
def ice(digits_aux, ice_small):
    return ICEClassifier(**ice_small).fit(digits_aux["X_fit"], digits_aux["y_fit"])


def _ood_auroc(est, digits_aux):
    s_in, s_out = est.score_samples(digits_aux["X_te"]), est.score_samples(digits_aux["X_ood"])
    return auroc(np.r_[np.ones(len(s_in)), -np.ones(len(s_out))], np.r_[s_in, s_out])


# -- the baselines' losses by hand --------------------------------------------------------------


def test_classifier_oe_losses_match_hand_computations():
    f = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.1, 4.0], [1.0, 1.0, -2.0], [-3.0, 0.2, 0.0]])
    f = f.double()
    target = torch.tensor([0, 2, -1, -1])
    fn = f.numpy()
    lse = logsumexp(fn, axis=1)
    ce = np.mean([lse[0] - fn[0, 0], lse[1] - fn[1, 2]])
    assert ClassifierOELoss("ce")(f, target).item() == pytest.approx(ce, rel=1e-12)
    # OE: cross-entropy of the outliers' softmax to uniform, without the constant log K.
    to_uniform = np.mean([-(np.log(softmax(fn[i])).mean()) for i in (2, 3)])
    oe = ce + 0.5 * to_uniform
    assert ClassifierOELoss("oe", 0.5)(f, target).item() == pytest.approx(oe, rel=1e-12)
    # Energy OE: squared hinges on E = -LSE with margins (m_in, m_out).
    m_in, m_out = -3.0, 0.5
    e = -lse
    hinge_in = np.mean(np.maximum(0, e[:2] - m_in) ** 2)
    hinge_out = np.mean(np.maximum(0, m_out - e[2:]) ** 2)
    energy = ce + 0.1 * (hinge_in + hinge_out)
    got = ClassifierOELoss("energy", 0.1, (m_in, m_out))(f, target).item()
    assert got == pytest.approx(energy, rel=1e-12)
    assert hinge_in > 0 and hinge_out > 0  # both hinges active: the test covers both terms
    with pytest.raises(ValueError, match="Unknown"):
        ClassifierOELoss("kl")


# -- batching ---------------------------------------------------------------------------------------


def test_batches_carry_ratio_times_the_inliers_and_cycle_the_outliers():
    X_in = np.arange(24, dtype=np.float32).reshape(12, 2)
    y_in = np.arange(12) % 3
    X_out = -np.arange(1, 11, dtype=np.float32).repeat(2).reshape(10, 2)
    torch.manual_seed(0)
    data = OutlierExposureBatches(X_in, y_in, X_out, ratio=2.0, replace=False)
    loader = torch.utils.data.DataLoader(
        data, batch_size=4, shuffle=True, collate_fn=OutlierExposureCollate()
    )
    drawn = []
    for X, target in loader:
        assert len(X) == 4 + 8
        assert (target[:4] >= 0).all() and (target[4:] == -1).all()
        assert torch.equal(torch.tensor(y_in)[X[:4, 0].long() // 2], target[:4])
        drawn += X[4:, 0].tolist()
    assert len(drawn) == 24
    # Cycling: the first 10 draws are the 10 outliers once each, and so are the next 10.
    assert sorted(drawn[:10]) == sorted(X_out[:, 0].tolist())
    assert sorted(drawn[10:20]) == sorted(X_out[:, 0].tolist())
    half = OutlierExposureBatches(X_in, y_in, X_out, ratio=1.5, replace=False)
    assert sum(len(half[i][2]) for i in range(12)) == 18
    none = OutlierExposureBatches(X_in, y_in, None)
    X, target = OutlierExposureCollate()([none[i] for i in range(5)])
    assert len(X) == 5 and (target >= 0).all()


# -- the fitted estimator ---------------------------------------------------------------------------


def test_fitted_head_is_the_numpy_mahalanobis_of_the_features(ice, digits_aux):
    X = digits_aux["X_te"][:20]
    module = ice.module_
    assert isinstance(module, BackboneClassifier) and isinstance(module.head, GaussianHead)
    with torch.no_grad():
        z = module.eval().features(torch.from_numpy(X)).double().numpy()
    precision = np.linalg.inv(ice.covariance_)
    np.testing.assert_allclose(ice.covariance_, ice.cholesky_ @ ice.cholesky_.T)
    h = np.array([[-(zi - m) @ precision @ (zi - m) for m in ice.means_] for zi in z])
    logits = ice.decision_function(X)
    np.testing.assert_allclose(logits, h, rtol=1e-3, atol=1e-3)  # float32 network
    assert (logits <= 0).all()
    np.testing.assert_allclose(ice.score_samples(X), logits.max(1), rtol=1e-12)
    np.testing.assert_allclose(ice.in_distribution_proba(X), np.exp(logits.max(1)), rtol=1e-12)
    np.testing.assert_allclose(ice.predict_proba(X), softmax(logits, axis=1), rtol=1e-10)
    np.testing.assert_allclose(
        ice.predict_log_proba(X), np.log(softmax(logits, axis=1)), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_array_equal(ice.predict(X), ice.classes_[logits.argmax(1)])
    np.testing.assert_array_equal(ice.predict_closed_set(X), ice.predict(X))
    assert ice.means_.shape == (5, 16) and ice.score_samples(X).dtype == np.float64


def test_training_changes_every_parameter_and_beats_the_untrained_model(ice, digits_aux, ice_small):
    untrained = ICEClassifier(**{**ice_small, "max_epochs": 1, "lr": 1e-12}).fit(
        digits_aux["X_fit"], digits_aux["y_fit"]
    )
    before = dict(untrained.module_.named_parameters())
    for name, p in ice.module_.named_parameters():
        assert not torch.allclose(p, before[name]), f"{name} did not change"
    assert ice.score(digits_aux["X_te"], digits_aux["y_te"]) > 0.95
    assert untrained.score(digits_aux["X_te"], digits_aux["y_te"]) < 0.6
    assert _ood_auroc(ice, digits_aux) > 0.85
    assert _ood_auroc(ice, digits_aux) > _ood_auroc(untrained, digits_aux) + 0.1
    assert ice.n_outlier_exposure_ == int((digits_aux["y_fit"] == -1).sum())
    logdet = ice.history_[:, "log_det_cov"]
    assert len(logdet) == 30 and np.all(np.isfinite(logdet))


def test_outlier_exposure_pushes_the_auxiliary_classes_out(ice, digits_aux, ice_small):
    """The auxiliary rows end up with lower scores than with the Gaussian head and CE alone."""
    plain = ICEClassifier(**{**ice_small, "ood_weight": 0.0}).fit(
        digits_aux["X_fit"], digits_aux["y_fit"]
    )
    X_aux = digits_aux["X_fit"][digits_aux["y_fit"] == -1]
    rank = [
        auroc(
            np.r_[np.ones(len(digits_aux["X_te"])), -np.ones(len(X_aux))],
            np.r_[est.score_samples(digits_aux["X_te"]), est.score_samples(X_aux)],
        )
        for est in (plain, ice)
    ]
    assert rank[1] > rank[0] + 0.05 and rank[1] > 0.95


def test_open_set_predictions_and_offset(ice, digits_aux):
    X = np.vstack([digits_aux["X_te"], digits_aux["X_ood"]])
    scores = ice.score_samples(X)
    open_set = ice.predict_open_set(X)
    rejected = scores < ice.offset_
    assert (open_set[rejected] == -1).all()
    np.testing.assert_array_equal(open_set[~rejected], ice.predict(X)[~rejected])
    np.testing.assert_array_equal(ice.predict_outlier(X), np.where(rejected, -1, 1))
    np.testing.assert_allclose(ice.outlier_decision_function(X), scores - ice.offset_)
    # offset_ is the 5 % quantile of the training inliers' scores (validation_fraction=0).
    X_train = digits_aux["X_fit"][digits_aux["y_fit"] != -1]
    assert (ice.predict_outlier(X_train) == 1).mean() == pytest.approx(0.95, abs=0.01)
    assert (
        rejected[len(digits_aux["X_te"]) :].mean()
        > rejected[: len(digits_aux["X_te"])].mean() + 0.3
    )


def test_a_changed_ood_score_refuses_the_threshold_set_for_the_old_one(ice, digits_aux):
    X_te = digits_aux["X_te"][:20]
    other = copy.deepcopy(ice).set_params(ood_score="energy")
    other.score_samples(X_te)
    for method in (other.predict_open_set, other.predict_outlier, other.outlier_decision_function):
        with pytest.raises(ValueError, match=r"ood_score='auto'.*ood_score='energy'"):
            method(X_te)
    # predict never rejects, so it needs no threshold
    np.testing.assert_array_equal(other.predict(X_te), ice.predict(X_te))


def test_held_out_calibration(digits_aux, ice_small):
    est = ICEClassifier(
        **{**ice_small, "max_epochs": 10, "validation_fraction": 0.3, "contamination": 0.1}
    )
    est.fit(digits_aux["X_fit"], digits_aux["y_fit"])
    accepted = (est.predict_outlier(digits_aux["X_te"]) == 1).mean()
    assert 0.75 < accepted < 0.99


def test_score_ignores_outlier_rows(ice, digits_aux):
    X = np.vstack([digits_aux["X_te"], digits_aux["X_ood"]])
    y = np.r_[digits_aux["y_te"], -np.ones(len(digits_aux["X_ood"]), dtype=int)]
    assert ice.score(X, y) == pytest.approx(ice.score(digits_aux["X_te"], digits_aux["y_te"]))
    with pytest.raises(ValueError, match="every row of y is -1"):
        ice.score(digits_aux["X_ood"], -np.ones(len(digits_aux["X_ood"])))


@pytest.mark.parametrize(
    "head, loss, kind",
    [("linear", "ce", "msp"), ("linear", "oe", "msp"), ("linear", "energy", "energy")],
)
def test_baselines_train_and_score_with_their_own_score(digits_aux, head, loss, kind, ice_small):
    # Energy OE's inlier hinge (LSE >= 25) dominates early training from scratch (Liu et al.
    # fine-tune with it): on digits 15 epochs leave 0.38 accuracy, 60 epochs 0.93.
    epochs, weight = (60, 0.1) if loss == "energy" else (15, 0.5)
    est = ICEClassifier(head, loss, ood_weight=weight, **{**ice_small, "max_epochs": epochs})
    est.fit(digits_aux["X_fit"], digits_aux["y_fit"])
    assert isinstance(est.module_.head, torch.nn.Linear) and not hasattr(est, "means_")
    f = est.decision_function(digits_aux["X_te"])
    expected = f.max(1) - logsumexp(f, axis=1) if kind == "msp" else logsumexp(f, axis=1)
    np.testing.assert_allclose(est.score_samples(digits_aux["X_te"]), expected, rtol=1e-12)
    assert est.score(digits_aux["X_te"], digits_aux["y_te"]) > 0.9
    if loss == "ce":
        assert est.n_outlier_exposure_ == 0  # plain cross-entropy never draws the -1 rows
    if kind == "energy":
        with pytest.raises(ValueError, match="log-probability"):
            est.in_distribution_proba(digits_aux["X_te"])


def test_no_outlier_rows_warns_and_trains_a_gaussian_head_classifier(digits_aux, ice_small):
    inl = digits_aux["y_fit"] != -1
    with pytest.warns(UserWarning, match="no auxiliary-outlier rows"):
        est = ICEClassifier(**ice_small).fit(digits_aux["X_fit"][inl], digits_aux["y_fit"][inl])
    assert est.n_outlier_exposure_ == 0
    assert isinstance(est.module_.head, GaussianHead)
    assert est.score(digits_aux["X_te"], digits_aux["y_te"]) > 0.95
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain CE needs no outliers: no warning
        ICEClassifier("linear", "ce", **{**ice_small, "max_epochs": 2}).fit(
            digits_aux["X_fit"][inl], digits_aux["y_fit"][inl]
        )


def test_determinism_and_pickling(ice, digits_aux, tmp_path, ice_small):
    X = digits_aux["X_te"]
    again = ICEClassifier(**ice_small).fit(digits_aux["X_fit"], digits_aux["y_fit"])
    np.testing.assert_array_equal(again.score_samples(X), ice.score_samples(X))
    other = ICEClassifier(**{**ice_small, "random_state": 1}).fit(
        digits_aux["X_fit"], digits_aux["y_fit"]
    )
    assert not np.allclose(other.score_samples(X), ice.score_samples(X))
    restored = pickle.loads(pickle.dumps(ice))
    np.testing.assert_array_equal(restored.score_samples(X), ice.score_samples(X))
    np.testing.assert_array_equal(restored.predict_open_set(X), ice.predict_open_set(X))
    joblib.dump(ice, tmp_path / "ice.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "ice.joblib").predict_proba(X), ice.predict_proba(X)
    )


@pytest.mark.numerics
def test_batched_scoring_equals_one_batch(ice, digits_aux):
    X = np.vstack([digits_aux["X_te"], digits_aux["X_ood"]])
    small = pickle.loads(pickle.dumps(ice)).set_params(inference_batch_size=7)
    assert_float32_close(small.score_samples(X), ice.score_samples(X))


def test_string_classes_and_open_set_labels(digits_aux, ice_small):
    names = np.array(["zero", "one", "two", "three", "four"])
    y = np.where(digits_aux["y_fit"] == -1, "-1", names[np.maximum(digits_aux["y_fit"], 0)])
    est = ICEClassifier(**{**ice_small, "max_epochs": 10}).fit(digits_aux["X_fit"], y)
    assert set(est.classes_) == set(names)
    labels = est.predict_open_set(np.vstack([digits_aux["X_te"], digits_aux["X_ood"]]))
    assert set(labels) <= set(names) | {"-1"} and "-1" in set(labels)


def test_cnn_backbone_and_user_modules(digits_aux, ice_small):
    cnn = ICEClassifier(image_shape=(1, 8, 8), **{**ice_small, "max_epochs": 8})
    cnn.fit(digits_aux["X_fit"], digits_aux["y_fit"])
    assert cnn.score(digits_aux["X_te"], digits_aux["y_te"]) > 0.9
    assert any(isinstance(m, torch.nn.Conv2d) for m in cnn.module_.modules())
    module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    user = ICEClassifier(module=module, **{**ice_small, "max_epochs": 10})
    user.fit(digits_aux["X_fit"], digits_aux["y_fit"])
    assert user.means_.shape == (5, 8)
    assert torch.equal(module[0].weight, torch.nn.Sequential(*module)[0].weight)  # not mutated
    factory = ICEClassifier(
        module=lambda n: torch.nn.Linear(n, 6), **{**ice_small, "max_epochs": 2}
    )
    assert factory.fit(digits_aux["X_fit"], digits_aux["y_fit"]).means_.shape == (5, 6)


def test_fine_tune_starts_from_the_pretrained_classifier(digits_aux):
    inl = digits_aux["y_fit"] != -1
    X_in, y_in = digits_aux["X_fit"][inl], digits_aux["y_fit"][inl]
    # ICE's backbone reads the network's post-ReLU features(), so compare with those
    stage1 = ClassifierFeatures(
        hidden_sizes=(32,), max_epochs=20, pre_activation=False, random_state=0
    ).fit(X_in, y_in)
    head_before = stage1.module_.head.weight.detach().clone()
    frozen = dict(hidden_sizes=(8,), max_epochs=1, lr=1e-12, random_state=0)  # no real update
    gauss = ICEClassifier(fine_tune=stage1, **frozen).fit(digits_aux["X_fit"], digits_aux["y_fit"])
    Z = stage1.transform(X_in)
    with torch.no_grad():
        z_ice = gauss.module_.eval().features(torch.from_numpy(X_in)).numpy()
    np.testing.assert_allclose(z_ice, Z, rtol=1e-5, atol=1e-5)
    # center_init="auto" is "data" when fine-tuning: the centres are the class means.
    means = np.stack([Z[y_in == c].mean(0) for c in range(5)])
    np.testing.assert_allclose(gauss.means_, means, rtol=1e-4, atol=1e-4)
    assert gauss.score(digits_aux["X_te"], digits_aux["y_te"]) > 0.9  # accurate before any training
    linear = ICEClassifier("linear", "oe", fine_tune=stage1, **frozen)
    linear.fit(digits_aux["X_fit"], digits_aux["y_fit"])
    _, logits = stage1.transform_with_logits(digits_aux["X_te"])
    np.testing.assert_allclose(linear.decision_function(digits_aux["X_te"]), logits, atol=1e-4)
    # A fitted ICEClassifier's own network fine-tunes too (the paper's pretrain -> OE protocol).
    ft = ICEClassifier(fine_tune=linear.module_, **{**frozen, "max_epochs": 3, "lr": 1e-3})
    assert (
        ft.fit(digits_aux["X_fit"], digits_aux["y_fit"]).score(
            digits_aux["X_te"], digits_aux["y_te"]
        )
        > 0.9
    )
    # The source network was copied, not trained further.
    assert torch.equal(stage1.module_.head.weight, head_before)


def test_grid_search_over_ood_weight_in_a_pipeline(digits_aux, ice_small):
    pipe = make_pipeline(StandardScaler(), ICEClassifier(**{**ice_small, "max_epochs": 3}))
    search = GridSearchCV(
        pipe, {"iceclassifier__ood_weight": [0.1, 1.0]}, scoring=SCORERS["auroc"], cv=2
    )
    search.fit(digits_aux["X_fit"], digits_aux["y_fit"])
    assert search.best_params_["iceclassifier__ood_weight"] in (0.1, 1.0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# -- bad input ------------------------------------------------------------------------------------


def test_bad_labels_give_clear_errors(digits_aux, ice_small):
    X = digits_aux["X_fit"][:200]
    est = ICEClassifier(**{**ice_small, "max_epochs": 1})
    with pytest.raises(ValueError, match="-1 is one of your classes, relabel it"):
        est.fit(X, np.where(np.arange(200) % 2 == 0, 1, -1))  # {-1, +1} binary labels
    with pytest.raises(ValueError, match="every row as an outlier"):
        est.fit(X, -np.ones(200))
    with pytest.raises(ValueError, match="at least 2 inlier classes"):
        est.fit(X, np.ones(200))
    with pytest.raises(ValueError, match="requires y"):
        est.fit(X, None)
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(X, np.linspace(0, 1, 200))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, np.arange(199) % 2)


def test_bad_inputs_and_parameters_give_clear_errors(ice, digits_aux, ice_small):
    X, y = digits_aux["X_fit"][:200], digits_aux["y_fit"][:200]
    with pytest.raises(ValueError, match="NaN"):
        ICEClassifier(**ice_small).fit(np.where(np.eye(200, 64) > 0, np.nan, X), y)
    with pytest.raises(ValueError, match="features"):
        ice.score_samples(digits_aux["X_te"][:, :10])
    with pytest.raises(ValueError, match=r"could not convert|dtype"):
        ICEClassifier(**ice_small).fit(np.full((200, 64), "a"), y)
    with pytest.raises(TypeError, match=r"[Ss]parse"):
        ICEClassifier(**ice_small).fit(sp.csr_matrix(X), y)
    with pytest.raises(ValueError, match="needs head='gaussian'"):
        ICEClassifier("linear", "ice").fit(X, y)
    with pytest.raises(ValueError, match="image_shape"):
        ICEClassifier(image_shape=(1, 7, 7)).fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        ICEClassifier(loss="kl").fit(X, y)
    with pytest.raises(RuntimeError, match="diverged"):
        ICEClassifier(optimizer="sgd", lr=1.0, max_epochs=3, random_state=0).fit(X, y)
    stage1 = ClassifierFeatures(hidden_sizes=(8,), max_epochs=1, random_state=0)
    stage1.fit(X[y < 3], y[y < 3])
    with pytest.raises(ValueError, match="fine_tune was trained on classes"):
        ICEClassifier(fine_tune=stage1).fit(X, y)
    linear = ICEClassifier("linear", "ce", ood_score="max_logit", max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="log-probability"):
        linear.in_distribution_proba(X)
