"""Store: the SQLite file of one project/run directory — proxy-score cache, trial log, run state.

Why SQLite: one file, no server, and several processes (cache shards, GPUs, SLURM array jobs) can fill it
at once. Concurrency rules followed here: WAL journal (readers never block the writer), a busy timeout,
every write is one short ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two writers
never deadlock upgrading a read lock), and a bounded retry when SQLite still answers "locked"/"busy".

Each process opens its own connection lazily (a Store handed to a forked/spawned child reconnects there).

Tables (schema version 2; a version-1 file is migrated in place, in one transaction, when opened)
------
``scores``   one proxy score per cache key (space, arch_id, proxy, proxy_version, seed, batch_fp, bn_mode,
             dtype): value (REAL or NULL), status (ok|nan|inf|oom|error), seconds, message, source
             ('hnas' for scores computed here, an import label such as ``suite_zero:<file>`` otherwise),
             created (unix time). ``arch_id`` is the architecture's canonical key (``space.key``) for scores
             hnas computes -- isomorphic spellings share a score -- and its spelling (``space.format``) for
             imported tables, which measured every spelling separately. A NaN/inf is never stored as a
             number: its value is NULL and its status says what it was (see hnas.proxies.result.ProxyScore).
``trials``   the trial log of a search: (run_id, step) is unique; arch (the spelling), key (the canonical
             key), value (NULL when not finite: ``info['note']`` says why), cost_s, info (JSON), status
             (``pending`` while an evaluation runs, ``done`` once it answered), worker, created.
``run_meta`` run_id -> the fingerprint of what the trial log's meaning depends on beyond the config text
             (benchmark file content, imported score tables, the pool); a resume under another fingerprint
             is refused.
``leases``   run_id -> the process (host, pid) that is running it, with a heartbeat: a second process
             started on the same run id is refused instead of evaluating the same steps again.
``runs``     run_id -> JSON state of a strategy (for inspection; resume works from the trial log).
``meta``     schema version.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from hnas.errors import HNASError
from hnas.proxies.result import ProxyScore

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 60_000
MAX_RETRIES = 20
#: a lease whose holder runs on another host is taken as abandoned after this many seconds without heartbeat
LEASE_TTL_S = 300.0
TRIAL_STATUSES = ("pending", "done")
_CHUNK = 500  # keys per IN (...) query; well under SQLite's bound-variable limit

T = TypeVar("T")

# The scores key's column order serves get_scores (prefix up to dtype, then arch_id IN ...); find_scores
# scans one (space, proxy) prefix. No secondary index: it would double the cost of bulk imports.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    space TEXT NOT NULL, arch_id TEXT NOT NULL, proxy TEXT NOT NULL, proxy_version INTEGER NOT NULL,
    seed INTEGER NOT NULL, batch_fp TEXT NOT NULL, bn_mode TEXT NOT NULL, dtype TEXT NOT NULL,
    value REAL, status TEXT NOT NULL, seconds REAL NOT NULL, message TEXT NOT NULL,
    source TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (space, proxy, proxy_version, seed, batch_fp, bn_mode, dtype, arch_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trials (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, key TEXT NOT NULL, arch TEXT NOT NULL,
    value REAL, cost_s REAL, info TEXT NOT NULL, created REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'done', worker TEXT,
    UNIQUE (run_id, step)
);
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS run_meta (run_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, acquired REAL NOT NULL,
    heartbeat REAL NOT NULL
);
"""

# version 1 -> 2: the scores' architecture column is arch_id (canonical key or spelling), the trial log's
# identity column holds the canonical key and trials gain a status (pending/done) and a worker. Version-1
# trial rows keep what they had in that column (the spelling): it is informational, replay compares arch.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE scores RENAME COLUMN arch_key TO arch_id",
    "ALTER TABLE trials RENAME COLUMN arch_key TO key",
    "ALTER TABLE trials ADD COLUMN status TEXT NOT NULL DEFAULT 'done'",
    "ALTER TABLE trials ADD COLUMN worker TEXT",
)


class StoreError(HNASError, RuntimeError):
    """A store file that cannot be used, or a write that contradicts what is already stored."""


@dataclass(frozen=True)
class ScoreKey:
    """The full cache key of one proxy score (pass it around instead of eight positional arguments)."""

    space: str
    arch_id: str
    proxy: str
    version: int
    seed: int
    batch_fp: str
    bn_mode: str
    dtype: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        object.__setattr__(self, "version", int(self.version))
        object.__setattr__(self, "seed", int(self.seed))

    def with_arch(self, arch_id: str) -> ScoreKey:
        """The same key for another architecture."""
        return ScoreKey(**{**self.as_dict(), "arch_id": arch_id})

    def as_tuple(self) -> tuple[str, str, str, int, int, str, str, str]:
        """Field values in column order (dataclasses.astuple deep-copies, too slow for bulk writes)."""
        s = self
        return (s.space, s.arch_id, s.proxy, s.version, s.seed, s.batch_fp, s.bn_mode, s.dtype)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def dtype_name(dtype: Any) -> str:
    """``torch.float64`` -> ``'float64'``; strings pass through (the cache stores names, not objects)."""
    return dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")


def _create_schema(c: sqlite3.Connection) -> None:
    # executescript would COMMIT the surrounding transaction, so run the statements one by one
    old = c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    version = None
    if old is not None:
        row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = None if row is None else int(row[0])
    if version is not None and version > SCHEMA_VERSION:
        return  # _check_schema refuses it with a clear message; do not touch a newer layout
    if version == 1:
        for stmt in _MIGRATE_1_TO_2:
            c.execute(stmt)
        c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        log.info("store migrated from schema version 1 to %d", SCHEMA_VERSION)
    for stmt in _SCHEMA.split(";"):
        if stmt.strip():
            c.execute(stmt)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


def _row_to_score(value: float | None, status: str, seconds: float, message: str) -> ProxyScore:
    return ProxyScore(value if status == "ok" else None, status, float(seconds), message)


def _info_json(info: dict[str, Any] | None) -> str:
    try:
        return json.dumps(info or {}, sort_keys=True, allow_nan=True, default=str)
    except (TypeError, ValueError) as e:  # pragma: no cover - default=str makes this rare
        raise StoreError(f"trial info is not JSON-serialisable: {info!r} ({e})") from e


class Store:
    """One SQLite file (WAL mode) shared by every process of a project; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"store path {self.path} exists and is not a file; set store=<a file path>")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store's directory {self.path.parent}: {e.strerror}; "
                             "set store=<a path in a writable directory>") from e
        self._check_writable()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._held: dict[str, tuple[int, threading.Event]] = {}
        self._connect()

    def _check_writable(self) -> None:
        """SQLite needs to write the file and, in WAL mode, create files beside it: say so up front instead of
        letting a permission problem surface as 'not a usable store'."""
        where = self.path if self.path.exists() else self.path.parent
        if not os.access(where, os.W_OK) or not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise StoreError(
                f"cannot write the store {self.path}: {'the file' if self.path.exists() else 'its directory'} "
                f"{where} is read-only (permission denied); set store=<a path in a writable directory>")

    # ------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                log.warning("store %s: journal mode is %s, not WAL (network file system?)", self.path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn, self._pid = conn, os.getpid()
            self._write(_create_schema, conn=conn)
            self._check_schema(conn)
        except sqlite3.DatabaseError as e:
            conn.close()
            self._conn = None
            if isinstance(e, sqlite3.OperationalError) and "readonly" in str(e).lower():
                raise StoreError(f"cannot write the store {self.path}: {e}; set store=<a writable path>") from e
            raise StoreError(
                f"{self.path} is not a usable hnas store (SQLite database): {e}; "
                "point the store at a new file or move this one away"
            ) from e
        return conn

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        def check(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {row[0]}, newer than this hnas "
                    f"(supports {SCHEMA_VERSION}); upgrade hnas"
                )

        self._write(check, conn=conn)

    @property
    def conn(self) -> sqlite3.Connection:
        return self._connect()

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # a Store sent to another process reconnects there
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._conn, self._pid = None, None
        self._held = {}

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ transactions
    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; on 'database is locked/busy' back off and retry (busy_timeout covers most cases)."""
        for attempt in range(MAX_RETRIES):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or attempt == MAX_RETRIES - 1:
                    raise
                delay = min(2.0, 0.01 * 2**attempt) * (0.5 + random.random())
                log.debug("store %s busy (%s); retry %d in %.2fs", self.path, e, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection | None = None) -> T:
        """``fn`` inside one BEGIN IMMEDIATE transaction, committed, or rolled back on any error."""
        c = conn if conn is not None else self.conn

        def attempt() -> T:
            c.execute("BEGIN IMMEDIATE")
            try:
                out = fn(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return out

        return self._retry(attempt)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        c = self.conn
        try:
            yield c
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
                raise
            raise StoreError(f"store {self.path}: {e}") from e

    # ------------------------------------------------------------------ proxy-score cache
    def get_score(
        self,
        space: str,
        arch_id: str,
        proxy: str,
        version: int,
        seed: int,
        batch_fp: str,
        bn_mode: str,
        dtype: Any,
    ) -> ProxyScore | None:
        """The cached score for this exact key, or None (a cache miss)."""
        k = ScoreKey(space, arch_id, proxy, version, seed, batch_fp, bn_mode, dtype)
        with self._read() as c:
            row = self._retry(
                lambda: c.execute(
                    "SELECT value, status, seconds, message FROM scores WHERE space=? AND arch_id=? AND "
                    "proxy=? AND proxy_version=? AND seed=? AND batch_fp=? AND bn_mode=? AND dtype=?",
                    k.as_tuple(),
                ).fetchone()
            )
        return None if row is None else _row_to_score(*row)

    def get(self, key: ScoreKey) -> ProxyScore | None:
        return self.get_score(*key.as_tuple())

    def get_scores(
        self,
        space: str,
        proxy: str,
        version: int,
        seed: int,
        batch_fp: str,
        bn_mode: str,
        dtype: Any,
        arch_ids: Iterable[str] | None = None,
    ) -> dict[str, ProxyScore]:
        """arch_id -> score for every cached architecture under this key (or only ``arch_ids``)."""
        base = (
            "SELECT arch_id, value, status, seconds, message FROM scores WHERE space=? AND proxy=? AND "
            "proxy_version=? AND seed=? AND batch_fp=? AND bn_mode=? AND dtype=?"
        )
        params: list[Any] = [space, proxy, int(version), int(seed), batch_fp, bn_mode, dtype_name(dtype)]
        return self._select_by_ids(base, params, arch_ids)

    def find_scores(
        self, space: str, proxy: str, arch_ids: Iterable[str] | None = None, source: str | None = None
    ) -> dict[str, ProxyScore]:
        """arch_id -> score ignoring version/seed/batch/BN/dtype (for imported tables).

        When several rows exist for one architecture the most recently written wins.
        """
        base = "SELECT arch_id, value, status, seconds, message FROM scores WHERE space=? AND proxy=?"
        params: list[Any] = [space, proxy]
        if source is not None:
            base += " AND source=?"
            params.append(source)
        return self._select_by_ids(base, params, arch_ids, order=" ORDER BY created, arch_id")

    def _select_by_ids(
        self, base: str, params: list[Any], arch_ids: Iterable[str] | None, order: str = ""
    ) -> dict[str, ProxyScore]:
        out: dict[str, ProxyScore] = {}
        with self._read() as c:
            if arch_ids is None:
                chunks: list[Sequence[str] | None] = [None]
            else:
                keys = list(dict.fromkeys(arch_ids))
                chunks = [keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK)]
            for chunk in chunks:
                sql, p = base, list(params)
                if chunk is not None:
                    sql += f" AND arch_id IN ({','.join('?' * len(chunk))})"
                    p += list(chunk)
                rows = self._retry(lambda sql=sql, p=p: c.execute(sql + order, p).fetchall())
                for key, *rest in rows:
                    out[key] = _row_to_score(*rest)
        return out

    def put_score(
        self,
        space: str,
        arch_id: str,
        proxy: str,
        version: int,
        seed: int,
        batch_fp: str,
        bn_mode: str,
        dtype: Any,
        score: ProxyScore,
        source: str = "hnas",
    ) -> None:
        """Write (or overwrite) one score."""
        self.put_scores(
            [(ScoreKey(space, arch_id, proxy, version, seed, batch_fp, bn_mode, dtype), score, source)]
        )

    def put(self, key: ScoreKey, score: ProxyScore, source: str = "hnas") -> None:
        self.put_scores([(key, score, source)])

    def put_scores(
        self, rows: Iterable[tuple[ScoreKey, ProxyScore] | tuple[ScoreKey, ProxyScore, str]]
    ) -> int:
        """Write many ``(key, score[, source])`` rows in one transaction; returns how many."""
        now = time.time()
        data = []
        for row in rows:
            key, score, *rest = row
            source = rest[0] if rest else "hnas"
            if not isinstance(key, ScoreKey) or not isinstance(score, ProxyScore):
                raise StoreError(f"put_scores expects (ScoreKey, ProxyScore[, source]) rows, got {row!r}")
            value = score.value if score.ok else None
            if value is not None and not math.isfinite(value):  # ProxyScore forbids it; belt and braces
                raise StoreError(f"refusing to store non-finite value {value!r} under status 'ok' for {key}")
            data.append(
                (*key.as_tuple(), value, score.status, float(score.seconds), score.message, source, now)
            )
        if not data:
            return 0
        self._write(
            lambda c: c.executemany(
                "INSERT INTO scores VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
                "value=excluded.value, status=excluded.status, seconds=excluded.seconds, "
                "message=excluded.message, source=excluded.source, created=excluded.created",
                data,
            )
        )
        return len(data)

    def score_sources(self, space: str | None = None, proxy: str | None = None) -> dict[str, int]:
        """source label -> number of cached scores (so a result can say which were imported)."""
        sql, params = "SELECT source, COUNT(*) FROM scores WHERE 1=1", []
        if space is not None:
            sql += " AND space=?"
            params.append(space)
        if proxy is not None:
            sql += " AND proxy=?"
            params.append(proxy)
        with self._read() as c:
            rows = self._retry(lambda: c.execute(sql + " GROUP BY source ORDER BY source", params).fetchall())
        return {s: int(n) for s, n in rows}

    def count_scores(self) -> int:
        with self._read() as c:
            return int(self._retry(lambda: c.execute("SELECT COUNT(*) FROM scores").fetchone()[0]))

    # ------------------------------------------------------------------ trial log
    def log_pending(self, run_id: str, step: int, arch: str, key: str, worker: str | None = None) -> None:
        """Record that query ``step`` of ``run_id`` (architecture spelling ``arch``) is being evaluated.

        A resumed run re-submits exactly the steps that are still pending; a step already done with the same
        architecture is left as it is, one with another architecture is an error (two runs share a run id).
        """
        def write(c: sqlite3.Connection) -> None:
            old = c.execute("SELECT arch, status FROM trials WHERE run_id=? AND step=?",
                            (run_id, int(step))).fetchone()
            if old is None:
                c.execute("INSERT INTO trials (run_id, step, key, arch, value, cost_s, info, created, status, "
                          "worker) VALUES (?,?,?,?,NULL,NULL,'{}',?,'pending',?)",
                          (run_id, int(step), str(key), arch, time.time(), worker))
            elif old[0] != arch:
                raise StoreError(f"run {run_id!r} already has {old[0]!r} ({old[1]}) at step {step}, not "
                                 f"{arch!r}; two runs share this run id: use a new run_id")
            elif old[1] == "pending":
                c.execute("UPDATE trials SET worker=?, created=? WHERE run_id=? AND step=?",
                          (worker, time.time(), run_id, int(step)))

        self._write(write)

    def log_trial(
        self,
        run_id: str,
        step: int,
        arch: str,
        key: str,
        value: float | None,
        cost_s: float | None,
        info: dict[str, Any] | None = None,
        worker: str | None = None,
    ) -> None:
        """Record the observation of query ``step`` of ``run_id`` (status ``done``).

        ``arch`` is the spelling, ``key`` the canonical key. A non-finite ``value`` is stored as NULL (SQL
        has no NaN); say why in ``info['note']``. Idempotent: writing the identical row again is a no-op; a
        pending row of the same architecture is completed; a *different* finished row at an occupied step is
        an error, because it means two runs share one run id.
        """
        if not isinstance(arch, str):
            raise StoreError(f"log_trial wants the architecture's string form (space.format), got {arch!r}")
        v = None if value is None or not math.isfinite(float(value)) else float(value)
        new = (str(key), arch, v, None if cost_s is None else float(cost_s), _info_json(info))

        def write(c: sqlite3.Connection) -> None:
            old = c.execute(
                "SELECT key, arch, value, cost_s, info, status FROM trials WHERE run_id=? AND step=?",
                (run_id, int(step)),
            ).fetchone()
            if old is None:
                c.execute("INSERT INTO trials (run_id, step, key, arch, value, cost_s, info, created, status, "
                          "worker) VALUES (?,?,?,?,?,?,?,?,'done',?)", (run_id, int(step), *new, time.time(), worker))
            elif old[5] == "pending" and old[1] == arch:
                c.execute("UPDATE trials SET key=?, value=?, cost_s=?, info=?, status='done', worker=? "
                          "WHERE run_id=? AND step=?", (new[0], new[2], new[3], new[4], worker, run_id, int(step)))
            elif not _same_trial(tuple(old[:5]), new):
                raise StoreError(
                    f"run {run_id!r} already has a different trial at step {step}: stored {tuple(old[:5])!r}, "
                    f"new {new!r}; use a new run id or resume from step {self._next_step(c, run_id)}"
                )

        self._write(write)

    @staticmethod
    def _next_step(c: sqlite3.Connection, run_id: str) -> int:
        row = c.execute("SELECT MAX(step) FROM trials WHERE run_id=?", (run_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def trials(self, run_id: str, status: str | None = "done") -> list[dict[str, Any]]:
        """The trials of ``run_id`` ordered by step (empty for an unknown run): the finished ones by default,
        ``status="pending"`` for those still being evaluated, ``None`` for all."""
        if status is not None and status not in TRIAL_STATUSES:
            raise StoreError(f"trial status {status!r} is not one of: {', '.join(TRIAL_STATUSES)}")
        sql = ("SELECT step, arch, key, value, cost_s, info, created, status, worker FROM trials WHERE run_id=?"
               + ("" if status is None else " AND status=?") + " ORDER BY step")
        params = (run_id,) if status is None else (run_id, status)
        with self._read() as c:
            rows = self._retry(lambda: c.execute(sql, params).fetchall())
        return [
            {"step": s, "arch": a, "key": k, "value": v, "cost_s": cs, "info": json.loads(i), "created": t,
             "status": st, "worker": w}
            for s, a, k, v, cs, i, t, st, w in rows
        ]

    # ------------------------------------------------------------------ run fingerprint
    def check_fingerprint(self, run_id: str, fingerprint: dict[str, Any]) -> None:
        """Record ``fingerprint`` for a new run; for a run with a trial log, refuse one that differs.

        Why: the run id is a hash of the config text, but the trial log's meaning also depends on file
        contents (a benchmark table edited in place, another imported score table, another pool).
        """
        text = json.dumps(fingerprint, sort_keys=True, default=str)

        def write(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT fingerprint FROM run_meta WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                c.execute("INSERT INTO run_meta VALUES (?,?,?)", (run_id, text, time.time()))
                return
            old = json.loads(row[0])
            if old != json.loads(text):
                diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
                has_log = c.execute("SELECT 1 FROM trials WHERE run_id=? LIMIT 1", (run_id,)).fetchone()
                if has_log is None:  # nothing replayable yet: the new fingerprint simply replaces the old
                    c.execute("UPDATE run_meta SET fingerprint=?, created=? WHERE run_id=?",
                              (text, time.time(), run_id))
                    return
                raise StoreError(
                    f"run {run_id!r} cannot resume: its trial log was written with a different "
                    f"{', '.join(diff)} ({'; '.join(f'{k}: {old.get(k)!r} -> {fingerprint.get(k)!r}' for k in diff)})"
                    "; restore the original input or start a new run (run_id=... or another store)")

        self._write(write)

    # ------------------------------------------------------------------ leases
    @contextmanager
    def lease(self, run_id: str, ttl_s: float = LEASE_TTL_S) -> Iterator[None]:
        """Hold ``run_id`` for this process while the block runs; another live holder is refused.

        A holder on this host is alive while its pid is; one on another host while its heartbeat (renewed
        every ``ttl_s / 5`` seconds by a background thread) is younger than ``ttl_s``. So a run killed with
        SIGKILL can be resumed at once on the same machine, and after ``ttl_s`` from another one.
        """
        if run_id in self._held:
            count, stop = self._held[run_id]
            self._held[run_id] = (count + 1, stop)
            try:
                yield
            finally:
                count, stop = self._held[run_id]
                self._held[run_id] = (count - 1, stop)
            return
        host, pid = socket.gethostname(), os.getpid()

        def acquire(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT host, pid, acquired, heartbeat FROM leases WHERE run_id=?", (run_id,)).fetchone()
            now = time.time()
            if row is not None and (row[0], row[1]) != (host, pid) and _holder_alive(row, ttl_s, now):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row[2]))
                raise StoreError(
                    f"run {run_id!r} is being run by process {row[1]} on {row[0]} (since {since}); wait for it "
                    f"to finish or stop it, or give this run another run_id (store {self.path})")
            c.execute("INSERT INTO leases VALUES (?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET host=excluded.host, "
                      "pid=excluded.pid, acquired=excluded.acquired, heartbeat=excluded.heartbeat",
                      (run_id, host, pid, now, now))

        self._write(acquire)
        stop = threading.Event()
        self._held[run_id] = (1, stop)
        beat = threading.Thread(target=self._heartbeat, args=(run_id, host, pid, ttl_s / 5, stop), daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(timeout=5)
            del self._held[run_id]
            self._write(lambda c: c.execute("DELETE FROM leases WHERE run_id=? AND host=? AND pid=?",
                                            (run_id, host, pid)))

    def _heartbeat(self, run_id: str, host: str, pid: int, every: float, stop: threading.Event) -> None:
        """Renew the lease (own connection: sqlite3 connections stay in the thread that made them)."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            while not stop.wait(every):
                try:
                    conn.execute("UPDATE leases SET heartbeat=? WHERE run_id=? AND host=? AND pid=?",
                                 (time.time(), run_id, host, pid))
                except sqlite3.Error as e:  # a missed beat only shortens the grace other hosts give us
                    log.debug("lease heartbeat of %s failed: %s", run_id, e)
        finally:
            conn.close()

    # ------------------------------------------------------------------ run state
    def save_state(self, run_id: str, state: dict[str, Any]) -> None:
        """Replace the JSON state of ``run_id`` in one transaction (all or nothing)."""
        try:
            text = json.dumps(state, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise StoreError(f"state of run {run_id!r} is not JSON-serialisable: {e}") from e
        self._write(
            lambda c: c.execute(
                "INSERT INTO runs VALUES (?,?,?) ON CONFLICT(run_id) DO UPDATE SET state=excluded.state, "
                "updated=excluded.updated",
                (run_id, text, time.time()),
            )
        )

    def load_state(self, run_id: str) -> dict[str, Any] | None:
        with self._read() as c:
            row = self._retry(
                lambda: c.execute("SELECT state FROM runs WHERE run_id=?", (run_id,)).fetchone()
            )
        return None if row is None else json.loads(row[0])

    def runs(self) -> list[str]:
        """Run ids that have a saved state or logged trials, sorted (import markers included)."""
        with self._read() as c:
            rows = self._retry(
                lambda: c.execute(
                    "SELECT run_id FROM runs UNION SELECT DISTINCT run_id FROM trials ORDER BY run_id"
                ).fetchall()
            )
        return [r[0] for r in rows]


def _holder_alive(row: tuple[Any, ...], ttl_s: float, now: float) -> bool:
    """Is the lease holder (host, pid, acquired, heartbeat) still running?"""
    host, pid, _, heartbeat = row
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            return True
        return True
    return now - float(heartbeat) < ttl_s


def _same_trial(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    """Equal rows, with NaN == NaN (SQLite stores NaN as NULL) and JSON compared as parsed objects."""

    def num_eq(a: float | None, b: float | None) -> bool:
        if a is None or b is None:
            return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
        return a == b or (math.isnan(a) and math.isnan(b))

    return (
        old[0] == new[0]
        and old[1] == new[1]
        and num_eq(old[2], new[2])
        and num_eq(old[3], new[3])
        and json.loads(old[4]) == json.loads(new[4])
    )
