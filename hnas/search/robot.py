"""RoBoT (He et al., ICLR 2024): BO over the weights of a linear combination of training-free metrics.

Each metric is min-max normalised over the pool (a constant metric is left as is; NaN contributes 0). For
weights w in [-1, 1]^m the induced choice is argmax_A sum_i w_i * M_i(A) (last index wins ties, as the
reference's flipped argsort). T BO calls (1 random + T-1 GP-UCB suggestions, bayes_opt 1.2.0 semantics)
each observe the induced choice; a choice already queried is answered from the cache, costing nothing, so
only new architectures are asked of the evaluator. ``w_best`` is updated with ">=" on every call. After the
T calls (T0 = distinct architectures so far), the remaining budget goes greedily down w_best's ranking until
T distinct architectures were queried. The result is the best observed one (methods.md §4.3).

Batches: BO calls are asked while others are pending, the GP conditioned on fantasised values of the pending
weights (``fantasy``: believer or liar, see hnas.bo). A call whose choice is a pending architecture waits for
that architecture's value (it is still one of the T calls). The greedy phase needs every call's value
(w_best), so it starts once all T calls are told; the greedy batch is the next n of w_best's ranking.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from hnas.bo import FANTASIES, BayesOpt
from hnas.evaluators.base import Observation
from hnas.search.base import Arch, Strategy, StrategyError

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov")


def minmax_normalise(m: np.ndarray) -> np.ndarray:
    """Column-wise min-max over the pool, constant columns unchanged, NaN -> 0 (contributes nothing)."""
    out = np.array(m, dtype=np.float64, copy=True)
    for j in range(out.shape[1]):
        col = out[:, j]
        finite = col[np.isfinite(col)]
        if finite.size and finite.max() > finite.min():
            out[:, j] = (col - finite.min()) / (finite.max() - finite.min())
    return np.where(np.isfinite(out), out, 0.0)


def last_argmax(s: np.ndarray) -> int:
    """Index of the maximum; among equal maxima the last one (reference: np.flip(np.argsort(s)))."""
    return int(len(s) - 1 - np.argmax(s[::-1]))


class RoBoT(Strategy):
    name = "robot"
    needs_pool = True
    concurrent_asks = True
    defaults = {
        "metrics": DEFAULT_METRICS,
        "weight_bounds": (-1.0, 1.0),
        "acquisition": "ucb",
        "kappa": 2.576,
        "xi": 0.0,
        "n_warmup": 10_000,  # acquisition optimiser: random candidates, then L-BFGS-B starts (bayes_opt)
        "n_starts": 10,
        "fantasy": "believer",  # value of a pending BO call while a batch is asked: believer | liar
    }

    def setup(self) -> None:
        o = self.options
        if o["fantasy"] not in FANTASIES:
            raise StrategyError(f"robot fantasy {o['fantasy']!r} is not one of: {', '.join(FANTASIES)}")
        if self.budget is None:
            raise StrategyError("strategy 'robot' needs a query budget T (it makes T BO calls, then greedy)")
        metrics = list(o["metrics"])
        if not metrics:
            raise StrategyError("robot needs at least one metric")
        self.pool.require(metrics, who="strategy 'robot'")
        if len(set(metrics)) != len(metrics):
            raise StrategyError(f"robot metrics must be distinct, got {metrics}")
        # BO dimensions in sorted-name order, as bayes_opt orders a pbounds dict
        self.metrics = sorted(metrics)
        self.features = minmax_normalise(self.pool.matrix(self.metrics))
        lo, hi = o["weight_bounds"]
        self.bo = BayesOpt(
            [(lo, hi)] * len(metrics),
            acquisition=o["acquisition"],
            kappa=o["kappa"],
            xi=o["xi"],
            n_warmup=o["n_warmup"],
            n_starts=o["n_starts"],
            rng=self.seed,
        )
        self.n_calls = 0
        self.best_value = -math.inf
        self.w_best: np.ndarray | None = None
        self.T0: int | None = None
        self._waiting: list[tuple[np.ndarray, str]] = []  # BO calls asked, value not known yet (weights, arch)
        self._ranking: np.ndarray | None = None
        self._rank_pos = 0
        self.calls: list[dict] = []  # every BO call: weights, chosen key, value, cached?

    @property
    def phase(self) -> str:
        return "bo" if self.n_calls + len(self._waiting) < self.budget else "greedy"

    @property
    def done(self) -> bool:
        return len(self.observed) >= len(self.pool)

    def scores(self, w: np.ndarray) -> np.ndarray:
        return self.features @ np.asarray(w, dtype=np.float64)

    def _record(self, w: np.ndarray, spelling: str, value: float, cached: bool) -> None:
        self.n_calls += 1
        v = -math.inf if math.isnan(value) else value
        if v >= self.best_value:
            self.best_value, self.w_best = v, np.array(w, copy=True)
        self.bo.tell(w, value)
        if self.n_calls == self.budget:
            self.T0 = len(self.observed)
            log.info("robot: BO phase done after %d calls, T0=%d distinct archs", self.n_calls, self.T0)
        self.calls.append({"w": [float(a) for a in w], "arch": spelling, "value": value, "cached": cached})

    def _ask(self) -> Arch | None:
        while self.phase == "bo":
            w = self.bo.ask(fantasy=self.options["fantasy"] if self._waiting else None)
            i = last_argmax(self.scores(w))
            spelling = self.pool.spellings[i]
            obs = self.observed.get(spelling)
            if obs is None:
                self._waiting.append((w, spelling))
                if spelling in self.pending:  # a batch's earlier call chose it: this call waits for its value
                    continue
                return self.pool.archs[i]
            self._record(w, spelling, float(obs.value), cached=True)
        if self._waiting:
            return None  # the greedy phase needs the value of every BO call
        if self._ranking is None:
            # descending; among equal scores the later index first (np.flip of a stable argsort)
            self._ranking = np.argsort(self.scores(self.w_best), kind="stable")[::-1]
        while self._rank_pos < len(self._ranking):
            i = int(self._ranking[self._rank_pos])
            self._rank_pos += 1
            if self.pool.spellings[i] not in self.observed and self.pool.spellings[i] not in self.pending:
                return self.pool.archs[i]
        raise StrategyError(f"robot exhausted its pool of {len(self.pool)} architectures")

    def _tell(self, arch: Arch, spelling: str, obs: Observation) -> None:
        calls = [c for c in self._waiting if c[1] == spelling]
        if calls:
            self._waiting = [c for c in self._waiting if c[1] != spelling]
            for n, (w, _) in enumerate(calls):
                self._record(w, spelling, float(obs.value), cached=n > 0)

    def summary(self) -> dict[str, Any]:
        """T0: distinct architectures queried during the BO phase (before the greedy exploitation)."""
        return {} if self.T0 is None else {"T0": self.T0}
