"""The search loop: ask -> evaluate -> log -> tell, within a query and/or cost budget, resumable exactly.

Every observation is written to the store's trial log the moment it exists. A restarted run with the same
run id re-creates the strategy with the same seed and replays: for each ask, when the log already has that
step, the logged observation is told instead of evaluating (after checking that the strategy asked for the
same architecture; a mismatch means the configuration changed and is an error). Because strategies are
deterministic functions of (seed, observations), the resumed run continues exactly where the killed one
stopped and ends with the same result; the evaluator is never called for a logged step.

Around that: the run holds a lease on its run id in the store (a second process on the same run is refused
instead of evaluating the same steps twice), and the run's fingerprint (benchmark content, imported tables,
pool) is checked against the one its trial log was written with.

An ask for an architecture already observed in this run is answered from memory and not counted (the
budget counts distinct queries). An observation without a finite value (a diverged warm-up) is logged with
its reason and never becomes the best.

Parallel evaluation (``parallel`` = q > 1, an ``executor``): the strategy proposes up to q candidates at once
(``Strategy.ask_batch``); each gets the next step number and is logged *pending* (with the time and its
worker) before it is evaluated, and *done* the moment its observation arrives. ``mode="sync"`` (the default)
evaluates a batch, then tells it in ask order, so the result depends only on (seed, q); ``mode="async"`` tells
each observation on completion and refills at once (faster when evaluations differ in length, but the result
depends on timing; each observation records its position in the tell order, ``info["told"]``, so a resume
replays the same sequence). A resumed run proposes the same batches again: logged *done* steps are told from
the log, *pending* ones (a driver killed mid-batch) are submitted again -- a finished evaluation is never
repeated. The executor runs evaluations elsewhere (worker processes, Ray) but only this process writes the
store.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hnas.errors import HNASError
from hnas.evaluators.base import Evaluator, Observation
from hnas.search.base import Arch, Strategy, StrategyError
from hnas.search.executor import Executor, ExecutorSpec, Prebuilt, evaluate
from hnas.store import Store, StoreError
from hnas.tracking import Tracker

log = logging.getLogger(__name__)

MAX_REPEATED_ASKS = 10_000  # consecutive asks of already-observed archs before the loop gives up
MODES = ("sync", "async")


class SearchError(HNASError, RuntimeError):
    """Bad budget, or a resumed run whose trial log does not match what the strategy asks now."""


@dataclass
class SearchResult:
    """``history``: the distinct queried archs in order ({arch, key, value, cost_s[, test][, note]});
    ``best`` is None when no observation had a finite value."""

    run_id: str
    strategy: str
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    search_cost_s: float
    n_evaluations: int
    n_replayed: int
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    executor_start_s: float = 0.0  # of wall_s: starting the workers (and building their evaluators)
    executor_stop_s: float = 0.0  # of wall_s: stopping them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trial:
    """One proposed query: its step (ask order), architecture, and observation once there is one."""

    step: int
    arch: Arch
    spelling: str
    obs: Observation | None = None
    replayed: bool = False
    told: int | None = None  # position in the logged tell order (asynchronous mode)


def check_budget(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise SearchError(f"{name} must be a positive number (or None for no limit), got {value!r}")


class SearchLoop:
    """One search run of ``strategy`` against ``evaluator``; see the module docstring.

    ``budget_queries`` defaults to the strategy's own budget. ``space`` (default: the strategy's) spells and
    keys architectures for the log. ``fingerprint``: what the trial log's meaning depends on beyond the run id
    (checked on resume). ``annotate(arch)``: extra columns of the architecture's tracker row (proxy scores).
    ``parallel``: candidates evaluated at once (q); ``mode``: ``sync`` or ``async`` (module docstring);
    ``executor``: an ``ExecutorSpec`` (default: in this process, one at a time) started on the first
    evaluation; ``evaluator_factory``: how a worker obtains the evaluator (default: the evaluator pickled).
    """

    def __init__(
        self,
        strategy: Strategy,
        evaluator: Evaluator,
        store: Store,
        run_id: str,
        budget_queries: int | None = None,
        budget_cost_s: float | None = None,
        tracker: Tracker | None = None,
        space: Any = None,
        fingerprint: dict[str, Any] | None = None,
        annotate: Callable[[Arch], dict[str, Any]] | None = None,
        parallel: int = 1,
        mode: str = "sync",
        executor: ExecutorSpec | None = None,
        evaluator_factory: Callable[[], Evaluator] | None = None,
    ) -> None:
        if isinstance(parallel, bool) or not isinstance(parallel, (int, np.integer)) or parallel < 1:
            raise SearchError(f"parallel (candidates evaluated at once) must be an integer >= 1, got {parallel!r}")
        if mode not in MODES:
            raise SearchError(f"mode {mode!r} is not one of: {', '.join(MODES)}")
        check_budget("budget_queries", budget_queries)
        check_budget("budget_cost_s", budget_cost_s)
        if budget_queries is None and budget_cost_s is None:
            budget_queries = strategy.budget
            if budget_queries is None:
                raise SearchError("no budget: give budget_queries (distinct queries T) and/or budget_cost_s")
        if budget_queries is not None and strategy.budget is not None and budget_queries > strategy.budget:
            log.warning("budget_queries=%d exceeds the strategy's planned budget T=%d", budget_queries,
                        strategy.budget)
        self.strategy, self.evaluator, self.store, self.run_id = strategy, evaluator, store, run_id
        self.budget_queries, self.budget_cost_s = budget_queries, budget_cost_s
        self.tracker, self.fingerprint, self.annotate = tracker, dict(fingerprint or {}), annotate
        self.space = space if space is not None else strategy.space
        self.parallel, self.mode = int(parallel), mode
        self.executor_spec = executor if executor is not None else ExecutorSpec()
        self.evaluator_factory = evaluator_factory if evaluator_factory is not None else Prebuilt(evaluator)
        self.logged: dict[int, dict[str, Any]] = {}
        self.seen: dict[str, Observation] = {}
        self.history: list[dict[str, Any]] = []
        self.inflight: dict[int, Trial] = {}  # step -> proposed and not told yet
        self.cost = 0.0
        self.step = self.n_evaluated = self.n_replayed = 0  # step: the next step number to hand out
        self.best_value = -math.inf
        self._executor: Executor | None = None
        self.executor_start_s = self.executor_stop_s = 0.0

    # ------------------------------------------------------------------ the steps
    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        with self.store.lease(self.run_id):
            self.store.check_fingerprint(self.run_id, self.fingerprint)
            self._load_log()
            try:
                while True:
                    self._fill()
                    if not self.inflight:
                        break
                    self._collect()
            finally:
                if self._executor is not None:
                    t1 = time.perf_counter()
                    self._executor.close()
                    self.executor_stop_s = time.perf_counter() - t1
            return self._finish(time.perf_counter() - t0)

    def _load_log(self) -> None:
        self.logged = {int(r["step"]): r for r in self.store.trials(self.run_id, status=None)}
        if self.logged:
            pending = sum(r["status"] == "pending" for r in self.logged.values())
            log.info("run %s: resuming, %d trials in the log%s", self.run_id, len(self.logged) - pending,
                     f" and {pending} pending (submitted again)" if pending else "")

    def _queries_left(self) -> float:
        """Distinct queries that may still be proposed (told + in flight count)."""
        if self.budget_queries is None:
            return math.inf
        return self.budget_queries - len(self.history) - len(self.inflight)

    def _budget_left(self) -> bool:
        if self._queries_left() <= 0:
            return False
        if self.budget_cost_s is not None and self.cost >= self.budget_cost_s:
            return False
        if self.strategy.done:
            if not self.inflight:
                log.info("run %s: strategy %s has nothing left to propose after %d queries", self.run_id,
                         self.strategy.name, len(self.history))
            return False
        return True

    def _fill(self) -> None:
        """Propose and submit: a whole batch when nothing is in flight (sync), else refill free slots (async)."""
        if self.mode == "sync" and self.inflight:
            return
        room = self.parallel - len(self.inflight)
        if room <= 0 or not self._budget_left():
            return
        batch = self._propose(int(min(room, self._queries_left())))
        for arch in batch:
            trial = Trial(self.step, arch, self.strategy.spelling(arch))
            self.step += 1
            self.inflight[trial.step] = trial
            self._observe(trial)

    def _propose(self, n: int) -> list[Arch]:
        """Up to ``n`` architectures not observed in this run (repeats are answered from memory, not counted);
        an empty list when the strategy is done or waits for a pending result."""
        for _ in range(MAX_REPEATED_ASKS + 1):
            batch = self.strategy.ask_batch(n) if (n > 1 or self.inflight) else [self.strategy.ask()]
            fresh = []
            for arch in batch:
                spelling = self.strategy.spelling(arch)
                if spelling in self.seen:
                    self.strategy.tell(arch, self.seen[spelling])
                elif any(t.spelling == spelling for t in self.inflight.values()):
                    raise SearchError(f"strategy {self.strategy.name!r} proposed {spelling!r}, which is still being "
                                      "evaluated")
                else:
                    fresh.append(arch)
            if len({self.strategy.spelling(a) for a in fresh}) != len(fresh):
                raise SearchError(f"strategy {self.strategy.name!r} proposed the same architecture twice in one "
                                  f"batch: {[self.strategy.spelling(a) for a in fresh]}")
            if fresh or not batch or self.strategy.done:
                return fresh
        raise SearchError(f"strategy {self.strategy.name!r} asked only already-observed archs "
                          f"{MAX_REPEATED_ASKS} times in a row")

    def _observe(self, trial: Trial) -> None:
        """Replay the trial's observation from the log, or submit it for evaluation (logged pending)."""
        row = self.logged.get(trial.step)
        if row is not None:
            if row["arch"] != trial.spelling:
                raise SearchError(
                    f"run {self.run_id!r} cannot resume: step {trial.step} of its trial log queried {row['arch']!r} "
                    f"but the strategy now asks {trial.spelling!r}; the configuration (strategy, options, seed, "
                    "pool, scores or search.parallel) changed — use a new run id")
            if row["status"] == "done":
                value = math.nan if row["value"] is None else float(row["value"])
                info = dict(row["info"])
                told = info.pop("told", None)
                trial.obs, trial.replayed = Observation(value, float(row["cost_s"] or 0.0), info), True
                trial.told = None if told is None else int(told)
                self.n_replayed += 1
                return
        ex = self._start_executor()
        worker = ex.submit(trial.step, trial.arch)
        self.store.log_pending(self.run_id, trial.step, trial.spelling, self._key(trial.arch), worker or ex.name)

    def _start_executor(self) -> Executor:
        if self._executor is None:
            t0 = time.perf_counter()
            self._executor = self.executor_spec.start(self.evaluator_factory, evaluate, self.parallel,
                                                      describe=self.strategy.format)
            self._executor.warm()
            self.executor_start_s = time.perf_counter() - t0
            if self._executor.name != "inline":
                log.info("run %s: %s executor ready in %.1f s (%d slots)", self.run_id, self._executor.name,
                         self.executor_start_s, self._executor.slots)
        return self._executor

    def _collect(self) -> None:
        """Wait for observations and tell them: the whole batch in ask order (sync), or the next one (async)."""
        if self.mode == "sync":
            while any(t.obs is None for t in self.inflight.values()):
                self._receive()
            for step in sorted(self.inflight):
                self._record(self.inflight.pop(step))
            return
        while not any(t.obs is not None for t in self.inflight.values()):
            self._receive()
        # the logged tell order (replayed trials come first), then the order of arrival
        trial = min((t for t in self.inflight.values() if t.obs is not None),
                    key=lambda t: (t.told if t.told is not None else math.inf, t.step))
        self._record(self.inflight.pop(trial.step))

    def _receive(self) -> None:
        """One or more evaluations finished: check, log (done) and attach their observations."""
        assert self._executor is not None
        for done in self._executor.wait():
            if done.error is not None:
                raise done.error
            trial = self.inflight[done.key]
            trial.obs = self._checked(trial, done.result)
            info = dict(trial.obs.info)
            if self.mode == "async":
                info["told"] = len(self.history) + sum(t.obs is not None and not t.replayed and t is not trial
                                                 for t in self.inflight.values())
                trial.told = info["told"]
            self.store.log_trial(self.run_id, trial.step, trial.spelling, self._key(trial.arch), trial.obs.value,
                                 trial.obs.cost_s, info, worker=done.worker)
            self.n_evaluated += 1

    def _checked(self, trial: Trial, obs: Any) -> Observation:
        if not isinstance(obs, Observation):
            raise SearchError(f"evaluator returned {type(obs).__name__}, expected hnas.evaluators.Observation")
        info = dict(obs.info)
        if not obs.finite and "note" not in info:
            info["note"] = f"the evaluation returned {obs.value!r}, not a finite value"
            obs = Observation(obs.value, obs.cost_s, info)
        if not math.isfinite(float(obs.cost_s)) or obs.cost_s < 0:
            raise SearchError(f"evaluator returned cost {obs.cost_s!r} for {trial.spelling!r}; a cost must be a "
                              "finite number of seconds >= 0")
        return obs

    def _key(self, arch: Arch) -> str:
        return self.space.key(self.space.coerce(arch)) if self.space is not None else self.strategy.spelling(arch)

    def _record(self, trial: Trial) -> None:
        """Tell the strategy, extend the history, send the tracker row, print the query line."""
        arch, obs, replayed, spelling = trial.arch, trial.obs, trial.replayed, trial.spelling
        assert obs is not None
        n = len(self.history)  # position in the tell order (= the step in sequential and synchronous runs)
        self.seen[spelling] = obs
        self.strategy.tell(arch, obs)
        self.cost += float(obs.cost_s)
        entry: dict[str, Any] = {"arch": spelling, "key": self._key(arch), "value": float(obs.value),
                                 "cost_s": float(obs.cost_s)}
        for name in ("test", "reference"):
            if isinstance(obs.info.get(name), dict):
                entry[name] = dict(obs.info[name])
        if obs.info.get("note"):
            entry["note"] = str(obs.info["note"])
        self.history.append(entry)
        if obs.finite:
            self.best_value = max(self.best_value, float(obs.value))
        reference = {f"reference/{k}": v for k, v in (entry.get("reference") or {}).items()}
        if self.tracker is not None:
            extra = self.annotate(arch) if self.annotate is not None else {}
            self.tracker.log_architecture({"step": n, **entry, **reference, **extra, "cum_cost_s": self.cost,
                                           "best_so_far": self.best_value if math.isfinite(self.best_value) else None,
                                           "replayed": replayed, "strategy": self.strategy.name,
                                           "run_id": self.run_id})
        left = []
        if self.budget_queries:
            left.append(f"{self.budget_queries - n - 1} queries")
        if self.budget_cost_s:
            left.append(f"{max(0.0, self.budget_cost_s - self.cost):.0f} s")
        log.info("query %d%s %s  value %s  best %s  cost %.1f s  left %s%s%s", n + 1,
                 f"/{self.budget_queries}" if self.budget_queries else "", spelling, _num(obs.value),
                 _num(self.best_value), self.cost, " / ".join(left) or "–",
                 "".join(f"  {k} {v:.2f}" for k, v in reference.items()), "  (from the log)" if replayed else "")

    def _finish(self, wall_s: float) -> SearchResult:
        if self.logged and max(self.logged) >= self.step:
            log.warning("run %s: the trial log has %d steps, this run used %d (budget reduced?)", self.run_id,
                        max(self.logged) + 1, self.step)
        if not self.history:
            raise SearchError(f"run {self.run_id!r} made no query (strategy {self.strategy.name!r} was done at once)")
        best: dict[str, Any] | None = None
        try:
            best_arch, best_value = self.strategy.best()
        except StrategyError:
            log.warning("run %s: no observation has a finite value; there is no best architecture", self.run_id)
        else:
            spelling = self.strategy.spelling(best_arch)
            best = {"arch": spelling, "key": self._key(best_arch), "value": best_value}
            test = self.seen[spelling].info.get("test") if spelling in self.seen else None
            if isinstance(test, dict):
                best["test"] = dict(test)
        try:  # for inspection only: resume works from the trial log
            self.store.save_state(self.run_id, self.strategy.state_dict())
        except StoreError as e:
            log.warning("run %s: strategy state not saved: %s", self.run_id, e)
        return SearchResult(self.run_id, self.strategy.name, self.history, best, self.cost, self.n_evaluated,
                            self.n_replayed, wall_s, dict(self.strategy.summary()), self.executor_start_s,
                            self.executor_stop_s)


def run_search(strategy: Strategy, evaluator: Evaluator, store: Store, run_id: str,
               budget_queries: int | None = None, **kwargs: Any) -> SearchResult:
    """``SearchLoop(strategy, evaluator, store, run_id, budget_queries, **kwargs).run()``."""
    return SearchLoop(strategy, evaluator, store, run_id, budget_queries, **kwargs).run()


def _num(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "–"
