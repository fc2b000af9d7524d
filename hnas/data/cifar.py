"""CIFAR-10 and CIFAR-100 from the official python-format archives (download + MD5 check)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from hnas.data.base import ArrayData, HNASDataModule, default_data_root
from hnas.data.download import ensure_extracted
from hnas.data.errors import DataError
from hnas.data.pickles import load_batch

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"


def read_cifar_batches(paths: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate official batches: ``data`` (N, 3072) channel-major rows -> uint8 (N, 32, 32, 3)."""
    xs, ys = [], []
    for path in paths:
        batch = load_batch(path)
        if "data" not in batch or label_key not in batch:
            raise DataError(f"{path} lacks 'data' or {label_key!r} (keys: {sorted(batch)}); is it the python "
                            f"version of CIFAR?")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{path}: 'data' has shape {data.shape}, expected (N, 3072)")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate(xs)))
    return x, torch.from_numpy(np.concatenate(ys))


class CIFAR10DataModule(HNASDataModule):
    """CIFAR-10 (``root/cifar-10-batches-py/``); NAS-Bench-201's ``cifar10-valid`` is the default half
    split of the train set, ``valid_fraction=0`` gives its ``cifar10`` setting (train on all 50,000)."""

    name = "cifar10"
    NUM_CLASSES = 10
    INPUT_SHAPE = (3, 32, 32)
    # NAS-Bench-201's normalisation constants (pixel values / 255).
    MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))
    STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))
    FOLDER = "cifar-10-batches-py"
    ARCHIVE = "cifar-10-python.tar.gz"
    TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
    TEST_FILES = ("test_batch",)
    LABEL_KEY = "labels"
    META = ("batches.meta", "label_names")
    URL, MD5 = CIFAR10_URL, CIFAR10_MD5
    TITLE = "CIFAR-10"

    def __init__(self, root: str | os.PathLike | None = None, download: bool = False, url: str | None = None,
                 md5: str | None = None, **kwargs) -> None:
        super().__init__(root=root if root is not None else default_data_root(), **kwargs)
        self.download = bool(download)
        self.url = url or self.URL
        self.md5 = md5 or self.MD5

    def prepare_data(self) -> None:
        """Download and extract when needed (Lightning calls this on one process only)."""
        ensure_extracted(self.root, self.FOLDER, self.TRAIN_FILES + self.TEST_FILES, self.ARCHIVE, self.url,
                         self.md5, self.download, self.TITLE)

    def _load(self) -> ArrayData:
        folder = ensure_extracted(self.root, self.FOLDER, self.TRAIN_FILES + self.TEST_FILES, self.ARCHIVE,
                                  self.url, self.md5, self.download, self.TITLE)
        train_x, train_y = read_cifar_batches([folder / f for f in self.TRAIN_FILES], self.LABEL_KEY)
        test_x, test_y = read_cifar_batches([folder / f for f in self.TEST_FILES], self.LABEL_KEY)
        classes = None
        meta_file, meta_key = self.META
        if (folder / meta_file).is_file():
            names = load_batch(folder / meta_file).get(meta_key)
            if names is not None and len(names) == self.NUM_CLASSES:
                classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        for part, y in (("train", train_y), ("test", test_y)):
            if int(y.max()) >= self.NUM_CLASSES:
                raise DataError(f"{folder}: {part} label {int(y.max())} out of range "
                                f"0..{self.NUM_CLASSES - 1}")
        return ArrayData(train_x, train_y, test_x, test_y, classes)


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 fine labels (``root/cifar-100-python/train``, ``test``)."""

    name = "cifar100"
    NUM_CLASSES = 100
    MEAN = tuple(v / 255 for v in (129.3, 124.1, 112.4))
    STD = tuple(v / 255 for v in (68.2, 65.4, 70.4))
    FOLDER = "cifar-100-python"
    ARCHIVE = "cifar-100-python.tar.gz"
    TRAIN_FILES = ("train",)
    TEST_FILES = ("test",)
    LABEL_KEY = "fine_labels"
    META = ("meta", "fine_label_names")
    URL, MD5 = CIFAR100_URL, CIFAR100_MD5
    TITLE = "CIFAR-100"
