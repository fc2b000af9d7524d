"""The proxy-combination prior: which architectures some weighted sum of normalised proxies ranks first.

RoBoT's hypothesis (methods.md §4) is that the best architecture is the argmax of w . M(A) for some weight
vector w in [-1, 1]^m over the normalised proxies M. Instead of spending queries to search w, the pool can be
partitioned by it before anything is queried: every w selects one architecture, so each pool member owns a
*cone* of weight vectors (possibly empty). With w uniform on the box, the cone's probability is the prior
probability that the architecture is the best under an unknown combination -- the model average over
combinations -- and the cone's centroid is the combination that "explains" it. Both are Monte-Carlo estimates
from ``n_samples`` seeded draws; architectures with a non-empty cone are the *vertices* of the pool's
proxy hull.

Normalisation decides the geometry: ``minmax`` (RoBoT's, per column over the pool) or ``rank`` (uniform on
[0, 1], immune to heavy tails). NaN scores become 0 (the bottom) either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from hnas.search.robot import minmax_normalise

NORMALISATIONS = ("minmax", "rank")
_CHUNK = 2048  # weight draws per matrix product (bounds memory at pool_size * _CHUNK floats)


class CombinationError(ValueError):
    """Bad normalisation name, weight box or sample count."""


def rank_normalise(m: np.ndarray) -> np.ndarray:
    """Column-wise average ranks scaled to [0, 1] (1 = highest score); NaN -> 0, constant column -> 0."""
    m = np.asarray(m, dtype=np.float64)
    out = np.zeros_like(m)
    for j in range(m.shape[1]):
        col = m[:, j]
        ok = np.isfinite(col)
        if ok.sum() > 1:
            r = rankdata(col[ok], method="average")
            span = r.max() - r.min()
            out[ok, j] = (r - r.min()) / span if span > 0 else 0.0
    return out


def normalise(m: np.ndarray, kind: str) -> np.ndarray:
    """The pool's score matrix normalised per column by ``kind`` (minmax | rank)."""
    if kind == "minmax":
        return minmax_normalise(m)
    if kind == "rank":
        return rank_normalise(m)
    raise CombinationError(f"unknown normalisation {kind!r}; valid: {', '.join(NORMALISATIONS)}")


@dataclass(frozen=True)
class CombinationPrior:
    """``mass[i]``: share of weight draws whose argmax is pool index i; ``centroid[i]``: their mean weight
    (zeros where the mass is 0); ``vertices``: indices with mass > 0, largest mass first (ties: lower index)."""

    mass: np.ndarray
    centroid: np.ndarray
    vertices: np.ndarray
    n_samples: int


def combination_prior(
    features: np.ndarray,
    n_samples: int,
    rng: np.random.Generator,
    bounds: tuple[float, float] = (-1.0, 1.0),
) -> CombinationPrior:
    """Monte-Carlo cones of ``features`` (n_archs x m, normalised) under w ~ Uniform(bounds)^m.

    Ties inside one draw go to the lowest index (``np.argmax``); draws are made in chunks of 2,048 in float64.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise CombinationError(f"features must be a non-empty (n_archs, m) matrix, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise CombinationError("features contain NaN/inf; normalise them first (NaN -> 0)")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise CombinationError(f"n_samples must be a positive integer, got {n_samples!r}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise CombinationError(f"weight bounds must satisfy lower < upper, got {bounds!r}")
    n, m = f.shape
    counts = np.zeros(n)
    sums = np.zeros((n, m))
    done = 0
    while done < n_samples:
        k = min(_CHUNK, n_samples - done)
        w = rng.uniform(lo, hi, size=(m, k))
        winners = np.argmax(f @ w, axis=0)
        counts += np.bincount(winners, minlength=n)
        np.add.at(sums, winners, w.T)
        done += k
    mass = counts / n_samples
    centroid = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    verts = np.flatnonzero(counts > 0)
    verts = verts[np.argsort(-mass[verts], kind="stable")]
    return CombinationPrior(mass, centroid, verts, int(n_samples))
