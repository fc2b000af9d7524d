"""Experiment tracking: one tracked run per search, one row per evaluated architecture, then a summary.

W&B allows one active run per process and merges the steps of unfinished runs, so a search is *one* W&B
run: each evaluated architecture is a row (``wandb.log`` of its scalars with step = query number, plus a
``wandb.Table`` of every row logged when the run finishes), and ``tracking()`` finishes the run in a
``finally`` — with exit code 1 when the search raised. W&B runs offline unless ``WANDB_MODE`` says
otherwise, so nothing needs an account. ``CSVTracker`` writes the same rows to a CSV; ``NullTracker``
(``logger=none``) does nothing.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

TRACKER_KINDS = ("wandb", "csv", "none")
TABLE_KEY = "architectures"


class TrackingError(ValueError):
    """Bad tracker kind or a tracker that cannot start."""


@runtime_checkable
class Tracker(Protocol):
    def log_architecture(self, row: dict[str, Any]) -> None:
        """One evaluated architecture (arch string, value, cost, proxy scores, ...)."""

    def log_summary(self, d: dict[str, Any]) -> None:
        """Run-level results (best architecture, totals); merged over calls."""

    def finish(self, exit_code: int = 0) -> None:
        """Close the run; idempotent."""


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v: Any) -> Any:
    """A table/CSV cell: scalars and strings as they are, anything else as JSON text."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    try:
        return json.dumps(v, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(v)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NullTracker:
    """``logger=none``: records nothing."""

    def log_architecture(self, row: dict[str, Any]) -> None:
        pass

    def log_summary(self, d: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class CSVTracker:
    """``<dir>/architectures.csv`` appended row by row, ``<dir>/summary.json`` on each summary and at the end.

    Rows are written as they arrive so a crashed search still leaves its rows; an existing file (a resumed
    search) is continued. A row with a column the header lacks rewrites the file with the widened header.
    """

    def __init__(self, dir: str | os.PathLike[str]) -> None:
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / "architectures.csv"
        self.summary_path = self.dir / "summary.json"
        self._columns: list[str] = []
        self._rows: list[dict[str, Any]] = []
        self._summary: dict[str, Any] = {}
        self._finished = False
        if self.csv_path.exists():  # a resumed search keeps its earlier rows and appends
            with self.csv_path.open(newline="") as f:
                reader = csv.DictReader(f)
                self._columns = list(reader.fieldnames or [])
                self._rows = [dict(r) for r in reader]

    def log_architecture(self, row: dict[str, Any]) -> None:
        cells = {k: _cell(v) for k, v in row.items()}
        self._rows.append(cells)
        new = [k for k in cells if k not in self._columns]
        if new or not self.csv_path.exists():
            self._columns += new
            self._rewrite()
            return
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._columns).writerow(cells)

    def _rewrite(self) -> None:
        tmp = self.csv_path.with_name(f".{self.csv_path.name}.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._columns)
            w.writeheader()
            w.writerows(self._rows)
        os.replace(tmp, self.csv_path)

    def log_summary(self, d: dict[str, Any]) -> None:
        self._summary.update(d)
        self._write_summary()

    def _write_summary(self, exit_code: int | None = None) -> None:
        out = dict(self._summary)
        if exit_code is not None:
            out["exit_code"] = exit_code
        _atomic_write_text(self.summary_path, json.dumps(out, indent=2, sort_keys=True, default=str))

    def finish(self, exit_code: int = 0) -> None:
        if self._finished:
            return
        self._finished = True
        self._write_summary(exit_code)


class WandbTracker:
    """One W&B run per search (offline by default; ``WANDB_MODE`` or ``mode`` override)."""

    def __init__(
        self,
        project: str = "hnas",
        name: str | None = None,
        config: dict[str, Any] | None = None,
        dir: str | os.PathLike[str] | None = None,
        mode: str | None = None,
    ) -> None:
        import wandb  # lazy: importing wandb costs time that CSV/none users need not pay

        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        self.dir = Path(dir) if dir is not None else Path.cwd()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._rows: list[dict[str, Any]] = []
        self._finished = False
        try:
            self.run = wandb.init(
                project=project,
                name=name,
                config=config or {},
                dir=str(self.dir),
                mode=self.mode,
                reinit="finish_previous",  # never merge into a run some earlier code left open
            )
        except Exception as e:
            raise TrackingError(
                f"W&B run could not start (mode={self.mode!r}, dir={self.dir}): {e}; "
                "use WANDB_MODE=offline, or logger=csv / logger=none"
            ) from e

    @property
    def run_dir(self) -> Path:
        """The run's directory (``.../wandb/offline-run-*``), where W&B writes its files."""
        return Path(self.run.dir).parent

    def log_architecture(self, row: dict[str, Any]) -> None:
        self._rows.append(dict(row))
        step = int(row["step"]) if _scalar(row.get("step")) else len(self._rows) - 1
        scalars = {k: v for k, v in row.items() if _scalar(v) and k != "step" and math.isfinite(v)}
        if scalars:
            self.run.log(scalars, step=step)

    def log_summary(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            self.run.summary[k] = v if _scalar(v) or isinstance(v, (str, bool)) or v is None else _cell(v)

    def _table(self) -> Any:
        columns: list[str] = []
        for r in self._rows:
            columns += [k for k in r if k not in columns]
        data = [[_cell(r.get(c)) for c in columns] for r in self._rows]
        return self._wandb.Table(columns=columns, data=data, allow_mixed_types=True)

    def finish(self, exit_code: int = 0) -> None:
        """Log the architecture table, then finish the run — the finish happens even if the table fails."""
        if self._finished:
            return
        self._finished = True
        try:
            if self._rows:
                self.run.log({TABLE_KEY: self._table()})
        except Exception:
            log.exception("could not log the architecture table to W&B")
            exit_code = exit_code or 1
        finally:
            self.run.finish(exit_code=exit_code)


def make_tracker(
    kind: str,
    dir: str | os.PathLike[str] | None = None,
    project: str = "hnas",
    name: str | None = None,
    config: dict[str, Any] | None = None,
    mode: str | None = None,
) -> Tracker:
    """The tracker for ``logger=<kind>``: ``wandb``, ``csv`` (needs ``dir``) or ``none``."""
    if kind == "wandb":
        return WandbTracker(project=project, name=name, config=config, dir=dir, mode=mode)
    if kind == "csv":
        if dir is None:
            raise TrackingError("tracker kind 'csv' needs a directory (dir=...)")
        return CSVTracker(dir)
    if kind == "none":
        return NullTracker()
    raise TrackingError(f"unknown tracker kind {kind!r}; valid: {', '.join(TRACKER_KINDS)}")


@contextmanager
def tracking(tracker: Tracker) -> Iterator[Tracker]:
    """Yield ``tracker`` and always finish it: exit code 0 on success, 1 when the body raised."""
    try:
        yield tracker
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish(exit_code=0)
