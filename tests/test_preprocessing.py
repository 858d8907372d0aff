"""skood.preprocessing: tables with numeric, boolean and categorical columns before a detector."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import skood
from skood import EnsembleDetector, GaussianMahalanobis, KNNDetector
from skood.preprocessing import KnownCategories, make_table_pipeline, unseen_categories

DEFAULT_DETECTORS = [
    pytest.param(lambda: EnsembleDetector(random_state=0), id="ensemble"),
    pytest.param(lambda: KNNDetector(random_state=0), id="knn"),
    pytest.param(lambda: GaussianMahalanobis(random_state=0), id="gaussian"),
]


# The ColumnTransformer keeps its column selectors, which skood.io does not rebuild unasked.
def mixed_frame(n=300, seed=0):
    """Numeric, bool, str, pandas category: 'amount' depends on 'colour' (red ~ 0, blue ~ 5)."""
    rng = np.random.RandomState(seed)
    colour = rng.choice(["red", "blue"], n)
    return pd.DataFrame(
        {
            "amount": np.where(colour == "red", 0.0, 5.0) + rng.normal(size=n),
            "noise": rng.normal(size=n),
            "online": rng.rand(n) < 0.3,
            "colour": pd.Series(colour, dtype="str"),
            "size": pd.Categorical(rng.choice(["S", "M", "L"], n)),
        }
    )


def rows(**columns):
    """Test rows with the mixed frame's columns and dtypes."""
    n = len(next(iter(columns.values())))
    base = {"amount": [0.0] * n, "noise": [0.0] * n, "online": [False] * n, "colour": ["red"] * n}
    frame = pd.DataFrame({**base, "size": ["M"] * n, **columns})
    frame["size"] = pd.Categorical(frame["size"], categories=["L", "M", "S"])
    return frame


@pytest.mark.parametrize("make_detector", DEFAULT_DETECTORS)
@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_mixed_frame_fits_and_the_categories_count(make_detector, encoding):
    X = mixed_frame()
    pipe = make_table_pipeline(make_detector(), encoding=encoding).fit(X)
    # numeric 2; bool: one 0/1 column; colour 2 + size 3 one-hot columns, or 1 + 1 codes
    assert pipe[:-1].transform(X).shape[1] == (2 + 1 + 5 if encoding == "onehot" else 2 + 1 + 2)
    scores = pipe.score_samples(X)
    assert scores.dtype == np.float64 and scores.shape == (len(X),)
    assert np.isfinite(scores).all()
    # an amount of 5 is normal for a blue row and far off for a red one: the detector must
    # read the colour column to tell them apart
    test = rows(amount=[5.0, 5.0], colour=["blue", "red"])
    blue, red = pipe.score_samples(test)
    assert blue > red


def test_boolean_columns_are_one_0_1_column_and_numeric_ones_are_standardised():
    X = mixed_frame()
    pipe = make_table_pipeline(KNNDetector()).fit(X)
    Z = pipe[:-1].transform(X)
    names = list(pipe[:-1].get_feature_names_out())
    assert names[:3] == ["numeric__amount", "numeric__noise", "boolean__online_True"]
    np.testing.assert_array_equal(Z[:, 2], X["online"].to_numpy(dtype=float))
    np.testing.assert_allclose(Z[:, :2].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].std(axis=0), 1)
    assert set(np.unique(Z[:, 3:])) == {0.0, 1.0}  # one-hot columns are not rescaled


def test_columns_are_selected_by_name():
    X = mixed_frame()
    pipe = make_table_pipeline(KNNDetector()).fit(X)
    assert list(pipe.feature_names_in_) == list(X.columns)
    test = mixed_frame(20, seed=1)
    expected = pipe.score_samples(test)
    shuffled = test[["size", "online", "noise", "colour", "amount"]].assign(extra=1.0)
    np.testing.assert_array_equal(pipe.score_samples(shuffled), expected)
    with pytest.raises(ValueError, match=r"missing.*'noise'"):
        pipe.score_samples(test.drop(columns="noise"))


def test_unseen_category_is_scored_and_flagged_by_default():
    X = mixed_frame()
    pipe = make_table_pipeline(GaussianMahalanobis(random_state=0)).fit(X)
    test = rows(colour=["red", "green"], size=["M", "M"])
    scores = pipe.score_samples(test)
    assert np.isfinite(scores).all()
    assert scores[1] < scores[0]  # a category never seen is less normal than a common one
    flags = unseen_categories(pipe, test)
    assert list(flags.columns) == ["online", "colour", "size"]  # the training table's order
    assert flags.to_numpy().tolist() == [[False, False, False], [False, True, False]]


def test_unseen_category_error_names_the_column_and_the_value():
    X = mixed_frame()
    pipe = make_table_pipeline(KNNDetector(), unknown="error").fit(X)
    pipe.score_samples(rows(colour=["blue"]))  # seen categories score
    with pytest.raises(ValueError, match=r"Column 'colour' holds 'green'.*unknown='flag'"):
        pipe.score_samples(rows(colour=["red", "green"]))
    with pytest.raises(ValueError, match=r"Column 'online' holds nan"):
        pipe.score_samples(rows(online=pd.array([True, None], dtype="boolean")))


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_missing_values_are_a_category_of_their_own(encoding):
    """None, NaN and pandas' pd.NA are one category, seen in fit like any other."""
    X = mixed_frame()
    X["colour"] = X["colour"].astype(object)
    X.loc[:29, "colour"] = None  # 30 rows: frequent enough for a column of its own
    X["grade"] = pd.array(np.where(np.arange(len(X)) % 10 == 0, None, "a"), dtype="string")
    pipe = make_table_pipeline(KNNDetector(), encoding=encoding, unknown="error").fit(X)
    test = rows(colour=[None, np.nan, "red"]).assign(grade=pd.array([pd.NA] * 3, "string"))
    scores = pipe.score_samples(test)  # no unseen category: unknown="error" does not raise
    assert np.isfinite(scores).all()
    assert not unseen_categories(pipe, test).to_numpy().any()
    Z = pipe[:-1].transform(test)
    assert not np.array_equal(Z[0], Z[2])  # missing is not encoded as "red"
    np.testing.assert_array_equal(Z[0], Z[1])  # None and NaN are the same category


def test_a_missing_value_unseen_in_fit_is_flagged():
    pipe = make_table_pipeline(KNNDetector()).fit(mixed_frame())
    test = rows(colour=["red", None])
    assert np.isfinite(pipe.score_samples(test)).all()
    assert unseen_categories(pipe, test)["colour"].tolist() == [False, True]


def test_ordinal_encoding_gives_unseen_and_missing_their_own_codes():
    X = mixed_frame()
    X["colour"] = X["colour"].astype(object)
    X.loc[:9, "colour"] = None
    pipe = make_table_pipeline(KNNDetector(), encoding="ordinal").fit(X)
    encoder = pipe.named_steps["columns"].named_transformers_["categorical"][0].encoder_
    codes = encoder.transform(rows(colour=["blue", "red", None, "green"])[["colour", "size"]])
    assert codes[:, 0].tolist() == [0, 1, -2, -1]  # sorted categories; missing -2, unseen -1
    assert np.isfinite(pipe.score_samples(rows(colour=["green"]))).all()


def test_rare_categories_share_one_column():
    X = mixed_frame()
    X["shop"] = np.array([f"s{i % 40}" for i in range(len(X))], dtype=object)  # 40 x ~7 rows
    X.loc[:2, "shop"] = ["r1", "r2", "r3"]  # 1 row each: below min_frequency=5
    pipe = make_table_pipeline(KNNDetector(), max_categories=10).fit(X)
    names = [n for n in pipe[:-1].get_feature_names_out() if n.startswith("categorical__shop")]
    assert len(names) == 10 and names[-1] == "categorical__shop_infrequent_sklearn"
    unbounded = make_table_pipeline(KNNDetector(), max_categories=None, min_frequency=None)
    names = unbounded.fit(X)[:-1].get_feature_names_out()
    assert sum(n.startswith("categorical__shop") for n in names) == 43


@pytest.mark.parametrize("make_detector", DEFAULT_DETECTORS)
def test_all_categorical_table(make_detector):
    rng = np.random.RandomState(0)
    colour = rng.choice(["red", "blue"], 300)
    size = np.where(colour == "red", "S", "L")  # red rows are small, blue ones large
    size[:10] = "M"
    X = pd.DataFrame(
        {"online": rng.rand(300) < 0.3, "colour": colour, "size": pd.Categorical(size)}
    )
    pipe = make_table_pipeline(make_detector()).fit(X)
    assert pipe[:-1].transform(X).shape[1] == 1 + 2 + 3
    test = X.iloc[:2].assign(online=False, colour="red", size=pd.Categorical(["S", "L"]))
    usual, unusual = pipe.score_samples(test)
    assert np.isfinite([usual, unusual]).all() and usual > unusual


def test_listed_categorical_columns_may_be_numeric_codes():
    X = mixed_frame()
    X["postcode"] = np.random.RandomState(1).choice([75001, 75002, 69001], len(X))
    pipe = make_table_pipeline(KNNDetector(), categorical=["colour", "postcode"])
    names = list(pipe.fit(X.drop(columns="size"))[:-1].get_feature_names_out())
    assert [n for n in names if n.startswith("numeric__")] == ["numeric__amount", "numeric__noise"]
    assert "categorical__postcode_75001" in names
    # a category column left off the list is neither numeric, boolean nor listed
    with pytest.raises(ValueError, match=r"'size' \(category\).*categorical=\[\.\.\.\]"):
        make_table_pipeline(KNNDetector(), categorical=["colour"]).fit(X)


def test_columns_of_other_kinds_are_an_error_that_names_them():
    X = mixed_frame().assign(when=pd.Timestamp("2024-01-01"))
    with pytest.raises(ValueError, match=r"'when' \(datetime64.*Convert them"):
        make_table_pipeline(KNNDetector()).fit(X)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="encoding must be one of"):
        make_table_pipeline(KNNDetector(), encoding="hash")
    with pytest.raises(ValueError, match="unknown must be one of"):
        make_table_pipeline(KNNDetector(), unknown="ignore")
    with pytest.raises(ValueError, match=r"categorical=\['colour'\]"):
        make_table_pipeline(KNNDetector(), categorical="colour")
    with pytest.raises(TypeError, match="pipeline built by make_table_pipeline"):
        unseen_categories(KNNDetector(), mixed_frame())
    with pytest.raises(TypeError, match="pandas DataFrame"):
        KnownCategories().fit(np.array([["a"], ["b"]], dtype=object))
    # the boolean column (2) is encoded first; sklearn itself refuses a mix of str and int names
    with pytest.raises(ValueError, match=r"must be strings.*got \[2\].*astype\(str\)"):
        make_table_pipeline(KNNDetector()).fit(mixed_frame().set_axis(range(5), axis=1))


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_saves_and_loads_with_skood_io(tmp_path, encoding):
    X = mixed_frame()
    pipe = make_table_pipeline(EnsembleDetector(random_state=0), encoding=encoding).fit(X)
    test = pd.concat([mixed_frame(20, seed=1), rows(colour=["green"])], ignore_index=True)
    path = tmp_path / "table.skood"
    skood.save(pipe, path)
    # nothing to trust: the column selectors are skood's (sklearn's make_column_selector, which
    # skood.load rebuilds only when trusted, was: the docs and the CLI had to pass trusted=)
    assert skood.io.get_untrusted_types(path) == []
    loaded = skood.load(path)
    np.testing.assert_array_equal(loaded.score_samples(test), pipe.score_samples(test))
    assert unseen_categories(loaded, test).equals(unseen_categories(pipe, test))


def test_clone_refits_to_the_same_scores():
    X = mixed_frame()
    pipe = make_table_pipeline(EnsembleDetector(random_state=0), categorical=["colour", "size"])
    fitted = pipe.fit(X)
    copy = clone(fitted)
    assert not hasattr(copy.named_steps["columns"], "transformers_")  # unfitted
    assert copy.get_params()["columns__categorical__unknown"] == "flag"
    np.testing.assert_array_equal(copy.fit(X).score_samples(X), fitted.score_samples(X))
