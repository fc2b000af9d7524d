"""HNAS (Shu et al., NeurIPS 2022): BO over the two hyper-parameters of a training-free scoring rule.

For (t, c), with nu = scale*t and mu = 10^c, every candidate gets (methods.md §3.3, lower is better)

    score(A) = mu * |M(A)^2 - nu^2| + kappa(A) / (M(A) + 1e-6)

where M is a gradient-based metric (NTK trace by default) and kappa the NTK condition number. Each BO
objective call draws ``n_sample`` more architectures (with replacement) into a growing sampled set, queries
the argmin of the score among sampled-but-unqueried architectures, and returns its observed value. The
initial design is ``n0 = min(floor(T*0.25), 10)`` lazily probed points t = linspace(0, 1, n0) at the middle
of the c range; then EI-guided suggestions (methods.md §3.4). The DARTS version (§3.5) takes the argmin over
the whole unqueried pool (``n_sample=None``), UCB, c in [-4, 1], scale 1e2 and a failed kappa as 1e5.

Batches: the initial design's probes need no model; later (t, c) are suggested while others are pending,
the GP conditioned on fantasised values of the pending ones (``fantasy``: believer or liar, see hnas.bo).
A pending architecture counts as queried, so a batch never proposes one twice.
"""

from __future__ import annotations

import math

import numpy as np

from hnas.bo import FANTASIES, BayesOpt
from hnas.evaluators.base import Observation
from hnas.search.base import Arch, Strategy, StrategyError

METRICS = ("ntk_trace", "grad_norm", "snip", "grasp")
MAX_CACHED_SUGGESTIONS = 10


def hnas_score(m: np.ndarray, kappa: np.ndarray, t: float, c: float, scale: float) -> np.ndarray:
    """mu*|M^2 - nu^2| + kappa/(M + 1e-6) with nu = scale*t, mu = 10^c; NaN gives +inf (never chosen)."""
    nu, mu = scale * t, 10.0**c
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = mu * np.abs(m * m - nu * nu) + kappa / (m + 1e-6)
    return np.where(np.isnan(s), np.inf, s)


class HNAS(Strategy):
    name = "hnas"
    needs_pool = True
    concurrent_asks = True
    defaults = {
        "metric": "ntk_trace",
        "cond": "ntk_cond",
        "scale": 5e3,
        "t_bounds": (0.0, 1.0),
        "c_bounds": (-4.0, 0.0),
        "init_c": None,  # None: the middle of c_bounds (-2 for NB201, as the reference code)
        "init_portion": 0.25,
        "max_init": 10,
        "n_sample": 2000,  # architectures drawn into the candidate set per step; None: the whole pool (DARTS)
        "cond_nan": None,  # kappa of a failed condition number: None = never chosen; 1e5 = the DARTS code's value
        "acquisition": "ei",
        "kappa": 2.576,
        "xi": 0.0,
        "n_warmup": 10_000,  # acquisition optimiser: random candidates, then L-BFGS-B starts (bayes_opt)
        "n_starts": 10,
        "fantasy": "believer",  # value of a pending (t, c) while a batch is asked: believer | liar
    }

    def setup(self) -> None:
        o = self.options
        if self.budget is None:
            raise StrategyError(
                "strategy 'hnas' needs a query budget T (it sizes its initial design from it)"
            )
        if o["fantasy"] not in FANTASIES:
            raise StrategyError(f"hnas fantasy {o['fantasy']!r} is not one of: {', '.join(FANTASIES)}")
        if o["metric"] not in METRICS:
            raise StrategyError(f"hnas metric {o['metric']!r} is not one of {', '.join(METRICS)}")
        self.pool.require([o["metric"], o["cond"]], who="strategy 'hnas'")
        if o["n_sample"] is not None and (not isinstance(o["n_sample"], int) or o["n_sample"] < 1):
            raise StrategyError("hnas n_sample must be an integer >= 1 or None (the whole pool), "
                                f"got {o['n_sample']!r}")
        self.m = self.pool.scores[o["metric"]]
        self.kappa = self.pool.scores[o["cond"]]
        if o["cond_nan"] is not None:
            self.kappa = np.where(np.isnan(self.kappa), float(o["cond_nan"]), self.kappa)
        self.sample_rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(1)[0])
        # BO point = (c, t): bayes_opt sorts the reference's names (target_coeff, target_metric)
        self.bo = BayesOpt(
            [o["c_bounds"], o["t_bounds"]],
            acquisition=o["acquisition"],
            kappa=o["kappa"],
            xi=o["xi"],
            n_warmup=o["n_warmup"],
            n_starts=o["n_starts"],
            rng=self.seed,
        )
        self.n0 = min(math.floor(self.budget * o["init_portion"]), int(o["max_init"]))
        c0 = o["init_c"] if o["init_c"] is not None else 0.5 * (o["c_bounds"][0] + o["c_bounds"][1])
        for t in np.linspace(o["t_bounds"][0], o["t_bounds"][1], self.n0):
            self.bo.probe([c0, t])
        self.sampled = np.zeros(len(self.pool), dtype=bool)
        self.queried = np.zeros(len(self.pool), dtype=bool)
        self._pending: dict[str, np.ndarray] = {}
        self.trace: list[dict] = []  # (t, c) behind every query, for analysis

    @property
    def done(self) -> bool:
        return bool(self.queried.all())

    def _ask(self) -> Arch:
        fantasy = self.options["fantasy"] if self._pending else None
        for _ in range(MAX_CACHED_SUGGESTIONS):
            x = self.bo.ask(fantasy)
            cached = self.bo.lookup(x)
            if cached is None:
                break
            self.bo.tell(x, cached)  # bayes_opt serves a repeated point from its cache
        else:  # the GP keeps proposing observed points (e.g. a corner): move on with a random point
            self.bo.probe(self.bo.random_point())
            x = self.bo.ask(fantasy)
        c, t = float(x[0]), float(x[1])
        if self.options["n_sample"] is None:
            self.sampled[:] = True
        else:
            draws = self.sample_rng.integers(len(self.pool), size=int(self.options["n_sample"]))
            self.sampled[draws] = True
        cand = np.flatnonzero(self.sampled & ~self.queried)
        if cand.size == 0:
            cand = np.flatnonzero(~self.queried)
            if cand.size == 0:
                raise StrategyError(f"hnas queried every architecture of its pool ({len(self.pool)})")
        s = hnas_score(self.m[cand], self.kappa[cand], t, c, self.options["scale"])
        i = int(cand[int(np.argmin(s))])
        self.queried[i] = True
        spelling = self.pool.spellings[i]
        self._pending[spelling] = x
        self.trace.append({"t": t, "c": c, "arch": spelling})
        return self.pool.archs[i]

    def _tell(self, arch: Arch, spelling: str, obs: Observation) -> None:
        x = self._pending.pop(spelling, None)
        if x is not None:
            self.bo.tell(x, float(obs.value))
