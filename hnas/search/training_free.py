"""Training-free baseline: query the pool's top-ranked architectures of one proxy, best first."""

from __future__ import annotations

import numpy as np

from hnas.search.base import Arch, Strategy, StrategyError


def proxy_direction(name: str) -> bool:
    """``higher_is_better`` of a registered proxy; True for names the registry does not know (imports)."""
    from hnas.proxies.registry import ProxyError, get_proxy

    try:
        return bool(get_proxy(name).higher_is_better)
    except (ProxyError, ImportError):
        return True


def rank_order(scores: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Pool indices best first; ties keep pool order; NaN (failed scores) last."""
    s = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(s), np.inf, -s if higher_is_better else s)
    return np.argsort(key, kind="stable")


class RankedPoolSearch(Strategy):
    """Query the pool in the order of a ranking (``self._order``, set by ``setup``), skipping observed archs."""

    needs_pool = True
    concurrent_asks = True  # a batch is the next n of the ranking
    _order: np.ndarray

    @property
    def done(self) -> bool:
        return all(self.pool.spellings[int(i)] in self.observed for i in self._order[self._next :])

    def _ask(self) -> Arch:
        while self._next < len(self._order):
            i = int(self._order[self._next])
            self._next += 1
            if self.pool.spellings[i] not in self.observed and self.pool.spellings[i] not in self.pending:
                return self.pool.archs[i]
        raise StrategyError(f"{self.name} exhausted its pool of {len(self.pool)} architectures")

    def rank(self, scores: np.ndarray, higher_is_better: bool = True) -> None:
        self._order = rank_order(scores, higher_is_better)
        self._next = 0


class TrainingFree(RankedPoolSearch):
    """Options: ``proxy`` (a pool score column), ``higher_is_better`` (None: the registered direction).

    Ties keep pool order; NaN scores rank last.
    """

    name = "training_free"
    defaults = {"proxy": "synflow", "higher_is_better": None}

    def setup(self) -> None:
        proxy = self.options["proxy"]
        self.pool.require([proxy], who=f"strategy 'training_free' (proxy={proxy!r})")
        hib = self.options["higher_is_better"]
        hib = proxy_direction(proxy) if hib is None else bool(hib)
        self.rank(self.pool.scores[proxy], hib)
