"""NAS-Bench-201 ground truth from the compact CSV (one row per architecture).

Compact format (see README): ``index`` (official NB201 / NATS-Bench topology index), ``arch`` (the string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``) and one column per metric, e.g. ``cifar10_test``,
``cifar10_valid_12ep``, ``cost_12ep_s``, ``params_mb``. Any subset of metric columns works (at least one).
Users with the official NATS-Bench topology file make it with ``hnas nats-export``.

Lookup accepts an index, an arch string, an Arch tuple, or any isomorphic spelling: an exact string
match wins (isomorphic cells have their own, different, trained values in NB201); otherwise the
architecture's canonical key (``space.key``) finds the lowest-index row computing the same function — this
matters for tables that hold one representative per isomorphism class.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hnas.benchmarks.table import BenchmarkError, numeric_columns, read_table
from hnas.files import sha256_file
from hnas.spaces.base import SearchSpace, SearchSpaceError

REQUIRED = ("index", "arch")
HOW_TO_GET = (
    "give the compact NAS-Bench-201 CSV (columns index, arch and metric columns such as cifar10_test; "
    "see README), or build it from the official NATS-Bench topology file (NATS-tss-v1_0-3ffb9-simple) with "
    "`hnas nats-export <NATS-tss path> <out.csv>` (needs `pip install hnas[nats]`)"
)


class NB201Benchmark:
    """Tabular NAS-Bench-201: ``frame`` (pandas, index = arch index), ``lookup``, ``value``, ``optimum``."""

    name = "nb201"

    def __init__(self, path: str | os.PathLike[str], space: SearchSpace | None = None) -> None:
        self.path = Path(path)
        df = read_table(self.path, REQUIRED, "NAS-Bench-201 table", HOW_TO_GET)
        metric_cols = [c for c in df.columns if c not in REQUIRED]
        if not metric_cols:
            raise BenchmarkError(
                f"NAS-Bench-201 table {self.path} has no metric column; required: index, arch and at least "
                "one metric (e.g. cifar10_test, cifar10_valid_12ep, cost_12ep_s)"
            )
        df = numeric_columns(df, metric_cols, self.path)
        idx = pd.to_numeric(df["index"], errors="coerce")
        if idx.isna().any() or (idx != idx.round()).any():
            raise BenchmarkError(f"column 'index' of {self.path} must hold integers")
        df["index"] = idx.astype(np.int64)
        for col in REQUIRED:
            dup = df[col][df[col].duplicated()]
            if len(dup):
                first = dup.tolist()[0]  # a plain Python value, for a readable message
                raise BenchmarkError(
                    f"column {col!r} of {self.path} repeats {first!r}; each row needs its own"
                )
        df["arch"] = df["arch"].astype(str)
        space = space if space is not None else _nb201_space()
        for row, text in enumerate(df["arch"]):
            try:
                space.parse(text)
            except SearchSpaceError as e:
                raise BenchmarkError(f"{self.path}, row {row + 1} (index {int(df['index'].iloc[row])}): {e}") from None
        self.frame: pd.DataFrame = df.set_index("index").sort_index()
        self._metrics = metric_cols
        self._by_string: dict[str, int] = {a: int(i) for i, a in zip(self.frame.index, self.frame["arch"])}
        self._space = space

    # ------------------------------------------------------------------ metadata
    @property
    def columns(self) -> list[str]:
        """All columns of ``frame`` (``arch`` and the metrics)."""
        return list(self.frame.columns)

    def metrics(self) -> list[str]:
        return list(self._metrics)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"NB201Benchmark({str(self.path)!r}, {len(self)} rows, metrics={self._metrics})"

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            self._space = _nb201_space()
        return self._space

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the file: a run's trial log is only replayed against the table it was written with."""
        return sha256_file(self.path)

    # ------------------------------------------------------------------ lookup
    @functools.cached_property
    def _by_key(self) -> dict[str, int]:
        """canonical key -> lowest index with that key (built on first isomorphic lookup)."""
        out: dict[str, int] = {}
        for i, a in zip(self.frame.index, self.frame["arch"]):
            out.setdefault(self.space.key(self.space.parse(a)), int(i))
        return out

    def index_of(self, arch: Any) -> int:
        """Row index for an index, arch string, Arch tuple or isomorphic spelling."""
        if isinstance(arch, (bool, np.bool_)):
            raise BenchmarkError(f"architecture {arch!r} is neither an index, an arch string nor an Arch")
        if isinstance(arch, (int, np.integer)):
            i = int(arch)
            if i not in self.frame.index:
                lo, hi = int(self.frame.index.min()), int(self.frame.index.max())
                raise BenchmarkError(
                    f"architecture index {i} is not in {self.path}; valid: {lo}..{hi} ({len(self)} rows)"
                )
            return i
        if isinstance(arch, str) and arch in self._by_string:
            return self._by_string[arch]
        parsed = self.space.coerce(arch)  # malformed strings raise SearchSpaceError naming the format
        text = self.space.format(parsed)
        if text in self._by_string:
            return self._by_string[text]
        key = self.space.key(parsed)
        if key in self._by_key:
            return self._by_key[key]
        raise BenchmarkError(
            f"architecture {arch!r} (canonical key {key!r}) is not in {self.path} ({len(self)} rows), "
            "nor is any isomorphic cell"
        )

    def arch(self, index: int) -> str:
        """Arch string of row ``index``."""
        return str(self.frame.at[self.index_of(int(index)), "arch"])

    def lookup(self, arch: Any) -> dict[str, float]:
        """Every metric of ``arch`` (NaN where the table has no value)."""
        row = self.frame.loc[self.index_of(arch)]
        return {m: float(row[m]) for m in self._metrics}

    def _check_metric(self, metric: str) -> None:
        if metric not in self._metrics:
            raise BenchmarkError(
                f"unknown metric {metric!r} for {self.path}; valid: {', '.join(self._metrics)}"
            )

    def value(self, arch: Any, metric: str) -> float:
        self._check_metric(metric)
        return float(self.frame.at[self.index_of(arch), metric])

    def values(self, archs: Any, metric: str) -> np.ndarray:
        """``metric`` of many architectures at once (one vectorised row selection)."""
        self._check_metric(metric)
        return self.frame.loc[[self.index_of(a) for a in archs], metric].to_numpy(dtype=np.float64)

    def optimum(self, metric: str, mode: str = "max") -> tuple[int, float]:
        """(index, value) of the best row for ``metric`` (``mode`` max/min; NaNs skipped; first tie wins)."""
        self._check_metric(metric)
        if mode not in ("max", "min"):
            raise BenchmarkError(f"optimum mode {mode!r} is not one of: max, min")
        col = self.frame[metric].dropna()
        if col.empty:
            raise BenchmarkError(f"metric {metric!r} of {self.path} has no values")
        i = int(col.idxmax() if mode == "max" else col.idxmin())
        return i, float(col[i])

    @classmethod
    def from_nats(
        cls, nats_path: str | os.PathLike[str], csv_path: str | os.PathLike[str], **kwargs: Any
    ) -> NB201Benchmark:
        """From the official NATS-Bench topology file: export to ``csv_path`` once, then load that."""
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            from hnas.benchmarks.nats_export import export_from_nats_path

            export_from_nats_path(nats_path, csv_path)
        return cls(csv_path, **kwargs)


def _nb201_space() -> SearchSpace:
    from hnas.spaces import get_space

    return get_space("nb201")
