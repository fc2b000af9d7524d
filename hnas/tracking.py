"""Experiment tracking: one tracked run per search, one row per query step, then a summary.

W&B allows one active run per process and merges the steps of unfinished runs, so a search is *one* W&B
run: each evaluated architecture is a row (``wandb.log`` of its scalars with step = query number, plus a
``wandb.Table`` of every row logged when the run finishes), and ``tracking()`` finishes the run in a
``finally`` — with exit code 1 when the search raised. W&B runs offline unless ``WANDB_MODE`` says
otherwise, so nothing needs an account. ``CSVTracker`` writes the same rows to a CSV; ``NullTracker``
(``logger=none``) does nothing.

Resume: the search loop sends every step of a run, the ones replayed from the trial log included
(``row["replayed"]``), so a tracker can always show the whole run. Each tracker keeps exactly one row per
step however often the run resumed: the CSV skips steps it already holds, and W&B resumes the same run id
(derived from the hnas run id) and logs the scalars of new steps only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hnas.errors import HNASError
from hnas.files import atomic_write_text
from hnas.registry import Registry

log = logging.getLogger(__name__)

TABLE_KEY = "architectures"


class TrackingError(HNASError, ValueError):
    """Bad tracker kind or a tracker that cannot start."""


@runtime_checkable
class Tracker(Protocol):
    """The one tracker protocol: the search loop, the runner and the commands use only these three calls."""

    def log_architecture(self, row: dict[str, Any]) -> None:
        """One query step (``step``, arch string, value, cost, proxy scores, ``replayed``, ...)."""

    def log_summary(self, d: dict[str, Any]) -> None:
        """Run-level results (best architecture, totals); merged over calls."""

    def log_image(self, name: str, path: str | os.PathLike[str]) -> None:
        """A figure of the run (trajectory, proxy scatter) already written to ``path``."""

    def log_artifact(self, name: str, path: str | os.PathLike[str], kind: str) -> None:
        """A file of the run (the best architecture's result.json, trained weights) as a versioned artifact."""

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


class NullTracker:
    """``logger=none``: records nothing."""

    def __init__(self, dir: str | os.PathLike[str] | None = None, name: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
        pass

    def log_architecture(self, row: dict[str, Any]) -> None:
        pass

    def log_summary(self, d: dict[str, Any]) -> None:
        pass

    def log_image(self, name: str, path: str | os.PathLike[str]) -> None:
        pass

    def log_artifact(self, name: str, path: str | os.PathLike[str], kind: str) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class CSVTracker:
    """``<dir>/architectures.csv`` appended row by row, ``<dir>/summary.json`` on each summary and at the end.

    Rows are written as they arrive so a crashed search still leaves its rows; an existing file (a resumed
    search) is continued, and a step it already holds is not written again. A row with a column the header
    lacks rewrites the file with the widened header.
    """

    def __init__(self, dir: str | os.PathLike[str], name: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
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

    def _steps(self) -> set[str]:
        return {str(r.get("step")) for r in self._rows if r.get("step") not in (None, "")}

    def log_architecture(self, row: dict[str, Any]) -> None:
        cells = {k: _cell(v) for k, v in row.items()}
        if "step" in row and str(row["step"]) in self._steps():
            return  # a resumed run replaying a step this file already holds
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

    def log_image(self, name: str, path: str | os.PathLike[str]) -> None:
        """The figure is already a file of the run's folder; the summary names it."""
        self.log_summary({f"image/{name}": str(path)})

    def log_artifact(self, name: str, path: str | os.PathLike[str], kind: str) -> None:
        self.log_summary({f"artifact/{name}": str(path)})

    def _write_summary(self, exit_code: int | None = None) -> None:
        out = dict(self._summary)
        if exit_code is not None:
            out["exit_code"] = exit_code
        atomic_write_text(self.summary_path, json.dumps(out, indent=2, sort_keys=True, default=str))

    def finish(self, exit_code: int = 0) -> None:
        if self._finished:
            return
        self._finished = True
        self._write_summary(exit_code)


def wandb_run_id(name: str) -> str:
    """A W&B run id for an hnas run id (W&B ids: at most 64 characters of letters, digits, - and _): the same
    hnas run resumes the same W&B run."""
    return "hnas-" + hashlib.sha1(name.encode()).hexdigest()[:20]


class WandbTracker:
    """One W&B run per search (offline by default; ``WANDB_MODE`` or ``mode`` override); a resumed search
    continues the same W&B run (id from the hnas run id)."""

    def __init__(
        self,
        dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        project: str = "hnas",
        mode: str | None = None,
    ) -> None:
        import wandb  # lazy: importing wandb costs time that CSV/none users need not pay

        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        self.dir = Path(dir) if dir is not None else Path.cwd()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._rows: dict[Any, dict[str, Any]] = {}
        self._finished = False
        try:
            self.run = wandb.init(
                project=project,
                name=name,
                id=wandb_run_id(name) if name else None,
                resume="allow" if name else None,
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
        step = int(row["step"]) if _scalar(row.get("step")) else len(self._rows)
        first = step not in self._rows
        self._rows[step] = dict(row)
        if row.get("replayed") or not first:
            return  # its scalars were logged by the process that evaluated it (same W&B run id)
        scalars = {k: v for k, v in row.items() if _scalar(v) and k != "step" and math.isfinite(v)}
        if scalars:
            self.run.log(scalars, step=step)

    def log_summary(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            self.run.summary[k] = v if _scalar(v) or isinstance(v, (str, bool)) or v is None else _cell(v)

    def log_image(self, name: str, path: str | os.PathLike[str]) -> None:
        self.run.log({f"images/{name}": self._wandb.Image(str(path))})

    def log_artifact(self, name: str, path: str | os.PathLike[str], kind: str) -> None:
        """Logged under ``name`` (W&B keeps versions: ``name:latest``); ``hnas train from_artifact=`` reads it."""
        art = self._wandb.Artifact(name, type=kind)
        art.add_file(str(path))
        self.run.log_artifact(art)

    def _table(self) -> Any:
        rows = [self._rows[k] for k in sorted(self._rows)]
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        data = [[_cell(r.get(c)) for c in columns] for r in rows]
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


#: ``logger.kind`` -> tracker class (constructor: dir, name, config, **options of the logger group)
TRACKERS: Registry[type[Tracker]] = Registry("logger.kind", {
    "wandb": "hnas.tracking:WandbTracker",
    "csv": "hnas.tracking:CSVTracker",
    "none": "hnas.tracking:NullTracker",
}, TrackingError)


def make_tracker(
    kind: str,
    dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    **options: Any,
) -> Tracker:
    """The tracker for ``logger=<kind>`` (``wandb``, ``csv``, ``none``); ``options``: the rest of the logger
    config group (e.g. W&B's ``project``, ``mode``)."""
    cls = TRACKERS.get(kind)
    if kind == "csv" and dir is None:
        raise TrackingError("tracker kind 'csv' needs a directory (dir=...)")
    try:
        return cls(dir=dir, name=name, config=config, **options)
    except TypeError as e:
        raise TrackingError(f"logger={kind}: {e}; check the logger config group's keys") from e


@contextmanager
def tracking(tracker: Tracker) -> Iterator[Tracker]:
    """Yield ``tracker`` and always finish it: exit code 0 on success, 1 when the body raised."""
    try:
        yield tracker
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish(exit_code=0)
