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


class TrainingFree(Strategy):
    """Options: ``proxy`` (a pool score column), ``higher_is_better`` (None: the registered direction).

    Ties keep pool order; NaN scores rank last.
    """

    name = "training_free"
    needs_pool = True
    defaults = {"proxy": "synflow", "higher_is_better": None}

    def setup(self) -> None:
        proxy = self.options["proxy"]
        self.pool.require([proxy], who=f"strategy 'training_free' (proxy={proxy!r})")
        hib = self.options["higher_is_better"]
        hib = proxy_direction(proxy) if hib is None else bool(hib)
        s = self.pool.scores[proxy]
        key = np.where(np.isnan(s), np.inf, -s if hib else s)
        self._order = np.argsort(key, kind="stable")
        self._next = 0

    @property
    def done(self) -> bool:
        return self._next >= len(self._order)

    def _ask(self) -> Arch:
        while self._next < len(self._order):
            i = int(self._order[self._next])
            self._next += 1
            if self.pool.keys[i] not in self.observed:
                return self.pool.archs[i]
        raise StrategyError(f"training_free exhausted its pool of {len(self.pool)} architectures")
