"""Datasets as LightningDataModules with a seeded split, batched augmentation and a scoring batch.

``build_datamodule(name, **kwargs)`` is the one entry point the rest of hnas (and Hydra configs, via
``_target_: hnas.data.build_datamodule``) uses.
"""

from __future__ import annotations

from hnas.data.arrays import NpzDataModule
from hnas.data.base import ArrayData, ArrayDataset, HNASDataModule, default_cache_dir, default_data_root
from hnas.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from hnas.data.errors import DataError, DownloadError
from hnas.data.imagefolder import ImageFolderDataModule
from hnas.data.imagenet16 import ImageNet16DataModule
from hnas.data.scoring import ScoringBatch
from hnas.data.synthetic import SyntheticDataModule

DATAMODULES: dict[str, type[HNASDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "imagenet16": ImageNet16DataModule,
    "imagefolder": ImageFolderDataModule,
    "npz": NpzDataModule,
    "synthetic": SyntheticDataModule,
}


def build_datamodule(name: str, **kwargs) -> HNASDataModule:
    """The data module called ``name`` built with ``kwargs`` (see each class for its options)."""
    try:
        cls = DATAMODULES[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATAMODULES)}") from None
    return cls(**kwargs)


__all__ = [
    "DATAMODULES", "ArrayData", "ArrayDataset", "CIFAR10DataModule", "CIFAR100DataModule", "DataError",
    "DownloadError", "HNASDataModule", "ImageFolderDataModule", "ImageNet16DataModule", "NpzDataModule",
    "ScoringBatch", "SyntheticDataModule", "build_datamodule", "default_cache_dir", "default_data_root",
]
