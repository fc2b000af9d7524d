"""Store: score-cache round trips and key separation, trial log, run state, corrupt files, concurrency."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from hnas.proxies.result import ProxyScore
from hnas.store import ScoreKey, Store, StoreError

KEY = ScoreKey("nb201", "k0", "synflow", 1, 0, "fp0", "train", "float64")


def test_creates_parent_dirs_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.sqlite"
    Store(path)
    assert path.is_file()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_score_round_trip_and_miss(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    assert s.get(KEY) is None
    s.put(KEY, ProxyScore(12.5, "ok", 0.25, "fine"))
    got = s.get_score("nb201", "k0", "synflow", 1, 0, "fp0", "train", "float64")
    assert got == ProxyScore(12.5, "ok", 0.25, "fine")
    # persisted: a fresh Store on the same file sees it
    assert Store(tmp_path / "s.db").get(KEY) == ProxyScore(12.5, "ok", 0.25, "fine")
    # overwrite replaces
    s.put(KEY, ProxyScore(3.0, "ok", 0.5))
    assert s.get(KEY).value == 3.0


def test_torch_dtype_is_stored_by_name(tmp_path: Path) -> None:
    import torch

    s = Store(tmp_path / "s.db")
    s.put_score("nb201", "k", "snip", 1, 0, "fp", "train", torch.float32, ProxyScore(1.0))
    assert s.get_score("nb201", "k", "snip", 1, 0, "fp", "train", "float32") == ProxyScore(1.0)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ScoreKey)])
def test_every_key_field_separates_entries(tmp_path: Path, field: str) -> None:
    s = Store(tmp_path / "s.db")
    s.put(KEY, ProxyScore(1.0))
    other_value = 99 if isinstance(getattr(KEY, field), int) else "other"
    other = dataclasses.replace(KEY, **{field: other_value})
    assert s.get(other) is None
    s.put(other, ProxyScore(2.0))
    assert s.get(KEY).value == 1.0 and s.get(other).value == 2.0


@pytest.mark.parametrize(
    "score",
    [
        ProxyScore(None, "nan", 0.1, "nan in loss"),
        ProxyScore(None, "inf", 0.2, "+inf"),
        ProxyScore(None, "oom", 0.3, "CUDA out of memory"),
        ProxyScore(None, "error", 0.4, "RuntimeError: boom"),
        ProxyScore.from_value(float("nan"), 0.5),
    ],
)
def test_non_ok_statuses_round_trip_with_value_none(tmp_path: Path, score: ProxyScore) -> None:
    s = Store(tmp_path / "s.db")
    s.put(KEY, score)
    assert s.get(KEY) == score
    with sqlite3.connect(tmp_path / "s.db") as c:  # the row holds NULL, never a NaN number
        value, status = c.execute("SELECT value, status FROM scores").fetchone()
    assert value is None and status == score.status


def test_get_scores_filters_and_put_scores_batch(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    rows = [(KEY.with_arch(f"a{i}"), ProxyScore(float(i))) for i in range(1200)]
    rows.append((dataclasses.replace(KEY, seed=1, arch_id="a0"), ProxyScore(-1.0)))
    assert s.put_scores(rows) == 1201
    everything = s.get_scores("nb201", "synflow", 1, 0, "fp0", "train", "float64")
    assert len(everything) == 1200 and everything["a7"].value == 7.0
    # more keys than one IN(...) chunk, with an unknown one and a duplicate
    wanted = [f"a{i}" for i in range(0, 1200, 2)] + ["missing", "a0"]
    some = s.get_scores("nb201", "synflow", 1, 0, "fp0", "train", "float64", arch_ids=wanted)
    assert sorted(some) == sorted(f"a{i}" for i in range(0, 1200, 2))
    assert s.get_scores("nb201", "synflow", 1, 1, "fp0", "train", "float64") == {"a0": ProxyScore(-1.0)}


def test_find_scores_and_sources(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    s.put(KEY.with_arch("a"), ProxyScore(1.0))
    imported = ScoreKey("nb201", "b", "synflow", 0, -1, "import:x", "import", "import")
    s.put(imported, ProxyScore(5.0), source="suite_zero:x.csv")
    s.put(dataclasses.replace(imported, proxy="snip"), ProxyScore(None, "nan"), source="suite_zero:x.csv")
    assert s.find_scores("nb201", "synflow") == {"a": ProxyScore(1.0), "b": ProxyScore(5.0)}
    assert s.find_scores("nb201", "synflow", source="suite_zero:x.csv") == {"b": ProxyScore(5.0)}
    assert s.find_scores("nb201", "synflow", arch_ids=["a", "zz"]) == {"a": ProxyScore(1.0)}
    assert s.score_sources() == {"hnas": 1, "suite_zero:x.csv": 2}
    assert s.score_sources(space="nb201", proxy="synflow") == {"hnas": 1, "suite_zero:x.csv": 1}


def test_put_scores_rejects_bad_rows(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    with pytest.raises(StoreError, match="expects \\(ScoreKey, ProxyScore"):
        s.put_scores([(KEY, 1.0)])
    assert s.count_scores() == 0


def test_trial_log_round_trip_idempotent_and_conflict(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    s.log_trial("run1", 1, "|b~0|", "kb", 80.5, 10.0, {"test": 91.0})
    s.log_trial("run1", 0, "|a~0|", "ka", float("nan"), 5.0, None)
    s.log_trial("run1", 1, "|b~0|", "kb", 80.5, 10.0, {"test": 91.0})  # identical: no-op
    s.log_trial("run1", 0, "|a~0|", "ka", float("nan"), 5.0, {})  # NaN == NaN (stored NULL)
    t = s.trials("run1")
    assert [r["step"] for r in t] == [0, 1]
    assert t[1] | {"created": 0} == {
        "step": 1, "arch": "|b~0|", "key": "kb", "value": 80.5, "cost_s": 10.0,
        "info": {"test": 91.0}, "created": 0, "status": "done", "worker": None,
    }  # fmt: skip
    assert t[0]["value"] is None
    msg = "run 'run1' already has a different trial at step 1.*resume from step 2"
    with pytest.raises(StoreError, match=msg):
        s.log_trial("run1", 1, "|b~0|", "kb", 80.6, 10.0, {"test": 91.0})
    with pytest.raises(StoreError, match="string form"):
        s.log_trial("run1", 2, ("a",), "ka", 1.0, 1.0)
    assert s.trials("nope") == []
    assert len(s.trials("run1")) == 2


def test_run_state(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    assert s.load_state("r") is None
    s.save_state("r", {"step": 3, "rng": [1, 2]})
    s.save_state("r", {"step": 4, "rng": [1, 2, 3]})
    s.log_trial("only_trials", 0, "x", "x", 1.0, 1.0)
    assert Store(tmp_path / "s.db").load_state("r") == {"step": 4, "rng": [1, 2, 3]}
    assert s.runs() == ["only_trials", "r"]
    with pytest.raises(StoreError, match="state of run 'r' is not JSON-serialisable"):
        s.save_state("r", {"bad": object()})
    assert s.load_state("r") == {"step": 4, "rng": [1, 2, 3]}  # the failed write changed nothing


def test_corrupt_file_names_path(tmp_path: Path) -> None:
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=f"{bad}.*is not a usable hnas store"):
        Store(bad)
    with pytest.raises(StoreError, match="is not a file"):
        Store(tmp_path)


def test_pickled_store_reconnects(tmp_path: Path) -> None:
    import pickle

    s = Store(tmp_path / "s.db")
    s.put(KEY, ProxyScore(4.0))
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.get(KEY) == ProxyScore(4.0)


def _writer(path: str, worker: int, n_scores: int, n_trials: int, barrier=None) -> None:
    s = Store(path)
    if barrier is not None:  # start writing at the same moment, so the writes really interleave
        barrier.wait(60)
    for i in range(n_scores):
        val = ProxyScore(float(i)) if i % 7 else ProxyScore(None, "nan")
        s.put(KEY.with_arch(f"w{worker}-{i}"), val)
        if i < n_trials:
            s.log_trial(f"run{worker}", i, f"arch{i}", f"k{i}", float(i), 1.0, {"w": worker})


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    Store(path)  # both children find an initialised file; (they would also race safely on creation)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, 500, 200, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    s = Store(path)
    scores = s.get_scores("nb201", "synflow", 1, 0, "fp0", "train", "float64")
    trials = [s.trials("run0"), s.trials("run1")]
    assert len(scores) + sum(map(len, trials)) == 1400
    assert scores["w1-499"].value == 499.0 and scores["w0-7"].status == "nan"
    assert [t["step"] for t in trials[1]] == list(range(200))
    assert not math.isnan(trials[0][-1]["value"])
