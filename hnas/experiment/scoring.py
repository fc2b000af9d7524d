"""The candidate pool of a run with its proxy scores: computed through the store cache, or imported.

Why here and not in the proxy library: this is where the config meets the store -- which proxies a strategy
needs, whether the strategy must decide something first (``Strategy.prepare_scoring``, e.g. RBFleX's kernel
widths), and whether the numbers come from hnas or from an imported table (labelled as such in the result).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from hnas.errors import ConfigError
from hnas.proxies.cache import score_cached_many, score_key
from hnas.proxies.settings import ScoringSettings
from hnas.search import CandidatePool, ScoreSpec, Strategy
from hnas.search.executor import ExecutorSpec, Prebuilt
from hnas.spaces import SearchSpace
from hnas.store import Store

log = logging.getLogger(__name__)

CHUNKS_PER_WORKER = 8  # a pool is sharded into about this many chunks per worker (balance vs. messages)


class _Collector:
    """The store a scoring worker writes to: nothing is cached there, every new row is kept to be sent back."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def get_scores(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    def put_scores(self, rows: Any) -> int:
        rows = list(rows)
        self.rows.extend(rows)
        return len(rows)


class Scorer:
    """What a scoring worker needs (picklable): the space, build arguments, proxies, the batch and the keys'
    settings. ``score(archs)`` runs exactly the driver's ``score_cached_many`` and returns the rows to store."""

    def __init__(self, space: SearchSpace, num_classes: int, build_kwargs: dict[str, Any], proxies: list[Any],
                 batch: Any, settings: ScoringSettings) -> None:
        self.space, self.num_classes, self.build_kwargs, self.proxies = space, num_classes, build_kwargs, proxies
        self.batch, self.settings = batch, settings

    def score(self, archs: list[Any]) -> list[Any]:
        """Score in this process (the device resolves here: a worker sees the GPU it was given)."""
        out = _Collector()
        s = self.settings
        score_cached_many(out, self.space, archs, self.space.builder(self.num_classes, **self.build_kwargs),
                          self.proxies, self.batch, seed=s.init_seed, bn_mode=s.bn_mode, dtype=s.torch_dtype,
                          num_classes=self.num_classes, progress=False, device=s.torch_device,
                          device_tag=s.device_tag)
        return out.rows


def score_chunk(scorer: Scorer, archs: list[Any]) -> list[Any]:
    """The work of one scoring task (module level, so it pickles by name)."""
    return scorer.score(archs)


def _chunk(archs: list[Any]) -> str:
    return f"a chunk of {len(archs)} architectures"


def missing_archs(store: Store, space: SearchSpace, archs: Sequence[Any], proxies: Sequence[Any], batch: Any,
                  settings: ScoringSettings) -> list[Any]:
    """The architectures (first spelling of each canonical key) with at least one score not in the store."""
    keys = [space.key(space.coerce(a)) for a in archs]
    have = []
    for p in proxies:
        k = score_key(space.name, "", p, settings.init_seed, batch.fingerprint, settings.bn_mode, settings.torch_dtype,
                      settings.device_tag)
        have.append(store.get_scores(k.space, k.proxy, k.version, k.seed, k.batch_fp, k.bn_mode, k.dtype,
                                     arch_ids=keys))
    firsts = dict.fromkeys(k for k in keys if any(k not in h for h in have))
    first_arch = {}
    for a, k in zip(archs, keys):
        first_arch.setdefault(k, a)
    return [first_arch[k] for k in firsts]


def ensure_scores(store: Store, space: SearchSpace, archs: Sequence[Any], names: Sequence[str], datamodule: Any,
                  settings: ScoringSettings, build_kwargs: dict[str, Any], progress: bool = True,
                  executor: ExecutorSpec | None = None, parallel: int = 1) -> list[ScoreSpec]:
    """Compute (and store) every missing proxy score of ``archs``; return the exact ScoreSpecs to read them.

    With an ``executor`` of several workers the missing architectures are scored in chunks by the workers
    (each builds and scores exactly as the driver would) and only the driver writes the store."""
    batch = settings.batch(datamodule)
    proxies = [settings.proxy(n) for n in names]
    t0 = time.perf_counter()
    spec = executor or ExecutorSpec("inline")
    todo = [] if spec.in_driver(parallel) else missing_archs(store, space, archs, proxies, batch, settings)
    scorer = Scorer(space, datamodule.num_classes, dict(build_kwargs), proxies, batch, settings)
    started = spec.start(Prebuilt(scorer), score_chunk, parallel, describe=_chunk) if todo else nullcontext()
    with started as ex:
        if ex is not None:
            size = max(1, min(50, -(-len(todo) // (ex.slots * CHUNKS_PER_WORKER))))
            chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
            log.info("scoring %d architectures in %d chunks on %d %s workers", len(todo), len(chunks), ex.slots,
                     ex.name)
            for i, c in enumerate(chunks):
                ex.submit(i, c)
            from tqdm.auto import tqdm

            with tqdm(total=len(todo), desc="scoring", disable=not progress) as bar:
                while ex.busy:
                    for done in ex.wait():
                        if done.error is not None:
                            raise done.error
                        if done.result:
                            store.put_scores(done.result)
                        bar.update(len(chunks[done.key]))
    score_cached_many(store, space, list(archs), space.builder(datamodule.num_classes, **build_kwargs), proxies,
                      batch, seed=settings.init_seed, bn_mode=settings.bn_mode, dtype=settings.torch_dtype,
                      num_classes=datamodule.num_classes, progress=progress, device=settings.torch_device,
                      device_tag=settings.device_tag)
    log.info("proxy scores of %d architectures ready in %.1f s", len(archs), time.perf_counter() - t0)
    specs = []
    for name, proxy in zip(names, proxies):
        k = score_key(space.name, "", proxy, settings.init_seed, batch.fingerprint, settings.bn_mode,
                      settings.torch_dtype, settings.device_tag)
        specs.append(ScoreSpec(k.proxy, name=name, version=k.version, seed=k.seed, batch_fp=k.batch_fp,
                               bn_mode=k.bn_mode, dtype=k.dtype))
    return specs


def proxy_names(cfg: Any, strategy_proxies: Sequence[str]) -> list[str]:
    """The strategy's proxies, then the extra ``proxies.names`` (scored too, and shown in the tracker rows);
    every name is checked against the registry."""
    from hnas.proxies.registry import get_proxy

    extra = cfg.proxies.get("names") or []
    if isinstance(extra, str) or not all(isinstance(n, str) for n in extra):
        raise ConfigError("proxies.names must be a list of proxy names, e.g. proxies.names=[synflow,snip], "
                          f"got {extra!r}")
    names = list(dict.fromkeys([*strategy_proxies, *extra]))
    for n in names:
        get_proxy(n)  # an unknown name raises ProxyError listing the valid ones
    return names


def candidate_pool(parts: Any, strategy_cls: type[Strategy], options: dict[str, Any], names: Sequence[str],
                   progress: bool = True) -> tuple[CandidatePool, dict[str, Any]]:
    """The run's pool with the score columns ``names``, and the strategy options ``prepare_scoring`` decided.

    ``proxies.source=compute``: scores from the store cache, computed where missing; otherwise the imported
    table ``proxies.import_path`` (imported into the store first) labelled with its source.
    """
    space, archs, store = parts.space, parts.archs, parts.store
    if not names:
        return CandidatePool(archs, [space.format(a) for a in archs]), {}
    source = parts.cfg.proxies.get("source") or "compute"
    if source == "compute":
        settings, updates = strategy_cls.prepare_scoring(parts, archs, options, parts.scoring)
        specs = ensure_scores(store, space, archs, names, parts.datamodule, settings, parts.build_kwargs, progress,
                              parts.parallelism.executor, parts.parallelism.parallel)
        return CandidatePool.from_store(store, space, archs, specs), updates
    import_path = parts.cfg.proxies.get("import_path")
    if import_path:
        from hnas.benchmarks.score_tables import import_score_table

        n = import_score_table(store, str(import_path), space=space.name, source=source)
        log.info("imported %d rows of %s as source %r", n, import_path, source)
    specs = [ScoreSpec(p, source=source, lookup="spelling") for p in names]
    return CandidatePool.from_store(store, space, archs, specs), {}

