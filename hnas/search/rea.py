"""Regularised evolution (Real et al. 2019), as NAS-Bench-201 runs it: population P, tournament of S.

Defaults P = 10, S = 3 follow NAS-Bench-201's R-EA script. The first P asks are random; afterwards the
fittest of S members drawn (with replacement) from the population is mutated, the child joins the population
and the oldest member leaves. On a tabular benchmark a child that was already evaluated costs nothing: it
joins the population with its cached value and evolution continues, so every ask is a new architecture.
With a pool, evolution stays inside it (mutations restricted to neighbours that are pool members).

Batches: pending architectures count towards the initial population and are never asked again; a batch of
children is n tournaments on the current population (a pending child is skipped like a repeat, without
joining the population).
"""

from __future__ import annotations

import logging
from collections import deque

from hnas.evaluators.base import Observation
from hnas.search.base import Arch, Strategy, StrategyError

log = logging.getLogger(__name__)

MAX_CACHED_CHILDREN = 1000  # consecutive already-seen children before falling back to a random architecture


class RegularizedEvolution(Strategy):
    name = "rea"
    defaults = {"population_size": 10, "sample_size": 3}
    concurrent_asks = True

    def setup(self) -> None:
        p, s = self.options["population_size"], self.options["sample_size"]
        if not (isinstance(p, int) and p >= 1 and isinstance(s, int) and 1 <= s):
            raise StrategyError(f"rea needs population_size >= 1 and sample_size >= 1, got {p}, {s}")
        if self.space is None:
            raise StrategyError("rea needs a search space (it mutates architectures)")
        self.population: deque[tuple[Arch, float]] = deque()

    def _add(self, arch: Arch, value: float) -> None:
        self.population.append((arch, value))
        if len(self.population) > self.options["population_size"]:
            self.population.popleft()

    def _mutate(self, arch: Arch) -> Arch | None:
        if self.pool is None:
            return self.space.mutate(arch, self.rng)
        nbrs = [a for a in self.space.neighbours(arch) if self.space.format(a) in self.pool.index_of]
        if not nbrs:
            return None
        a = nbrs[int(self.rng.integers(len(nbrs)))]
        return self.pool.archs[self.pool.index_of[self.space.format(a)]]

    def _ask(self) -> Arch:
        if len(self.history) + len(self.pending) < self.options["population_size"] or not self.population:
            a = self.random_unseen(self.rng)
            if a is None:
                raise StrategyError("rea found no unseen architecture for its initial population")
            return a
        for _ in range(MAX_CACHED_CHILDREN):
            members = [
                self.population[int(i)]
                for i in self.rng.integers(len(self.population), size=self.options["sample_size"])
            ]
            parent = max(members, key=lambda m: m[1])[0]
            child = self._mutate(parent)
            if child is None:
                break
            if self.spelling(child) in self.pending:
                continue
            obs = self.observed.get(self.spelling(child))
            if obs is None:
                return child
            self._add(child, _fitness(obs))  # already evaluated: free on a table, evolution goes on
        log.debug("rea: no new child found; asking a random unseen architecture")
        a = self.random_unseen(self.rng)
        if a is None:
            raise StrategyError("rea exhausted the architectures it can reach")
        return a

    def _tell(self, arch: Arch, spelling: str, obs: Observation) -> None:
        self._add(arch, _fitness(obs))


def _fitness(obs: Observation) -> float:
    v = float(obs.value)
    return v if v == v else float("-inf")
