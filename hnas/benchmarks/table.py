"""Reading a benchmark CSV with the checks every table shares: the file exists, parses, has its columns.

Why one place: every tabular benchmark must fail the same clear way on a missing file, a file that is not
CSV, or missing columns, naming the path and what would be valid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


class BenchmarkError(ValueError):
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
        df = pd.read_csv(p)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise BenchmarkError(f"{what} {p} is not a readable CSV file ({e}); {how_to_get}") from e
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise BenchmarkError(
            f"{what} {p} lacks column(s) {', '.join(missing)}; required: {', '.join(required)}; "
            f"found: {', '.join(map(str, df.columns))}"
        )
    return df


def numeric_columns(df: pd.DataFrame, columns: Sequence[str], path: str | os.PathLike[str]) -> pd.DataFrame:
    """``columns`` converted to float; a non-numeric cell is an error naming the column and the value."""
    out = df.copy()
    for c in columns:
        conv = pd.to_numeric(out[c], errors="coerce")
        bad = conv.isna() & out[c].notna()
        if bad.any():
            first = out[c][bad].iloc[0]
            raise BenchmarkError(f"column {c!r} of {path} must be numeric; found {first!r}")
        out[c] = conv.astype(float)
    return out
