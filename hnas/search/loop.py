"""The search loop: ask -> evaluate -> log -> tell, within a query and/or cost budget, resumable exactly.

Every observation is written to the store's trial log the moment it exists. A restarted run with the same
run id re-creates the strategy with the same seed and replays: for each ask, when the log already has that
step, the logged observation is told instead of evaluating (after checking that the strategy asked for the
same architecture; a mismatch means the configuration changed and is an error). Because strategies are
deterministic functions of (seed, observations), the resumed run continues exactly where the killed one
stopped and ends with the same result; the evaluator is never called for a logged step.

An ask for an architecture already observed in this run is answered from memory and not counted (the
budget counts distinct queries).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from hnas.evaluate import Observation
from hnas.search.base import Strategy
from hnas.store import StoreError

log = logging.getLogger(__name__)

MAX_REPEATED_ASKS = 10_000  # consecutive asks of already-observed archs before the loop gives up


class SearchError(RuntimeError):
    """Bad budget, or a resumed run whose trial log does not match what the strategy asks now."""


class Tracker(Protocol):
    """What the loop needs of hnas.tracking's trackers: one row per evaluated architecture."""

    def log_architecture(self, row: dict[str, Any]) -> None: ...


@dataclass
class SearchResult:
    """``history``: the distinct queried archs in order ({arch, arch_key, value, cost_s[, test]})."""

    run_id: str
    strategy: str
    history: list[dict[str, Any]]
    best: dict[str, Any]
    search_cost_s: float
    n_evaluations: int
    n_replayed: int
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_budget(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SearchError(f"{name} must be a positive number (or None for no limit), got {value!r}")


def run_search(
    strategy: Strategy,
    evaluator: Any,
    store: Any,
    run_id: str,
    budget_queries: int | None = None,
    budget_cost_s: float | None = None,
    tracker: Tracker | None = None,
    space: Any = None,
) -> SearchResult:
    """Run ``strategy`` against ``evaluator`` until T distinct queries and/or the cost budget are spent.

    ``budget_queries`` defaults to the strategy's own budget. ``space`` (default: the strategy's) formats
    architectures for the log. Returns the history, the best observed architecture and the search cost.
    """
    _check_budget("budget_queries", budget_queries)
    _check_budget("budget_cost_s", budget_cost_s)
    if budget_queries is None and budget_cost_s is None:
        budget_queries = strategy.budget
        if budget_queries is None:
            raise SearchError("no budget: give budget_queries (distinct queries T) and/or budget_cost_s")
    if budget_queries is not None and strategy.budget is not None and budget_queries > strategy.budget:
        log.warning(
            "budget_queries=%d exceeds the strategy's planned budget T=%d", budget_queries, strategy.budget
        )
    space = space if space is not None else strategy.space

    def fmt(arch: Any) -> str:
        if isinstance(arch, str):
            return arch
        return space.format(arch) if space is not None else strategy.format(arch)

    t0 = time.perf_counter()
    logged = {int(r["step"]): r for r in store.trials(run_id)}
    if logged:
        log.info("run %s: resuming, %d trials in the log", run_id, len(logged))
    seen: dict[str, Observation] = {}
    history: list[dict[str, Any]] = []
    cost = 0.0
    step = n_evaluated = n_replayed = repeats = 0
    while True:
        if budget_queries is not None and step >= budget_queries:
            break
        if budget_cost_s is not None and cost >= budget_cost_s:
            break
        if strategy.done:
            log.info(
                "run %s: strategy %s has nothing left to propose after %d queries",
                run_id,
                strategy.name,
                step,
            )
            break
        arch = strategy.ask()
        key = strategy.key(arch)
        if key in seen:
            repeats += 1
            if repeats > MAX_REPEATED_ASKS:
                raise SearchError(
                    f"strategy {strategy.name!r} asked only already-observed archs {repeats} times"
                )
            strategy.tell(arch, seen[key])
            continue
        repeats = 0
        arch_str = fmt(arch)
        if step in logged:
            row = logged[step]
            if row["arch_key"] != key:
                raise SearchError(
                    f"run {run_id!r} cannot resume: step {step} of its trial log queried {row['arch']!r} "
                    f"(key {row['arch_key']!r}) but the strategy now asks {arch_str!r} (key {key!r}); the "
                    "configuration (strategy, options, seed, pool or scores) changed — use a new run id"
                )
            value = math.nan if row["value"] is None else float(row["value"])
            obs = Observation(value, float(row["cost_s"] or 0.0), dict(row["info"]))
            n_replayed += 1
        else:
            obs = evaluator.evaluate(arch)
            if not isinstance(obs, Observation):
                raise SearchError(
                    f"evaluator returned {type(obs).__name__}, expected hnas.evaluate.Observation"
                )
            store.log_trial(run_id, step, arch_str, key, obs.value, obs.cost_s, dict(obs.info))
            n_evaluated += 1
        seen[key] = obs
        strategy.tell(arch, obs)
        cost += float(obs.cost_s)
        entry: dict[str, Any] = {
            "arch": arch_str,
            "arch_key": key,
            "value": float(obs.value),
            "cost_s": float(obs.cost_s),
        }
        if isinstance(obs.info.get("test"), dict):
            entry["test"] = dict(obs.info["test"])
        history.append(entry)
        if tracker is not None:
            tracker.log_architecture(
                {
                    "step": step,
                    **entry,
                    "cum_cost_s": cost,
                    "replayed": step in logged,
                    "strategy": strategy.name,
                    "run_id": run_id,
                }
            )
        log.info(
            "run %s step %d: %s value=%.4f cost=%.1fs%s",
            run_id,
            step,
            arch_str,
            obs.value,
            obs.cost_s,
            " (from log)" if step in logged else "",
        )
        step += 1
    if logged and max(logged) >= step:
        log.warning(
            "run %s: the trial log has %d steps, this run used %d (budget reduced?)",
            run_id,
            max(logged) + 1,
            step,
        )
    if not history:
        raise SearchError(f"run {run_id!r} made no query (strategy {strategy.name!r} was done at once)")
    best_arch, best_value = strategy.best()
    best_key = strategy.key(best_arch)
    best = {"arch": fmt(best_arch), "arch_key": best_key, "value": best_value}
    test = seen[best_key].info.get("test") if best_key in seen else None
    if isinstance(test, dict):
        best["test"] = dict(test)
    if hasattr(store, "save_state"):
        try:  # for inspection only: resume works from the trial log
            store.save_state(run_id, strategy.state_dict())
        except StoreError as e:
            log.warning("run %s: strategy state not saved: %s", run_id, e)
    extra: dict[str, Any] = {}
    if getattr(strategy, "T0", None) is not None:
        extra["T0"] = strategy.T0
    return SearchResult(
        run_id, strategy.name, history, best, cost, n_evaluated, n_replayed, time.perf_counter() - t0, extra
    )
