"""Tracking: CSV rows and summary, make_tracker kinds, finish-on-exception, W&B offline run files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hnas.tracking import (
    CSVTracker,
    NullTracker,
    Tracker,
    TrackingError,
    WandbTracker,
    make_tracker,
    tracking,
)

ROWS = [
    {"step": 0, "arch": "|a~0|", "value": 70.5, "cost_s": 12.0},
    {"step": 1, "arch": "|b~0|", "value": 81.25, "cost_s": 14.5, "scores": {"synflow": 3.0}},
]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_csv_tracker_rows_summary_and_widened_header(tmp_path: Path) -> None:
    t = CSVTracker(tmp_path / "out")
    t.log_architecture(ROWS[0])
    assert _read_csv(tmp_path / "out" / "architectures.csv") == [
        {"step": "0", "arch": "|a~0|", "value": "70.5", "cost_s": "12.0"}
    ]
    t.log_architecture(ROWS[1])  # new column 'scores' widens the header, earlier row keeps an empty cell
    t.log_architecture({"step": 2, "arch": "|c~0|", "value": 60.0, "cost_s": 1.0})
    rows = _read_csv(tmp_path / "out" / "architectures.csv")
    assert [r["arch"] for r in rows] == ["|a~0|", "|b~0|", "|c~0|"]
    assert rows[0]["scores"] == "" and json.loads(rows[1]["scores"]) == {"synflow": 3.0}
    t.log_summary({"best": {"arch": "|b~0|", "value": 81.25}})
    t.log_summary({"n_evaluations": 3})
    t.finish()
    t.finish(exit_code=5)  # idempotent: the first finish stands
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == {
        "best": {"arch": "|b~0|", "value": 81.25},
        "n_evaluations": 3,
        "exit_code": 0,
    }


def test_csv_tracker_continues_existing_file_with_one_row_per_step(tmp_path: Path) -> None:
    t = CSVTracker(tmp_path)
    t.log_architecture(ROWS[0])
    t2 = CSVTracker(tmp_path)  # a resumed search replays step 0, then evaluates step 1
    t2.log_architecture({**ROWS[0], "replayed": True})
    t2.log_architecture({"step": 1, "arch": "|b~0|", "value": 1.0, "cost_s": 2.0})
    t3 = CSVTracker(tmp_path)  # and once more, everything replayed
    t3.log_architecture({**ROWS[0], "replayed": True})
    t3.log_architecture({"step": 1, "arch": "|b~0|", "value": 1.0, "cost_s": 2.0, "replayed": True})
    assert [r["step"] for r in _read_csv(tmp_path / "architectures.csv")] == ["0", "1"]


def test_tracking_finishes_with_exit_code_1_on_exception(tmp_path: Path) -> None:
    t = CSVTracker(tmp_path)
    with pytest.raises(RuntimeError, match="search crashed"):
        with tracking(t) as tr:
            tr.log_architecture(ROWS[0])
            raise RuntimeError("search crashed")
    assert json.loads((tmp_path / "summary.json").read_text()) == {"exit_code": 1}
    assert len(_read_csv(tmp_path / "architectures.csv")) == 1


def test_make_tracker_kinds(tmp_path: Path) -> None:
    assert isinstance(make_tracker("csv", dir=tmp_path), CSVTracker)
    none = make_tracker("none")
    assert isinstance(none, NullTracker) and isinstance(none, Tracker)
    with tracking(none) as tr:
        tr.log_architecture(ROWS[0])
    with pytest.raises(TrackingError, match="unknown logger.kind 'tensorboard'; valid: csv, none, wandb"):
        make_tracker("tensorboard")
    with pytest.raises(TrackingError, match="'csv' needs a directory"):
        make_tracker("csv")


def _table_json(run_dir: Path) -> dict:
    files = sorted((run_dir / "files" / "media" / "table").glob("architectures_*.table.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_wandb_offline_rows_in_run_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = make_tracker("wandb", dir=tmp_path, project="hnas-test", name="t", config={"seed": 0})
    with tracking(tracker) as t:
        assert t.mode == "offline"
        for r in ROWS:
            t.log_architecture(r)
        t.log_summary({"best_value": 81.25})
    assert t.run_dir.parent == tmp_path / "wandb" and t.run_dir.name.startswith("offline-run-")
    table = _table_json(t.run_dir)
    assert table["columns"] == ["step", "arch", "value", "cost_s", "scores"]
    assert table["data"] == [
        [0, "|a~0|", 70.5, 12.0, None],
        [1, "|b~0|", 81.25, 14.5, '{"synflow": 3.0}'],
    ]
    assert wandb.run is None  # finished: no run left open for the next search


def test_wandb_finished_on_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)  # default is offline
    t = WandbTracker(project="hnas-test", dir=tmp_path)
    assert t.mode == "offline"
    codes: list[int] = []
    real_finish = t.run.finish

    def spy_finish(exit_code: int | None = None) -> None:
        codes.append(exit_code)
        real_finish(exit_code=exit_code)

    monkeypatch.setattr(t.run, "finish", spy_finish)
    with pytest.raises(ValueError, match="boom"):
        with tracking(t):
            t.log_architecture(ROWS[0])
            raise ValueError("boom")
    assert codes == [1] and wandb.run is None
    assert _table_json(t.run_dir)["data"] == [[0, "|a~0|", 70.5, 12.0]]


def test_wandb_resumed_run_keeps_its_id_and_one_table_row_per_step(tmp_path: Path, monkeypatch) -> None:
    """A resumed search continues the same W&B run id; its table has each step once, scalars are logged
    only for steps evaluated in this process."""
    from hnas.tracking import wandb_run_id

    monkeypatch.setenv("WANDB_MODE", "offline")
    first = make_tracker("wandb", dir=tmp_path / "a", name="run-x")
    with tracking(first) as t:
        t.log_architecture(ROWS[0])
    logged: list[int] = []
    second = make_tracker("wandb", dir=tmp_path / "b", name="run-x")
    real_log = second.run.log
    monkeypatch.setattr(second.run, "log", lambda d, step=None, **k: (logged.append(step), real_log(d, step=step,
                                                                                                   **k)))
    with tracking(second) as t:
        t.log_architecture({**ROWS[0], "replayed": True})
        t.log_architecture({**ROWS[0], "replayed": True})
        t.log_architecture(ROWS[1])
    assert first.run.id == second.run.id == wandb_run_id("run-x")
    assert [r[0] for r in _table_json(second.run_dir)["data"]] == [0, 1]
    assert 0 not in logged and 1 in logged
