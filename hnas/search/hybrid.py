"""Hybrid: the proxy-combination prior proposes, local moves refine, a GP decides which of the two to query.

Every step has up to two proposals, each from a different source of knowledge:

* **global** -- the unqueried *vertex* with the largest prior mass (``hnas.search.combination``): the
  architecture that the most combinations w . M of the normalised proxies rank first, i.e. RoBoT's hypothesis
  space taken in order of prior probability instead of searched with queries. When every vertex has been
  queried, the global proposal is the unqueried pool member with the highest expected improvement (EI) under
  the GP (discrete acquisition over the pool).
* **local** -- the unqueried pool neighbour of the incumbent (``space.neighbours`` restricted to the pool,
  ``hnas.search.neighbourhood``) that ranks highest under the combination that made the incumbent's lineage
  a vertex (the centroid of its origin vertex's weight cone): the direction that found the incumbent is the
  best guess for where it can be improved. ``local_rank="gp"`` ranks the neighbours by GP EI instead.

The **switch** between them is the GP's expected improvement (``switch="ei"``): a GP over architectures
(``hnas.bo.additive``: ARD-linear kernel on the normalised proxies, i.e. proxy weights learned by marginal
likelihood, plus Matern-5/2 on the space's encoding) is fitted on the observed values and the proposal with
the larger EI is queried (ties: global). Exploration (a new vertex, large predictive spread) and exploitation
(a neighbour of a clearly better incumbent, high predictive mean) are compared in one currency.
``switch="local_first"``/``"global_first"`` replace the GP by a fixed preference (ablations).

Determinism: the Monte-Carlo cones use their own generator (spawned from the seed) and the GP restarts
another, so every ask is a function of (seed, options, observations) and resume-by-replay is exact.
Batched asks: proposals exclude architectures asked but not yet told, so q > 1 pending candidates come out
distinct; the EI switch then uses the told observations only (a natural place for fantasies later).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from hnas.bo import expected_improvement
from hnas.bo.additive import AdditiveGP, KernelBlock
from hnas.bo.gp import DTYPE
from hnas.evaluators import Observation
from hnas.search.base import Arch, Strategy, StrategyError
from hnas.search.combination import NORMALISATIONS, combination_prior, normalise
from hnas.search.neighbourhood import PoolNeighbourhood
from hnas.search.robot import DEFAULT_METRICS

log = logging.getLogger(__name__)

SWITCHES = ("ei", "local_first", "global_first")
LOCAL_RANKS = ("cone", "gp")
FIRST = ("prior", "random")


class Hybrid(Strategy):
    name = "hybrid"
    needs_pool = True
    concurrent_asks = True  # proposals skip architectures asked and not told yet
    defaults = {
        "metrics": DEFAULT_METRICS,  # pool score columns (RoBoT's six by default)
        "normalisation": "minmax",  # minmax | rank (per column over the pool)
        "n_weights": 8192,  # Monte-Carlo weight draws for the combination prior
        "weight_bounds": (-1.0, 1.0),  # the weight box (RoBoT's)
        "prior": True,  # global proposals from the combination prior (False: GP EI over the pool)
        "first": "prior",  # first query: the largest-mass vertex | a random pool member
        "local": True,  # local moves around the incumbent
        "local_rank": "cone",  # cone | gp: how the incumbent's neighbours are ranked
        "switch": "ei",  # ei | local_first | global_first
        "encoding": True,  # the GP sees the space's architecture encoding (besides the proxies)
        "gp_restarts": 1,  # random restarts of the GP hyper-parameter fit (plus default and warm start)
    }

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        o = self.options
        metrics = list(o["metrics"])
        if not metrics:
            raise StrategyError("hybrid needs at least one metric (a pool score column)")
        if len(set(metrics)) != len(metrics):
            raise StrategyError(f"hybrid metrics must be distinct, got {metrics}")
        for name, value, valid in (
            ("normalisation", o["normalisation"], NORMALISATIONS),
            ("switch", o["switch"], SWITCHES),
            ("local_rank", o["local_rank"], LOCAL_RANKS),
            ("first", o["first"], FIRST),
        ):
            if value not in valid:
                raise StrategyError(f"hybrid {name} {value!r} is not one of: {', '.join(valid)}")
        if not isinstance(o["n_weights"], (int, np.integer)) or o["n_weights"] < 1:
            raise StrategyError(f"hybrid n_weights must be a positive integer, got {o['n_weights']!r}")
        if not o["prior"] and (o["local_rank"] == "cone" and o["local"]):
            raise StrategyError("hybrid local_rank='cone' needs the combination prior (prior=True); use 'gp'")
        if self.space is None and (o["local"] or o["encoding"]):
            raise StrategyError("hybrid needs a search space for local moves and the encoding (or turn both off)")
        self.pool.require(metrics, who="strategy 'hybrid'")
        self.metrics = metrics
        self.features = normalise(self.pool.matrix(metrics), o["normalisation"])
        cone_seq, gp_seq = np.random.SeedSequence(self.seed).spawn(2)
        self.cones = combination_prior(
            self.features, int(o["n_weights"]), np.random.default_rng(cone_seq), tuple(o["weight_bounds"])
        ) if o["prior"] else None
        self._gp_rng = np.random.default_rng(gp_seq)
        m = self.features.shape[1]
        blocks = [KernelBlock("linear", 0, m, ard=True)]
        self._enc_dim = 0
        if o["encoding"]:
            self._enc_dim = len(self._encode(0))
            blocks.append(KernelBlock("matern", m, m + self._enc_dim))
        self.gp = AdditiveGP(blocks, n_restarts=int(o["gp_restarts"]), rng=self._gp_rng)
        self._centred = self.features - self.features.mean(axis=0)
        self.neighbourhood = PoolNeighbourhood(self.space, self.pool) if o["local"] else None
        self._enc_cache: dict[int, np.ndarray] = {}
        self._vertex_pos = 0
        self._origin: dict[str, int | None] = {}  # spelling -> pool index of the vertex whose cone guides local moves
        self._pending: set[str] = set()
        self.moves: list[dict[str, Any]] = []  # one record per ask: arch, move, EI of both proposals

    def _encode(self, i: int) -> np.ndarray:
        return np.asarray(self.space.encode(self.pool.archs[i]), dtype=np.float64).reshape(-1)

    def _inputs(self, idx: list[int]) -> np.ndarray:
        x = self._centred[idx]
        if not self.options["encoding"]:
            return x
        rows = []
        for i in idx:
            if i not in self._enc_cache:
                self._enc_cache[i] = self._encode(i)
            rows.append(self._enc_cache[i])
        return np.concatenate([x, np.stack(rows)], axis=1)

    # ------------------------------------------------------------------ protocol
    @property
    def done(self) -> bool:
        return len(self.observed) + len(self._pending) >= len(self.pool)

    def _taken(self, i: int) -> bool:
        k = self.pool.spellings[i]
        return k in self.observed or k in self._pending

    def _ask(self) -> Arch:
        i, move, info = self._choose()
        spelling = self.pool.spellings[i]
        self._pending.add(spelling)
        self.moves.append({"arch": spelling, "move": move, **info})
        return self.pool.archs[i]

    def _tell(self, arch: Arch, spelling: str, obs: Observation) -> None:
        self._pending.discard(spelling)

    # ------------------------------------------------------------------ proposals
    def _choose(self) -> tuple[int, str, dict[str, Any]]:
        if self.done:
            raise StrategyError(f"hybrid exhausted its pool of {len(self.pool)} architectures")
        if not self.history and not self._pending:
            return self._first()
        fitted = False
        g = self._global_vertex()
        g_move = "prior"
        if g is None:
            fitted = self._fit()
            g = self._best_ei_unqueried() if fitted else self._random_free()
            g_move = "ei" if fitted else "random"
        inc = self._incumbent()
        l_ = self._local(inc) if inc is not None else None
        if l_ is None:
            self._origin[self.pool.spellings[g]] = g if g_move == "prior" else self._inherited(inc)
            return g, g_move, {}
        sw = self.options["switch"]
        if sw == "local_first":
            choice, info = "local", {}
        elif sw == "global_first" and g_move == "prior":
            choice, info = "global", {}
        else:
            if not fitted:
                fitted = self._fit()
            if not fitted:
                choice, info = "global", {}
            else:
                ei_g, ei_l = self._ei([g, l_])
                info = {"ei_global": ei_g, "ei_local": ei_l}
                choice = "local" if ei_l > ei_g else "global"
        if choice == "local":
            self._origin[self.pool.spellings[l_]] = self._inherited(inc)
            return l_, "local", info
        self._origin[self.pool.spellings[g]] = g if g_move == "prior" else self._inherited(inc)
        return g, g_move, info

    def _first(self) -> tuple[int, str, dict[str, Any]]:
        if self.options["first"] == "prior" and self.cones is not None:
            g = self._global_vertex()
            if g is not None:
                self._origin[self.pool.spellings[g]] = g
                return g, "prior", {}
        i = self._random_free()
        self._origin[self.pool.spellings[i]] = None
        return i, "random", {}

    def _random_free(self) -> int:
        free = [i for i in range(len(self.pool)) if not self._taken(i)]
        return free[int(self.rng.integers(len(free)))]

    def _global_vertex(self) -> int | None:
        """The unqueried vertex with the largest prior mass (None when all are taken or the prior is off)."""
        if self.cones is None:
            return None
        v = self.cones.vertices
        while self._vertex_pos < len(v) and self.pool.spellings[int(v[self._vertex_pos])] in self.observed:
            self._vertex_pos += 1
        for j in range(self._vertex_pos, len(v)):
            if not self._taken(int(v[j])):
                return int(v[j])
        return None

    def _incumbent(self) -> int | None:
        try:
            arch, _ = self.best()
        except StrategyError:
            return None
        return self.pool.index_of[self.spelling(arch)]

    def _inherited(self, inc: int | None) -> int | None:
        """The origin vertex of the incumbent's lineage (None without one)."""
        return None if inc is None else self._origin.get(self.pool.spellings[inc])

    def _local(self, inc: int) -> int | None:
        """The incumbent's best unqueried pool neighbour (by its lineage's cone direction, or by GP EI)."""
        if self.neighbourhood is None:
            return None
        cand = [j for j in self.neighbourhood.of(inc) if not self._taken(j)]
        if not cand:
            return None
        origin = self._inherited(inc)
        if self.options["local_rank"] == "cone" and origin is not None and self.cones is not None:
            s = self.features[cand] @ self.cones.centroid[origin]
            return int(cand[int(np.argmax(s))])  # ties: lowest pool index (cand is sorted)
        if not self._fit():
            return int(cand[0])
        return int(cand[int(np.argmax(self._ei(cand)))])

    # ------------------------------------------------------------------ GP
    def _finite(self) -> tuple[list[int], np.ndarray]:
        idx, ys = [], []
        for _, key, obs in self.history:
            v = float(obs.value)
            if math.isfinite(v):
                idx.append(self.pool.index_of[key])
                ys.append(v)
        return idx, np.asarray(ys)

    def _fit(self) -> bool:
        """Fit the GP on the finite observations; False when there are fewer than two."""
        idx, y = self._finite()
        if len(idx) < 2:
            return False
        self.gp.fit(self._inputs(idx), y)
        self._y_best = float(y.max())
        return True

    def _ei(self, idx: list[int]) -> np.ndarray:
        x = torch.as_tensor(self._inputs(idx), dtype=DTYPE)
        with torch.no_grad():
            mean, std = self.gp.posterior(x)
            ei = expected_improvement(mean, std, self._y_best)
        return ei.numpy()

    def _best_ei_unqueried(self) -> int:
        free = [i for i in range(len(self.pool)) if not self._taken(i)]
        ei = np.concatenate([self._ei(free[s : s + 4096]) for s in range(0, len(free), 4096)])
        return int(free[int(np.argmax(ei))])

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict[str, Any]:
        """What the result.json records: how many queries each move made, the prior's size."""
        counts: dict[str, int] = {}
        for m in self.moves:
            counts[m["move"]] = counts.get(m["move"], 0) + 1
        out: dict[str, Any] = {"moves": counts, "move_sequence": [m["move"] for m in self.moves]}
        if self.cones is not None:
            out["n_vertices"] = int(len(self.cones.vertices))
        return out
