"""The SearchSpace protocol every space implements.

A strategy only talks to a space through this interface, so a new space plugs into every strategy.
Architectures (``Arch``) are immutable, hashable values (tuples); ``key`` gives the canonical string that
identifies the *function* the architecture computes (isomorphic spellings share it).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import numpy as np
from torch import nn

from hnas.errors import HNASError

Arch = Hashable


class SearchSpaceError(HNASError, ValueError):
    """Bad architecture value or string for a space; the message names the value and what is valid."""


class SearchSpace(abc.ABC):
    """Sample / enumerate / mutate / encode / key / parse / format / build."""

    name: str = ""

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """One architecture drawn uniformly from the space."""

    def sample_many(self, n: int, rng: np.random.Generator, unique: bool = True) -> list[Arch]:
        """``n`` architectures; distinct (by ``format``) when ``unique`` and the space is large enough."""
        size = self.size()
        if unique and size is not None and n > size:
            raise SearchSpaceError(f"cannot draw {n} distinct architectures from space {self.name!r} of size {size}")
        if unique and size is not None:
            idx = rng.choice(size, size=n, replace=False)
            return [self.from_index(int(i)) for i in idx]
        out: list[Arch] = []
        seen: set[Arch] = set()
        while len(out) < n:
            a = self.sample(rng)
            if unique and a in seen:
                continue
            seen.add(a)
            out.append(a)
        return out

    def size(self) -> int | None:
        """Number of architectures (None when infinite/unknown)."""
        return None

    def enumerate(self) -> Iterator[Arch]:
        """All architectures in the space's official index order (finite spaces only)."""
        raise SearchSpaceError(f"space {self.name!r} is not enumerable")

    def index(self, arch: Arch) -> int:
        """Official index of ``arch`` (finite spaces only)."""
        raise SearchSpaceError(f"space {self.name!r} has no index")

    def from_index(self, i: int) -> Arch:
        """Architecture with official index ``i`` (finite spaces only)."""
        raise SearchSpaceError(f"space {self.name!r} has no index")

    @abc.abstractmethod
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A random neighbour (differs from ``arch``)."""

    @abc.abstractmethod
    def neighbours(self, arch: Arch) -> list[Arch]:
        """Every architecture one edit away."""

    @abc.abstractmethod
    def encode(self, arch: Arch) -> np.ndarray:
        """Fixed-length float vector for a GP surrogate."""

    @abc.abstractmethod
    def key(self, arch: Arch) -> str:
        """Canonical string: architectures computing the same function share it."""

    @abc.abstractmethod
    def parse(self, text: str) -> Arch:
        """Architecture from its string form; raises SearchSpaceError naming what is valid."""

    @abc.abstractmethod
    def format(self, arch: Arch) -> str:
        """String form (round-trips with ``parse``)."""

    @abc.abstractmethod
    def build(self, arch: Arch, num_classes: int = 10, **kwargs) -> nn.Module:
        """The network for ``arch``."""

    def builder(self, num_classes: int, **build_kwargs: Any) -> Callable[[Arch], nn.Module]:
        """``arch -> network`` with these build arguments: the model factory scoring and training take."""
        return functools.partial(self.build, num_classes=num_classes, **build_kwargs)

    def coerce(self, arch: Arch | str | int) -> Arch:
        """Accept an Arch, its string form, or (finite spaces) an index."""
        if isinstance(arch, str):
            return self.parse(arch)
        if isinstance(arch, (int, np.integer)) and not isinstance(arch, bool):
            return self.from_index(int(arch))
        return arch

    def input_shape(self) -> Sequence[int]:
        """Default (C, H, W) of one input image."""
        return (3, 32, 32)
