"""Tables with numeric, boolean and categorical columns in front of any detector.

:func:`make_table_pipeline` builds an sklearn :class:`~sklearn.pipeline.Pipeline`: a
:class:`~sklearn.compose.ColumnTransformer` that selects a DataFrame's columns by name and kind,
then the detector. Numeric columns get the preprocessing ``skood score`` gives them
(:func:`skood.registry.make_pipeline_for`: nearly constant columns dropped, then standardised);
boolean and categorical columns are encoded by sklearn's :class:`~sklearn.preprocessing.OneHotEncoder`
(the default) or :class:`~sklearn.preprocessing.OrdinalEncoder`, behind :class:`KnownCategories`,
which keeps track of the categories seen in ``fit`` (:func:`unseen_categories`).

The default encoding was chosen by measurement (:doc:`/user_guide/tables`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from skood.registry import InformativeColumns

__all__ = [
    "ColumnsOfKind",
    "KnownCategories",
    "RefuseColumns",
    "fitted_encoders",
    "make_table_pipeline",
    "unseen_categories",
]

#: The dtypes ``categorical="auto"`` encodes as categories: strings (pandas' ``str`` / ``string``
#: and Python objects) and pandas' ``category``.
CATEGORICAL_DTYPES = ("object", "string", "category")
#: Booleans, NumPy's and pandas' nullable ``boolean``.
BOOLEAN_DTYPES = ("bool",)
ENCODINGS = ("onehot", "ordinal")
UNKNOWN = ("flag", "error")
# Ordinal codes of what has no code of its own: a category unseen in fit, and (OrdinalEncoder's
# default would be NaN, which no detector scores) a missing value.
_ORDINAL_UNKNOWN, _ORDINAL_MISSING = -1, -2


def _categories_frame(X):
    """``X`` as a DataFrame of Python objects, every missing cell (None, NaN, pd.NA) as NaN.

    sklearn's encoders take None and NaN as one missing category but refuse pandas' ``pd.NA``
    (the missing value of the nullable ``string`` / ``boolean`` / ``Int64`` dtypes): "Encoders
    require their input argument must be uniformly strings or numbers".
    """
    import pandas as pd

    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"KnownCategories takes a pandas DataFrame (columns are encoded by name), not "
            f"{type(X).__name__}; make_table_pipeline's ColumnTransformer passes one."
        )
    frame = X.astype(object)
    return frame.where(frame.notna(), np.nan)


class KnownCategories(TransformerMixin, BaseEstimator):
    """An sklearn encoder of categorical columns that knows which categories it saw in ``fit``.

    ``fit`` fits a clone of ``encoder`` on the columns (a missing value, None, NaN or ``pd.NA``,
    is one more category, as sklearn's encoders take it); ``transform`` encodes with it. What it
    adds to the encoder: :meth:`unseen` says which cells hold a category the fit never saw, and
    with ``unknown="error"`` ``transform`` refuses them with the column's name and the value
    (sklearn's own error names the column's position within the encoder only).

    Parameters
    ----------
    encoder : OneHotEncoder or OrdinalEncoder, default=None
        Unfitted; it must have ``categories_`` once fitted. None:
        ``OneHotEncoder(sparse_output=False, handle_unknown="ignore")``. With ``unknown="flag"``
        it must encode unseen categories itself (``handle_unknown="ignore"``,
        ``"infrequent_if_exist"`` or ``"use_encoded_value"``).
    unknown : {"flag", "error"}, default="flag"
        ``"flag"``: unseen categories are encoded as ``encoder`` does (and :meth:`unseen` shows
        them); ``"error"``: ``transform`` raises a ValueError naming the column and the value.

    Attributes
    ----------
    encoder_ : OneHotEncoder or OrdinalEncoder
        The fitted clone of ``encoder``.
    feature_names_in_ : ndarray of str
        The columns, by name.
    n_features_in_ : int

    See Also
    --------
    make_table_pipeline : puts it in front of a detector.
    unseen_categories : :meth:`unseen` for a whole fitted pipeline.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"colour": ["red", "blue", None, "red"]})
    >>> enc = KnownCategories().fit(train)
    >>> enc.transform(pd.DataFrame({"colour": ["blue", "green"]}))  # blue, red, missing
    array([[1., 0., 0.],
           [0., 0., 0.]])
    >>> enc.unseen(pd.DataFrame({"colour": ["blue", "green", None]}))["colour"].tolist()
    [False, True, False]
    """

    def __init__(self, encoder=None, *, unknown="flag"):
        self.encoder = encoder
        self.unknown = unknown

    def fit(self, X, y=None):
        if self.unknown not in UNKNOWN:
            raise ValueError(f"unknown must be one of {UNKNOWN}, got {self.unknown!r}.")
        frame = _categories_frame(X)
        odd = [c for c in frame.columns if not isinstance(c, str)]
        if odd:  # sklearn records feature names, and selects by them, only when all are strings
            raise ValueError(
                f"Column names must be strings so that columns are selected by name at scoring; "
                f"got {odd[:5]}. Rename them, e.g. X.columns = X.columns.astype(str)."
            )
        encoder = self.encoder
        if encoder is None:
            encoder = OneHotEncoder(sparse_output=False, handle_unknown="ignore")
        self.encoder_ = clone(encoder).fit(frame)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def _checked(self, X):
        check_is_fitted(self)
        frame = _categories_frame(X)
        missing = [c for c in self.feature_names_in_ if c not in frame.columns]
        if missing:
            raise ValueError(
                f"X has no column(s) {missing}, which the encoder was fitted on; pass a table "
                "with every column of the training table."
            )
        return frame[list(self.feature_names_in_)]

    def unseen(self, X):
        """Which cells of ``X`` hold a category that ``fit`` did not see.

        Parameters
        ----------
        X : DataFrame
            With (at least) the columns the encoder was fitted on.

        Returns
        -------
        DataFrame of bool
            ``X``'s index, one column per encoded column; True where the value is new (a
            missing value is new where the column had none in ``fit``).
        """
        frame = self._checked(X)
        # isin matches NaN to NaN, so a missing value seen in fit is a known category
        return frame.apply(
            lambda col: ~col.isin(self.encoder_.categories_[frame.columns.get_loc(col.name)])
        ).astype(bool)

    def transform(self, X):
        frame = self._checked(X)
        if self.unknown == "error":
            new = self.unseen(frame)
            if new.to_numpy().any():
                column = new.columns[new.any(axis=0).to_numpy()][0]
                rows = np.flatnonzero(new[column].to_numpy())
                value = frame[column].iloc[rows[0]]
                known = list(self.encoder_.categories_[frame.columns.get_loc(column)])
                raise ValueError(
                    f"Column {column!r} holds {value!r} (in {len(rows)} row(s), the first at "
                    f"position {rows[0]}), a category not seen in fit (seen: "
                    f"{known[:10]}{' ...' if len(known) > 10 else ''}). Refit on rows that "
                    "include it, or build the pipeline with unknown='flag' to score such rows "
                    "and find them with skood.preprocessing.unseen_categories."
                )
        return self.encoder_.transform(frame)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return self.encoder_.get_feature_names_out(self.feature_names_in_)


class RefuseColumns(TransformerMixin, BaseEstimator):
    """The ``remainder`` of :func:`make_table_pipeline`: a column of no kind it encodes is an error.

    A ColumnTransformer drops or passes through the columns no transformer selects; dropping a
    date column silently would score the rows without it, and passing it through fails later
    with a NumPy type-promotion error. ``fit`` raises a ValueError that names the columns and
    their dtypes instead.
    """

    def fit(self, X, y=None):
        dtypes = getattr(X, "dtypes", None)
        names = [f"{c!r} ({d})" for c, d in dtypes.items()] if dtypes is not None else ["(unnamed)"]
        raise ValueError(
            f"make_table_pipeline encodes numeric, boolean and categorical columns; column(s) "
            f"{', '.join(names[:10])} are none of these. Convert them (a date to a number, e.g. "
            "days since a reference date), list them in categorical=[...], or drop them."
        )

    def transform(self, X):  # pragma: no cover - fit always raises
        raise ValueError("RefuseColumns is never fitted.")


class ColumnsOfKind:
    """A ColumnTransformer's column selector: the DataFrame's columns of one kind, by dtype.

    It does what sklearn's ``make_column_selector`` does here, but it is a skood class holding
    only data (the kind and the names it leaves out), so :func:`skood.load` rebuilds a saved
    pipeline without being told to trust a class.

    Parameters
    ----------
    kind : {"numeric", "boolean", "categorical"}
        Numeric columns (booleans excluded), boolean ones, or string / object / ``category``
        ones.
    exclude : list of str, default=()
        Columns never selected (those listed as categorical, whatever their dtype).
    """

    _DTYPES = {
        "numeric": ["number"],
        "boolean": list(BOOLEAN_DTYPES),
        "categorical": list(CATEGORICAL_DTYPES),
    }

    def __init__(self, kind: str, exclude: Sequence[str] = ()) -> None:
        self.kind = kind
        self.exclude = [str(name) for name in exclude]

    def __call__(self, X) -> list[str]:
        names = X.select_dtypes(include=self._DTYPES[self.kind]).columns
        return [name for name in names if name not in self.exclude]


def _encoder(encoding: str, *, binary: bool, max_categories, min_frequency):
    if encoding == "onehot":
        # dense: the detectors take dense arrays; "infrequent_if_exist": an unseen category
        # joins the rare ones when the column has some, else its block is all zeros (a pattern
        # no training row has); drop="if_binary": a boolean becomes one 0/1 column
        return OneHotEncoder(
            sparse_output=False,
            handle_unknown="infrequent_if_exist",
            min_frequency=min_frequency,
            max_categories=max_categories,
            drop="if_binary" if binary else None,
        )
    return OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=_ORDINAL_UNKNOWN,
        encoded_missing_value=_ORDINAL_MISSING,
        min_frequency=min_frequency,
        max_categories=max_categories,
    )


def make_table_pipeline(
    detector,
    *,
    categorical="auto",
    encoding="onehot",
    max_categories=20,
    min_frequency=5,
    unknown="flag",
) -> Pipeline:
    """A pipeline that encodes a DataFrame's numeric, boolean and categorical columns, then ``detector``.

    ``Pipeline([("columns", ColumnTransformer(...)), ("detector", detector)])``, whose
    ColumnTransformer selects columns by name (reordered or extra columns at scoring are fine, a
    missing one is an error) and encodes them by kind:

    * ``"numeric"``: numeric columns, as ``skood score`` preprocesses them
      (:func:`skood.registry.make_pipeline_for`): :class:`~skood.registry.InformativeColumns`
      drops the nearly constant ones, :class:`~sklearn.preprocessing.StandardScaler` standardises;
    * ``"boolean"``: boolean columns, each one 0/1 column (``encoding="ordinal"``: 0/1, then
      standardised);
    * ``"categorical"``: categorical columns by ``encoding``, each behind
      :class:`KnownCategories`. A missing value (None, NaN, ``pd.NA``) is a category of its own.

    A column of any other dtype (a date, a duration) is an error at ``fit`` that names it.

    Parameters
    ----------
    detector : estimator with ``score_samples``
        Any skood detector (or sklearn's, PyOD's through
        :class:`~skood.registry.PyODAdapter`).
    categorical : "auto" or list of str, default="auto"
        ``"auto"``: the string (``str``, ``string``, ``object``) and ``category`` columns. A
        list: exactly these columns, which may be numeric codes (a postcode, a product id); the
        other columns are then numeric or boolean by dtype.
    encoding : {"onehot", "ordinal"}, default="onehot"
        ``"onehot"``: :class:`~sklearn.preprocessing.OneHotEncoder`, dense, one 0/1 column per
        category (up to ``max_categories``), not standardised. ``"ordinal"``:
        :class:`~sklearn.preprocessing.OrdinalEncoder`, one column of codes per column (in the
        categories' sorted order), then standardised. Measured (:doc:`/user_guide/tables`)
        (ADBench's protocol, 5 real and 8 semi-synthetic tables, the three default detectors):
        one-hot's mean AUROC is 0.004 higher on the real tables and 0.050 on the others, and
        0/1 columns did better than standardised ones on the real tables (0.897 against 0.889).
    max_categories : int or None, default=20
        At most this many columns per categorical column (one-hot) or codes (ordinal): the
        rarest categories share one infrequent category (sklearn's ``max_categories``). None: no
        bound.
    min_frequency : int, float or None, default=5
        Categories seen in fewer training rows (a fraction of them, for a float) join the
        infrequent category: a category of one or two rows is no distribution to compare with
        (the same floor as :class:`~skood.registry.InformativeColumns`' ``min_rows``).
    unknown : {"flag", "error"}, default="flag"
        A category that ``fit`` did not see, at scoring. ``"flag"``: the row is scored (one-hot:
        as the column's infrequent category if it has one, else with that column's block all
        zeros, a pattern no training row has, which GaussianMahalanobis scores as very far off
        since the column's one-hot block sums to 1 on every training row; ordinal: code -1) and
        :func:`unseen_categories` shows which cells held one. ``"error"``: scoring raises a
        ValueError naming the column and the value.

    Returns
    -------
    Pipeline
        Unfitted; ``fit`` takes a pandas DataFrame with string column names. Once fitted,
        ``feature_names_in_`` lists the columns it selects.

    Notes
    -----
    Saved with :func:`skood.save`, the pipeline loads with :func:`skood.load` as it is: its
    column selectors are :class:`ColumnsOfKind`, skood's own, not sklearn's
    ``make_column_selector`` (which the loader would rebuild only when told to trust it).

    References
    ----------
    The one-hot and ordinal encoders and the ColumnTransformer are
    scikit-learn's (Pedregosa et al., JMLR 12, 2011); ``min_frequency`` / ``max_categories``
    are its infrequent-category grouping (scikit-learn 1.1).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skood import KNNDetector
    >>> rng = np.random.RandomState(0)
    >>> X = pd.DataFrame({
    ...     "amount": rng.lognormal(size=200),
    ...     "online": rng.rand(200) < 0.3,
    ...     "country": rng.choice(["FR", "DE", "IT"], 200),
    ... })
    >>> pipe = make_table_pipeline(KNNDetector()).fit(X)
    >>> list(pipe.feature_names_in_)
    ['amount', 'online', 'country']
    >>> new = pd.DataFrame({"amount": [1.0, 1.0], "online": [True, True], "country": ["FR", "ES"]})
    >>> np.isfinite(pipe.score_samples(new)).all()
    np.True_
    >>> unseen_categories(pipe, new)
       online  country
    0   False    False
    1   False     True
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}.")
    if unknown not in UNKNOWN:
        raise ValueError(f"unknown must be one of {UNKNOWN}, got {unknown!r}.")
    if isinstance(categorical, str):
        if categorical != "auto":
            raise ValueError(
                f"categorical must be 'auto' or a list of column names, got {categorical!r} "
                f"(for one column, write categorical=[{categorical!r}])."
            )
        listed: list[str] = []
        categorical_columns = ColumnsOfKind("categorical")
    else:
        listed = list(categorical)
        categorical_columns = listed

    def encoded(binary: bool):
        enc = KnownCategories(
            _encoder(
                encoding,
                binary=binary,
                max_categories=max_categories,
                min_frequency=min_frequency,
            ),
            unknown=unknown,
        )
        # ordinal codes are on the scale of the number of categories; one-hot's 0/1 columns
        # are not: standardised, a rare category's column weighs 1/sqrt(p) in every distance,
        # which cost every default detector AUROC on the real tables of benchmarks/categorical/
        return (
            Pipeline([("encode", enc), ("scale", StandardScaler())])
            if encoding == "ordinal"
            else enc
        )

    columns = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline([("columns", InformativeColumns()), ("scale", StandardScaler())]),
                ColumnsOfKind("numeric", exclude=listed),  # listed: categorical, whatever the dtype
            ),
            (
                "boolean",
                encoded(binary=True),
                ColumnsOfKind("boolean", exclude=listed),
            ),
            ("categorical", encoded(binary=False), categorical_columns),
        ],
        remainder=RefuseColumns(),
    )
    return Pipeline([("columns", columns), ("detector", detector)])


def fitted_encoders(model) -> list[KnownCategories]:
    """The fitted :class:`KnownCategories` of a :func:`make_table_pipeline` pipeline.

    ``model`` is that pipeline, its ColumnTransformer, or a fitted estimator around the pipeline
    (a :class:`~skood.ConformalDetector`: its ``estimator_``, or the first of its ``estimators_``).
    Set ``unknown`` on them to change, on a fitted model, what an unseen category does.
    """
    inner = getattr(model, "estimator_", None)
    if inner is None and getattr(model, "estimators_", None):
        inner = model.estimators_[0]
    if inner is not None and not isinstance(model, (Pipeline, ColumnTransformer)):
        return fitted_encoders(inner)
    columns = model
    if isinstance(model, Pipeline):
        columns = next((s for _, s in model.steps if isinstance(s, ColumnTransformer)), None)
    if not isinstance(columns, ColumnTransformer):
        raise TypeError(
            f"unseen_categories takes a pipeline built by make_table_pipeline (or its "
            f"ColumnTransformer, or an estimator around it), not {type(model).__name__}."
        )
    check_is_fitted(columns)
    found = []
    for _, step, _ in columns.transformers_:
        if isinstance(step, Pipeline):
            step = step.steps[0][1]
        if isinstance(step, KnownCategories) and hasattr(step, "encoder_"):
            found.append(step)
    return found


def unseen_categories(pipeline, X):
    """Which cells of ``X`` hold a category that the fitted ``pipeline`` never saw.

    With ``unknown="flag"`` such rows are scored (see :func:`make_table_pipeline`); this says
    which rows and which columns to look at.

    Parameters
    ----------
    pipeline : Pipeline
        Fitted, from :func:`make_table_pipeline` (or its ColumnTransformer).
    X : DataFrame
        The rows to check, with the columns the pipeline was fitted on.

    Returns
    -------
    DataFrame of bool
        ``X``'s index; one column per boolean and categorical column, in the order of the
        training table; True where the value is new to the pipeline (a missing value counts as
        new where the column had none in training). ``.any(axis=1)`` marks the rows.

    Examples
    --------
    See :func:`make_table_pipeline`.
    """
    import pandas as pd

    parts = [enc.unseen(X) for enc in fitted_encoders(pipeline)]
    if not parts:
        return pd.DataFrame(index=X.index, dtype=bool)
    flags = pd.concat(parts, axis=1)
    order = [c for c in pipeline.feature_names_in_ if c in flags.columns]
    return flags[order]
