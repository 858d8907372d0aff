"""``skood score``: fit a detector on a CSV / Parquet file and write each row's score and label.

``--save`` writes the fitted model in skood's pickle-free format (:mod:`skood.io`) and ``--model``
scores with one, reading nothing else (a pickle is refused, never unpickled: ``skood convert``).
Given a dataset (a directory or a glob of files) and ``--model``, the rows are scored block by
block on Dask, one Parquet file per input file; ``--scheduler`` picks the cluster.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from skood._files import (
    atomic_directory,
    atomic_file,
    check_input_file,
    check_output,
    resolve_path,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    p_score = subparsers.add_parser(
        "score",
        help="fit a detector on a CSV / Parquet file and write each row's score",
        description="Fit on TRAIN's numeric columns (standardised) and score TEST (or TRAIN). "
        "Output columns: the --id columns, row, score (higher = more normal), [p_value], "
        "is_outlier (1 = flagged), threshold. A model remembers its columns: scoring picks them "
        "by name, whatever the order and whatever other columns the file has.",
    )
    p_score.add_argument("train", metavar="TRAIN", help="CSV or Parquet file to fit on")
    p_score.add_argument("test", metavar="TEST", nargs="?", help="file to score (default TRAIN)")
    p_score.add_argument(
        "--detector",
        help="NAME or NAME:key=value,... (default: ensemble, skood's EnsembleDetector())",
    )
    p_score.add_argument("--params", help="key=value,... added to the detector's parameters")
    p_score.add_argument(
        "--contamination",
        type=float,
        help="share of calibration inliers flagged; with --model, the model's threshold is set "
        "again from its calibration scores",
    )
    p_score.add_argument(
        "--id",
        action="append",
        metavar="COL",
        help="a column that identifies rows: copied to the output, never a feature (repeatable, "
        "or comma-separated); a saved model remembers it",
    )
    p_score.add_argument(
        "--label",
        metavar="COL",
        help="a column of anomaly labels, 1 = anomaly and 0 = normal (ADBench / PyOD): never a "
        "feature; its anomalies are left out of the fit (or used as outlier exposure), and "
        "the scored file's AUROC against it is reported",
    )
    p_score.add_argument(
        "--alpha",
        type=float,
        help="flag rows whose conformal p-value is <= ALPHA: a false-positive rate of at most "
        "ALPHA in expectation over calibration sets (--per-run for a bound on this run); adds a "
        "p_value column (skood.conformal)",
    )
    p_score.add_argument(
        "--fdr",
        action="store_true",
        help="with --alpha: flag the Benjamini-Hochberg discoveries, a false discovery rate of "
        "at most ALPHA",
    )
    p_score.add_argument(
        "--per-run",
        type=float,
        metavar="DELTA",
        help="with --alpha: calibration-conditional p-values, so that with probability at least "
        "1 - DELTA over the calibration rows this model's false-positive rate is at most ALPHA "
        "(a per-run statement; more conservative, needs more calibration rows)",
    )
    p_score.add_argument(
        "--calibration-fraction",
        type=float,
        metavar="F",
        help="with --alpha: the share of TRAIN's inlier rows held out to calibrate the p-values "
        "(default 0.5, skood.ConformalDetector), unless the detector holds out enough of its "
        "own (KNN's leave-one-out scores, an ensemble's held-out rows) to reach ALPHA",
    )
    p_score.add_argument(
        "--review",
        type=int,
        metavar="M",
        help="with --alpha and --save MODEL, when TRAIN may hold anomalies no label marks: list "
        "the M calibration rows that look least normal in MODEL.review.csv for a person to "
        "label (Label-Trim, Bashari, Sesia and Romano 2025); then score with --model MODEL "
        "--reviewed MODEL.review.csv",
    )
    p_score.add_argument(
        "--reviewed",
        metavar="FILE",
        help="with --model: the --review file with its is_outlier column filled in on every row "
        "(1 = anomaly, 0 = normal); the rows labelled anomalies leave the calibration set before "
        "scoring (--save NEW keeps the model so trimmed)",
    )
    p_score.add_argument(
        "--unknown",
        choices=("flag", "error"),
        help="a category the fit never saw, at scoring: 'flag' (default) scores the row and "
        "names the column in an 'unseen' output column; 'error' refuses the file",
    )
    p_score.add_argument(
        "--explain",
        type=int,
        metavar="K",
        help="add, per row, the K columns that pushed it most towards 'outlier' and their share "
        "of that push: columns explain_1, explain_1_share, ..., explain_K, explain_K_share "
        "(skood.explain; a name is empty where fewer columns pushed that way)",
    )
    p_score.add_argument(
        "--drop", metavar="COLS", help="comma-separated columns to leave out (e.g. an id column)"
    )
    p_score.add_argument("--random-state", type=int, help="seed of the fit (default 0)")
    p_score.add_argument("--out", default="-", help="output CSV (default: standard output)")
    p_score.add_argument(
        "--save",
        metavar="MODEL",
        help="save the fitted model in skood's format (.skood: no pickle; see skood.io)",
    )
    p_score.add_argument(
        "--model",
        metavar="MODEL",
        help="score TRAIN with a saved model: one saved by --save, or any fitted detector or "
        "Pipeline saved with skood.save in Python (pickles are refused, never unpickled)",
    )
    p_score.add_argument(
        "--trust",
        action="append",
        metavar="TYPE",
        help="with --model: a type the file names that skood does not load unasked (e.g. "
        "sklearn.tree._tree.Tree for an IsolationForest); review it first (repeatable)",
    )
    p_score.add_argument(
        "--force", action="store_true", help="overwrite an existing --out / --save file"
    )
    p_score.add_argument(
        "--scheduler",
        metavar="local|ADDRESS",
        help="with a dataset (a directory or glob of Parquet / CSV files): score it on a Dask "
        "cluster, 'local' (one process per core) or a scheduler ADDRESS; default: threads here",
    )


#: Options that shape a fit: meaningless with --model, which is fitted already.
_FIT_OPTIONS = {
    "detector": "--detector",
    "params": "--params",
    "save": "--save",
    "random_state": "--random-state",
    "calibration_fraction": "--calibration-fraction",
    "per_run": "--per-run",
    "review": "--review",
}

#: Column names that, holding only 0 and 1, are anomaly labels rather than a feature.
_LABEL_NAMES = {"label", "labels", "y", "target", "class", "outlier", "anomaly", "is_anomaly"}


def run(args) -> int:
    """Fit on TRAIN (or load ``--model``), score TEST or TRAIN, and write the scores' CSV."""
    ids = [c.strip() for given in args.id or [] for c in given.split(",")]
    if any(not c for c in ids):
        raise ValueError("--id names an empty column; name each id column.")
    if args.explain is not None and args.explain < 1:
        raise ValueError(
            f"--explain {args.explain}: K is the number of columns to name per row, 1 or more."
        )
    inputs = [args.train, args.test, args.model]
    dataset = args.test if args.test else args.train
    if _is_dataset(dataset):
        return _score_dataset(args, dataset, ids)
    if args.scheduler:
        raise ValueError("--scheduler applies to a dataset: a directory or a glob of files.")
    out = None if args.out == "-" else args.out
    if out is not None:
        check_output(out, inputs, what="--out", replace=args.force)
    if args.save is not None:
        if out is not None and resolve_path(out) == resolve_path(args.save):
            raise ValueError(f"--save {args.save} and --out {out} name the same file; give two.")
        check_output(args.save, inputs, what="--save", replace=args.force)
        if args.review is not None:
            check_output(
                _review_path(args.save), inputs, what="the review file", replace=args.force
            )
    if args.reviewed is not None and not args.model:
        raise ValueError("--reviewed trims a saved model's calibration set: give --model MODEL.")
    if args.model:
        pipe, columns, spec, to_score, background = _saved_model(args, ids)
        fitted_on = None
    else:
        pipe, columns, spec, train = _fit(args, ids)
        seed = 0 if args.random_state is None else args.random_state
        background = _background_sample(train, columns, seed)
        to_score = train
        if args.test:  # new rows need not carry the label column
            label = args.label if _in_header(args.test, [args.label]) else None
            to_score = _read_table(args.test, args.drop, ids, label)
        fitted_on = None if args.test else train.path
        if args.save is not None:
            import skood

            saved = {
                "pipeline": pipe,
                "columns": columns,
                "detector": spec,
                "ids": ids,
                "background": background,  # --explain's baseline, for a detector without one
            }
            with atomic_file(args.save, replace=args.force) as f:
                skood.save(saved, f)
            print(f"Saved the fitted model to {args.save}", file=sys.stderr)
            if args.review is not None:
                review = _review_path(args.save)
                _write_review(pipe, train, review, args.force)
                print(
                    f"Review the {args.review} rows listed in {review} (the calibration rows "
                    "that look least normal): set is_outlier to 1 (anomaly) or 0 (normal) on "
                    f"every row, then score with --model {args.save} --reviewed {review}",
                    file=sys.stderr,
                )
    _check_explain_k(args.explain, columns)
    _note_ignored(to_score, columns)
    encoded = [c for c in columns if c not in to_score.columns or c in to_score.other]
    named = getattr(pipe, "feature_names_in_", None) is not None  # a DataFrame, as it was fitted
    X = to_score.frame(columns) if encoded or named else to_score.select(columns)
    explained = None
    if args.explain is not None:
        rows = None if background is None else _model_input(background, columns, like=X)
        given, _ = _explain_baseline(pipe, X[:1], rows, args.model)
        explanation = _explain(pipe, X, given, columns)
        explained = _top_columns(explanation, args.explain)
    text, summary = _scores_csv(pipe, X, to_score, fitted_on, explained)
    if args.explain is not None:
        error = float(explanation.completeness_error.max())
        summary += "; " + _explain_summary(args.explain, explanation.method, error, given)
    if out is None:
        sys.stdout.write(text)
    else:
        with atomic_file(out, "w", replace=args.force, encoding="utf-8", newline="") as f:
            f.write(text)
    print(
        f"{spec}: scored {X.shape[0]} rows of {to_score.path}; {summary}"
        + ("" if out is None else f" -> {out}"),
        file=sys.stderr,
    )
    return 0


def _saved_model(args, ids):
    """The ``--model`` to score TRAIN with: ``(pipeline, columns, spec, table, background)``,
    its level and its rule for unseen categories set from the options."""
    given = [flag for name, flag in _FIT_OPTIONS.items() if getattr(args, name) is not None]
    if args.reviewed is not None and "--save" in given:  # keeps the trimmed model
        given.remove("--save")
    if given:
        raise ValueError(
            f"{', '.join(given)} shape a fit, but --model is fitted already; leave them out "
            "(--contamination, --alpha and --fdr re-threshold a saved model)."
        )
    if args.test:
        raise ValueError("with --model, give one file to score (the model is already fitted).")
    saved = _load_model(args.model, args.trust)
    pipe = saved["pipeline"]
    present = _in_header(args.train, [*saved["ids"], args.label])  # one read of the header
    ids = ids or [c for c in saved["ids"] if c in present]
    label = args.label if args.label in present else None
    table = _read_table(args.train, args.drop, ids, label)
    columns = saved["columns"] or _positional_columns(pipe, table)
    if args.unknown is not None:
        _set_unknown(pipe, args.unknown, args.model)
    _set_level(pipe[-1] if hasattr(pipe, "steps") else pipe, args)
    if args.reviewed is not None:
        _trim_calibration(pipe, args.reviewed, args.model)
        if args.save is not None:
            import skood

            with atomic_file(args.save, replace=args.force) as f:
                skood.save(saved, f)
            print(f"Saved the trimmed model to {args.save}", file=sys.stderr)
    return pipe, columns, saved["detector"], table, saved["background"]


def _review_path(model_path) -> str:
    return f"{model_path}.review.csv"


def _write_review(pipe, train, path, replace) -> None:
    """The calibration rows to review, lowest score first: ids, row, score, is_outlier (empty)."""
    last = pipe[-1] if hasattr(pipe, "steps") else pipe
    ids = list(train.ids)
    lines = [",".join([*(_csv_cell(c) for c in ids), "row", "score", "is_outlier"])]
    for row, score in zip(last.review_rows_, last.review_scores_):
        cells = [_csv_cell(train.ids[c][row]) for c in ids]
        lines.append(",".join([*cells, str(int(row)), repr(float(score)), ""]))
    with atomic_file(path, "w", replace=replace, encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")


def _trim_calibration(pipe, path, model_path) -> None:
    """Read the filled-in review file and drop its anomalies from the calibration set."""
    import numpy as np
    import pandas as pd

    last = pipe[-1] if hasattr(pipe, "steps") else pipe
    if not getattr(last, "labeling_budget", 0):
        raise ValueError(
            f"--reviewed: {model_path} was not fitted with --review M, so it listed no rows to "
            "review. Fit with --alpha A --review M --save MODEL first."
        )
    table = pd.read_csv(path, dtype={"is_outlier": "string"})
    missing = [c for c in ("row", "is_outlier") if c not in table.columns]
    if missing:
        raise ValueError(
            f"--reviewed {path} has no column {', '.join(map(repr, missing))}: give the file "
            f"--review wrote ({_review_path(model_path)}), with is_outlier filled in."
        )
    listed = np.asarray(last.review_rows_)
    rows = table["row"].to_numpy()
    if len(rows) != listed.size or set(rows.tolist()) != set(listed.tolist()):
        raise ValueError(
            f"--reviewed {path} lists rows {sorted(rows.tolist())[:8]}..., but {model_path} asked "
            f"for a review of the {listed.size} rows in {_review_path(model_path)}: give that "
            "file, every row of it, and no other row."
        )
    # What a spreadsheet writes for a yes / no cell, read as 1 / 0.
    verdict = table["is_outlier"].str.strip().str.lower()
    verdict = verdict.replace({"true": "1", "false": "0", "1.0": "1", "0.0": "0"})
    blank = table["row"][verdict.isna() | (verdict == "")].tolist()
    if blank:
        raise ValueError(
            f"--reviewed {path}: {len(blank)} row(s) have no is_outlier verdict (rows "
            f"{blank[:8]}). Label every listed row 1 (anomaly) or 0 (normal): the guarantee "
            "holds for reviewing all of them."
        )
    other = sorted(set(verdict) - {"0", "1"})
    if other:
        raise ValueError(
            f"--reviewed {path}: is_outlier must be 1 (anomaly) or 0 (normal) (TRUE / FALSE "
            f"too); found {other[:5]}."
        )
    by_row = dict(zip(rows.tolist(), (verdict == "1").tolist()))
    last.trim_calibration(np.array([by_row[r] for r in listed.tolist()]))
    print(
        f"Label-Trim: {last.n_trimmed_} of the {listed.size} reviewed rows are anomalies and left "
        f"the calibration set; {last.n_calibration_} calibration rows remain.",
        file=sys.stderr,
    )


def _encoders(model) -> list:
    """The category encoders of a fitted model (none unless it is a table pipeline)."""
    from skood.preprocessing import fitted_encoders

    try:
        return fitted_encoders(model)
    except TypeError:  # no table pipeline in it
        return []


def _set_unknown(model, rule, path) -> None:
    """``--unknown`` on a saved model: its encoders' rule for a category never seen."""
    encoders = _encoders(model)
    if not encoders:
        raise ValueError(f"--unknown applies to a model that encodes categories; {path} has none.")
    for encoder in encoders:
        encoder.set_params(unknown=rule)


def _fit(args, ids):
    """Fit the detector ``--detector`` names on TRAIN: ``(pipeline, columns, spec, table)``."""
    from skood.registry import make_detector, make_pipeline_for, parse_detector

    train = _read_table(args.train, args.drop, ids, args.label)
    categories, identifiers = _categorical_columns(train)
    if identifiers:
        print(
            f"Dropped non-numeric column(s): {', '.join(identifiers)} (a different value on "
            "almost every row: an identifier, not a category; --id NAME copies one to the "
            "output)",
            file=sys.stderr,
        )
    if categories:
        print(f"Encoded as categories: {', '.join(categories)}", file=sys.stderr)
    if train.X.shape[0] < 2:  # X has a row per data row even without a numeric column
        raise ValueError(f"{args.train} has {train.X.shape[0]} data row; fitting needs 2+.")
    _warn_about_label_columns(train, args.label)
    random_state = 0 if args.random_state is None else args.random_state
    name, params = parse_detector(args.detector or "ensemble")
    if args.params:
        params = {**params, **parse_detector(f"{name}:{args.params}")[1]}
    if args.contamination is not None:
        params["contamination"] = args.contamination
    det = make_detector((name, params), random_state=random_state)
    spec = name + (":" + ",".join(f"{k}={v!r}" for k, v in params.items()) if params else "")
    if args.alpha is not None:  # conformal p-values around the detector (skood.conformal)
        from skood.conformal import ConformalDetector

        options = {}
        if args.calibration_fraction is not None:
            options["calibration_fraction"] = args.calibration_fraction
        if args.per_run is not None:  # Bates et al. (2023): a bound for this calibration set
            options.update(calibration_conditional="simes", delta=args.per_run)
        if args.review is not None:  # Label-Trim (Bashari et al. 2025): rows to review
            if args.review < 1:
                raise ValueError(
                    f"--review {args.review}: give the number of calibration rows a person will "
                    "review, 1 or more."
                )
            if args.save is None:
                raise ValueError(
                    "--review lists rows to review for a model you score later with --model "
                    "and --reviewed: give --save MODEL too."
                )
            options["labeling_budget"] = args.review
        det = ConformalDetector(
            det, alpha=args.alpha, fdr=args.fdr, random_state=random_state, **options
        )
    elif (
        args.fdr
        or args.calibration_fraction is not None
        or args.per_run is not None
        or args.review is not None
    ):
        given = [f for f, on in [("--fdr", args.fdr), ("--calibration-fraction",
                 args.calibration_fraction is not None), ("--per-run",
                 args.per_run is not None), ("--review", args.review is not None)] if on]  # fmt: skip
        raise ValueError(
            f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} --alpha (conformal "
            "p-values): the level to flag at."
        )
    columns = list(train.columns)
    if categories:  # sklearn's encoders in front of the detector, kept in the saved model
        from skood.preprocessing import make_table_pipeline

        columns += categories
        pipe = make_table_pipeline(det, unknown=args.unknown or "flag")
        X = train.frame(columns)
    else:
        pipe, X = make_pipeline_for(det), train.X
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category=UserWarning)
        pipe.fit(X, train.y)
    # What the fit warns of is about the user's data (too few rows for a threshold, a
    # covariance that cannot be estimated): said once each, on one line, not as a traceback.
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"skood score: warning: {message}", file=sys.stderr)
    return pipe, columns, spec, train


def _categorical_columns(table) -> tuple[list[str], list[str]]:
    """``(categories, identifiers)``: the non-numeric columns to encode, and those with a
    different value on almost every row (more than half of them, and more than 20), which are
    names or keys: one-hot codes of those would describe no distribution."""
    categories, identifiers = [], []
    for name, values in table.other.items():
        distinct = len({v for v in values if v is not None})
        (identifiers if distinct > max(20, len(values) / 2) else categories).append(name)
    return categories, identifiers


def _scores_csv(pipe, X, table, fitted_on, explained=None):
    """The output CSV's text and the summary line's tail; ``explained``: the ``--explain``
    columns (:func:`_top_columns`), written last."""
    import numpy as np

    last = pipe[-1] if hasattr(pipe, "steps") else pipe
    flagged = np.asarray(pipe.predict(X)) == -1
    conformal = hasattr(last, "detector_scores")
    if conformal:  # the detector's score, its p-value, and the level (or FDR) flagged at
        p_values = pipe.score_samples(X)
        scores = last.detector_scores(pipe[:-1].transform(X) if hasattr(pipe, "steps") else X)
        threshold = float(last.alpha)
        outputs = [scores, p_values]
        header = ["row", "score", "p_value", "is_outlier", "threshold"]
    else:
        scores = pipe.score_samples(X)
        # sklearn's OneClassSVM keeps offset_ as a 1-element array, which numpy 2 will not float()
        threshold = float(np.ravel(last.offset_)[0])
        outputs = [scores]
        header = ["row", "score", "is_outlier", "threshold"]
    unseen = _unseen(pipe, X)
    if unseen is not None:
        header.insert(-1, "unseen")
    explained = explained or {}
    ids = list(table.ids)
    lines = [",".join([*(_csv_cell(c) for c in ids), *header, *explained])]
    for i in range(X.shape[0]):
        cells = [_csv_cell(table.ids[c][i]) for c in ids]
        cells += [str(i), *(repr(float(v[i])) for v in outputs), str(int(flagged[i]))]
        if unseen is not None:
            cells.append(_csv_cell(unseen[i]))
        cells.append(repr(threshold))
        for values in explained.values():
            value = values[i]  # a column's name, or its share
            cells.append(_csv_cell(value) if isinstance(value, str) else repr(float(value)))
        lines.append(",".join(cells))
    text = "\n".join(lines) + "\n"
    n_out = int(flagged.sum())
    if conformal:
        n_cal = int(np.min(getattr(last, "n_calibration_", 0)))
        if last.fdr:
            rule = f"Benjamini-Hochberg at false discovery rate {threshold:g}"
        elif getattr(last, "calibration_conditional", None) is not None:
            rule = (
                f"p-value <= {threshold:g}: with probability at least {1 - last.delta:g} over "
                f"the {n_cal} calibration rows, this model's false-positive rate is at most "
                f"{threshold:g} (calibration-conditional p-values, {last.calibration_conditional})"
            )
        else:
            rule = (
                f"p-value <= {threshold:g}: a false-positive rate of at most {threshold:g} in "
                f"expectation over calibration sets of {n_cal} rows; one run's rate varies "
                "around it (--per-run DELTA bounds it per run)"
            )
        if getattr(last, "n_trimmed_", 0):
            rule += (
                f"; Label-Trim left out {last.n_trimmed_} reviewed anomalies of the "
                f"{last.labeling_budget} calibration rows reviewed"
            )
        if fitted_on is not None:
            rule += (
                f". These rows are {fitted_on}'s own, which fitted or calibrated the model: "
                "their p-values are not valid; score new rows (TEST) for the guarantee"
            )
    else:
        rule = f"threshold {threshold:.6g}; higher score = more normal"
    summary = f"{n_out} flagged as outliers ({rule})"
    if unseen is not None and any(unseen):
        summary += (
            f"; {sum(map(bool, unseen))} row(s) hold a category the fit never saw (column "
            "'unseen'; --unknown error refuses them)"
        )
    if table.y is not None and 0 < np.sum(table.y == -1) < table.y.size:
        from skood.metrics import auroc

        summary += f"; AUROC against the label column: {auroc(table.y, scores):.4f}"
    return text, summary


# -- --explain: the columns that pushed each row towards "outlier" -------------------------------

#: The most TRAIN rows (normal ones, seeded) a fitted model keeps as ``--explain``'s background.
_BACKGROUND_ROWS = 1000

#: ``skood.explain.explain``'s options here: its defaults, and a fixed seed, so that a file's
#: explanation is the same at every run.
_EXPLAIN_OPTIONS = {"n_steps": 32, "n_permutations": 16, "random_state": 0}


def _check_explain_k(k, columns) -> None:
    if k is not None and k > len(columns):
        raise ValueError(
            f"--explain {k}: the model has {len(columns)} column(s), so at most "
            f"--explain {len(columns)}."
        )


def _background_sample(train, columns, random_state) -> dict:
    """Up to :data:`_BACKGROUND_ROWS` of TRAIN's normal rows (not the ``--label`` anomalies),
    drawn with ``random_state``, as ``{column: values}``: saved with the model, so that
    ``--explain`` has a baseline for a detector that keeps no reference rows of its own."""
    import numpy as np

    rows = np.arange(train.X.shape[0])
    if train.y is not None:
        rows = rows[train.y != -1]
    if rows.size > _BACKGROUND_ROWS:
        rng = np.random.default_rng(random_state)
        rows = np.sort(rng.choice(rows, _BACKGROUND_ROWS, replace=False))
    return {
        c: train.X[rows, train.columns.index(c)]
        if c in train.columns
        else [train.other[c][i] for i in rows]
        for c in columns
    }


def _model_input(background: dict, columns, like):
    """The background rows as the model takes them: a DataFrame if ``like`` is one, else an
    array of ``columns``."""
    import numpy as np
    import pandas as pd

    if hasattr(like, "columns"):
        return pd.DataFrame({c: background[c] for c in columns})
    return np.column_stack([np.asarray(background[c], dtype=np.float64) for c in columns])


def _explain_baseline(model, probe, background, model_path):
    """``(background, method)``: what ``--explain`` passes as ``background`` (None: the
    detector's own reference, where it keeps one: the Gaussian's means, the nearest-neighbour
    detector's rows, the default ensemble's members) and how it explains, found by explaining
    the ``probe`` rows."""
    from skood.explain import BackgroundNeeded

    try:
        return None, _explain(model, probe, None, None).method
    except BackgroundNeeded:
        pass
    if background is None:
        raise ValueError(
            f"--explain: the detector of {model_path} keeps no reference rows to measure "
            "contributions from, and the file holds no background sample of training rows. "
            "Save the model with skood score TRAIN --save MODEL (which keeps up to "
            f"{_BACKGROUND_ROWS} of TRAIN's rows for this), or explain in Python: "
            "skood.explain.explain(model, X, background=some_training_rows)."
        )
    return background, _explain(model, probe, background, None).method


def _explain(model, X, background, columns):
    """:func:`skood.explain.explain` of ``X``'s rows, its columns named ``columns`` (if given)."""
    import numpy as np

    from skood.explain import explain

    with warnings.catch_warnings():
        # explain hands the detector arrays of X's columns, in the order it was fitted on
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        explanation = explain(model, X, background=background, **_EXPLAIN_OPTIONS)
    if columns is not None:
        explanation.feature_names = np.asarray(columns, dtype=str)
    return explanation


def _top_columns(explanation, k: int) -> dict:
    """``{"explain_1": names, "explain_1_share": shares, ...}``: each row's ``k`` columns with
    the most negative contributions and their shares of the row's push towards "outlier" (4
    decimals); an empty name and a share of 0 where fewer than ``k`` columns pushed that way."""
    import numpy as np

    names, shares = explanation.top(k)
    names = np.where(shares > 0, names, "").astype(object)
    shares = np.round(shares, 4)
    out = {}
    for i in range(k):
        out[f"explain_{i + 1}"] = names[:, i]
        out[f"explain_{i + 1}_share"] = shares[:, i]
    return out


_METHOD_WORDS = {
    "exact": "exact Shapley values (the Gaussian's quadratic form)",
    "integrated_gradients": f"integrated gradients ({_EXPLAIN_OPTIONS['n_steps']} steps)",
    "permutation": (
        f"permutation Shapley values ({_EXPLAIN_OPTIONS['n_permutations']} column orders a row)"
    ),
}


def _explain_summary(k, method: str, error: float, background) -> str:
    """The summary line's words on ``--explain``: the method, the baseline, the largest
    completeness error."""
    how = " + ".join(_METHOD_WORDS.get(m, m) for m in method.split("+"))
    if background is None:
        start = "the detector's own baseline"
    else:
        start = f"the median of {len(background)} training rows"
    return (
        f"--explain {k}: contributions to the score by {how}, from {start}; they add up to "
        f"score - baseline score within {error:.2g} (largest completeness error)"
    )


def _unseen(pipe, X) -> list[str] | None:
    """Each row's columns holding a category the fit never saw (``;``-separated), or None for a
    model that encodes no category."""
    if not hasattr(X, "columns"):
        return None
    from skood.preprocessing import unseen_categories

    if not _encoders(pipe):
        return None
    flags = unseen_categories(pipe, X)
    if flags.shape[1] == 0:
        return None
    names = list(flags.columns)
    return [";".join(n for n, new in zip(names, row) if new) for row in flags.to_numpy()]


def _csv_cell(value: str) -> str:
    """``value`` as one CSV cell: quoted when it holds a comma, a quote or a line break."""
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _warn_about_label_columns(table, label) -> None:
    """A 0 / 1 column named like a label is almost surely anomaly labels, not a feature."""
    import numpy as np

    for j, name in enumerate(table.columns):
        if name.strip().lower() in _LABEL_NAMES and np.all(np.isin(table.X[:, j], (0.0, 1.0))):
            print(
                f"skood score: warning: column {name!r} holds only 0 and 1 and is used as a "
                f"feature. If it marks anomalies (1 = anomaly), pass --label {name} (it is then "
                f"left out of the features and of the fit's inliers); to drop it, --drop {name}.",
                file=sys.stderr,
            )


def _note_ignored(table, columns) -> None:
    extra = [c for c in table.columns if c not in columns]
    if extra:
        print(
            f"Not in the model, left out: {', '.join(extra[:10])}"
            + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""),
            file=sys.stderr,
        )


def _in_header(path, names) -> list[str]:
    """Those of ``names`` (None ignored) that the file's header names: a saved model's id
    columns, or a label column new rows need not carry."""
    from skood.tables import read_header

    header = read_header(path)
    return [name for name in names if name is not None and name in header]


def _positional_columns(model, table) -> list[str]:
    """A model saved without column names scores the file's numeric columns in their order."""
    n = getattr(model, "n_features_in_", None)
    if n != len(table.columns):
        raise ValueError(
            f"The model was fitted on {n} unnamed column(s); {table.path} has "
            f"{len(table.columns)} numeric one(s) ({', '.join(table.columns[:10])}). Fit it on a "
            "DataFrame (its column names are then stored), or --drop the extra columns."
        )
    print(
        f"The model stores no column names: scoring {table.path}'s {n} numeric columns in "
        "their order.",
        file=sys.stderr,
    )
    return list(table.columns)


def _load_model(path, trusted):
    import skood
    from skood.io import UntrustedTypesError

    check_input_file(path, "--model")
    try:
        saved = skood.load(path, trusted=trusted)
    except UntrustedTypesError as exc:
        raise ValueError(
            f"{path} names type(s) that skood loads only when told to: {exc.types}. Review them; "
            "if you trust the file, pass --trust NAME for each."
        ) from None
    if isinstance(saved, dict) and {"pipeline", "columns"} <= set(saved):  # skood score --save
        return {"detector": "?", "ids": [], "background": None, **saved}
    if not (hasattr(saved, "score_samples") and hasattr(saved, "predict")):
        raise ValueError(
            f"{path} holds a {type(saved).__name__}, not a fitted detector or Pipeline; load it "
            "in Python with skood.load."
        )
    names = getattr(saved, "feature_names_in_", None)  # fitted on a DataFrame: its columns
    last = saved[-1] if hasattr(saved, "steps") else saved
    return {
        "pipeline": saved,
        "columns": None if names is None else [str(c) for c in names],
        "detector": type(last).__name__,
        "ids": [],
        "background": None,
    }


def _is_dataset(path) -> bool:
    """A directory or a glob of Parquet / CSV files: scored block by block on Dask.

    A path that exists is that path, whatever its name holds (``data[1].csv`` is a file); only
    one that does not exist is read as a pattern.
    """
    if not path:  # None, or "" (which would name the working folder)
        return False
    if Path(path).is_dir():
        return True
    return not os.path.lexists(path) and any(c in str(path) for c in "*?[")


def _dataset_files(path) -> list[Path]:
    import glob

    if Path(path).is_dir():
        files = sorted(
            p for p in Path(path).iterdir() if p.suffix.lower() in {".csv", ".parquet", ".pq"}
        )
        if not files:
            raise ValueError(f"{path} holds no .csv / .parquet file to score.")
        return files
    files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"{path}: no such file, and as a pattern it matches no file.")
    return files


def _read_partition(path, columns, drop, ids):
    """One file of a dataset, checked as ``skood score`` checks one file (errors name it)."""
    import pandas as pd

    table = _read_table(path, drop, ids)
    frame = pd.DataFrame(table.select(columns), columns=columns)
    frame.insert(0, "row", range(len(frame)))
    frame.insert(0, "file", Path(path).name)
    for i, c in enumerate(ids):
        frame.insert(i, c, table.ids[c])
    return frame


def _scored_partition(frame, model, columns, threshold, ids, k=None, background=None):
    """One partition scored; with ``k`` (``--explain K``), the explain columns too, and each
    row's completeness error (``_explain_error``, which the caller takes off)."""
    import numpy as np
    import pandas as pd

    out = _score_block(frame, model, columns, _output_columns(model))
    out.insert(0, "row", frame["row"])  # same index: aligned, dtypes kept
    out.insert(0, "file", frame["file"])
    for i, c in enumerate(ids):
        out.insert(i, c, frame[c])
    out["threshold"] = threshold
    if k is not None:
        if getattr(model, "feature_names_in_", None) is not None:  # as score_frame reads them
            X = frame[columns].astype(np.float64)
        else:
            X = frame[columns].to_numpy(dtype=np.float64)
        if X.shape[0]:
            explanation = _explain(model, X, background, columns)
            top, error = _top_columns(explanation, k), explanation.completeness_error
        else:
            top = {f"explain_{i + 1}{end}": [] for i in range(k) for end in ("", "_share")}
            error = np.zeros(0)
        text = pd.Series(["file"]).dtype  # as the meta's text columns
        for name, values in top.items():
            dtype = np.float64 if name.endswith("_share") else text
            out[name] = pd.Series(list(values), index=out.index, dtype=dtype)
        out["_explain_error"] = np.asarray(error, dtype=np.float64)
    return out


def _score_dataset(args, dataset, ids) -> int:
    """``skood score`` on a directory or glob: one output Parquet file per input file."""
    import numpy as np

    _check_dask()
    import dask
    import dask.dataframe as dd
    import pandas as pd

    files = _dataset_files(dataset)
    if not args.model:
        raise ValueError(
            f"{dataset} is a dataset (a directory or a glob): fit on one file with --save, then "
            "score the dataset with --model (scoring is block by block; fitting is in memory)."
        )
    if args.test:
        raise ValueError("with --model, give one file or dataset to score.")
    if args.out == "-":
        raise ValueError("a dataset's scores go to a directory: pass --out DIR.")
    folder = dataset if Path(dataset).is_dir() else None
    check_output(args.out, [folder, *files, args.model], what="--out", folder=True)
    saved = _load_model(args.model, args.trust)
    pipe, columns, spec = saved["pipeline"], saved["columns"], saved["detector"]
    if columns is None:
        raise ValueError(
            f"{args.model} stores no column names, which a dataset's files are read by: fit the "
            "model on a DataFrame (or with skood score --save)."
        )
    last = pipe[-1] if hasattr(pipe, "steps") else pipe
    _set_level(last, args)
    if _encoders(pipe):
        raise ValueError(
            f"{args.model} encodes categorical columns, which dataset scoring (numeric blocks on "
            "Dask) does not read yet: score the files one by one (skood score FILE --model ...)."
        )
    ids = ids or _in_header(files[0], saved["ids"])
    _check_explain_k(args.explain, columns)
    threshold = float(last.alpha if hasattr(last, "detector_scores") else np.ravel(last.offset_)[0])
    read = dask.delayed(_read_partition, pure=True)
    text = pd.Series(["file"]).dtype  # whatever pandas gives a column of names
    meta = pd.DataFrame({c: pd.Series(dtype=text) for c in ids})
    meta["file"] = pd.Series(dtype=text)
    meta["row"] = pd.Series(dtype=np.int64)
    for c in columns:
        meta[c] = pd.Series(dtype=np.float64)
    frames = dd.from_delayed([read(f, columns, args.drop, ids) for f in files], meta=meta)
    k, given = args.explain, None
    if k is not None:  # the baseline found here, on the client, once
        background = saved["background"]
        like = meta[columns] if getattr(pipe, "feature_names_in_", None) is not None else None
        rows = None if background is None else _model_input(background, columns, like=like)
        probe = rows[:1] if rows is not None else _zero_row(columns, like)
        given, method = _explain_baseline(pipe, probe, rows, args.model)
    out_meta = _scored_partition(meta, pipe, columns, threshold, ids, k, given).iloc[:0]
    shipped = dask.delayed(pipe, pure=True)  # the model goes to each worker once
    if given is not None:  # so does the background
        given = dask.delayed(given, pure=True)
    scored = frames.map_partitions(
        _scored_partition, shipped, columns, threshold, ids, k, given, meta=out_meta
    )
    # Written to a new folder beside --out and renamed when every file is complete: a bad
    # partition or Ctrl-C removes only that folder, which this run created.
    with atomic_directory(args.out) as tmp, _dask_scheduler(args.scheduler) as compute:
        if k is None:
            compute(scored.to_parquet(tmp, compute=False, write_index=False))
        else:  # one pass: the error's maximum is reduced from the partitions written
            written = scored.drop(columns="_explain_error")
            _, error = compute(
                written.to_parquet(tmp, compute=False, write_index=False),
                scored["_explain_error"].max(),
            )
    n_files = len(files)
    outputs = _output_columns(pipe) + ([] if k is None else [f"explain_1..{k}"])
    summary = (
        f"{spec}: scored {n_files} file(s) of {dataset} ({', '.join(outputs)}) -> "
        f"{args.out}/ (one Parquet file per input file)"
    )
    if k is not None:
        summary += "; " + _explain_summary(
            k, method, float(error), rows if given is not None else None
        )
    print(summary, file=sys.stderr)
    return 0


def _zero_row(columns, like):
    """One row of zeros in the model's columns (a DataFrame if ``like`` is one)."""
    import numpy as np
    import pandas as pd

    row = np.zeros((1, len(columns)))
    return row if like is None else pd.DataFrame(row, columns=columns)


def _dask_scheduler(address):
    """A context giving a function that computes collections and returns their results (with a
    progress bar on a terminal: redrawn into a log file, a bar is a page of noise)."""
    import contextlib
    import logging

    interactive = sys.stderr.isatty()

    @contextlib.contextmanager
    def local_threads():
        from dask.diagnostics import ProgressBar

        def run(*collections):
            import dask

            with ProgressBar(out=sys.stderr) if interactive else contextlib.nullcontext():
                return dask.compute(*collections)

        yield run

    @contextlib.contextmanager
    def cluster(address):
        from distributed import Client, LocalCluster, progress

        local = None
        if address == "local":
            # No dashboard (its port may be taken: "Port 8787 is already in use"), and only
            # errors from the workers' logs (not "Worker process still alive... killing" at
            # every shutdown).
            local = LocalCluster(
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        try:
            with Client(local or address) as client:
                client.register_plugin(_torch_threads_plugin())

                def run(*collections):
                    futures = client.compute(list(collections))
                    if interactive:
                        progress(futures)
                        print(file=sys.stderr)
                    return client.gather(futures)

                yield run
        finally:
            if local is not None:
                local.close()

    return local_threads() if not address else cluster(address)


def _set_level(detector, args) -> None:
    """``--contamination``, or ``--alpha`` / ``--fdr``, given with ``--model``: a new threshold
    from the model's calibration scores, or a new level for a conformal model."""
    if args.contamination is not None:
        if hasattr(detector, "detector_scores") or not hasattr(detector, "calibrate_offset"):
            raise ValueError(
                f"--contamination re-thresholds a skood detector from its calibration scores; "
                f"this model ends in a {type(detector).__name__}"
                + (", whose level is --alpha." if hasattr(detector, "detector_scores") else ".")
            )
        detector.set_params(contamination=args.contamination)
        detector.calibrate_offset(
            detector.calibration_scores_, held_out=detector.calibration_held_out_
        )
        print(
            f"Threshold set again at contamination {args.contamination:g} from the model's "
            f"{detector.calibration_scores_.size} calibration scores (offset_ "
            f"{detector.offset_:.6g}).",
            file=sys.stderr,
        )
    if args.alpha is None and not args.fdr:
        return
    if not hasattr(detector, "detector_scores"):
        raise ValueError(
            "--alpha / --fdr need a model saved with --alpha (conformal p-values); this one "
            "was saved without: refit it with --alpha."
        )
    detector.set_params(
        alpha=detector.alpha if args.alpha is None else args.alpha, fdr=args.fdr or detector.fdr
    )


def _read_table(path, drop, ids=(), label=None):
    """:func:`skood.tables.read_table`, saying on stderr what it read differently."""
    from skood.tables import read_table

    table = read_table(path, drop=drop, ids=ids, label=label)
    for note in table.notes:
        print(note, file=sys.stderr)
    return table


# -- what dataset scoring takes from skood.distributed ---------------------------------------------
# The only place the CLI names skood.distributed. Three of these names are its private helpers,
# which its rewrite will rename: change them here. Imported when called, since importing
# skood.distributed imports dask's distributed where it is installed.


def _check_dask() -> None:
    """ImportError, saying what to install, unless dask and dask.dataframe import."""
    from skood.distributed import require_dask

    require_dask()


def _output_columns(model) -> list[str]:
    """``score, is_outlier``, or ``score, p_value, is_outlier`` for a conformal model."""
    from skood.distributed import output_columns

    return output_columns(model)


def _score_block(frame, model, columns, outputs):
    """One block of rows scored: a frame of ``outputs``, on ``frame``'s index."""
    from skood.distributed import score_frame

    return score_frame(frame, model, columns, outputs)


def _torch_threads_plugin():
    """The Dask worker plugin that gives torch the worker's threads, not every core."""
    from skood.distributed import TorchThreads

    return TorchThreads()
