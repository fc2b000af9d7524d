"""Search strategies (ask/tell), the candidate pool, and the resumable search loop."""

from __future__ import annotations

import importlib
from typing import Any

from hnas.search.base import Strategy, StrategyError
from hnas.search.loop import SearchError, SearchResult, run_search
from hnas.search.pool import CandidatePool, PoolError, ScoreSpec

# name -> (module, class); other strategies (sigeo, rbflex) register here the same way
STRATEGIES: dict[str, tuple[str, str]] = {
    "random": ("hnas.search.random", "RandomSearch"),
    "rea": ("hnas.search.rea", "RegularizedEvolution"),
    "training_free": ("hnas.search.training_free", "TrainingFree"),
    "hnas": ("hnas.search.hnas_search", "HNAS"),
    "robot": ("hnas.search.robot", "RoBoT"),
    "gp_bo": ("hnas.search.gp_bo", "GPBO"),
    "hybrid": ("hnas.search.hybrid", "Hybrid"),
    "sigeo": ("hnas.search.sigeo", "SiGeoSearch"),
    "rbflex": ("hnas.search.rbflex", "RBFleXSearch"),
}


def strategy_names() -> list[str]:
    return sorted(STRATEGIES)


def get_strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; valid: {', '.join(strategy_names())}")
    module, cls = STRATEGIES[name]
    return getattr(importlib.import_module(module), cls)


def make_strategy(
    name: str,
    space: Any,
    pool: CandidatePool | None = None,
    budget: int | None = None,
    seed: int = 0,
    **options: Any,
) -> Strategy:
    """``Strategy(space, pool, budget, seed, **options)`` for the strategy called ``name``."""
    return get_strategy_class(name)(space, pool, budget, seed, **options)


__all__ = [
    "STRATEGIES",
    "CandidatePool",
    "PoolError",
    "ScoreSpec",
    "SearchError",
    "SearchResult",
    "Strategy",
    "StrategyError",
    "get_strategy_class",
    "make_strategy",
    "run_search",
    "strategy_names",
]
