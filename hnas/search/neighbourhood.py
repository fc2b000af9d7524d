"""The search space's neighbourhood restricted to a candidate pool (local moves that stay inside the pool).

Why a mapping by the space's canonical key: a pool lists spellings (``space.format``), while
``space.neighbours`` returns whatever spelling an edit produces; two spellings of one computation (NB201's
isomorphic cells) are the same network. A neighbour counts as in the pool when some pool member has the same
canonical ``space.key``; the first such member (pool order) stands for it. Neighbour lists are computed on
demand and cached: a search touches only the neighbourhoods of its incumbents.
"""

from __future__ import annotations

from typing import Any

from hnas.search.pool import CandidatePool


class PoolNeighbourhood:
    """``of(i)``: pool indices of the neighbours of pool member ``i`` (sorted, without ``i`` itself)."""

    def __init__(self, space: Any, pool: CandidatePool) -> None:
        self.space = space
        self.pool = pool
        self._by_key: dict[str, int] = {}
        for i, a in enumerate(pool.archs):
            self._by_key.setdefault(space.key(a), i)
        self._cache: dict[int, list[int]] = {}

    def index(self, arch: Any) -> int | None:
        """Pool index of the member computing the same network as ``arch`` (None: not in the pool)."""
        return self._by_key.get(self.space.key(arch))

    def of(self, i: int) -> list[int]:
        if i not in self._cache:
            own = self._by_key.get(self.space.key(self.pool.archs[i]))
            found = {self.index(b) for b in self.space.neighbours(self.pool.archs[i])}
            self._cache[i] = sorted(j for j in found if j is not None and j != i and j != own)
        return self._cache[i]
