"""Datasets as LightningDataModules with a seeded split, batched augmentation and a scoring batch.

``build_datamodule(name, **kwargs)`` is the one entry point the rest of hnas uses (``data.name`` in the
config is looked up in ``DATAMODULES``; the other keys of the ``data`` group are the class's arguments).
"""

from __future__ import annotations

import inspect
from typing import Any

from hnas.data.arrays import NpzDataModule
from hnas.data.base import ArrayData, ArrayDataset, HNASDataModule, default_cache_dir, default_data_root
from hnas.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from hnas.data.errors import DataError, DownloadError
from hnas.data.imagefolder import ImageFolderDataModule
from hnas.data.imagenet16 import ImageNet16DataModule
from hnas.data.scoring import ScoringBatch
from hnas.data.synthetic import SyntheticDataModule
from hnas.registry import Registry

DATAMODULES: Registry[type[HNASDataModule]] = Registry("dataset", {
    "cifar10": "hnas.data.cifar:CIFAR10DataModule",
    "cifar100": "hnas.data.cifar:CIFAR100DataModule",
    "imagenet16": "hnas.data.imagenet16:ImageNet16DataModule",
    "imagefolder": "hnas.data.imagefolder:ImageFolderDataModule",
    "npz": "hnas.data.arrays:NpzDataModule",
    "synthetic": "hnas.data.synthetic:SyntheticDataModule",
}, DataError)


def build_datamodule(name: str, **kwargs: Any) -> HNASDataModule:
    """The data module called ``name`` built with ``kwargs`` (see each class for its options); an unknown
    option is a DataError naming the valid ones."""
    cls = DATAMODULES.get(name)
    valid: set[str] = set()
    for klass in cls.__mro__:  # a subclass passing **kwargs on accepts its base classes' options too
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        valid |= {n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD,
                  p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise DataError(f"dataset {name!r} has no option(s) {unknown}; valid: {', '.join(sorted(valid))}")
    return cls(**kwargs)


__all__ = [
    "DATAMODULES", "ArrayData", "ArrayDataset", "CIFAR10DataModule", "CIFAR100DataModule", "DataError",
    "DownloadError", "HNASDataModule", "ImageFolderDataModule", "ImageNet16DataModule", "NpzDataModule",
    "ScoringBatch", "SyntheticDataModule", "build_datamodule", "default_cache_dir", "default_data_root",
]
