"""Reading a data table (CSV or Parquet) into a numeric matrix, with clear errors (``skood score``).

The numeric columns make the matrix; the others are kept as read (``Table.other``), for a
pipeline that encodes categories, and reported as ``dropped`` from the matrix. Empty or NaN cells,
infinities in numeric columns, ragged CSV rows and files without a column to score are errors that name the column
and the line, because a detector cannot score a row it cannot read.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Table", "TableError", "read_header", "read_table"]

_MISSING = {"", "nan", "na", "n/a", "null", "none"}
# Standardising squares every value: beyond this its square overflows float64 (1.8e308).
_MAX_MAGNITUDE = 1e150


class TableError(ValueError):
    """A file that cannot be turned into a numeric matrix; the message says why and where."""


@dataclass
class Table:
    """The numeric part of a file: ``X`` (float64), its column names and what was dropped.

    ``notes`` says what was read differently from the file's plain columns (an index column
    left out), for the caller to show.
    """

    X: np.ndarray
    columns: list[str]
    dropped: list[str]
    path: str
    notes: list[str] = field(default_factory=list)
    #: The ``ids`` columns as text, by name (never features).
    ids: dict[str, list[str]] = field(default_factory=dict)
    #: The ``label`` column in skood's convention (-1 = anomaly, +1 = normal), or None.
    y: np.ndarray | None = None
    #: The non-numeric columns (``dropped``) as read: text, None where a cell is missing.
    other: dict[str, list] = field(default_factory=dict)

    def _require(self, columns: list[str], available: list[str]) -> None:
        """Raise TableError naming the ``columns`` not ``available`` (and those not numeric)."""
        missing = [c for c in columns if c not in available]
        if missing:
            non_numeric = [c for c in missing if c in self.other]
            raise TableError(
                f"{self.path} lacks the model's column(s) {missing[:10]}"
                + (f" ({non_numeric[:10]} are not numeric here)" if non_numeric else "")
                + ". Score a file with the columns the model was fitted on."
            )

    def frame(self, columns: list[str]):
        """A pandas DataFrame of ``columns``, by name: numeric ones as float64, the others as
        read (object, None for a missing cell), for a pipeline that encodes categories."""
        import pandas as pd

        self._require(columns, [*self.columns, *self.other])
        return pd.DataFrame(
            {
                c: self.X[:, self.columns.index(c)]
                if c in self.columns
                else pd.Series(self.other[c], dtype=object)
                for c in columns
            }
        )

    def select(self, columns: list[str]) -> np.ndarray:
        """The rows' values of ``columns``, by name, in that order (a model's columns).

        Raises
        ------
        TableError
            A column is not among this table's numeric columns.
        """
        self._require(columns, self.columns)
        index = [self.columns.index(c) for c in columns]
        if index == list(range(len(self.columns))):
            return self.X
        return self.X[:, index]


def _parse(cell: str) -> float | None:
    text = cell.strip()
    if text.lower() in _MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        return _read_csv_rows(path)
    except UnicodeDecodeError as exc:
        raise TableError(
            f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): "
            "is it a CSV file? Save it as UTF-8 CSV, or as Parquet."
        ) from None
    except csv.Error as exc:
        raise TableError(f"{path} is not a readable CSV file: {exc}.") from None


def _read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    # utf-8-sig: a byte-order mark (Excel's, pandas' encoding="utf-8-sig") is not part of the
    # first column's name
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(64_000)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(f, dialect)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise TableError(f"{path} is empty: expected a header row of column names.")
        header = [h.strip() for h in header]
        repeated = sorted({h for h in header if h and header.count(h) > 1})
        if repeated:  # which of the two would a model file's column name mean?
            raise TableError(
                f"{path}: column name(s) {repeated[:5]} appear more than once in the header; "
                "give each column its own name."
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:  # blank line
                continue
            if len(row) != len(header):
                raise TableError(
                    f"{path}, line {line}: {len(row)} cells where the header has {len(header)} "
                    "columns (a ragged row). Every row needs one cell per column."
                )
            rows.append(row)
    if not rows:
        raise TableError(f"{path} has a header but no data rows.")
    return header, rows


def _numeric_from_csv(path: Path, text_columns=()):
    header, rows = _read_csv(path)
    columns, dropped, data, notes, text, other = [], [], [], [], {}, {}
    for j, name in enumerate(header):
        if name in text_columns:  # an id: kept as written, never a feature
            text[name] = [r[j].strip() for r in rows]
            continue
        values = [_parse(r[j]) for r in rows]
        if not name or (j == 0 and _PANDAS_UNNAMED.fullmatch(name)):
            if j == 0 and _is_row_index(values):
                # pandas' to_csv() writes the index as an unnamed first column: row numbers, which
                # a detector would read as a feature (and a later chunk's numbers as outliers).
                notes.append(
                    f"Left out the unnamed first column of {path} (a row index, as pandas' "
                    "to_csv() writes it; to_csv(index=False) writes none)."
                )
                continue
            placeholder = f" (only pandas' placeholder {name!r})" if name else ""
            raise TableError(
                f"{path}: column {j + 1} has no name in the header{placeholder}. Name it (or, "
                "for a row index written by pandas, write the file with to_csv(index=False))."
            )
        if any(v is None for v in values):
            dropped.append(name)
            cells = (r[j].strip() for r in rows)
            other[name] = [None if c.lower() in _MISSING else c for c in cells]
            continue
        columns.append(name)
        data.append(values)
    X = np.array(data, dtype=np.float64).T if data else np.empty((len(rows), 0))
    return X, columns, dropped, 2, notes, text, other  # data starts on line 2


# What pandas names an unnamed column when it reads one (and writes back with to_csv()).
_PANDAS_UNNAMED = re.compile(r"Unnamed: \d+")


def _is_row_index(values: list) -> bool:
    """Whether a column counts rows: consecutive integers (0, 1, 2, ... or a later chunk's)."""
    if any(v is None or not math.isfinite(v) for v in values):
        return False
    steps = np.diff(np.asarray(values, dtype=np.float64))
    return float(values[0]).is_integer() and bool(np.all(steps == 1))


def _numeric_from_parquet(path: Path, text_columns=()):
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            "Reading Parquet needs pandas and pyarrow: pip install pandas pyarrow."
        ) from exc
    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise ImportError(f"Reading Parquet needs pyarrow: pip install pyarrow ({exc}).") from exc
    except Exception as exc:
        raise TableError(f"{path} is not a readable Parquet file: {exc}") from exc
    text = {str(c): frame[c].astype(str).tolist() for c in frame.columns if str(c) in text_columns}
    frame = frame[[c for c in frame.columns if str(c) not in text_columns]]
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in numeric if not pd.api.types.is_bool_dtype(frame[c])]
    dropped = [str(c) for c in frame.columns if c not in numeric]
    X = frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    other = {
        str(c): [None if pd.isna(v) else v for v in frame[c].astype(object)]
        for c in frame.columns
        if c not in numeric
    }
    return X, [str(c) for c in numeric], dropped, 0, [], text, other  # row numbers from 0


def read_header(path: str | os.PathLike) -> list[str]:
    """The column names of a CSV or Parquet file, without reading its rows."""
    path = Path(path)
    if path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        return [str(name) for name in pq.read_schema(path).names]
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(64_000)
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return [h.strip() for h in next(csv.reader(sample.splitlines(), dialect), [])]


def read_table(
    path: str | os.PathLike,
    drop: str | list[str] | None = None,
    *,
    ids: list[str] | None = None,
    label: str | None = None,
) -> Table:
    """Read the numeric columns of a CSV (any of , ; tab) or Parquet (``.parquet``, ``.pq``) file.

    ``drop`` names columns to leave out (a list, or one comma-separated string). ``ids`` names
    columns kept as text to identify the rows (``Table.ids``), ``label`` a column of anomaly
    labels in the ADBench / PyOD convention (1 = anomaly, 0 = normal), returned in skood's as
    ``Table.y`` (-1 / +1); neither is ever a feature.

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    ValueError
        The path is a folder, a device, a FIFO or a socket.
    TableError
        No column to score, a ragged row, or an empty / NaN / infinite cell in a numeric column.
    """
    from skood._files import check_input_file

    check_input_file(path)  # a FIFO or a device would block or never end
    path = Path(path)
    ids = list(ids or [])
    if label is not None and label in ids:
        raise TableError(f"column {label!r} is given both as an id and as the label; pick one.")
    if path.suffix.lower() in {".parquet", ".pq"}:
        X, columns, dropped, first, notes, text, other = _numeric_from_parquet(path, ids)
        where = "row"
    else:
        X, columns, dropped, first, notes, text, other = _numeric_from_csv(path, ids)
        where = "line"
    missing_ids = [c for c in ids if c not in text]
    if missing_ids:
        raise TableError(f"{path} has no id column(s) {missing_ids}.")
    y = None
    if label is not None:
        if label not in columns:
            hint = " (it is not numeric there)" if label in dropped else ""
            raise TableError(f"{path} has no numeric label column {label!r}{hint}.")
        j = columns.index(label)
        values = X[:, j]
        if not np.all(np.isin(values, (0.0, 1.0))):
            bad = sorted(set(values[~np.isin(values, (0.0, 1.0))].tolist()))[:5]
            raise TableError(
                f"{path}: the label column {label!r} holds {bad}; it takes the ADBench / PyOD "
                "convention, 1 = anomaly and 0 = normal."
            )
        y = np.where(values == 1.0, -1, 1)
        X, columns = np.delete(X, j, axis=1), columns[:j] + columns[j + 1 :]
    if drop is not None:
        names = [d.strip() for d in drop.split(",")] if isinstance(drop, str) else list(drop)
        if not all(names):
            raise TableError(
                f"drop={drop!r} names an empty column; name each column to leave out, separated "
                "by commas."
            )
        # An id or the label is never a feature already: dropping it too is harmless.
        names = [d for d in names if d not in ids and d != label]
        unknown = [d for d in names if d not in columns and d not in dropped]
        if unknown:
            raise TableError(f"{path} has no column(s) {unknown} to drop.")
        keep = [j for j, c in enumerate(columns) if c not in names]
        X, columns = X[:, keep], [columns[j] for j in keep]
        other = {c: values for c, values in other.items() if c not in names}
    if not columns and not other:
        raise TableError(f"{path} has no column to score (only ids, the label or dropped ones).")
    bad = ~np.isfinite(X)
    huge = ~bad & (np.abs(X) > _MAX_MAGNITUDE)
    if huge.any() and not bad.any():
        rows, cols = np.nonzero(huge)
        raise TableError(
            f"{path}: {huge.sum()} cell(s) too large to score (|value| > {_MAX_MAGNITUDE:.0e}, "
            f"whose squares overflow float64); the first is {X[rows[0], cols[0]]:.6g}, in column "
            f"{columns[cols[0]]!r} at {where} {rows[0] + first}. Rescale that column."
        )
    if bad.any():
        rows, cols = np.nonzero(bad)
        col = columns[cols[0]]
        kind = "empty or NaN" if np.isnan(X[rows[0], cols[0]]) else "infinite"
        raise TableError(
            f"{path}: {bad.sum()} missing or infinite cell(s); the first is {kind}, in column "
            f"{col!r} at {where} {rows[0] + first}. Fill or drop them before scoring "
            "(e.g. sklearn.impute.SimpleImputer)."
        )
    return Table(X, columns, dropped, os.fspath(path), notes, text, y, other)
