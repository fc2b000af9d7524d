"""The NAS-Bench-201 cell and macro network (also the NATS-Bench size-space network).

Macro skeleton (Dong & Yang, NAS-Bench-201): stem Conv3x3 (no bias) + BN; stages of cells separated by
residual reduction blocks; BN-ReLU; global average pooling; a Linear ``classifier``. The channel plan is a
list of ``3N + 2`` widths ``[cell]*N + [reduction] + [cell]*N + [reduction] + [cell]*N`` -- with
``nb201_channels(C, N)`` that is the fixed NB201 plan (C, 2C, 4C); NATS-Bench's size space chooses each entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from hnas.nn.ops import OPS, ResNetBasicBlock

#: (target node, source node) of each cell edge, in the order of the NB201 architecture string.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def nb201_channels(C: int, N: int) -> list[int]:
    """The NB201 channel plan: N cells at C, reduction to 2C, N cells, reduction to 4C, N cells."""
    return [C] * N + [2 * C] + [2 * C] * N + [4 * C] + [4 * C] * N


class NB201Cell(nn.Module):
    """A 4-node DAG cell; node j sums ``edges[e](node_i)`` over its incoming edges (i -> j) in EDGES.

    ``edges`` is a ModuleList aligned with EDGES / the architecture tuple, so a caller can find the module of
    each edge (e.g. to share op weights or inspect one edge).
    """

    def __init__(
        self,
        ops: Sequence[str],
        c_in: int,
        c_out: int,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        if len(ops) != len(EDGES):
            raise ValueError(f"an NB201 cell needs {len(EDGES)} ops, got {len(ops)}: {tuple(ops)}")
        self.ops = tuple(ops)
        self.edges = nn.ModuleList(
            OPS[op](c_in if src == 0 else c_out, c_out, 1, affine, track_running_stats)
            for op, (_, src) in zip(ops, EDGES)
        )
        self.in_dim, self.out_dim = c_in, c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            terms = [self.edges[e](nodes[src]) for e, (dst, src) in enumerate(EDGES) if dst == target]
            out = terms[0]
            for t in terms[1:]:
                out = out + t
            nodes.append(out)
        return nodes[3]


def build_skeleton(
    net: nn.Module,
    channels: Sequence[int],
    num_classes: int,
    bn_affine: bool,
    bn_track_running_stats: bool,
    in_channels: int,
    make_cell: Callable[[int, int], nn.Module],
) -> None:
    """The NB201 macro skeleton on ``net``: stem, 3 stages of N cells with residual reductions between them,
    BN-ReLU, global pooling, classifier. ``make_cell(c_in, c_out)`` builds a normal cell, so the single-cell
    network and the weight-sharing supernet share one skeleton (same module order, same init draws)."""
    channels = [int(c) for c in channels]
    if len(channels) % 3 != 2 or len(channels) < 5:
        raise ValueError(f"channel plan needs 3N+2 entries (N >= 1), got {len(channels)}: {channels}")
    if any(c < 1 for c in channels) or num_classes < 1:
        raise ValueError(f"channels and num_classes must be >= 1, got {channels}, {num_classes}")
    n = len(channels) // 3
    reductions = [False] * n + [True] + [False] * n + [True] + [False] * n
    aff, trs = bn_affine, bn_track_running_stats
    net.channels = channels
    net.stem = nn.Sequential(
        nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels[0], affine=aff, track_running_stats=trs),
    )
    net.cells = nn.ModuleList()
    c_prev = channels[0]
    for c_curr, reduction in zip(channels, reductions):
        net.cells.append(ResNetBasicBlock(c_prev, c_curr, 2, aff, trs) if reduction else make_cell(c_prev, c_curr))
        c_prev = c_curr
    net.lastact = nn.Sequential(nn.BatchNorm2d(c_prev, affine=aff, track_running_stats=trs), nn.ReLU(inplace=False))
    net.global_pooling = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(c_prev, num_classes)


class NB201Network(nn.Module):
    """NAS-Bench-201 "TinyNetwork" (and NATS-Bench "DynamicShapeTinyNet") for one cell genotype.

    ``forward`` returns logits; ``forward_pre_gap`` the BN-ReLU feature map before global pooling.
    ``bn_affine`` / ``bn_track_running_stats`` apply to every BatchNorm2d (defaults True/True as the official
    network); convolutions never have a bias, as in NB201.
    """

    def __init__(
        self,
        ops: Sequence[str],
        channels: Sequence[int],
        num_classes: int = 10,
        bn_affine: bool = True,
        bn_track_running_stats: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        build_skeleton(self, channels, num_classes, bn_affine, bn_track_running_stats, in_channels,
                       lambda c_in, c_out: NB201Cell(ops, c_in, c_out, bn_affine, bn_track_running_stats))

    def forward_pre_gap(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the final BN-ReLU, before global average pooling (Zen-score uses it)."""
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.lastact(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.global_pooling(self.forward_pre_gap(x)), 1))
