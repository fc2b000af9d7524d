"""The candidate operations of the DARTS cell (Liu et al., 2019) and DARTS's drop-path.

Shapes, paddings and layer order follow DARTS's reference ``cnn/operations.py`` so that the networks built
from them have exactly the reference parameter counts and multiply-adds (methods.md §9). Every op is a module
of plain ``nn.ReLU`` / ``nn.Conv2d`` / ``nn.BatchNorm2d`` / pooling layers, because training-free proxies find
weights and activations through module hooks. ``ReLUConvBN``, ``FactorizedReduce`` and ``Zero`` are the
NB201 modules of ``hnas.nn.ops``: they compute the same function as DARTS's at the (even) spatial sizes of the
DARTS networks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hnas.nn.ops import FactorizedReduce, Zero

#: DARTS's PRIMITIVES, in the reference order (the column order of the architecture weights alpha).
DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
#: the ops a genotype may use (every primitive but ``none``)
DARTS_OPS: tuple[str, ...] = DARTS_PRIMITIVES[1:]


class SepConv(nn.Sequential):
    """Separable conv applied twice: (ReLU, depthwise kxk (stride), pointwise 1x1, BN) x 2; the second
    depthwise conv has stride 1. DARTS's ``sep_conv_kxk``."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_out),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise kxk conv (stride), pointwise 1x1, BN. DARTS's ``dil_conv_kxk`` (dilation 2)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_out),
        )


def _skip(c: int, stride: int) -> nn.Module:
    # nn.Identity marks the op drop-path leaves alone (DARTS skips only its Identity, not FactorizedReduce)
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, 2)


#: name -> factory(C, stride): the op on an edge of a cell with C channels (stride 2 on reduction inputs)
DARTS_OP_FACTORIES: dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda c, stride: Zero(c, c, stride),
    "max_pool_3x3": lambda c, stride: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, stride: SepConv(c, c, 3, stride, 1),
    "sep_conv_5x5": lambda c, stride: SepConv(c, c, 5, stride, 2),
    "dil_conv_3x3": lambda c, stride: DilConv(c, c, 3, stride, 2, 2),
    "dil_conv_5x5": lambda c, stride: DilConv(c, c, 5, stride, 4, 2),
}


def darts_op(name: str, c: int, stride: int) -> nn.Module:
    """The DARTS op ``name`` on ``c`` channels; an unknown name lists the valid ones."""
    if name not in DARTS_OP_FACTORIES:
        raise ValueError(f"unknown DARTS op {name!r}; valid: {', '.join(DARTS_PRIMITIVES)}")
    if stride not in (1, 2):
        raise ValueError(f"DARTS op stride must be 1 or 2, got {stride}")
    return DARTS_OP_FACTORIES[name](c, stride)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of an op's output with probability ``drop_prob`` and rescale the kept ones by
    1 / (1 - drop_prob) (DARTS / NASNet ScheduledDropPath); out of place, so autograd sees a plain product."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * (mask / keep)
