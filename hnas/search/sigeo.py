"""SiGeo search (methods.md §5), hybrid form: rank by SiGeo with a warmed-up supernet, then query the top.

1. Warm up the NB201 supernet on ``warmup.fraction`` of the training images (or load that warm-up from
   ``cache_dir``: done once, reused by every later run) -- or, with ``per_candidate``, warm up each candidate
   on its own as the reference CV code does.
2. Fitness = the ``fitness`` proxy (``sigeo``, or ``zico`` for the baseline) of each sub-network with
   inherited weights on one seeded scoring batch. ``mode: rank`` scores the whole candidate pool;
   ``mode: evolve`` runs regularised evolution with that fitness (no real query) and ranks every architecture
   it scored.
3. ``ask`` returns the best-ranked architecture not yet observed: the search loop spends its T real queries
   (benchmark or training evaluator) on the top of the ranking.

Resume: the ranking is a deterministic function of (seed, options, data, warm-up checkpoint), so the base
class's replay of the event log reproduces every ask; the warm-up itself is loaded from its checkpoint.

Runtime objects (not options, so not part of ``state_dict``) come from the experiment: ``datamodule`` (the
run's data module: warm-up subset and scoring batch), ``trainer`` (extra ``lightning.Trainer`` arguments for
the warm-up) and ``build_kwargs`` (the space's ``build`` arguments; ``C``/``N`` size the supernet unless
``warmup`` sets them).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, ClassVar

import numpy as np

from hnas.search.base import Arch, Strategy, StrategyError

log = logging.getLogger(__name__)

MODES = ("rank", "evolve")
FITNESS = ("sigeo", "zico")
EVOLUTION_DEFAULTS: dict[str, Any] = {"cycles": 200, "population_size": 20, "sample_size": 5,
                                      "within_pool": False}
SCORING_DEFAULTS: dict[str, Any] = {"batch_size": 256, "seed": None}
CANDIDATE_WARMUP_DEFAULTS: dict[str, Any] = {"epochs": 10, "batch_size": 128}


class SiGeoSearch(Strategy):
    """Options: ``mode`` (rank | evolve), ``fitness`` (sigeo | zico), ``per_candidate`` (bool), ``warmup``
    (hnas.training.supernet.WarmupConfig fields; its ``seed`` defaults to the run seed), ``candidate_warmup``
    (epochs, batch_size of the per-candidate warm-up), ``scoring`` (batch_size, seed), ``proxy_options``
    ({proxy: {option: value}}), ``evolution`` (cycles, population_size, sample_size, within_pool),
    ``cache_dir`` (warm-up checkpoints; None: ``<hnas cache>/supernets``), ``device`` (scoring device;
    None: cuda when available)."""

    name = "sigeo"
    needs_datamodule: ClassVar[bool] = True
    concurrent_asks: ClassVar[bool] = True  # a batch is the next n of the ranking
    defaults: ClassVar[dict[str, Any]] = {
        "mode": "rank",
        "fitness": "sigeo",
        "per_candidate": False,
        "warmup": {"fraction": 0.1, "epochs": 1, "max_steps": None, "batch_size": 64},
        "candidate_warmup": dict(CANDIDATE_WARMUP_DEFAULTS),
        "scoring": dict(SCORING_DEFAULTS),
        "proxy_options": {},
        "evolution": dict(EVOLUTION_DEFAULTS),
        "cache_dir": None,
        "device": None,
    }

    def __init__(
        self,
        space: Any,
        pool: Any = None,
        budget: int | None = None,
        seed: int = 0,
        datamodule: Any = None,
        trainer: dict[str, Any] | None = None,
        build_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.datamodule = datamodule
        self.trainer_kwargs = dict(trainer or {})
        self.build_kwargs = dict(build_kwargs or {})
        super().__init__(space, pool, budget, seed, **options)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        o = self.options
        if o["mode"] not in MODES:
            raise StrategyError(f"sigeo mode {o['mode']!r} is not one of {', '.join(MODES)}")
        if o["fitness"] not in FITNESS:
            raise StrategyError(f"sigeo fitness {o['fitness']!r} is not one of {', '.join(FITNESS)}")
        if self.space is None or getattr(self.space, "name", None) != "nb201":
            raise StrategyError(
                f"strategy 'sigeo' works on the nb201 space (its supernet), got {getattr(self.space, 'name', None)!r}"
            )
        if o["mode"] == "rank" and self.pool is None:
            raise StrategyError("sigeo mode 'rank' needs a candidate pool (pool=sample/all/list/table)")
        self.evolution = self._merge("evolution", EVOLUTION_DEFAULTS)
        self.scoring = self._merge("scoring", SCORING_DEFAULTS)
        self.candidate_warmup = self._merge("candidate_warmup", CANDIDATE_WARMUP_DEFAULTS)
        ev = self.evolution
        for k in ("cycles", "population_size", "sample_size"):
            if not isinstance(ev[k], int) or isinstance(ev[k], bool) or ev[k] < (0 if k == "cycles" else 1):
                raise StrategyError(f"sigeo evolution.{k} must be a positive int, got {ev[k]!r}")
        warm = dict(o["warmup"] or {})
        warm.setdefault("seed", self.seed)
        for k in ("C", "N"):
            if k in self.build_kwargs:
                warm.setdefault(k, int(self.build_kwargs[k]))
        from hnas.training.supernet import WarmupConfig, WarmupError

        try:
            self.warmup_cfg = WarmupConfig.from_dict(warm)
        except WarmupError as e:
            raise StrategyError(str(e)) from None
        self.ranking: list[tuple[Arch, float]] | None = None
        self.fitness: dict[str, float] = {}
        self._next = 0

    def _merge(self, name: str, base: dict[str, Any]) -> dict[str, Any]:
        given = dict(self.options.get(name) or {})
        unknown = sorted(set(given) - set(base))
        if unknown:
            raise StrategyError(f"sigeo {name} has no option(s) {unknown}; valid: {sorted(base)}")
        return {**base, **given}

    # ------------------------------------------------------------------ scoring
    def _prepare(self) -> None:
        """Warm-up (or load) and the scoring batch: done on the first ask, not at construction."""
        import torch

        from hnas.data import default_cache_dir
        from hnas.training.supernet import subset_size, warm_up_supernet

        dm = self.datamodule
        if dm is None:
            raise StrategyError(
                "strategy 'sigeo' needs the run's data module (make_strategy(..., datamodule=dm)); "
                "hnas.experiment passes it for strategies with needs_datamodule"
            )
        seed = self.scoring["seed"]
        seed = self.seed if seed is None else int(seed)
        self._batch = dm.scoring_batch(int(self.scoring["batch_size"]), seed)
        dev = self.options["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
        self._device = torch.device(dev)
        cfg = self.warmup_cfg
        if self.options["per_candidate"]:
            self._warm = None
            n = subset_size(dm, cfg.fraction)
            self._warmup_data = None
            if n > 0:
                wb = dm.scoring_batch(n, seed + 1)
                self._warmup_data = (wb.x, wb.y)
        else:
            cache = self.options["cache_dir"] or (default_cache_dir() / "supernets")
            self._warm = warm_up_supernet(dm, cfg, cache, trainer=self.trainer_kwargs, space=self.space.name)
            self._warm.supernet.to(self._device)

    def _score(self, archs: list[Arch]) -> list[float]:
        """Fitness of ``archs`` (memoised by spelling); failed scores are NaN (ranked last)."""
        from hnas.training.supernet import score_candidates, score_subnets

        todo = [a for a in archs if self.spelling(a) not in self.fitness]
        todo = list({self.spelling(a): a for a in todo}.values())
        if todo:
            fit = self.options["fitness"]
            popts = {k: dict(v) for k, v in (self.options["proxy_options"] or {}).items() if k == fit}
            batch = (self._batch.x, self._batch.y)
            if self._warm is not None:
                scores = score_subnets(self._warm.supernet, todo, batch, [fit], warmed=self._warm.warmed,
                                       options=popts, seed=self.seed, device=self._device)
            else:
                nc = int(self.datamodule.num_classes)

                def build(arch: Arch) -> Any:
                    return self.space.build(arch, num_classes=nc, **self.build_kwargs)

                cw = self.candidate_warmup
                scores = score_candidates(build, todo, batch, nc, [fit], warmup_data=self._warmup_data,
                                          warmup_epochs=int(cw["epochs"]), warmup_batch_size=int(cw["batch_size"]),
                                          options=popts, seed=self.seed, device=self._device)
            for a, s in zip(todo, scores):
                v = s[fit].value
                self.fitness[self.spelling(a)] = math.nan if v is None else float(v)
        return [self.fitness[self.spelling(a)] for a in archs]

    def _rank(self) -> None:
        self._prepare()
        if self.options["mode"] == "rank":
            archs = list(self.pool.archs)
            values = self._score(archs)
        else:
            archs, values = self._evolve()
        order = np.argsort([(-v if v == v else math.inf) for v in values], kind="stable")
        self.ranking = [(archs[int(i)], values[int(i)]) for i in order]
        top = ", ".join(f"{self.format(a)}={v:.3f}" for a, v in self.ranking[:3])
        log.info("sigeo: %d architectures ranked by %s; top: %s", len(self.ranking), self.options["fitness"], top)

    def _sample(self) -> Arch:
        if self.evolution["within_pool"] and self.pool is not None:
            return self.pool.archs[int(self.rng.integers(len(self.pool)))]
        return self.space.sample(self.rng)

    def _mutate(self, arch: Arch) -> Arch:
        if self.evolution["within_pool"] and self.pool is not None:
            nbrs = [a for a in self.space.neighbours(arch) if self.space.format(a) in self.pool.index_of]
            if not nbrs:
                return self._sample()
            a = nbrs[int(self.rng.integers(len(nbrs)))]
            return self.pool.archs[self.pool.index_of[self.space.format(a)]]
        return self.space.mutate(arch, self.rng)

    def _evolve(self) -> tuple[list[Arch], list[float]]:
        """Regularised evolution with the proxy as fitness; returns every distinct architecture it scored."""
        ev = self.evolution
        seen: dict[str, Arch] = {}
        population: deque[tuple[Arch, float]] = deque()
        for _ in range(ev["population_size"]):
            a = self._sample()
            seen.setdefault(self.spelling(a), a)
            population.append((a, self._score([a])[0]))
        for _ in range(ev["cycles"]):
            members = [population[int(i)] for i in self.rng.integers(len(population), size=ev["sample_size"])]
            parent = max(members, key=lambda m: m[1] if m[1] == m[1] else -math.inf)[0]
            child = self._mutate(parent)
            seen.setdefault(self.spelling(child), child)
            population.append((child, self._score([child])[0]))
            population.popleft()
        archs = list(seen.values())
        return archs, [self.fitness[self.spelling(a)] for a in archs]

    # ------------------------------------------------------------------ ask/tell
    @property
    def done(self) -> bool:
        if self.ranking is None:
            return False
        return all(self.spelling(a) in self.observed for a, _ in self.ranking[self._next:])

    def _ask(self) -> Arch:
        if self.ranking is None:
            self._rank()
        assert self.ranking is not None
        while self._next < len(self.ranking):
            arch = self.ranking[self._next][0]
            self._next += 1
            if self.spelling(arch) not in self.observed and self.spelling(arch) not in self.pending:
                return arch
        raise StrategyError(f"sigeo exhausted its {len(self.ranking)} ranked architectures")
