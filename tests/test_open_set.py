"""OpenSetClassifier: the gates against closed forms, the TPR-95 threshold, accuracy kept, bad input.

Its sklearn estimator checks run with every other estimator's in test_estimator_checks.py.
"""

import copy
import pickle

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skood import ClassifierFeatures, GaussianMahalanobis, OpenSetClassifier
from skood.metrics import auroc


def _cnn(**kw):
    return ClassifierFeatures(
        **{"image_shape": (1, 8, 8), "max_epochs": 30, "random_state": 0, **kw}
    )


@pytest.fixture(scope="module")
def fitted(digits6_split):
    X_train, y_train, _, _ = digits6_split
    return {
        gate: OpenSetClassifier(_cnn(), detector=det, random_state=0).fit(X_train, y_train)
        for gate, det in [
            ("msp", "msp"),
            ("energy", "energy"),
            ("mahalanobis", GaussianMahalanobis(class_conditional=True, offset_cv=None)),
        ]
    }


def test_logit_gates_match_their_closed_forms(fitted, digits6_split):
    X_test = digits6_split[2][:50]
    for gate, reference in [
        ("msp", lambda z: softmax(z, axis=1).max(axis=1)),
        ("energy", lambda z: logsumexp(z, axis=1)),
    ]:
        clf = fitted[gate]
        logits = clf.decision_function(X_test)
        np.testing.assert_allclose(clf.score_samples(X_test), reference(logits), rtol=1e-12)
        np.testing.assert_allclose(clf.predict_proba(X_test), softmax(logits, axis=1), rtol=1e-12)
        np.testing.assert_allclose(
            clf.predict_log_proba(X_test), np.log(clf.predict_proba(X_test)), atol=1e-10
        )


def test_temperature_scales_energy(digits6_split):
    X_train, y_train, X_test, _ = digits6_split
    clf = OpenSetClassifier(_cnn(max_epochs=1), detector="energy", temperature=2.0).fit(
        X_train, y_train
    )
    logits = clf.decision_function(X_test[:20])
    np.testing.assert_allclose(
        clf.score_samples(X_test[:20]), 2.0 * logsumexp(logits / 2.0, axis=1), rtol=1e-12
    )


def test_a_changed_temperature_refuses_the_threshold_set_at_the_old_one(fitted, digits6_split):
    X_test = digits6_split[2][:20]
    clf = copy.deepcopy(fitted["energy"]).set_params(temperature=3.0)
    clf.score_samples(X_test)  # the score follows the new temperature
    for method in (clf.predict, clf.predict_open_set, clf.predict_outlier):
        with pytest.raises(ValueError, match=r"temperature=1.0.*temperature=3.0"):
            method(X_test)
    clf.fit(*digits6_split[:2])
    assert clf.predict(X_test).shape == (20,)
    # a fitted detector's gate does not read the temperature: nothing to refuse
    gauss = copy.deepcopy(fitted["mahalanobis"])
    expected = gauss.predict(X_test)
    np.testing.assert_array_equal(gauss.set_params(temperature=3.0).predict(X_test), expected)


def test_logits_are_the_trained_networks(fitted, digits6_split):
    X_test = digits6_split[2][:30]
    clf = fitted["msp"]
    net = clf.features_.module_.eval()
    with torch.no_grad():
        expected = net(torch.tensor(X_test, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(clf.decision_function(X_test), expected, rtol=1e-5, atol=1e-6)
    features, logits = clf.features_.transform_with_logits(X_test)
    np.testing.assert_array_equal(features, clf.features_.transform(X_test))
    np.testing.assert_array_equal(logits, clf.decision_function(X_test))


def test_density_gate_scores_the_features(fitted, digits6_split):
    X_test = digits6_split[2][:30]
    clf = fitted["mahalanobis"]
    Z = clf.features_.transform(X_test)
    np.testing.assert_array_equal(clf.score_samples(X_test), clf.detector_.score_samples(Z))
    assert clf.detector_.classes_.tolist() == [0, 1, 2, 3, 4, 5]


def test_threshold_passes_tpr_of_new_inliers_and_keeps_accuracy(fitted, digits6_split):
    _, _, X_test, y_test = digits6_split
    inl = y_test != -1
    for gate, clf in fitted.items():
        accepted = clf.predict_outlier(X_test[inl]) == 1
        # tau is the 5% quantile of ~180 held-out inliers: the test inliers pass at about 95%.
        assert 0.88 <= accepted.mean() <= 0.995, gate
        closed = clf.predict_closed_set(X_test[inl])
        plain_accuracy = (closed == y_test[inl]).mean()
        accepted_accuracy = (closed[accepted] == y_test[inl][accepted]).mean()
        assert plain_accuracy > 0.9, gate
        assert accepted_accuracy >= plain_accuracy - 0.01, gate
        assert auroc(inl, clf.score_samples(X_test)) > 0.8, gate


def test_predict_is_the_class_or_minus_one(fitted, digits6_split):
    _, _, X_test, y_test = digits6_split
    clf = fitted["energy"]
    labels = clf.predict(X_test)
    rejected = clf.outlier_decision_function(X_test) < 0
    np.testing.assert_array_equal(labels[rejected], -1)
    np.testing.assert_array_equal(labels[~rejected], clf.predict_closed_set(X_test)[~rejected])
    np.testing.assert_array_equal(clf.predict_open_set(X_test), labels)
    np.testing.assert_array_equal(clf.predict_outlier(X_test), np.where(rejected, -1, 1))
    assert set(np.unique(labels)) <= {-1, 0, 1, 2, 3, 4, 5}
    # score is the open-set accuracy: rejected digits 6-9 count as correct.
    assert clf.score(X_test, y_test) == pytest.approx((labels == y_test).mean())
    assert (labels[y_test == -1] == -1).mean() > 0.3


def test_outlier_rows_do_not_train_the_classifier(digits6):
    X, y = digits6
    clf = OpenSetClassifier(_cnn(max_epochs=1), random_state=0).fit(X, y)
    assert clf.classes_.tolist() == [0, 1, 2, 3, 4, 5]


def test_string_classes_reject_as_the_string_minus_one(digits6_split):
    X_train, y_train, X_test, _ = digits6_split
    names = np.array(["zero", "one", "two", "three", "four", "five"])
    clf = OpenSetClassifier(_cnn(max_epochs=2), random_state=0).fit(X_train, names[y_train])
    labels = clf.predict(X_test)
    assert labels.dtype.kind == "U"
    assert set(np.unique(labels)) <= {*names, "-1"} and "-1" in labels


def test_determinism_and_pickle(fitted, digits6_split):
    X_train, y_train, X_test, _ = digits6_split
    clf = fitted["msp"]
    again = OpenSetClassifier(_cnn(), random_state=0).fit(X_train, y_train)
    np.testing.assert_array_equal(again.score_samples(X_test), clf.score_samples(X_test))
    assert again.offset_ == clf.offset_
    for model in fitted.values():
        restored = pickle.loads(pickle.dumps(model))
        np.testing.assert_array_equal(restored.predict(X_test), model.predict(X_test))
        np.testing.assert_array_equal(restored.score_samples(X_test), model.score_samples(X_test))


def test_validation_fraction_zero_calibrates_on_training_rows(digits6_split):
    X_train, y_train, _, _ = digits6_split
    clf = OpenSetClassifier(_cnn(max_epochs=1), validation_fraction=0.0, contamination=0.1).fit(
        X_train, y_train
    )
    assert np.mean(clf.score_samples(X_train) >= clf.offset_) == pytest.approx(0.9, abs=0.01)
    # contamination=0 (the old tpr=1): every calibration inlier passes the gate
    clf.set_params(contamination=0.0).fit(X_train, y_train)
    assert clf.offset_ == clf.calibration_scores_[0]
    assert np.all(clf.score_samples(X_train) >= clf.offset_)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"features": StandardScaler()}, InvalidParameterError, "transform_with_logits"),
        ({"detector": "maxlogit"}, InvalidParameterError, "detector"),
        ({"detector": StandardScaler()}, InvalidParameterError, "score_samples"),
        ({"contamination": 1.0}, InvalidParameterError, "contamination"),
        ({"validation_fraction": 1.0}, InvalidParameterError, "validation_fraction"),
    ],
)
def test_bad_parameters(params, error, match):
    X, y = np.random.RandomState(0).rand(20, 4), np.repeat([0, 1], 10)
    with pytest.raises(error, match=match):
        OpenSetClassifier(**params).fit(X, y)


def test_bad_input_is_named():
    rng = np.random.RandomState(0)
    X, y = rng.rand(20, 4), np.repeat([0, 1], 10)
    small = ClassifierFeatures(hidden_sizes=(4,), max_epochs=1, random_state=0)
    with pytest.raises(ValueError, match="requires y"):
        OpenSetClassifier(small).fit(X, None)
    with pytest.raises(ValueError, match="every row as an outlier"):
        OpenSetClassifier(small).fit(X, -np.ones(20))
    with pytest.raises(ValueError, match="Unknown label type"):
        OpenSetClassifier(small).fit(X, rng.rand(20))
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        OpenSetClassifier(small).fit(X_nan, y)
    clf = OpenSetClassifier(small).fit(X, y)
    with pytest.raises(ValueError, match="4 features"):
        clf.predict(rng.rand(3, 5))
    with pytest.raises(ValueError, match="single row"):
        OpenSetClassifier(small).fit(X[:2], [0, 1])
