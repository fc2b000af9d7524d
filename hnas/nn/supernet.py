"""The NAS-Bench-201 weight-sharing supernet: every cell edge holds all five ops, one weight set per op.

A sub-network (one op per edge) runs through the shared weights: ``subnet(arch)`` returns a *view* -- an
``NB201Network`` whose cells' ``edges`` are the supernet's own op modules (no parameter is copied), so its
parameter names, layer order and forward are exactly those of ``NB201Space.build(arch)``. Proxies and the
search code therefore treat a supernet sub-network like any stand-alone candidate, and a ``copy.deepcopy`` of
the view copies only that sub-network's weights (what scoring with optimizer steps needs: the supernet itself is
never touched).

Stem, reduction blocks, the final BN-ReLU and the classifier are shared by every sub-network, as in the
NB201 / SPOS supernets. BatchNorm defaults to ``track_running_stats=False``: running statistics averaged over
randomly sampled paths describe no single sub-network, so every forward normalises with batch statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hnas.nn.nb201_net import EDGES, NB201Cell, NB201Network, build_skeleton
from hnas.nn.ops import OP_NAMES, OPS


class SupernetError(ValueError):
    """A bad architecture for the supernet (wrong length, unknown op); the message lists what is valid."""


class NB201SuperCell(nn.Module):
    """A 4-node cell whose edge ``e`` is an ``nn.ModuleDict`` holding every op of ``OP_NAMES``."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, track_running_stats: bool = False) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleDict(
                {op: OPS[op](c_in if src == 0 else c_out, c_out, 1, affine, track_running_stats) for op in OP_NAMES}
            )
            for _, src in EDGES
        )
        self.in_dim, self.out_dim = c_in, c_out

    def view(self, ops: Sequence[str]) -> NB201Cell:
        """An ``NB201Cell`` whose edges are this cell's modules for ``ops`` (shared, not copied)."""
        cell = NB201Cell.__new__(NB201Cell)
        nn.Module.__init__(cell)
        cell.ops = tuple(ops)
        cell.edges = nn.ModuleList(edge[op] for edge, op in zip(self.edges, ops))
        cell.in_dim, cell.out_dim = self.in_dim, self.out_dim
        return cell


class NB201Supernet(nn.Module):
    """Weight-sharing supernet over the NB201 cell space with the ``NB201Network`` macro skeleton.

    ``forward(x, arch)`` runs the sub-network ``arch`` (a tuple of 6 op names in NB201 string order);
    ``subnet(arch)`` returns it as a module sharing this supernet's weights.
    """

    def __init__(
        self,
        channels: Sequence[int],
        num_classes: int = 10,
        bn_affine: bool = True,
        bn_track_running_stats: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        build_skeleton(self, channels, num_classes, bn_affine, bn_track_running_stats, in_channels,
                       lambda c_in, c_out: NB201SuperCell(c_in, c_out, bn_affine, bn_track_running_stats))
        self.num_classes = int(num_classes)

    @staticmethod
    def check_arch(arch: Sequence[str]) -> tuple[str, ...]:
        """``arch`` as a tuple of 6 valid op names (raises SupernetError naming the valid ones otherwise)."""
        if isinstance(arch, str) or not isinstance(arch, Sequence) or len(arch) != len(EDGES):
            raise SupernetError(
                f"a supernet architecture is a tuple of {len(EDGES)} op names, got {arch!r}; "
                f"valid ops: {', '.join(OP_NAMES)}"
            )
        bad = [op for op in arch if op not in OP_NAMES]
        if bad:
            raise SupernetError(f"unknown op {bad[0]!r} in {tuple(arch)!r}; valid ops: {', '.join(OP_NAMES)}")
        return tuple(arch)

    def subnet(self, arch: Sequence[str]) -> NB201Network:
        """The sub-network ``arch`` as an ``NB201Network`` view on the shared weights (nothing copied)."""
        ops = self.check_arch(arch)
        net = NB201Network.__new__(NB201Network)
        nn.Module.__init__(net)
        net.channels = list(self.channels)
        net.stem = self.stem
        net.cells = nn.ModuleList(c.view(ops) if isinstance(c, NB201SuperCell) else c for c in self.cells)
        net.lastact = self.lastact
        net.global_pooling = self.global_pooling
        net.classifier = self.classifier
        net.training = self.training  # not .train(): that would recurse into the shared modules
        return net

    def forward(self, x: torch.Tensor, arch: Sequence[str]) -> torch.Tensor:
        return self.subnet(arch)(x)

    def path_parameters(self, arch: Sequence[str]) -> set[int]:
        """``id`` of every parameter the sub-network ``arch`` uses (the others get no gradient from it)."""
        return {id(p) for p in self.subnet(arch).parameters()}


def sample_path(seed: int, step: int) -> tuple[str, ...]:
    """The uniformly drawn architecture of training step ``step``: a function of (seed, step) only, so every
    DDP rank (and a resumed run) trains the same path at the same step."""
    rng = np.random.default_rng([int(seed), int(step)])
    return tuple(OP_NAMES[int(k)] for k in rng.integers(len(OP_NAMES), size=len(EDGES)))
