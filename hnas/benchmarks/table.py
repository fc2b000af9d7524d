"""Reading a benchmark CSV with the checks every table shares: the file exists, parses, is complete, has its
columns, and its numbers are numbers.

Why one place: every tabular benchmark must fail the same clear way on a missing file, a file that is not
CSV, a truncated file (a row with fewer fields than the header), missing columns or an infinite value, naming
the path, the row and what would be valid.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hnas.errors import HNASError


class BenchmarkError(HNASError, ValueError):
    """Bad benchmark file, unknown architecture or unknown metric; the message says what is valid."""


class BenchmarkFileNotFound(BenchmarkError, FileNotFoundError):
    """The benchmark file does not exist (also a FileNotFoundError for callers that catch that)."""


def read_table(
    path: str | os.PathLike[str], required: Sequence[str], what: str, how_to_get: str
) -> pd.DataFrame:
    """The CSV at ``path`` with ``required`` columns checked; errors name the path and the fix."""
    p = Path(path)
    if not p.is_file():
        kind = "is a directory, not a CSV file" if p.is_dir() else "not found"
        raise BenchmarkFileNotFound(f"{what} {kind}: {p}; {how_to_get}")
    try:
        check_complete_rows(p)
        df = pd.read_csv(p)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, csv.Error) as e:
        raise BenchmarkError(f"{what} {p} is not a readable CSV file ({e}); {how_to_get}") from e
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise BenchmarkError(
            f"{what} {p} lacks column(s) {', '.join(missing)}; required: {', '.join(required)}; "
            f"found: {', '.join(map(str, df.columns))}"
        )
    return df


def check_complete_rows(path: Path) -> None:
    """Every row has as many fields as the header: a shorter row means a truncated or damaged file (pandas
    would silently fill the missing cells with NaN)."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return  # empty: pandas reports it
        for row in reader:
            if row and len(row) != len(header):
                raise BenchmarkError(
                    f"{path}, line {reader.line_num}: {len(row)} field(s) where the header has {len(header)} "
                    "(a truncated or damaged file?); restore or re-export the complete table")


def numeric_columns(df: pd.DataFrame, columns: Sequence[str], path: str | os.PathLike[str],
                    allow_inf: bool = False) -> pd.DataFrame:
    """``columns`` converted to float; a non-numeric (or, unless ``allow_inf``, infinite) cell is an error naming
    the column, the row and the value (an empty cell is a missing value, NaN). Proxy score tables allow inf: it
    is a score's status there, not a measurement."""
    out = df.copy()
    for c in columns:
        conv = pd.to_numeric(out[c], errors="coerce")
        bad = conv.isna() & out[c].notna()
        if bad.any():
            first = out[c][bad].iloc[0]
            raise BenchmarkError(f"column {c!r} of {path} must be numeric; found {first!r} in row "
                                 f"{int(bad.to_numpy().nonzero()[0][0]) + 1} (data rows counted from 1)")
        inf = conv.isin([float("inf"), float("-inf")])
        if inf.any() and not allow_inf:
            row = int(inf.to_numpy().nonzero()[0][0])
            raise BenchmarkError(f"column {c!r} of {path} holds {float(conv.iloc[row])!r} in row {row + 1} (data rows "
                                 "counted from 1); values must be finite numbers (leave a cell empty if unknown)")
        out[c] = conv.astype(float)
    return out
