"""ImageNet16-120: the 120-class 16x16 subset of downsampled ImageNet used by NAS-Bench-201.

Read from the official pickles (no download: the files need a registration at image-net.org).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from hnas.data.base import ArrayData, HNASDataModule
from hnas.data.errors import DataError
from hnas.data.pickles import load_batch

log = logging.getLogger(__name__)

TRAIN_FILES: tuple[str, ...] = tuple(f"train_data_batch_{i}" for i in range(1, 11))
TEST_FILES: tuple[str, ...] = ("val_data",)


def read_imagenet16(path: Path, max_label: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickle: ``data`` (N, 768) channel-major 3x16x16, ``labels`` 1-indexed; keeps labels
    1..``max_label`` and returns uint8 (M, 16, 16, 3) with labels shifted to 0..max_label-1."""
    batch = load_batch(path)
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path} lacks 'data' or 'labels' (keys: {sorted(batch)})")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 3 * 16 * 16 or len(data) != len(labels):
        raise DataError(f"{path}: 'data' {data.shape} / 'labels' {labels.shape}, expected (N, 768) and (N,)")
    keep = (labels >= 1) & (labels <= max_label)
    x = data[keep].reshape(-1, 3, 16, 16).transpose(0, 2, 3, 1)
    return x, labels[keep] - 1


class ImageNet16DataModule(HNASDataModule):
    """``root`` holds ``train_data_batch_1..10`` and ``val_data`` (or ``root/ImageNet16/`` does).

    ``val_data`` is the test set (NB201's ``x-valid``/``x-test`` are its two halves); the valid part comes
    from the seeded split of the training set like every other dataset here. NB201 crops with padding 2.
    """

    name = "imagenet16"
    NUM_CLASSES = 120
    INPUT_SHAPE = (3, 16, 16)
    MEAN = tuple(v / 255 for v in (122.68, 116.66, 104.01))
    STD = tuple(v / 255 for v in (63.22, 61.26, 65.09))
    DEFAULT_CROP_PADDING = 2

    def __init__(self, root: str | os.PathLike | None = None, **kwargs) -> None:
        if root is None:
            raise DataError("imagenet16 needs root=<folder with the NAS-Bench-201 ImageNet16 pickles "
                            f"{', '.join(TRAIN_FILES[:1])}..{TRAIN_FILES[-1][-2:]}, val_data>")
        super().__init__(root=root, **kwargs)

    def _folder(self) -> Path:
        for cand in (self.root, self.root / "ImageNet16"):
            if all((cand / f).is_file() for f in TRAIN_FILES + TEST_FILES):
                return cand
        missing = [f for f in TRAIN_FILES + TEST_FILES if not (self.root / f).is_file()]
        raise DataError(f"ImageNet16-120 files not found in {self.root}: missing {', '.join(missing)}. "
                        f"Put the NAS-Bench-201 ImageNet16 pickles ({', '.join(TRAIN_FILES)}, "
                        f"{', '.join(TEST_FILES)}; "
                        "from the downsampled ImageNet 16x16 release, image-net.org) there; they cannot be "
                        "downloaded automatically")

    def prepare_data(self) -> None:
        self._folder()

    def _load(self) -> ArrayData:
        folder = self._folder()
        parts = [read_imagenet16(folder / f, self.NUM_CLASSES) for f in TRAIN_FILES]
        train_x = torch.from_numpy(np.ascontiguousarray(np.concatenate([p[0] for p in parts])))
        train_y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        tx, ty = read_imagenet16(folder / TEST_FILES[0], self.NUM_CLASSES)
        log.info("imagenet16: %d train / %d test images in classes 1..%d", len(train_y), len(ty),
                 self.NUM_CLASSES)
        return ArrayData(train_x, train_y, torch.from_numpy(np.ascontiguousarray(tx)), torch.from_numpy(ty))
