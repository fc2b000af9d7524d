"""GP-BO baseline: a GP over the space's architecture encoding (optionally plus proxy scores), EI over a
random candidate subset each step. Shows what the hybrid methods add over plain BO on architectures.

Batches: pending architectures count towards the random initial design; afterwards each ask conditions the
GP on fantasised values of the pending ones (``fantasy``: believer = its posterior mean, liar = the worst
observed value) and never proposes a pending architecture."""

from __future__ import annotations

import numpy as np

from hnas.bo import FANTASIES, GP, make_acquisition, maximize_discrete
from hnas.search.base import Arch, Strategy, StrategyError
from hnas.search.robot import minmax_normalise


class GPBO(Strategy):
    """Options: ``n_init`` random queries first, ``n_candidates`` per step, ``acquisition`` (ei/ucb/poi),
    ``proxies`` (pool score columns appended to the encoding, min-max normalised)."""

    name = "gp_bo"
    concurrent_asks = True
    defaults = {
        "n_init": 5,
        "n_candidates": 1000,
        "acquisition": "ei",
        "kappa": 2.576,
        "xi": 0.0,
        "proxies": (),
        "fantasy": "believer",  # value of a pending architecture while a batch is asked: believer | liar
    }

    def setup(self) -> None:
        o = self.options
        if self.space is None:
            raise StrategyError("gp_bo needs a search space (it encodes architectures)")
        if o["n_init"] < 1 or o["n_candidates"] < 1:
            raise StrategyError(
                f"gp_bo needs n_init >= 1 and n_candidates >= 1, got {o['n_init']}, {o['n_candidates']}"
            )
        if o["fantasy"] not in FANTASIES:
            raise StrategyError(f"gp_bo fantasy {o['fantasy']!r} is not one of: {', '.join(FANTASIES)}")
        self.proxies = list(o["proxies"])
        if self.proxies:
            if self.pool is None:
                raise StrategyError("gp_bo with proxies as features needs a candidate pool")
            self.pool.require(self.proxies, who="strategy 'gp_bo'")
            self._proxy_feat = minmax_normalise(self.pool.matrix(self.proxies))
        seq = np.random.SeedSequence(self.seed).spawn(1)[0]
        self.gp = GP(rng=np.random.default_rng(seq))
        make_acquisition(o["acquisition"], self.gp, 0.0)  # validates the name now, not at step n_init

    def features(self, archs: list[Arch]) -> np.ndarray:
        x = np.stack([np.asarray(self.space.encode(a), dtype=np.float64).reshape(-1) for a in archs])
        if self.proxies:
            idx = [self.pool.index_of[self.spelling(a)] for a in archs]
            x = np.concatenate([x, self._proxy_feat[idx]], axis=1)
        return x

    def _candidates(self) -> list[Arch]:
        n = int(self.options["n_candidates"])
        if self.pool is not None:
            free = np.array([i for i, k in enumerate(self.pool.spellings)
                             if k not in self.observed and k not in self.pending])
            if free.size == 0:
                raise StrategyError(f"gp_bo exhausted its pool of {len(self.pool)} architectures")
            pick = self.rng.choice(free, size=min(n, free.size), replace=False)
            return [self.pool.archs[int(i)] for i in pick]
        out: dict[str, Arch] = {}
        for _ in range(20 * n):
            a = self.space.sample(self.rng)
            k = self.spelling(a)
            if k not in self.observed and k not in self.pending:
                out.setdefault(k, a)
            if len(out) >= n:
                break
        if not out:
            raise StrategyError("gp_bo found no unseen architecture to propose")
        return list(out.values())

    def _ask(self) -> Arch:
        finite = [(a, o.value) for a, _, o in self.history if np.isfinite(o.value)]
        if len(self.history) + len(self.pending) < self.options["n_init"] or not finite:
            a = self.random_unseen(self.rng)
            if a is None:
                raise StrategyError("gp_bo found no unseen architecture")
            return a
        x = self.features([a for a, _ in finite])
        y = np.array([v for _, v in finite])
        gp = self.gp.fit(x, y)
        if self.pending:
            xp = self.features(list(self.pending.values()))
            yp = gp.predict(xp)[0] if self.options["fantasy"] == "believer" else np.full(len(xp), float(y.min()))
            gp = gp.conditioned(xp, yp)
        acq = make_acquisition(
            self.options["acquisition"],
            gp,
            float(y.max()),
            kappa=self.options["kappa"],
            xi=self.options["xi"],
        )
        cands = self._candidates()
        return cands[maximize_discrete(acq, self.features(cands))]
