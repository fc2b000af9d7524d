"""Network building blocks shared by the search spaces (ops, cells, backbones).

All networks use plain ``nn.ReLU`` / ``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.Linear`` / ``nn.AvgPool2d``
modules so proxies can hook them, return logits from ``forward``, expose the pre-pooling feature map through
``forward_pre_gap`` and name their last layer ``classifier``.
"""

from hnas.nn.darts_net import AuxiliaryHead, DARTSCell, DARTSNetwork, count_darts_parameters
from hnas.nn.darts_ops import DARTS_OPS, DARTS_PRIMITIVES, DilConv, SepConv, darts_op, drop_path
from hnas.nn.nats_net import NATS_SSS_CELL, nats_size_network
from hnas.nn.nb201_net import EDGES, NB201Cell, NB201Network, nb201_channels
from hnas.nn.ops import OP_NAMES, OPS, FactorizedReduce, Pooling, ReLUConvBN, ResNetBasicBlock, Zero
from hnas.nn.vgg import VGG, VGG19_CFG

__all__ = [
    "DARTS_OPS",
    "DARTS_PRIMITIVES",
    "AuxiliaryHead",
    "DARTSCell",
    "DARTSNetwork",
    "DilConv",
    "SepConv",
    "count_darts_parameters",
    "darts_op",
    "drop_path",
    "EDGES",
    "NATS_SSS_CELL",
    "OPS",
    "OP_NAMES",
    "VGG",
    "VGG19_CFG",
    "FactorizedReduce",
    "NB201Cell",
    "NB201Network",
    "Pooling",
    "ReLUConvBN",
    "ResNetBasicBlock",
    "Zero",
    "nats_size_network",
    "nb201_channels",
]
