"""Seeded synthetic images for tests: any shape and class count, learnable (class templates + noise)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hnas.data.base import ArrayData, HNASDataModule
from hnas.data.errors import DataError


class SyntheticDataModule(HNASDataModule):
    """Each class has a random template image; samples are template plus noise, so a small network can
    learn them (a training test can check accuracy above chance), yet they cost nothing to make."""

    name = "synthetic"

    def __init__(self, num_train: int = 512, num_test: int = 128, shape: Sequence[int] = (3, 32, 32),
                 num_classes: int = 10, seed: int = 0, noise: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise DataError(f"synthetic shape must be (C, H, W) with positive sizes, got {shape}")
        for key, value, low in (("num_train", num_train, 1), ("num_test", num_test, 0),
                                ("num_classes", num_classes, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DataError(f"synthetic {key} must be an int >= {low}, got {value!r}")
        if not 0.0 <= noise <= 1.0:
            raise DataError(f"synthetic noise must be in [0, 1], got {noise!r}")
        self.num_train, self.num_test, self.shape = num_train, num_test, shape
        self._num_classes, self.seed, self.noise = num_classes, seed, float(noise)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _make(self, n: int, templates: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        # balanced classes (n // num_classes each, the remainder to the first classes), in random order
        y = (torch.arange(n) % self._num_classes)[torch.randperm(n, generator=g)]
        c, h, w = self.shape
        noise = torch.rand((n, h, w, c), generator=g)
        x = (1.0 - self.noise) * templates[y] + self.noise * noise
        return (x * 255.0).round().clamp(0, 255).to(torch.uint8), y

    def _load(self) -> ArrayData:
        g = torch.Generator().manual_seed(self.seed)
        c, h, w = self.shape
        templates = torch.rand((self._num_classes, h, w, c), generator=g)
        train_x, train_y = self._make(self.num_train, templates, g)
        test_x, test_y = self._make(self.num_test, templates, g) if self.num_test else (None, None)
        return ArrayData(train_x, train_y, test_x, test_y)
