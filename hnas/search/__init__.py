"""Search strategies (ask/tell), the candidate pool, and the resumable search loop."""

from __future__ import annotations

from hnas.registry import Registry
from hnas.search.base import ScoringContext, Strategy, StrategyError
from hnas.search.loop import SearchError, SearchLoop, SearchResult, run_search
from hnas.search.pool import CandidatePool, PoolError, ScoreSpec

#: ``strategy.name`` -> class
STRATEGIES: Registry[type[Strategy]] = Registry("strategy", {
    "random": "hnas.search.random:RandomSearch",
    "rea": "hnas.search.rea:RegularizedEvolution",
    "training_free": "hnas.search.training_free:TrainingFree",
    "hnas": "hnas.search.hnas_search:HNAS",
    "robot": "hnas.search.robot:RoBoT",
    "gp_bo": "hnas.search.gp_bo:GPBO",
    "hybrid": "hnas.search.hybrid:Hybrid",
    "sigeo": "hnas.search.sigeo:SiGeoSearch",
    "rbflex": "hnas.search.rbflex:RBFleXSearch",
}, StrategyError)


def make_strategy(name: str, space: object, pool: CandidatePool | None = None, budget: int | None = None,
                  seed: int = 0, **options: object) -> Strategy:
    """``Strategy(space, pool, budget, seed, **options)`` for the strategy called ``name``."""
    return STRATEGIES.get(name)(space, pool, budget, seed, **options)


__all__ = [
    "STRATEGIES",
    "CandidatePool",
    "PoolError",
    "ScoreSpec",
    "ScoringContext",
    "SearchError",
    "SearchLoop",
    "SearchResult",
    "Strategy",
    "StrategyError",
    "make_strategy",
    "run_search",
]
