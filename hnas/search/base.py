"""The ask/tell Strategy protocol shared by every search method.

A strategy proposes architectures (``ask``) and learns from their Observations (``tell``); it never knows
whether an observation came from a table or from training, and it never evaluates anything itself. Budgets
are enforced by the search loop; ``budget`` is passed in because some methods plan around it (RoBoT spends
T BO calls before its greedy phase, HNAS sizes its initial design as a fraction of T).

State and resume: every strategy is a deterministic function of its seed, options and the observations it
was told. ``state_dict()`` is therefore the seed, options and the event log (asks and tells);
``load_state_dict`` replays that log into a freshly constructed strategy and checks that every ask comes out
the same — exact by construction, and a changed configuration is detected instead of silently diverging.

Identity: a strategy de-duplicates queries by the architecture's *spelling* (``space.format``), not by its
canonical key (``space.key``, shared by isomorphic spellings): a benchmark holds separate measurements of
isomorphic spellings, and the reference codes (RoBoT, HNAS) treat table indices as distinct candidates.

Optional capabilities are declared here with neutral defaults (``needs_datamodule``, ``prepare_scoring``,
``summary``, ``concurrent_asks``), so the experiment and the loop call them unconditionally.

Batches (``search.parallel=q``): ``ask_batch(n)`` proposes up to n distinct architectures to evaluate at once;
each stays *pending* (``self.pending``) until it is told. ``ask_batch(1)`` with nothing pending is exactly
``ask()``, so sequential results do not move. How a batch is formed:

- ``concurrent_asks = True``: ``_ask`` may be called again while earlier asks are pending and then proposes
  something else (random, REA and ranked strategies skip pending architectures; the GP strategies condition
  their model on fantasised values of the pending ones, see ``hnas.bo``). A batch is n asks.
- the default, for any other strategy: the first candidate is the strategy's own ask; each further one is
  what a throw-away copy of the strategy asks after being told a *fantasy* for every pending architecture
  (the worst finite value observed so far -- the constant liar CL-min -- or NaN before any). The real
  strategy is then told the real observations of architectures it did not ask itself, so such a strategy
  must learn from every ``tell`` (the base class records it in ``history``/``observed`` for it); one that
  pairs its tells with its own asks should declare ``concurrent_asks`` and handle pending asks instead.

Tells may come in any order (the asynchronous mode tells on completion); the synchronous mode tells a batch
in ask order, so a result depends only on (seed, q).
"""

from __future__ import annotations

import abc
import copy
import logging
import math
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from hnas.errors import HNASError
from hnas.evaluators.base import Observation
from hnas.proxies.settings import ScoringSettings
from hnas.search.pool import CandidatePool

log = logging.getLogger(__name__)

Arch = Hashable
MAX_COPY_REPEATS = 10_000  # already-observed asks of a believer copy before a batch is cut short


class StrategyError(HNASError, ValueError):
    """Bad strategy option, misuse of ask/tell, or a state that does not match this strategy."""


class ScoringContext(Protocol):
    """What ``Strategy.prepare_scoring`` may use of the run (``hnas.experiment.build.Parts`` provides it)."""

    space: Any
    seed: int
    build_kwargs: dict[str, Any]

    @property
    def datamodule(self) -> Any: ...


class Strategy(abc.ABC):
    """Ask/tell search strategy; subclasses implement ``_ask`` and ``_tell`` and declare ``defaults``."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    needs_pool: ClassVar[bool] = False
    #: the experiment passes ``datamodule``, ``trainer`` and ``build_kwargs`` to the constructor (e.g. SiGeo's
    #: supernet warm-up needs the run's data)
    needs_datamodule: ClassVar[bool] = False
    #: ``_ask`` may be called while earlier asks are pending (it proposes something else); see the module
    #: docstring. False: batches come from the generic believer copy.
    concurrent_asks: ClassVar[bool] = False

    @classmethod
    def prepare_scoring(cls, ctx: ScoringContext, archs: Sequence[Any], options: dict[str, Any],
                        settings: ScoringSettings) -> tuple[ScoringSettings, dict[str, Any]]:
        """Decide, before the pool is scored, how it is scored (e.g. RBFleX's kernel widths by HDA).

        ``options``: the strategy's configured options. Returns the scoring settings to use and option
        values to merge into ``options`` (default: both unchanged)."""
        return settings, {}

    def __init__(
        self,
        space: Any,
        pool: CandidatePool | None = None,
        budget: int | None = None,
        seed: int = 0,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise StrategyError(
                f"strategy {self.name!r} has no option(s) {unknown}; valid: {sorted(self.defaults) or 'none'}"
            )
        if budget is not None and (not isinstance(budget, (int, np.integer)) or budget <= 0):
            raise StrategyError(f"budget (distinct queries T) must be a positive integer, got {budget!r}")
        if self.needs_pool and pool is None:
            raise StrategyError(f"strategy {self.name!r} needs a candidate pool with proxy scores")
        if space is None and pool is None:
            raise StrategyError(f"strategy {self.name!r} needs a search space or a candidate pool")
        self.space = space
        self.pool = pool
        self.budget = None if budget is None else int(budget)
        self.seed = int(seed)
        self.options: dict[str, Any] = {**self.defaults, **options}
        self.rng = np.random.default_rng(self.seed)
        self.history: list[tuple[Arch, str, Observation]] = []  # distinct archs told, in order
        self.observed: dict[str, Observation] = {}  # spelling -> observation
        self.pending: dict[str, Arch] = {}  # spelling -> arch, asked (or proposed) and not told yet
        self._events: list[list[Any]] = []
        self._pool_spelling = dict(zip(pool.archs, pool.spellings)) if pool is not None else {}
        self.setup()

    # ------------------------------------------------------------------ subclass hooks
    def setup(self) -> None:  # noqa: B027 - optional hook
        """Validate options and build internal state (called at the end of ``__init__``)."""

    @abc.abstractmethod
    def _ask(self) -> Arch | None:
        """The next architecture to evaluate (normally one not observed yet). A ``concurrent_asks`` strategy
        skips pending ones and may return None while it can propose nothing until one of them is told."""

    def _tell(self, arch: Arch, spelling: str, obs: Observation) -> None:  # noqa: B027 - optional hook
        """Learn from ``obs`` (already recorded in ``history``/``observed``)."""

    def summary(self) -> dict[str, Any]:
        """Strategy-specific facts for result.json (e.g. RoBoT's T0); default none."""
        return {}

    # ------------------------------------------------------------------ protocol
    def spelling(self, arch: Arch) -> str:
        """Identity of ``arch`` for de-duplicating queries: its exact spelling (see the module docstring)."""
        k = self._pool_spelling.get(arch) if self._pool_spelling else None
        if k is not None:
            return k
        if self.space is None:
            raise StrategyError(f"architecture {arch!r} is not in the pool and no search space was given")
        return self.space.format(arch)

    def format(self, arch: Arch) -> str:
        """String form of ``arch`` for logs and result files (strings pass through)."""
        if isinstance(arch, str):
            return arch
        return self.space.format(arch) if self.space is not None else str(arch)

    @property
    def done(self) -> bool:
        """True when the strategy has nothing left to propose (e.g. its pool is exhausted)."""
        return False

    def ask(self) -> Arch:
        arch = self._ask_pending()
        if arch is None:
            raise StrategyError(f"strategy {self.name!r} can propose nothing until one of its pending architectures "
                                f"is told ({', '.join(list(self.pending)[:3])})")
        return arch

    def _ask_pending(self, record: bool = True) -> Arch | None:
        arch = self._ask()
        if arch is None:
            if not self.pending:
                raise StrategyError(f"strategy {self.name!r} proposed nothing while nothing is pending")
            return None
        spelling = self.spelling(arch)
        if record:
            self._events.append(["ask", spelling])
        self.pending[spelling] = arch
        return arch

    def ask_batch(self, n: int) -> list[Arch]:
        """Up to ``n`` distinct architectures to evaluate at once, each pending until told (fewer when the
        strategy runs out, or must see a pending result first). See the module docstring for how."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise StrategyError(f"ask_batch wants a batch size >= 1, got {n!r}")
        if n == 1 and not self.pending:
            return [self.ask()]  # the sequential protocol, unchanged
        if self.concurrent_asks:
            out: list[Arch] = []
            while len(out) < n and not self.done:
                try:
                    arch = self._ask_pending()
                except StrategyError:
                    if out:
                        break  # ran out mid-batch: evaluate what there is
                    raise
                if arch is None:
                    break
                out.append(arch)
            return out
        return self._believer_batch(int(n))

    def _believer_batch(self, n: int) -> list[Arch]:
        """The generic batch: this strategy's own ask, then asks of a copy told a fantasy for each pending one."""
        out: list[Arch] = []
        if not self.pending:
            first = self._ask_pending(record=False)
            if first is not None:
                out.append(first)
        finite = [float(o.value) for o in self.observed.values() if o.finite]
        fantasy = Observation(min(finite) if finite else math.nan, 0.0, {"note": "fantasy of a pending evaluation"})
        twin = copy.deepcopy(self, {id(self.pool): self.pool, id(self.space): self.space})
        for arch in list(twin.pending.values()):
            twin.tell(arch, fantasy)
        while len(out) < n and not twin.done:
            arch = None
            for _ in range(MAX_COPY_REPEATS):  # the copy re-asking an observed (or fantasised) architecture is
                try:                          # told it again, as the loop does with repeats
                    arch = twin._ask_pending(record=False)
                except StrategyError:
                    arch = None
                if arch is None or twin.spelling(arch) not in twin.observed:
                    break
                twin.tell(arch, twin.observed[twin.spelling(arch)])
                arch = None
                if twin.done:
                    break
            if arch is None:
                break
            twin.tell(arch, fantasy)
            self.pending[self.spelling(arch)] = arch
            out.append(arch)
        self.rng.bit_generator.state = twin.rng.bit_generator.state  # the copy's random draws are spent
        self._events.append(["batch", n, [self.spelling(a) for a in out]])
        return out

    def tell(self, arch: Arch, obs: Observation) -> None:
        if not isinstance(obs, Observation):
            raise StrategyError(f"tell() wants an hnas.evaluators.Observation, got {type(obs).__name__}")
        spelling = self.spelling(arch)
        self.pending.pop(spelling, None)
        if spelling not in self.observed:
            self.observed[spelling] = obs
            self.history.append((arch, spelling, obs))
        self._events.append(["tell", spelling, float(obs.value), float(obs.cost_s), dict(obs.info)])
        self._tell(arch, spelling, obs)

    def best(self) -> tuple[Arch, float]:
        """The observed architecture with the highest value (first in query order on ties)."""
        best_i, best_v = -1, -math.inf
        for i, (_, _, obs) in enumerate(self.history):
            v = float(obs.value)
            if not math.isnan(v) and (best_i < 0 or v > best_v):
                best_i, best_v = i, v
        if best_i < 0:
            raise StrategyError(f"strategy {self.name!r} has no (non-NaN) observation yet")
        return self.history[best_i][0], best_v

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            "seed": self.seed,
            "budget": self.budget,
            "options": _jsonable(self.options),
            "events": [list(e) for e in self._events],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay ``state``'s event log into this freshly constructed strategy (same name, seed, options)."""
        if self._events:
            raise StrategyError("load_state_dict needs a freshly constructed strategy (this one was used)")
        mine = {
            "strategy": self.name,
            "seed": self.seed,
            "budget": self.budget,
            "options": _jsonable(self.options),
        }
        for k, v in mine.items():
            if state.get(k) != v:
                raise StrategyError(
                    f"state was saved with {k}={state.get(k)!r} but this strategy has {k}={v!r}"
                )
        last: Arch | None = None
        for i, ev in enumerate(state["events"]):
            if ev[0] == "ask":
                last = self.ask()
                if self.spelling(last) != ev[1]:
                    raise StrategyError(
                        f"replay diverged at event {i}: asked {self.spelling(last)!r}, "
                        f"the saved state asked {ev[1]!r}"
                    )
            elif ev[0] == "batch":
                got = [self.spelling(a) for a in self.ask_batch(int(ev[1]))]
                if got != list(ev[2]):
                    raise StrategyError(f"replay diverged at event {i}: a batch of {ev[1]} asked {got}, the saved "
                                        f"state asked {list(ev[2])}")
                last = None
            elif ev[0] == "tell":
                arch = last if last is not None and self.spelling(last) == ev[1] else self._arch_of(ev[1])
                self.tell(arch, Observation(ev[2], ev[3], dict(ev[4])))
            else:
                raise StrategyError(f"unknown event {ev[0]!r} at position {i} of the saved state")

    def _arch_of(self, spelling: str) -> Arch:
        if self.pool is not None and spelling in self.pool.index_of:
            return self.pool.archs[self.pool.index_of[spelling]]
        for a, k, _ in self.history:
            if k == spelling:
                return a
        if self.space is not None:
            return self.space.parse(spelling)
        raise StrategyError(f"cannot recover the architecture spelled {spelling!r}")

    # ------------------------------------------------------------------ helpers for subclasses
    def pool_index(self, spelling: str) -> int | None:
        return None if self.pool is None else self.pool.index_of.get(spelling)

    def random_unseen(self, rng: np.random.Generator, max_tries: int = 10_000) -> Arch | None:
        """A uniformly drawn architecture neither observed nor pending (from the pool if any, else the space)."""
        if self.pool is not None:
            free = [i for i, k in enumerate(self.pool.spellings) if k not in self.observed and k not in self.pending]
            return None if not free else self.pool.archs[free[int(rng.integers(len(free)))]]
        for _ in range(max_tries):
            a = self.space.sample(rng)
            k = self.spelling(a)
            if k not in self.observed and k not in self.pending:
                return a
        return None


def _jsonable(x: Any) -> Any:
    """Options as JSON-like values (tuples -> lists) so a saved state compares equal after a round trip."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
