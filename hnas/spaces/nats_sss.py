"""NATS-Bench size search space (SSS): 5 channel widths from {8, 16, ..., 64}, 8^5 = 32,768 architectures.

An architecture is a tuple of 5 ints, the widths of (stem + stage-1 cell, reduction 1, stage-2 cell,
reduction 2, stage-3 cell); its string is ``"8:16:32:64:64"``. The network is NATS-Bench's
"infer.shape.tiny": the NB201 skeleton with N = 1 cell per stage (5 widths = 3N+2) and the fixed best NB201
cell ``|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``
(see hnas.nn.nats_net).

Index order: ``itertools.product(CHANNELS, repeat=5)``, first position varying slowest (index 0 = 8:8:8:8:8,
index 32767 = 64:64:64:64:64), i.e. base-8 digits (c/8 - 1). This is our documented order; it has not been
checked against the official NATS-Bench SSS index (no SSS table here) -- look an architecture up by its
string when using official files.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from torch import nn

from hnas.nn.nats_net import nats_size_network
from hnas.spaces.base import Arch, SearchSpace, SearchSpaceError

CHANNELS: tuple[int, ...] = (8, 16, 24, 32, 40, 48, 56, 64)
NUM_LAYERS = 5
SIZE = len(CHANNELS) ** NUM_LAYERS
FORMAT_HINT = "c1:c2:c3:c4:c5 with each c in 8,16,24,32,40,48,56,64 (e.g. 8:16:32:64:64)"
_POS = {c: i for i, c in enumerate(CHANNELS)}

NATSArch = tuple[int, int, int, int, int]


class NATSSizeSpace(SearchSpace):
    """Channel-size space of NATS-Bench; ``encode`` gives each width scaled to [0, 1] (ordinal, 5 floats)."""

    name = "nats_sss"

    def check(self, arch: Arch) -> NATSArch:
        """Return ``arch`` as a validated 5-tuple of ints (raises SearchSpaceError otherwise)."""
        if not isinstance(arch, (tuple, list)) or len(arch) != NUM_LAYERS:
            raise SearchSpaceError(f"nats_sss architecture must be {NUM_LAYERS} channel widths, got {arch!r}")
        for c in arch:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or int(c) not in _POS:
                raise SearchSpaceError(
                    f"invalid nats_sss width {c!r} in {arch!r}; valid: {', '.join(map(str, CHANNELS))}"
                )
        return tuple(int(c) for c in arch)  # type: ignore[return-value]

    def parse(self, text: str) -> NATSArch:
        if not isinstance(text, str):
            raise SearchSpaceError(
                f"nats_sss architecture string expected, got {text!r}; format {FORMAT_HINT}"
            )
        tokens = text.strip().split(":")
        if len(tokens) != NUM_LAYERS:
            raise SearchSpaceError(
                f"malformed nats_sss architecture {text!r}: expected {NUM_LAYERS} ':'-separated widths, "
                f"format {FORMAT_HINT}"
            )
        widths = []
        for token in tokens:
            if not token.isdigit() or token != str(int(token)) or int(token) not in _POS:
                raise SearchSpaceError(
                    f"invalid nats_sss width {token!r} in {text!r}; valid: {', '.join(map(str, CHANNELS))}"
                )
            widths.append(int(token))
        return tuple(widths)  # type: ignore[return-value]

    def format(self, arch: Arch) -> str:
        return ":".join(str(c) for c in self.check(arch))

    def size(self) -> int:
        return SIZE

    def enumerate(self) -> Iterator[NATSArch]:
        return iter(itertools.product(CHANNELS, repeat=NUM_LAYERS))  # type: ignore[arg-type]

    def index(self, arch: Arch) -> int:
        i = 0
        for c in self.check(arch):
            i = i * len(CHANNELS) + _POS[c]
        return i

    def from_index(self, i: int) -> NATSArch:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < SIZE:
            raise SearchSpaceError(f"nats_sss index {i!r} out of range; valid: 0..{SIZE - 1}")
        i = int(i)
        digits = []
        for _ in range(NUM_LAYERS):
            i, d = divmod(i, len(CHANNELS))
            digits.append(CHANNELS[d])
        return tuple(reversed(digits))  # type: ignore[return-value]

    def sample(self, rng: np.random.Generator) -> NATSArch:
        return tuple(CHANNELS[int(k)] for k in rng.integers(len(CHANNELS), size=NUM_LAYERS))  # type: ignore

    def mutate(self, arch: Arch, rng: np.random.Generator) -> NATSArch:
        a = list(self.check(arch))
        pos = int(rng.integers(NUM_LAYERS))
        others = [c for c in CHANNELS if c != a[pos]]
        a[pos] = others[int(rng.integers(len(others)))]
        return tuple(a)  # type: ignore[return-value]

    def neighbours(self, arch: Arch) -> list[NATSArch]:
        a = self.check(arch)
        return [a[:p] + (c,) + a[p + 1 :] for p in range(NUM_LAYERS) for c in CHANNELS if c != a[p]]

    def encode(self, arch: Arch) -> np.ndarray:
        """Widths are ordered quantities, so an ordinal code (c - 8) / 56 keeps "close" widths close."""
        a = self.check(arch)
        return np.array([(c - CHANNELS[0]) / (CHANNELS[-1] - CHANNELS[0]) for c in a], dtype=np.float64)

    def key(self, arch: Arch) -> str:
        """Every width plan is a different network, so the canonical key is the string form."""
        return self.format(arch)

    def build(
        self,
        arch: Arch,
        num_classes: int = 10,
        bn_affine: bool = True,
        bn_track_running_stats: bool = True,
        **kwargs,
    ) -> nn.Module:
        """The NATS-Bench SSS network (``arch`` may be a tuple, a string or an index)."""
        if kwargs:
            raise SearchSpaceError(
                f"unknown nats_sss build options {sorted(kwargs)}; valid: bn_affine, bn_track_running_stats"
            )
        return nats_size_network(
            self.check(self.coerce(arch)),
            num_classes=num_classes,
            bn_affine=bn_affine,
            bn_track_running_stats=bn_track_running_stats,
        )
