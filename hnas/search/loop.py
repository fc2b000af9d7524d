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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hnas.errors import HNASError
from hnas.evaluators.base import Evaluator, Observation
from hnas.search.base import Arch, Strategy, StrategyError
from hnas.store import Store, StoreError
from hnas.tracking import Tracker

log = logging.getLogger(__name__)

MAX_REPEATED_ASKS = 10_000  # consecutive asks of already-observed archs before the loop gives up


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    ) -> None:
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
        self.logged: dict[int, dict[str, Any]] = {}
        self.seen: dict[str, Observation] = {}
        self.history: list[dict[str, Any]] = []
        self.cost = 0.0
        self.step = self.n_evaluated = self.n_replayed = 0
        self.best_value = -math.inf

    # ------------------------------------------------------------------ the steps
    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        with self.store.lease(self.run_id):
            self.store.check_fingerprint(self.run_id, self.fingerprint)
            self._load_log()
            while self._budget_left():
                arch = self._propose()
                if arch is None:
                    break
                obs, replayed = self._observe(arch)
                self._record(arch, obs, replayed)
            return self._finish(time.perf_counter() - t0)

    def _load_log(self) -> None:
        self.logged = {int(r["step"]): r for r in self.store.trials(self.run_id)}
        if self.logged:
            log.info("run %s: resuming, %d trials in the log", self.run_id, len(self.logged))

    def _budget_left(self) -> bool:
        if self.budget_queries is not None and self.step >= self.budget_queries:
            return False
        if self.budget_cost_s is not None and self.cost >= self.budget_cost_s:
            return False
        if self.strategy.done:
            log.info("run %s: strategy %s has nothing left to propose after %d queries", self.run_id,
                     self.strategy.name, self.step)
            return False
        return True

    def _propose(self) -> Arch | None:
        """The strategy's next architecture not observed in this run (repeats are answered from memory)."""
        for _ in range(MAX_REPEATED_ASKS + 1):
            arch = self.strategy.ask()
            spelling = self.strategy.spelling(arch)
            if spelling not in self.seen:
                return arch
            self.strategy.tell(arch, self.seen[spelling])
            if self.strategy.done:
                return None
        raise SearchError(f"strategy {self.strategy.name!r} asked only already-observed archs "
                          f"{MAX_REPEATED_ASKS} times in a row")

    def _observe(self, arch: Arch) -> tuple[Observation, bool]:
        """The observation of this step: replayed from the trial log, or evaluated now and logged."""
        spelling = self.strategy.spelling(arch)
        row = self.logged.get(self.step)
        if row is not None:
            if row["arch"] != spelling:
                raise SearchError(
                    f"run {self.run_id!r} cannot resume: step {self.step} of its trial log queried {row['arch']!r} "
                    f"but the strategy now asks {spelling!r}; the configuration (strategy, options, seed, pool or "
                    "scores) changed — use a new run id")
            value = math.nan if row["value"] is None else float(row["value"])
            self.n_replayed += 1
            return Observation(value, float(row["cost_s"] or 0.0), dict(row["info"])), True
        obs = self.evaluator.evaluate(arch)
        if not isinstance(obs, Observation):
            raise SearchError(f"evaluator returned {type(obs).__name__}, expected hnas.evaluators.Observation")
        info = dict(obs.info)
        if not obs.finite and "note" not in info:
            info["note"] = f"the evaluation returned {obs.value!r}, not a finite value"
            obs = Observation(obs.value, obs.cost_s, info)
        if not math.isfinite(float(obs.cost_s)) or obs.cost_s < 0:
            raise SearchError(f"evaluator returned cost {obs.cost_s!r} for {spelling!r}; a cost must be a finite "
                              "number of seconds >= 0")
        self.store.log_trial(self.run_id, self.step, spelling, self._key(arch), obs.value, obs.cost_s, info)
        self.n_evaluated += 1
        return obs, False

    def _key(self, arch: Arch) -> str:
        return self.space.key(self.space.coerce(arch)) if self.space is not None else self.strategy.spelling(arch)

    def _record(self, arch: Arch, obs: Observation, replayed: bool) -> None:
        """Tell the strategy, extend the history, send the tracker row, print the query line."""
        spelling = self.strategy.spelling(arch)
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
            self.tracker.log_architecture({"step": self.step, **entry, **reference, **extra, "cum_cost_s": self.cost,
                                           "best_so_far": self.best_value if math.isfinite(self.best_value) else None,
                                           "replayed": replayed, "strategy": self.strategy.name,
                                           "run_id": self.run_id})
        left = []
        if self.budget_queries:
            left.append(f"{self.budget_queries - self.step - 1} queries")
        if self.budget_cost_s:
            left.append(f"{max(0.0, self.budget_cost_s - self.cost):.0f} s")
        log.info("query %d%s %s  value %s  best %s  cost %.1f s  left %s%s%s", self.step + 1,
                 f"/{self.budget_queries}" if self.budget_queries else "", spelling, _num(obs.value),
                 _num(self.best_value), self.cost, " / ".join(left) or "–",
                 "".join(f"  {k} {v:.2f}" for k, v in reference.items()), "  (from the log)" if replayed else "")
        self.step += 1

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
                            self.n_replayed, wall_s, dict(self.strategy.summary()))


def run_search(strategy: Strategy, evaluator: Evaluator, store: Store, run_id: str,
               budget_queries: int | None = None, **kwargs: Any) -> SearchResult:
    """``SearchLoop(strategy, evaluator, store, run_id, budget_queries, **kwargs).run()``."""
    return SearchLoop(strategy, evaluator, store, run_id, budget_queries, **kwargs).run()


def _num(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "–"
