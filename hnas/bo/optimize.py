"""Acquisition optimisation (box, discrete) and ``BayesOpt``: ask/tell BO with bayes_opt 1.2.0 semantics.

Why re-implement rather than depend on bayes_opt: 1.3+ changed ``maximize`` (methods.md §1.1), and the
published HNAS/RoBoT trajectories depend on 1.2.0's exact behaviour: lazily probed points are drained first,
one random point is drawn when nothing is queued or observed, every later point is GP-guided (10,000
uniform random candidates, then L-BFGS-B from 10 uniform random starts, clipped to the box), and an already
observed point is served from a cache. All randomness comes from one seeded numpy Generator.

Batches: ``ask(fantasy=...)`` may be called while earlier points are pending (asked, not told). The GP is
fitted on the real observations as usual, then conditioned on a fantasised value at each pending point --
its posterior mean (``believer``: the Kriging believer) or the worst observed value (``liar``: the
constant liar CL-min) -- with the hyper-parameters unchanged, and the acquisition is maximised on that
model (Ginsbourger, Le Riche & Carraro 2010). With nothing pending ``ask`` is exactly the sequential one.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize

from hnas.bo.acquisition import ACQUISITIONS, make_acquisition
from hnas.bo.gp import DTYPE, GP, single_thread

log = logging.getLogger(__name__)

Acq = Callable[[torch.Tensor], torch.Tensor]
#: how a pending point's unknown value is fantasised when a batch is asked (see the module docstring)
FANTASIES = ("believer", "liar")


def legacy_rng(seed: int) -> np.random.Generator:
    """A Generator whose uniform draws equal ``np.random.RandomState(seed)``'s (same MT19937 state).

    bayes_opt seeds RandomState objects; drawing the same numbers keeps our trajectories as close to the
    published runs as a re-implementation can be.
    """
    key, pos = np.random.RandomState(int(seed)).get_state()[1:3]
    bg = np.random.MT19937()
    bg.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}
    return np.random.Generator(bg)


class BOError(ValueError):
    """Bad BO configuration or misuse of the ask/tell protocol."""


def _check_bounds(bounds: Any) -> np.ndarray:
    b = np.asarray(bounds, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] == 0 or not np.all(b[:, 0] < b[:, 1]):
        raise BOError(
            f"bounds must be a (d, 2) array of [lower, upper] rows with lower < upper, got {bounds!r}"
        )
    return b


def maximize_box(
    acq: Acq, bounds: np.ndarray, rng: np.random.Generator, n_warmup: int = 10_000, n_starts: int = 10
) -> np.ndarray:
    """argmax of ``acq`` over a box: best of ``n_warmup`` uniform candidates, then L-BFGS-B from ``n_starts``
    uniform starts (a local optimum replaces the incumbent when ``>=``, as in bayes_opt); clipped."""
    b = _check_bounds(bounds)
    with single_thread():
        return _maximize_box(acq, b, rng, n_warmup, n_starts)


def _maximize_box(
    acq: Acq, b: np.ndarray, rng: np.random.Generator, n_warmup: int, n_starts: int
) -> np.ndarray:
    d = b.shape[0]
    tries = rng.uniform(b[:, 0], b[:, 1], size=(n_warmup, d))
    with torch.no_grad():
        vals = acq(torch.as_tensor(tries, dtype=DTYPE)).numpy()
    i = int(np.argmax(vals))
    x_max, best = tries[i], float(vals[i])

    def neg(x: np.ndarray) -> tuple[float, np.ndarray]:
        xt = torch.as_tensor(x.reshape(1, -1), dtype=DTYPE).requires_grad_(True)
        v = acq(xt)[0]
        (g,) = torch.autograd.grad(v, xt)
        return -float(v.detach()), -g.numpy().reshape(-1)

    seeds = rng.uniform(b[:, 0], b[:, 1], size=(n_starts, d))
    for s in seeds:
        res = minimize(neg, s, jac=True, method="L-BFGS-B", bounds=[tuple(r) for r in b])
        if not res.success or not np.isfinite(res.fun):
            continue
        if -float(res.fun) >= best:
            x_max, best = np.asarray(res.x, dtype=np.float64), -float(res.fun)
    return np.clip(x_max, b[:, 0], b[:, 1])


def maximize_discrete(acq: Acq, candidates: np.ndarray, last: bool = False) -> int:
    """Index of the candidate row with the largest acquisition (the first one, or the last when ``last``)."""
    c = np.atleast_2d(np.asarray(candidates, dtype=np.float64))
    if c.shape[0] == 0:
        raise BOError("maximize_discrete got an empty candidate set")
    with torch.no_grad(), single_thread():
        vals = acq(torch.as_tensor(c, dtype=DTYPE)).numpy()
    vals = np.where(np.isnan(vals), -np.inf, vals)
    return int(len(vals) - 1 - np.argmax(vals[::-1])) if last else int(np.argmax(vals))


class BayesOpt:
    """Ask/tell Bayesian optimisation (maximisation) over a box with bayes_opt 1.2.0's queue semantics.

    ``probe(x)`` queues a point lazily; ``ask()`` returns, in order: the oldest queued point; else one uniform
    random point when nothing has been observed; else the GP-guided suggestion. ``tell(x, y)`` records the
    observation (a point already observed keeps its first value — bayes_opt's cache). ``lookup(x)`` gives
    the cached value of an already observed point so a caller can skip the expensive evaluation.

    An integer ``rng`` seeds two streams as bayes_opt does: one for the random initial points (its
    TargetSpace) and one shared by the GP restarts and the acquisition optimiser, both RandomState-equivalent.
    A Generator is used for both. Dimensions are in the order given; bayes_opt sorts parameter names, so
    callers reproducing it pass bounds in sorted-name order.
    """

    def __init__(
        self,
        bounds: Sequence[Sequence[float]] | np.ndarray,
        acquisition: str = "ucb",
        kappa: float = 2.576,
        xi: float = 0.0,
        rng: np.random.Generator | int | None = None,
        n_warmup: int = 10_000,
        n_starts: int = 10,
        n_restarts: int = 5,
        alpha: float = 1e-6,
    ) -> None:
        self.bounds = _check_bounds(bounds)
        acq = {"pi": "poi"}.get(acquisition.lower(), acquisition.lower())
        if acq not in ACQUISITIONS:
            raise BOError(f"unknown acquisition {acquisition!r}; valid: {', '.join(ACQUISITIONS)} (or 'pi')")
        self.acquisition, self.kappa, self.xi = acq, float(kappa), float(xi)
        if isinstance(rng, np.random.Generator):
            self.rng = self.space_rng = rng
        else:
            seed = int(np.random.SeedSequence().generate_state(1)[0]) if rng is None else int(rng)
            self.rng, self.space_rng = legacy_rng(seed), legacy_rng(seed)
        self.n_warmup, self.n_starts = int(n_warmup), int(n_starts)
        self.gp = GP(alpha=alpha, n_restarts=n_restarts, rng=self.rng)
        self._queue: deque[np.ndarray] = deque()
        self.x: list[np.ndarray] = []
        self.y: list[float] = []
        self._cache: dict[bytes, float] = {}
        self.n_random = 0
        self.n_suggested = 0
        self.pending: list[np.ndarray] = []  # asked, not told yet (in ask order)

    @property
    def dim(self) -> int:
        return int(self.bounds.shape[0])

    def _as_point(self, x: Any) -> np.ndarray:
        p = np.asarray(x, dtype=np.float64).reshape(-1)
        if p.shape[0] != self.dim:
            raise BOError(f"point {x!r} has {p.shape[0]} coordinates; this BO has {self.dim}")
        return p

    def probe(self, x: Any) -> None:
        """Queue ``x`` to be asked before any suggestion (bayes_opt's ``probe(..., lazy=True)``)."""
        self._queue.append(self._as_point(x))

    def random_point(self) -> np.ndarray:
        return self.space_rng.uniform(self.bounds[:, 0], self.bounds[:, 1])

    def ask(self, fantasy: str | None = None) -> np.ndarray:
        """The next point. While points are pending, ``fantasy`` (one of ``FANTASIES``) must say how their
        values are fantasised; without it a pending point is an error (the sequential protocol)."""
        if self.pending and fantasy is None:
            raise BOError(f"ask() called while {self.pending[0].tolist()} is still pending; tell() it first "
                          "(or ask a batch with fantasy='believer' or 'liar')")
        if fantasy is not None and fantasy not in FANTASIES:
            raise BOError(f"unknown fantasy {fantasy!r}; valid: {', '.join(FANTASIES)}")
        if self._queue:
            x = self._queue.popleft()
        elif not self.y:
            x = self.random_point()
            self.n_random += 1
        else:
            x = self.suggest(fantasy)
            self.n_suggested += 1
        self.pending.append(x)
        return x.copy()

    def suggest(self, fantasy: str | None = None) -> np.ndarray:
        """The GP-guided next point (refits the GP hyper-parameters on all observations first; with pending
        points and a ``fantasy``, the acquisition is maximised on the GP conditioned on their fantasies)."""
        if not self.y:
            raise BOError("suggest() needs at least one observation")
        xs, ys = np.stack(self.x), np.asarray(self.y)
        with single_thread():
            gp = self.gp.fit(xs, ys)
            if self.pending and fantasy is not None:
                xp = np.stack(self.pending)
                yp = gp.predict(xp)[0] if fantasy == "believer" else np.full(len(xp), float(ys.min()))
                gp = gp.conditioned(xp, yp)
            acq = make_acquisition(self.acquisition, gp, float(ys.max()), kappa=self.kappa, xi=self.xi)
            return _maximize_box(acq, self.bounds, self.rng, self.n_warmup, self.n_starts)

    def lookup(self, x: Any) -> float | None:
        return self._cache.get(self._as_point(x).tobytes())

    def tell(self, x: Any, y: float) -> None:
        p = self._as_point(x)
        for i, q in enumerate(self.pending):
            if np.array_equal(p, q):
                del self.pending[i]
                break
        y = float(y)
        if not np.isfinite(y):
            finite = [v for v in self.y if np.isfinite(v)]
            log.warning("BO got non-finite target %r at %s; using the worst observed value instead", y, p)
            y = min(finite) if finite else 0.0
        key = p.tobytes()
        if key in self._cache:
            return
        self._cache[key] = y
        self.x.append(p)
        self.y.append(y)

    @property
    def n_observed(self) -> int:
        return len(self.y)

    def best(self) -> tuple[np.ndarray, float]:
        if not self.y:
            raise BOError("no observations yet")
        i = int(np.argmax(self.y))
        return self.x[i].copy(), self.y[i]
