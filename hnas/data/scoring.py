"""The fixed, seeded scoring batch that training-free proxies see, and its fingerprint.

Proxy scores are cached by (architecture, proxy, batch); the fingerprint identifies the batch by its
content (the chosen images' bytes and labels) plus how it was drawn, so a cache entry is never reused for a
different batch, and the same seed on the same data always gives the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from hnas.data.errors import DataError

ScoringMode = Literal["random", "per_class"]
SCORING_MODES: tuple[str, ...] = ("random", "per_class")


class ScoringBatch(NamedTuple):
    """``x``: float NCHW, normalised; ``y``: int64 labels; ``fingerprint``: short stable hash (16 hex)."""

    x: Tensor
    y: Tensor
    fingerprint: str


def select_scoring_indices(labels: Tensor, pool: Tensor, n: int, seed: int, mode: str, num_classes: int,
                           where: str) -> Tensor:
    """Indices (into ``labels``) of the scoring batch drawn from ``pool``.

    ``random``: ``n`` distinct images uniformly from the pool. ``per_class``: ``n // num_classes`` distinct
    images of every class (so the batch has ``num_classes * (n // num_classes)`` images), shuffled so that
    classes are interleaved. ``where`` names the dataset/split in error messages.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"scoring batch size n must be a positive int, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"scoring batch seed must be an int, got {seed!r}")
    if mode not in SCORING_MODES:
        raise DataError(f"unknown scoring batch mode {mode!r}; valid: {', '.join(SCORING_MODES)}")
    g = torch.Generator().manual_seed(seed)
    if mode == "random":
        if n > len(pool):
            raise DataError(f"scoring batch n={n} is larger than {where} ({len(pool)} images)")
        return pool[torch.randperm(len(pool), generator=g)[:n]]
    k = n // num_classes
    if k == 0:
        raise DataError(f"per_class scoring batch needs n >= num_classes ({num_classes}), got n={n}")
    pool_labels = labels[pool]
    counts = torch.bincount(pool_labels, minlength=num_classes)
    short = (counts < k).nonzero().flatten().tolist()
    if short:
        c = short[0]
        raise DataError(f"per_class scoring batch n={n} needs {k} images per class, but class {c} has only "
                        f"{int(counts[c])} in {where} ({len(short)} classes too small)")
    order = torch.argsort(pool_labels, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    chosen = []
    for c in range(num_classes):
        members = pool[order[int(starts[c]):int(starts[c]) + int(counts[c])]]
        chosen.append(members[torch.randperm(len(members), generator=g)[:k]])
    picked = torch.cat(chosen)
    return picked[torch.randperm(len(picked), generator=g)]


def fingerprint(name: str, images: Tensor, labels: Tensor, n: int, seed: int, mode: str, split: str,
                mean: Sequence[float], std: Sequence[float]) -> str:
    """16-hex-digit SHA-256 over the dataset name, the chosen uint8 images and labels, and the draw."""
    h = hashlib.sha256()
    head = f"{name}|n={n}|seed={seed}|mode={mode}|split={split}|mean={tuple(mean)}|std={tuple(std)}"
    h.update(head.encode())
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
