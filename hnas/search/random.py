"""Random search: distinct architectures in a seeded uniform order (the baseline every method must beat)."""

from __future__ import annotations

from hnas.search.base import Arch, Strategy, StrategyError


class RandomSearch(Strategy):
    """With a pool: a seeded permutation of it. Without: uniform samples of the space, skipping repeats."""

    name = "random"
    defaults: dict = {}
    concurrent_asks = True  # the permutation moves on; space draws skip pending archs

    def setup(self) -> None:
        self._order = self.rng.permutation(len(self.pool)) if self.pool is not None else None
        self._next = 0
        self._exhausted = False

    @property
    def done(self) -> bool:
        if self._order is not None:
            return all(self.pool.spellings[i] in self.observed for i in self._order[self._next :])
        return self._exhausted

    def _ask(self) -> Arch:
        if self._order is not None:
            while self._next < len(self._order):
                i = int(self._order[self._next])
                self._next += 1
                if self.pool.spellings[i] not in self.observed:
                    return self.pool.archs[i]
            raise StrategyError(f"random search exhausted its pool of {len(self.pool)} architectures")
        a = self.random_unseen(self.rng)
        if a is None:
            self._exhausted = True
            raise StrategyError("random search found no unseen architecture in 10,000 draws")
        return a
