"""VGG with BatchNorm for 32x32 inputs, with a swappable activation (the NAFBee design space).

Each 3x3 conv (padding 1, with bias as in the usual CIFAR VGG) is followed by BatchNorm2d and a fresh
activation *module* (so hooks can find every activation, whatever its type); "M" is MaxPool2d(2, 2).
Five max-pools bring a 32x32 input to 1x1; AvgPool2d(1, 1), flatten and ``classifier`` = Linear(512, classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

#: VGG-19 configuration: output channels of each conv, "M" = 2x2 max-pool.
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip


class VGG(nn.Module):
    """VGG-BN feature extractor + linear classifier; ``forward_pre_gap`` returns the map before pooling."""

    def __init__(
        self,
        activation: Callable[[], nn.Module],
        cfg: Sequence[int | str] = VGG19_CFG,
        num_classes: int = 10,
        in_channels: int = 3,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        layers: list[nn.Module] = []
        c_prev = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            c = max(1, int(round(int(item) * width_mult)))
            layers += [nn.Conv2d(c_prev, c, kernel_size=3, padding=1), nn.BatchNorm2d(c), activation()]
            c_prev = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(kernel_size=1, stride=1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward_pre_gap(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the last conv block and max-pool, before the final pooling."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.forward_pre_gap(x)), 1))
