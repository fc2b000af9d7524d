"""NAFBee design space: VGG-19 (BN) for CIFAR-10 with one of 11 activation functions.

An architecture is the 1-tuple ``(name,)`` of a ``torch.nn`` activation class, instantiated with PyTorch's
defaults; the string form is the name itself (case-sensitive). Index order = ACTIVATIONS, the order of the
NAFBee activation list (methods.md §6.5). The network: hnas.nn.vgg.VGG with VGG19_CFG.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch import nn

from hnas.nn.vgg import VGG, VGG19_CFG
from hnas.spaces.base import Arch, SearchSpace, SearchSpaceError

ACTIVATIONS: tuple[str, ...] = (
    "ReLU",
    "ELU",
    "Hardtanh",
    "Hardswish",
    "LeakyReLU",
    "ReLU6",
    "SELU",
    "CELU",
    "GELU",
    "SiLU",
    "Mish",
)
_INDEX = {a: i for i, a in enumerate(ACTIVATIONS)}

NAFBeeArch = tuple[str]


class NAFBeeSpace(SearchSpace):
    """The 11 activations of NAFBee on VGG-19-BN; mutate/neighbours swap the activation."""

    name = "nafbee"

    def _valid(self) -> str:
        return ", ".join(ACTIVATIONS)

    def check(self, arch: Arch) -> NAFBeeArch:
        """Return ``arch`` as a validated ``(name,)`` tuple (a bare name string is parsed)."""
        if isinstance(arch, str):
            return self.parse(arch)
        if not isinstance(arch, (tuple, list)) or len(arch) != 1 or arch[0] not in _INDEX:
            raise SearchSpaceError(
                f"invalid nafbee architecture {arch!r}; valid activations: {self._valid()}"
            )
        return (arch[0],)

    def parse(self, text: str) -> NAFBeeArch:
        if not isinstance(text, str) or text.strip() not in _INDEX:
            raise SearchSpaceError(
                f"unknown nafbee activation {text!r} (case-sensitive); valid: {self._valid()}"
            )
        return (text.strip(),)

    def format(self, arch: Arch) -> str:
        return self.check(arch)[0]

    def size(self) -> int:
        return len(ACTIVATIONS)

    def enumerate(self) -> Iterator[NAFBeeArch]:
        return iter((a,) for a in ACTIVATIONS)

    def index(self, arch: Arch) -> int:
        return _INDEX[self.check(arch)[0]]

    def from_index(self, i: int) -> NAFBeeArch:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < len(ACTIVATIONS):
            raise SearchSpaceError(f"nafbee index {i!r} out of range; valid: 0..{len(ACTIVATIONS) - 1}")
        return (ACTIVATIONS[int(i)],)

    def sample(self, rng: np.random.Generator) -> NAFBeeArch:
        return (ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))],)

    def mutate(self, arch: Arch, rng: np.random.Generator) -> NAFBeeArch:
        others = self.neighbours(arch)
        return others[int(rng.integers(len(others)))]

    def neighbours(self, arch: Arch) -> list[NAFBeeArch]:
        current = self.check(arch)[0]
        return [(a,) for a in ACTIVATIONS if a != current]

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot over ACTIVATIONS (11 floats)."""
        out = np.zeros(len(ACTIVATIONS), dtype=np.float64)
        out[self.index(arch)] = 1.0
        return out

    def key(self, arch: Arch) -> str:
        return self.format(arch)

    def build(self, arch: Arch, num_classes: int = 10, width_mult: float = 1.0, **kwargs) -> nn.Module:
        """VGG-19-BN with the chosen activation; ``width_mult`` < 1 shrinks every conv (for tests only)."""
        if kwargs:
            raise SearchSpaceError(f"unknown nafbee build options {sorted(kwargs)}; valid: width_mult")
        name = self.check(self.coerce(arch))[0]
        return VGG(getattr(nn, name), VGG19_CFG, num_classes=num_classes, width_mult=width_mult)
