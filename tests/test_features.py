"""Feature extractors: hooks and shapes, a trained stage 1, caching, bad input.

Their sklearn estimator checks run with every other estimator's in test_estimator_checks.py.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skood import GaussianMahalanobis
from skood.features import ClassifierFeatures, TorchFeatures
from skood.metrics import SCORERS
from skood.model_selection import OODStratifiedKFold
from tests._helpers import assert_float32_close


def test_torch_features_returns_the_named_layer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    X = np.random.RandomState(0).normal(size=(10, 4))
    hidden = TorchFeatures(net, layer="1").fit_transform(X)
    with torch.no_grad():
        expected = torch.relu(net[0](torch.tensor(X, dtype=torch.float32))).double().numpy()
    np.testing.assert_allclose(hidden, expected, rtol=1e-6)
    assert TorchFeatures(net).fit_transform(X).shape == (10, 2)  # no layer: the output
    assert not any(p.grad is not None for p in net.parameters())


def test_torch_features_reshapes_images_and_flattens_outputs():
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    X = np.random.RandomState(0).rand(5, 64)
    out = TorchFeatures(conv, image_shape=(1, 8, 8)).fit(X)
    assert out.transform(X).shape == (5, 3 * 8 * 8)
    assert out.get_feature_names_out()[0] == "torchfeatures0"


def test_classifier_features_cnn_beats_chance_and_round_trips(digits6_split):
    X_train, y_train, X_test, y_test = digits6_split
    ext = ClassifierFeatures(image_shape=(1, 8, 8), max_epochs=15, random_state=0).fit(
        X_train, y_train
    )
    inl = y_test != -1
    pred = ext.classes_[ext.net_.predict(X_test[inl].astype(np.float32))]
    assert (pred == y_test[inl]).mean() > 0.9  # chance is 1/6
    F = ext.transform(X_test)
    assert F.shape == (len(X_test), 128) and F.dtype == np.float64
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ext)).transform(X_test), F)


def test_classifier_features_ignore_outlier_rows(digits6_split):
    X_train, y_train, X_test, y_test = digits6_split
    X = np.r_[X_train, X_test[y_test == -1][:50]]
    y = np.r_[y_train, -np.ones(50, dtype=int)]
    a = ClassifierFeatures(hidden_sizes=(16,), max_epochs=3, random_state=0).fit(X, y)
    b = ClassifierFeatures(hidden_sizes=(16,), max_epochs=3, random_state=0).fit(X_train, y_train)
    np.testing.assert_allclose(a.transform(X_test), b.transform(X_test), rtol=1e-5)
    np.testing.assert_array_equal(a.classes_, np.arange(6))


def test_user_module_with_feature_layer(digits6_split):
    X_train, y_train, X_test, _ = digits6_split

    def factory(n_features, n_classes):
        return torch.nn.Sequential(
            torch.nn.Linear(n_features, 32), torch.nn.ReLU(), torch.nn.Linear(32, n_classes)
        )

    ext = ClassifierFeatures(module=factory, layer="1", max_epochs=2, random_state=0)
    assert ext.fit(X_train, y_train).transform(X_test).shape == (len(X_test), 32)
    with pytest.raises(ValueError, match="no `features` method"):
        ClassifierFeatures(module=factory, max_epochs=1).fit(X_train, y_train)


_FITS = {"n": 0}


class _CountingFeatures(ClassifierFeatures):
    def fit(self, X, y):
        _FITS["n"] += 1
        return super().fit(X, y)


def test_pipeline_memory_reuses_the_fitted_extractor_in_a_grid_search(digits6_split, tmp_path):
    X_train, y_train, X_test, y_test = digits6_split
    X, y = np.r_[X_train, X_test], np.r_[y_train, y_test]
    grid = {"det__aggregate": ["max", "logsumexp"], "det__covariance": ["empirical", "oas"]}

    def search(memory):
        _FITS["n"] = 0
        pipe = Pipeline(
            [
                ("features", _CountingFeatures(hidden_sizes=(16,), max_epochs=2, random_state=0)),
                ("det", GaussianMahalanobis()),
            ],
            memory=memory,
        )
        cv = OODStratifiedKFold(n_splits=2, random_state=0)
        GridSearchCV(pipe, grid, cv=cv, scoring=SCORERS["auroc"]).fit(X, y)
        return _FITS["n"]

    assert search(None) == 4 * 2 + 1  # every candidate retrains the extractor, plus the refit
    assert search(str(tmp_path)) == 2 + 1  # once per fold, plus the refit


@pytest.mark.parametrize(
    "make, X, y, match",
    [
        (
            lambda: ClassifierFeatures(image_shape=(1, 8, 8)),
            np.ones((4, 63)),
            [0, 1, 0, 1],
            r"image_shape=\(1, 8, 8\) holds 64 values.*63 features",
        ),
        (lambda: ClassifierFeatures(), np.ones((4, 2, 2)), [0, 1, 0, 1], "dim 3"),
        (lambda: ClassifierFeatures(), np.ones((4, 3)), [0, 0, 0, -1], "at least 2 inlier classes"),
        (lambda: ClassifierFeatures(), np.ones((4, 3)), None, "requires y to be passed"),
        (
            lambda: ClassifierFeatures(layer="nope", max_epochs=1),
            np.random.RandomState(0).rand(4, 3),
            [0, 1, 0, 1],
            "layer 'nope' does not exist",
        ),
        (
            lambda: TorchFeatures(torch.nn.Linear(3, 2), layer="missing"),
            np.ones((4, 3)),
            None,
            "layer 'missing' does not exist",
        ),
        (
            lambda: TorchFeatures(torch.nn.Linear(3, 2), image_shape=(1, 2, 2)),
            np.ones((4, 3)),
            None,
            "holds 4 values",
        ),
    ],
)
def test_bad_input_names_the_problem(make, X, y, match):
    with pytest.raises(ValueError, match=match):
        make().fit(X, y)


@pytest.mark.parametrize("image_shape", [None, (1, 8, 8)])
def test_pre_activation_features_are_the_penultimate_linear_output(digits6_split, image_shape):
    X, y = digits6_split[:2]
    kw = dict(image_shape=image_shape, max_epochs=2, random_state=0)
    pre = ClassifierFeatures(**kw).fit(X, y)
    post = ClassifierFeatures(pre_activation=False, **kw).fit(X, y)
    Z_pre, Z_post = pre.transform(X), post.transform(X)
    assert (Z_pre < 0).any() and (Z_post >= 0).all()
    np.testing.assert_allclose(np.maximum(Z_pre, 0), Z_post, rtol=1e-6, atol=1e-6)
    feats, logits = pre.transform_with_logits(X)
    np.testing.assert_array_equal(feats, Z_pre)
    with torch.no_grad():
        expected = pre.module_(torch.tensor(X[:20], dtype=torch.float32)).double().numpy()
    assert_float32_close(logits[:20], expected)


def test_a_pickle_from_before_pre_activation_keeps_its_post_relu_features(digits6_split):
    X, y = digits6_split[:2]
    old = ClassifierFeatures(hidden_sizes=(8,), max_epochs=1, pre_activation=False, random_state=0)
    old.fit(X, y)
    state = old.__getstate__()
    del state["pre_activation"]  # what a fitted model pickled by skood 0.1.0 holds
    restored = ClassifierFeatures.__new__(ClassifierFeatures)
    restored.__setstate__(state)
    np.testing.assert_array_equal(restored.transform(X), old.transform(X))


def test_pandas_output_names_the_features():
    # 8c543f1: fit called the transform that set_output wraps, which needs _n_features_out
    # before fit set it: NotFittedError.
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 4)).astype(np.float32), np.repeat([0, 1, 2], 20)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    plain = TorchFeatures(net, layer="1").fit(X)
    framed = TorchFeatures(net, layer="1").set_output(transform="pandas").fit(X)
    out = framed.transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == [
        f"torchfeatures{i}" for i in range(3)
    ]
    np.testing.assert_array_equal(out.to_numpy(), plain.transform(X))
    stage1 = ClassifierFeatures(hidden_sizes=(8,), max_epochs=2, random_state=0)
    features = stage1.set_output(transform="pandas").fit(X, y).transform(X)
    assert isinstance(features, pd.DataFrame) and features.shape == (60, stage1._n_features_out)
