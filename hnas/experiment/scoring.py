"""The candidate pool of a run with its proxy scores: computed through the store cache, or imported.

Why here and not in the proxy library: this is where the config meets the store -- which proxies a strategy
needs, whether the strategy must decide something first (``Strategy.prepare_scoring``, e.g. RBFleX's kernel
widths), and whether the numbers come from hnas or from an imported table (labelled as such in the result).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from hnas.errors import ConfigError
from hnas.proxies.cache import score_cached_many, score_key
from hnas.proxies.settings import ScoringSettings
from hnas.search import CandidatePool, ScoreSpec, Strategy
from hnas.spaces import SearchSpace
from hnas.store import Store

log = logging.getLogger(__name__)


def ensure_scores(store: Store, space: SearchSpace, archs: Sequence[Any], names: Sequence[str], datamodule: Any,
                  settings: ScoringSettings, build_kwargs: dict[str, Any], progress: bool = True) -> list[ScoreSpec]:
    """Compute (and store) every missing proxy score of ``archs``; return the exact ScoreSpecs to read them."""
    batch = settings.batch(datamodule)
    proxies = [settings.proxy(n) for n in names]
    t0 = time.perf_counter()
    score_cached_many(store, space, list(archs), space.builder(datamodule.num_classes, **build_kwargs), proxies,
                      batch, seed=settings.init_seed, bn_mode=settings.bn_mode, dtype=settings.torch_dtype,
                      num_classes=datamodule.num_classes, progress=progress, device=settings.torch_device)
    log.info("proxy scores of %d architectures ready in %.1f s", len(archs), time.perf_counter() - t0)
    specs = []
    for name, proxy in zip(names, proxies):
        k = score_key(space.name, "", proxy, settings.init_seed, batch.fingerprint, settings.bn_mode,
                      settings.torch_dtype)
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
        specs = ensure_scores(store, space, archs, names, parts.datamodule, settings, parts.build_kwargs, progress)
        return CandidatePool.from_store(store, space, archs, specs), updates
    import_path = parts.cfg.proxies.get("import_path")
    if import_path:
        from hnas.benchmarks.score_tables import import_score_table

        n = import_score_table(store, str(import_path), space=space.name, source=source)
        log.info("imported %d rows of %s as source %r", n, import_path, source)
    specs = [ScoreSpec(p, source=source, lookup="spelling") for p in names]
    return CandidatePool.from_store(store, space, archs, specs), {}
