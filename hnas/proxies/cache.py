"""Score with the store as a cache: compute only the proxy scores the store does not have yet.

Key of a score: (space, canonical arch key, proxy, proxy version, init seed, batch fingerprint, BN mode,
dtype) -- hnas.store.ScoreKey. The proxy part is ``Proxy.key_name``: the name, plus any option that differs
from the registered default (``grasp[temperature=200.0]``), so a variant never reads another's value. BN
mode and dtype are the effective ones (the override, else the proxy's default).

The network is built by ``model_factory(arch)`` under ``torch.manual_seed(seed)`` -- the init seed of the key
-- and only when at least one score is missing. Scores with status ok/nan/inf are facts about (network,
batch) and are stored; ``error`` and ``oom`` depend on the code or the device and are returned but not
stored, so the next call retries them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from hnas.proxies.registry import Proxy
from hnas.proxies.reproducible import seeded
from hnas.proxies.result import ProxyScore
from hnas.proxies.runtime import infer_num_classes, resolve_proxies, score_network
from hnas.spaces.base import Arch, SearchSpace

logger = logging.getLogger(__name__)

#: statuses written to the store (the others are retried next time)
CACHED_STATUSES = ("ok", "nan", "inf")


def _unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        x, y, fp = batch
        if isinstance(fp, str) and fp:
            return x, y, fp
    raise ValueError(
        "batch must be (inputs, labels, fingerprint) with a non-empty fingerprint string "
        "(e.g. a ScoringBatch), "
        f"got {type(batch).__name__}"
    )


def score_key(space: str, arch_id: str, p: Proxy, seed: int, fp: str, bn_mode: str | None, dtype: Any,
              device_tag: str | None = None) -> Any:
    """The store key of proxy ``p``'s score: name + non-default options, version, init seed, batch, BN mode, dtype
    -- and, for a score computed on another device than the CPU (``device_tag``, e.g. ``cuda``), that device
    in the dtype field (``float32@cuda``): a GPU score is never read as a CPU one unless the run declares them
    equivalent (``proxies.device_equivalent=true``, then ``device_tag`` is None)."""
    from hnas.store import ScoreKey, dtype_name

    name = dtype_name(dtype or p.dtype)
    return ScoreKey(space, arch_id, p.key_name, p.version, seed, fp, bn_mode or p.bn_mode,
                    f"{name}@{device_tag}" if device_tag else name)


def score_cached(
    store: Any,
    space: SearchSpace,
    arch: Arch | str | int,
    model_factory: Callable[[Arch], nn.Module],
    proxies: Sequence[str | Proxy],
    batch: Any,
    seed: int = 0,
    bn_mode: str | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    num_classes: int | None = None,
    source: str = "hnas",
    **score_kwargs: Any,
) -> dict[str, ProxyScore]:
    """``{proxy name: ProxyScore}`` for ``arch``, read from ``store`` where present, computed (one network
    build, one ``score_network`` call) and written where missing."""
    return score_cached_many(
        store,
        space,
        [arch],
        model_factory,
        proxies,
        batch,
        seed=seed,
        bn_mode=bn_mode,
        dtype=dtype,
        device=device,
        options=options,
        num_classes=num_classes,
        source=source,
        progress=False,
        **score_kwargs,
    )[0]


def score_cached_many(
    store: Any,
    space: SearchSpace,
    archs: Iterable[Arch | str | int],
    model_factory: Callable[[Arch], nn.Module],
    proxies: Sequence[str | Proxy],
    batch: Any,
    seed: int = 0,
    bn_mode: str | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    num_classes: int | None = None,
    source: str = "hnas",
    progress: bool = True,
    device_tag: str | None = None,
    **score_kwargs: Any,
) -> list[dict[str, ProxyScore]]:
    """``score_cached`` for a pool: the store is read once per proxy (bulk), then each architecture with a
    missing score is built and scored; results are written per architecture (a crash loses at most one)."""
    x, y, fp = _unpack_batch(batch)
    resolved = resolve_proxies(proxies, options)
    arch_list = [space.coerce(a) for a in archs]
    keys = [space.key(a) for a in arch_list]
    cached: dict[str, dict[str, ProxyScore]] = {}
    for p in resolved:
        k = score_key(space.name, "", p, seed, fp, bn_mode, dtype, device_tag)
        cached[p.name] = store.get_scores(
            k.space, k.proxy, k.version, k.seed, k.batch_fp, k.bn_mode, k.dtype, arch_ids=keys
        )
    out: list[dict[str, ProxyScore]] = []
    n_built = 0
    for arch, key in tqdm(list(zip(arch_list, keys)), desc="scoring", disable=not progress):
        have = {p.name: cached[p.name].get(key) for p in resolved}
        missing = [p for p in resolved if have[p.name] is None]
        if missing:
            with seeded(seed):
                model = model_factory(arch)
            n_built += 1
            nc = num_classes if num_classes is not None else infer_num_classes(model)
            new = score_network(
                model,
                missing,
                x,
                y,
                nc,
                seed=seed,
                bn_mode=bn_mode,
                dtype=dtype,
                device=device,
                copy=False,  # built for this call alone: the last group scores it without a deep copy
                **score_kwargs,
            )
            rows = [
                (score_key(space.name, key, p, seed, fp, bn_mode, dtype, device_tag), new[p.name], source)
                for p in missing
                if new[p.name].status in CACHED_STATUSES
            ]
            if rows:
                store.put_scores(rows)
            for p in missing:
                have[p.name] = new[p.name]
                cached[p.name][key] = new[p.name] if new[p.name].status in CACHED_STATUSES else None
        out.append({p.name: have[p.name] for p in resolved})
    logger.debug("score_cached_many: %d architectures, %d built", len(arch_list), n_built)
    return out
