"""The candidate operations of the NAS-Bench-201 cell, as reusable modules.

Each op is built from plain ``nn.ReLU`` / ``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.AvgPool2d`` modules (never
functional calls) because training-free proxies find activations and weights through module hooks. The
``OPS`` factory lets a weight-sharing supernet build the same op classes as the stand-alone networks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

OP_NAMES: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d (no bias) -> BatchNorm2d, the parametric op of NB201 cells and reduction blocks."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats),
        )


class Pooling(nn.Module):
    """3x3 average pooling (padding excluded from the mean); a 1x1 ReLUConvBN first when channels change."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, affine: bool = True, track_running_stats: bool = True
    ) -> None:
        super().__init__()
        self.preprocess = (
            None if c_in == c_out else ReLUConvBN(c_in, c_out, 1, 1, 0, affine, track_running_stats)
        )
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.pool(x)


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (multiplying by 0 keeps NaN/inf visible, as NB201 does)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.c_in == self.c_out:
            return x[:, :, :: self.stride, :: self.stride].mul(0.0)
        shape = list(x[:, :, :: self.stride, :: self.stride].shape)
        shape[1] = self.c_out
        return x.new_zeros(shape)


class FactorizedReduce(nn.Module):
    """``skip_connect`` when shape changes: stride 1 -> Conv1x1+BN; stride 2 -> ReLU, two offset
    stride-2 Conv1x1 halves concatenated, BN (the NB201/DARTS factorised reduction)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, affine: bool = True, track_running_stats: bool = True
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FactorizedReduce stride must be 1 or 2, got {stride}")
        self.stride = stride
        if stride == 2:
            self.relu = nn.ReLU(inplace=False)
            halves = (c_out // 2, c_out - c_out // 2)
            self.convs = nn.ModuleList(nn.Conv2d(c_in, h, 1, stride=2, padding=0, bias=False) for h in halves)
            self.pad = nn.ConstantPad2d((0, 1, 0, 1), 0.0)
        else:
            self.conv = nn.Conv2d(c_in, c_out, 1, stride=1, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            x = self.relu(x)
            y = self.pad(x)
            out = torch.cat([self.convs[0](x), self.convs[1](y[:, :, 1:, 1:])], dim=1)
        else:
            out = self.conv(x)
        return self.bn(out)


def _skip(c_in: int, c_out: int, stride: int, affine: bool, track: bool) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return FactorizedReduce(c_in, c_out, stride, affine, track)


OpFactory = Callable[[int, int, int, bool, bool], nn.Module]

#: name -> factory(c_in, c_out, stride, affine, track_running_stats)
OPS: dict[str, OpFactory] = {
    "none": lambda c_in, c_out, stride, affine, track: Zero(c_in, c_out, stride),
    "skip_connect": _skip,
    "nor_conv_1x1": lambda c_in, c_out, stride, affine, track: ReLUConvBN(
        c_in, c_out, 1, stride, 0, affine, track
    ),
    "nor_conv_3x3": lambda c_in, c_out, stride, affine, track: ReLUConvBN(
        c_in, c_out, 3, stride, 1, affine, track
    ),
    "avg_pool_3x3": lambda c_in, c_out, stride, affine, track: Pooling(c_in, c_out, stride, affine, track),
}


class ResNetBasicBlock(nn.Module):
    """NB201's residual reduction block: ReLUConvBN 3x3 (stride) -> ReLUConvBN 3x3, plus a shortcut
    (AvgPool2d(2,2) + Conv1x1 when stride 2; ReLUConvBN 1x1 when only channels change; identity otherwise)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, affine: bool = True, track_running_stats: bool = True
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResNetBasicBlock stride must be 1 or 2, got {stride}")
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1, affine, track_running_stats)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine, track_running_stats)
        if stride == 2:
            self.downsample: nn.Module | None = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
            )
        elif c_in != c_out:
            self.downsample = ReLUConvBN(c_in, c_out, 1, 1, 0, affine, track_running_stats)
        else:
            self.downsample = None
        self.out_dim = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))
