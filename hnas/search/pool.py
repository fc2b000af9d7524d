"""CandidatePool: the architectures a strategy chooses among, with their proxy scores as a matrix.

Why a matrix: RoBoT and HNAS score the whole pool at every BO step (a weighted sum / a formula over all
candidates); one float64 column per proxy makes that a vectorised operation. A failed or missing score is
NaN here (the store keeps the status), and ``sources`` says per proxy where the numbers came from ("hnas" for
the proxy library, an import label such as ``suite_zero:<file>`` otherwise) so a result can report it.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hnas.errors import HNASError

log = logging.getLogger(__name__)


class PoolError(HNASError, ValueError):
    """Inconsistent pool (lengths, duplicate keys) or proxy scores missing from the store."""


@dataclass(frozen=True)
class ScoreSpec:
    """Which stored scores fill one pool column.

    With the full cache key (``version``, ``seed``, ``batch_fp``, ``bn_mode``, ``dtype``) the exact scores
    of one proxy-library computation are read (``store.get_scores``). Without it, any stored score of the
    proxy is taken (``store.find_scores``), restricted to ``source`` when given — the way imported tables are
    used. ``name`` is the pool's column name (default: ``proxy``), e.g. ``jacob_cov`` for a table's ``jacov``.
    """

    proxy: str
    name: str | None = None
    version: int | None = None
    seed: int | None = None
    batch_fp: str | None = None
    bn_mode: str | None = None
    dtype: str | None = None
    source: str | None = None
    required: bool = True
    #: how the store identifies these rows: "key" (the canonical key: hnas's own cache, isomorphic spellings
    #: share a score) | "spelling" (imported tables, which measured every spelling separately)
    lookup: str = "key"

    @property
    def column(self) -> str:
        return self.name or self.proxy

    @property
    def exact(self) -> bool:
        parts = (self.version, self.seed, self.batch_fp, self.bn_mode, self.dtype)
        if any(p is not None for p in parts) and not all(p is not None for p in parts):
            raise PoolError(
                f"ScoreSpec for {self.proxy!r} gives only part of the cache key {parts}; give all of "
                "version, seed, batch_fp, bn_mode, dtype (exact scores) or none of them (any stored score)"
            )
        return all(p is not None for p in parts)


class CandidatePool:
    """``archs`` with their ``spellings`` (``space.format``: the identity a search de-duplicates by) and
    ``scores[name]`` float64 arrays (NaN = missing), same order. The store's own proxy cache is keyed by the
    canonical (isomorphism-aware) key, which ``from_store`` looks up separately.
    """

    def __init__(
        self,
        archs: Sequence[Hashable],
        spellings: Sequence[str],
        scores: Mapping[str, np.ndarray] | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        if len(archs) != len(spellings):
            raise PoolError(f"pool has {len(archs)} architectures but {len(spellings)} spellings")
        if len(archs) == 0:
            raise PoolError("a candidate pool needs at least one architecture")
        self.archs = list(archs)
        self.spellings = [str(k) for k in spellings]
        self.index_of: dict[str, int] = {}  # spelling -> position
        for i, k in enumerate(self.spellings):
            if k in self.index_of:
                raise PoolError(
                    f"duplicate architecture {k!r} at positions {self.index_of[k]} and {i}; a pool holds "
                    "each architecture once"
                )
            self.index_of[k] = i
        self.scores: dict[str, np.ndarray] = {}
        for name, col in (scores or {}).items():
            a = np.asarray(col, dtype=np.float64).reshape(-1)
            if a.shape[0] != len(self.archs):
                raise PoolError(f"score column {name!r} has {a.shape[0]} values for {len(self.archs)} archs")
            self.scores[name] = a
        self.sources = {name: str((sources or {}).get(name, "unknown")) for name in self.scores}

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def proxies(self) -> list[str]:
        return list(self.scores)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """(n_archs, len(names)) float64 matrix of the named score columns."""
        self.require(names)
        return np.stack([self.scores[n] for n in names], axis=1)

    def require(self, names: Sequence[str], who: str = "this strategy") -> None:
        """Raise a PoolError naming the command that computes scores the pool lacks."""
        missing = [n for n in names if n not in self.scores]
        if missing:
            raise PoolError(
                f"{who} needs proxy scores {missing} but the pool has {sorted(self.scores) or 'none'}; "
                f"compute them with `hnas score pool=... proxies.names=[{','.join(missing)}]` or select "
                "other proxies"
            )

    def subset(self, idx: Sequence[int]) -> CandidatePool:
        idx = list(idx)
        return CandidatePool(
            [self.archs[i] for i in idx],
            [self.spellings[i] for i in idx],
            {n: c[idx] for n, c in self.scores.items()},
            self.sources,
        )

    def describe(self) -> dict[str, Any]:
        """Size, proxies and score sources: what a result.json says about its pool."""
        return {
            "size": len(self),
            "proxies": {
                n: {"source": self.sources[n], "n_nan": int(np.isnan(c).sum())}
                for n, c in self.scores.items()
            },
        }

    @classmethod
    def from_store(
        cls,
        store: Any,
        space: Any,
        archs: Sequence[Hashable],
        proxies: Sequence[ScoreSpec | str],
        pool_hint: str | None = None,
    ) -> CandidatePool:
        """The pool ``archs`` of ``space`` with score columns read from ``store`` as ``proxies`` specify.

        Scores whose status is not ``ok`` become NaN. A required proxy with no stored score for some
        architecture raises a PoolError naming ``hnas score`` with the pool and proxies to run.
        """
        space_name = getattr(space, "name", str(space))
        spellings = [space.format(a) for a in archs]
        canonical = [space.key(a) for a in archs]
        specs = [ScoreSpec(p) if isinstance(p, str) else p for p in proxies]
        scores: dict[str, np.ndarray] = {}
        sources: dict[str, str] = {}
        missing: dict[str, int] = {}
        for spec in specs:
            if spec.lookup not in ("key", "spelling"):
                raise PoolError(f"ScoreSpec.lookup {spec.lookup!r} is not one of: key, spelling")
            lookup = canonical if spec.lookup == "key" else spellings
            if spec.exact:
                found = store.get_scores(
                    space_name, spec.proxy, spec.version, spec.seed, spec.batch_fp, spec.bn_mode, spec.dtype,
                    arch_ids=lookup,
                )
            else:
                found = store.find_scores(space_name, spec.proxy, arch_ids=lookup, source=spec.source)
            col = np.full(len(spellings), np.nan)
            n_missing = 0
            for i, k in enumerate(lookup):
                s = found.get(k)
                if s is None:
                    n_missing += 1
                elif s.ok:
                    col[i] = float(s.value)
            if n_missing and spec.required:
                missing[spec.proxy] = n_missing
            scores[spec.column] = col
            sources[spec.column] = spec.source if spec.source is not None else "hnas"
        if missing:
            size = space.size()
            hint = pool_hint or ("pool=all" if size == len(spellings) else f"pool.size={len(spellings)} pool.seed=...")
            detail = ", ".join(f"{p}: {n} of {len(spellings)}" for p, n in missing.items())
            raise PoolError(
                f"the store {getattr(store, 'path', store)} lacks proxy scores for space "
                f"{space_name!r} ({detail} "
                f"architectures missing); compute them with `hnas score space={space_name} {hint} "
                f"proxies.names=[{','.join(missing)}]`"
            )
        log.info("pool of %d archs, proxies %s", len(spellings), {n: sources[n] for n in scores})
        return cls(list(archs), spellings, scores, sources)
