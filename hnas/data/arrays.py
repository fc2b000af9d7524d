"""Datasets given as ``.npz`` arrays: ``x`` uint8 (N, H, W, C) and ``y`` int labels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from hnas.data.base import ArrayData, HNASDataModule
from hnas.data.errors import DataError


def load_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` of one ``.npz`` file as tensors; a clear error for a missing file or key."""
    if not path.is_file():
        raise DataError(f"npz file not found: {path} (expected an .npz with arrays 'x' uint8 NHWC, "
                        "'y' int)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise DataError(f"{path} lacks array(s) {missing}; it has {f.files}, expected 'x' "
                                "(uint8 NHWC) and 'y' (int labels)")
            x, y = f["x"], f["y"]
    except (OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"cannot read {path} as .npz: {e}") from e
    if x.dtype != np.uint8:
        raise DataError(f"{path}: 'x' must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: 'y' must hold integer labels, got {y.dtype}")
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64).reshape(-1))


class NpzDataModule(HNASDataModule):
    """Train arrays from ``train_file`` (and a test set from ``test_file`` when given); relative names are
    resolved against ``root``. Mean/std are computed from the train images."""

    name = "npz"

    def __init__(self, train_file: str | os.PathLike | None = None,
                 test_file: str | os.PathLike | None = None, num_classes: int | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if train_file is None:
            if self.root is None or self.root.suffix != ".npz":
                raise DataError("npz data needs train_file=<path to .npz with 'x' uint8 NHWC and 'y' int> "
                                f"(or root=<that .npz file>), got root={self.root}")
            train_file = self.root
        self.train_file = self._resolve(train_file)
        self.test_file = self._resolve(test_file) if test_file is not None else None
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 1):
            raise DataError(f"num_classes must be a positive int, got {num_classes!r}")
        self._num_classes = num_classes

    def _resolve(self, path: str | os.PathLike) -> Path:
        p = Path(path).expanduser()
        if not p.is_absolute() and self.root is not None and self.root.is_dir():
            p = self.root / p
        return p

    @property
    def num_classes(self) -> int:
        return self._num_classes if self._num_classes is not None else super().num_classes

    def _load(self) -> ArrayData:
        train_x, train_y = load_npz(self.train_file)
        test_x = test_y = None
        if self.test_file is not None:
            test_x, test_y = load_npz(self.test_file)
        if self._num_classes is not None:
            for part, y in (("train", train_y), ("test", test_y)):
                if y is not None and int(y.max()) >= self._num_classes:
                    raise DataError(f"npz {part} labels go up to {int(y.max())}, but num_classes="
                                    f"{self._num_classes} (labels must be 0..{self._num_classes - 1})")
        return ArrayData(train_x, train_y, test_x, test_y)
