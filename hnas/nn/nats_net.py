"""The NATS-Bench size-space network: NB201's macro skeleton with one fixed cell and chosen widths.

NATS-Bench ("infer.shape.tiny") takes a channel plan of 3N+2 widths and derives N = len // 3, so the size
space's 5 widths mean N = 1 cell per stage: (stem + stage-1 cell, reduction 1, stage-2 cell, reduction 2,
stage-3 cell). The stem outputs the first width; every cell/block maps the previous width to its own, so a
cell whose input width differs from its output width builds its node-0 edges from c_in to c_out (a 1x1
ReLUConvBN before pooling, a Conv1x1+BN for skip_connect), exactly as NB201's cell does.
"""

from __future__ import annotations

from collections.abc import Sequence

from hnas.nn.nb201_net import NB201Network

#: The cell NATS-Bench fixes for its size space (the best topology of NAS-Bench-201).
NATS_SSS_CELL: tuple[str, ...] = (
    "nor_conv_3x3",
    "none",
    "nor_conv_3x3",
    "skip_connect",
    "nor_conv_3x3",
    "nor_conv_3x3",
)


def nats_size_network(
    channels: Sequence[int],
    num_classes: int = 10,
    bn_affine: bool = True,
    bn_track_running_stats: bool = True,
) -> NB201Network:
    """The NATS-Bench SSS network for a 5-entry (or any 3N+2-entry) channel plan."""
    return NB201Network(
        NATS_SSS_CELL,
        channels,
        num_classes=num_classes,
        bn_affine=bn_affine,
        bn_track_running_stats=bn_track_running_stats,
    )
