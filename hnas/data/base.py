"""HNASDataModule: the LightningDataModule every dataset of hnas shares.

A subclass only says how to load its arrays (:meth:`HNASDataModule._load`); the seeded train/valid split,
the optional warm-up subset, batched augmentation, loaders and the scoring batch live here, so every
dataset behaves the same. The whole dataset is held as one uint8 NHWC tensor: a 50,000-image CIFAR train
set is 150 MB, and gathering a batch from it is far cheaper than decoding files per item.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hnas.data.errors import DataError
from hnas.data.scoring import ScoringBatch, fingerprint, select_scoring_indices
from hnas.data.transforms import BatchTransform, normalize, stack_uint8

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: where the batch transform runs: ``loader`` (the collate function), ``device`` (after the uint8 batch is moved),
#: ``resident`` (the whole uint8 split is kept on the device and loaders yield only indices), ``auto`` (``loader``
#: on the CPU, ``resident`` on an accelerator)
TRANSFORM_ON: tuple[str, ...] = ("auto", "loader", "device", "resident")
#: key of a resident batch: ``{RESIDENT: split, "index": indices}`` (split "train" or "test")
RESIDENT = "resident_split"


def default_cache_dir() -> Path:
    """``$HNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/hnas``, else ``~/.cache/hnas``."""
    if os.environ.get("HNAS_CACHE_DIR"):
        return Path(os.environ["HNAS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "hnas"


def default_data_root() -> Path:
    """Where downloadable datasets go when no root is given: ``$HNAS_DATA_ROOT`` or ``<cache>/data``."""
    if os.environ.get("HNAS_DATA_ROOT"):
        return Path(os.environ["HNAS_DATA_ROOT"]).expanduser()
    return default_cache_dir() / "data"


@dataclass(frozen=True)
class ArrayData:
    """A loaded dataset: uint8 NHWC images and int64 labels for train (and test when there is one)."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor | None = None
    test_y: Tensor | None = None
    classes: tuple[str, ...] | None = None


def check_arrays(x: Tensor, y: Tensor, what: str) -> None:
    """Raise DataError unless ``x`` is uint8 (N, H, W, C) and ``y`` int (N,) with labels >= 0."""
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise DataError(f"{what}: images must be uint8 of shape (N, H, W, C), got {x.dtype} {tuple(x.shape)}")
    if x.shape[-1] not in (1, 3, 4) and x.shape[1] in (1, 3, 4):
        raise DataError(f"{what}: images look channel-first {tuple(x.shape)}; expected (N, H, W, C)")
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DataError(f"{what}: labels must be a 1-d int array, got {y.dtype} {tuple(y.shape)}")
    if len(x) != len(y):
        raise DataError(f"{what}: {len(x)} images but {len(y)} labels")
    if len(y) == 0:
        raise DataError(f"{what}: no images")
    if int(y.min()) < 0:
        raise DataError(f"{what}: labels must be >= 0, found {int(y.min())}")


def channel_stats(x: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the [0, 1] scale of a uint8 NHWC tensor (float64, chunked for memory)."""
    c = x.shape[-1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk].reshape(-1, c).to(torch.float64) / 255.0
        s += part.sum(0)
        s2 += (part * part).sum(0)
    count = x.numel() // c
    mean = s / count
    std = (s2 / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


class ArrayDataset(Dataset):
    """Indexes into shared uint8 NHWC images; ``__getitems__`` gathers a whole batch in one call.

    The DataLoader passes that batch straight to the collate function (:class:`BatchTransform`), which
    augments it in one vectorised step.
    """

    def __init__(self, x: Tensor, y: Tensor, indices: Tensor | None = None) -> None:
        self.x = x
        self.y = y
        self.indices = torch.arange(len(y)) if indices is None else indices.to(torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        j = self.indices[i]
        return self.x[j], self.y[j]

    def __getitems__(self, items: list[int]) -> tuple[Tensor, Tensor]:
        j = self.indices[torch.as_tensor(items, dtype=torch.long)]
        return self.x[j], self.y[j]


class IndexDataset(Dataset):
    """The resident path's dataset: a batch is just the indices into one split's arrays (which live on the
    device), so the loader moves a few hundred bytes per batch instead of the images."""

    def __init__(self, split: str, indices: Tensor) -> None:
        self.split = split
        self.indices = indices.to(torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {RESIDENT: self.split, "index": self.indices[i : i + 1]}

    def __getitems__(self, items: list[int]) -> dict[str, Any]:
        return {RESIDENT: self.split, "index": self.indices[torch.as_tensor(items, dtype=torch.long)]}


def collate_indices(batch: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """Collate of :class:`IndexDataset` (a whole batch from ``__getitems__``, or single items)."""
    if isinstance(batch, list):
        return {RESIDENT: batch[0][RESIDENT], "index": torch.cat([b["index"] for b in batch])}
    return batch


def _check_fraction_or_count(value: float | int | None, what: str, allow_zero: bool) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{what} must be a fraction in (0, 1] or a positive count, got {value!r}")
    if isinstance(value, float) and not (0.0 < value <= 1.0 or (allow_zero and value == 0.0)):
        raise DataError(f"{what} as a fraction must be in (0, 1], got {value!r}")
    if isinstance(value, int) and value < (0 if allow_zero else 1):
        raise DataError(f"{what} as a count must be >= 1, got {value!r}")


class HNASDataModule(L.LightningDataModule):
    """Seeded train/valid split of the training set, augmented loaders and a fingerprinted scoring batch.

    Subclasses set ``name`` and, for datasets with known statistics, ``NUM_CLASSES``, ``INPUT_SHAPE``,
    ``MEAN`` and ``STD``; otherwise these come from the loaded training data.
    """

    name: str = "base"
    NUM_CLASSES: int | None = None
    INPUT_SHAPE: tuple[int, int, int] | None = None
    MEAN: tuple[float, ...] | None = None
    STD: tuple[float, ...] | None = None
    DEFAULT_CROP_PADDING: int = 4

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        valid_fraction: float = 0.5,
        split_seed: int = 0,
        augment: bool = True,
        train_subset: float | int | None = None,
        cache_dir: str | os.PathLike | None = None,
        crop_padding: int | None = None,
        flip_p: float = 0.5,
        eval_batch_size: int | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        cutout: int = 0,
        transform_on: str = "auto",
    ) -> None:
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise DataError(f"{key} must be a positive int, got {value!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise DataError(f"num_workers must be an int >= 0, got {num_workers!r}")
        if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, (int, float)) \
                or not 0.0 <= float(valid_fraction) < 1.0:
            raise DataError(f"valid_fraction must be in [0, 1), got {valid_fraction!r}")
        if isinstance(split_seed, bool) or not isinstance(split_seed, int):
            raise DataError(f"split_seed must be an int, got {split_seed!r}")
        _check_fraction_or_count(train_subset, "train_subset", allow_zero=False)
        if transform_on not in TRANSFORM_ON:
            raise DataError(f"transform_on {transform_on!r} is not one of: {', '.join(TRANSFORM_ON)}")
        self.transform_on = transform_on
        padding = self.DEFAULT_CROP_PADDING if crop_padding is None else crop_padding
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise DataError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
        if not 0.0 <= flip_p <= 1.0:
            raise DataError(f"flip_p must be in [0, 1], got {flip_p!r}")
        if isinstance(cutout, bool) or not isinstance(cutout, int) or cutout < 0:
            raise DataError(f"cutout must be an int >= 0 (the square's side in pixels; 0 = off), got {cutout!r}")
        self.root = Path(root).expanduser() if root is not None else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.valid_fraction = float(valid_fraction)
        self.split_seed = split_seed
        self.augment = bool(augment)
        self.train_subset = train_subset
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.crop_padding = padding
        self.flip_p = float(flip_p)
        self.pin_memory = bool(pin_memory)
        self.drop_last = bool(drop_last)
        self.cutout = cutout
        self._data: ArrayData | None = None
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self._train_idx: Tensor | None = None
        self._valid_idx: Tensor | None = None
        self._fit_idx: Tensor | None = None
        self._resident: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled into spawned processes without the device copies (each process makes its own)."""
        state = self.__dict__.copy()
        state["_resident"] = {}
        return state

    # ----------------------------------------------------------------- loading
    def _load(self) -> ArrayData:
        """Read the dataset into memory (uint8 NHWC). Subclasses implement this."""
        raise NotImplementedError

    @property
    def data(self) -> ArrayData:
        """The loaded arrays (loads on first access, so attributes work before ``setup``)."""
        if self._data is None:
            data = self._load()
            check_arrays(data.train_x, data.train_y, f"{self.name} train")
            if data.test_x is not None:
                check_arrays(data.test_x, data.test_y, f"{self.name} test")
                if data.test_x.shape[1:] != data.train_x.shape[1:]:
                    raise DataError(f"{self.name}: test images {tuple(data.test_x.shape[1:])} differ in "
                                    f"shape from train images {tuple(data.train_x.shape[1:])}")
            self._data = data
        return self._data

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays and make the seeded split (idempotent)."""
        if self._train_idx is None:
            self._make_split()

    # -------------------------------------------------------------- attributes
    @property
    def num_classes(self) -> int:
        if self.NUM_CLASSES is not None:
            return self.NUM_CLASSES
        d = self.data
        top = int(d.train_y.max())
        if d.test_y is not None:
            top = max(top, int(d.test_y.max()))
        return max(top + 1, len(d.classes or ()))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if self.INPUT_SHAPE is not None:
            return self.INPUT_SHAPE
        _, h, w, c = self.data.train_x.shape
        return (int(c), int(h), int(w))

    @property
    def mean(self) -> tuple[float, ...]:
        return self.MEAN if self.MEAN is not None else self._computed_stats()[0]

    @property
    def std(self) -> tuple[float, ...]:
        return self.STD if self.STD is not None else self._computed_stats()[1]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes or tuple(str(i) for i in range(self.num_classes))

    def _computed_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel statistics of the whole training array (before the split, so they do not move with
        ``split_seed``). Subclasses with an on-disk cache override this to store them."""
        if self._stats is None:
            self._stats = channel_stats(self.data.train_x)
        return self._stats

    # ------------------------------------------------------------------ splits
    def _make_split(self) -> None:
        """Stratified seeded split: every class gives ``valid_fraction`` of its images to the valid part."""
        y = self.data.train_y
        g = torch.Generator().manual_seed(self.split_seed)
        train_parts, valid_parts = [], []
        order = torch.argsort(y, stable=True)
        counts = torch.bincount(y)
        start = 0
        for count in counts.tolist():
            members = order[start:start + count]
            start += count
            members = members[torch.randperm(count, generator=g)]
            k = int(math.floor(count * self.valid_fraction + 0.5))  # half rounds up
            valid_parts.append(members[:k])
            train_parts.append(members[k:])
        train_idx = torch.sort(torch.cat(train_parts)).values
        # The valid part keeps a seeded random order (not file order, which is class-sorted for image
        # folders): a prefix of it — what `limit_val_batches` measures — is then a uniform, class-mixed sample.
        valid_idx = torch.cat(valid_parts)
        valid_idx = valid_idx[torch.randperm(len(valid_idx), generator=g)]
        if len(train_idx) == 0:
            raise DataError(f"{self.name}: valid_fraction={self.valid_fraction} leaves no training images")
        fit_idx = train_idx
        if self.train_subset is not None:
            size = len(train_idx)
            want = self.train_subset if isinstance(self.train_subset, int) \
                else max(1, int(math.floor(self.train_subset * size + 0.5)))
            if want > size:
                raise DataError(f"train_subset={self.train_subset} asks for {want} images but the train "
                                f"part of {self.name} has {size}")
            gs = torch.Generator().manual_seed(self.split_seed + 1)
            fit_idx = torch.sort(train_idx[torch.randperm(size, generator=gs)[:want]]).values
        self._train_idx, self._valid_idx, self._fit_idx = train_idx, valid_idx, fit_idx
        log.info("%s: %d train (%d used) / %d valid / %s test images, split_seed=%d", self.name,
                 len(train_idx), len(fit_idx), len(valid_idx),
                 "no" if self.data.test_x is None else len(self.data.test_x), self.split_seed)

    def with_train_subset(self, count: int, batch_size: int | None = None) -> HNASDataModule:
        """A shallow copy (sharing the loaded arrays) that trains on a seeded subset of ``count`` images of the
        train part (same split), in batches of ``batch_size``: e.g. a supernet warm-up on 10 % of the data."""
        dm = copy.copy(self)
        dm._resident = self._resident  # copy.copy went through __getstate__, which drops the device copies
        dm.train_subset = int(count)
        if batch_size is not None:
            dm.batch_size = int(batch_size)
        dm._train_idx = dm._valid_idx = dm._fit_idx = None
        dm.setup("fit")
        return dm

    @property
    def fit_indices(self) -> Tensor:
        """Indices into the training array of the images ``train_dataloader`` uses (the train part or its
        ``train_subset``)."""
        self.setup()
        return self._fit_idx

    def split_indices(self, split: str) -> Tensor:
        """Indices into the training array of the ``train`` or ``valid`` part (or all test indices)."""
        self.setup()
        if split == "train":
            return self._train_idx
        if split == "valid":
            return self._valid_idx
        if split == "test":
            if self.data.test_x is None:
                raise DataError(f"{self.name} has no test set{self._test_hint()}")
            return torch.arange(len(self.data.test_y))
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")

    def _test_hint(self) -> str:
        return ""

    # ----------------------------------------------------------------- loaders
    def _transform(self, augment: bool) -> BatchTransform:
        return BatchTransform(self.mean, self.std, augment=augment, padding=self.crop_padding,
                              flip_p=self.flip_p, cutout=self.cutout)

    def _placement(self) -> str:
        """``loader``, ``device`` or ``resident`` for this fit: ``transform_on``, where ``auto`` means ``resident``
        with a Trainer whose device is not the CPU and ``loader`` otherwise (the CPU path as before: the same work
        in the same process, no copy of the arrays)."""
        if self.transform_on != "auto":
            return self.transform_on
        trainer = getattr(self, "trainer", None)
        on_accelerator = trainer is not None and trainer.strategy.root_device.type != "cpu"
        return "resident" if on_accelerator else "loader"

    def transforms_on_device(self) -> bool:
        """Augment and normalise on the training device (``on_after_batch_transfer``) rather than in the loader."""
        return self._placement() != "loader"

    def _resident_arrays(self, split: str, device: torch.device) -> tuple[Tensor, Tensor]:
        """One split's uint8 images and labels on ``device``, copied there once per datamodule and device."""
        key = (split, str(device))
        if key not in self._resident:
            d = self.data
            x, y = (d.train_x, d.train_y) if split == "train" else (d.test_x, d.test_y)
            self._resident[key] = (x.to(device), y.to(device))
            log.info("%s: %s images resident on %s (%.0f MB)", self.name, split, device,
                     x.numel() * x.element_size() / 2**20)
        return self._resident[key]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The batch, now on the training device: gathered from the resident arrays (``resident``), then
        crop/flip (training only), normalise and cutout there."""
        if isinstance(batch, dict) and RESIDENT in batch:
            index = batch["index"]
            x, y = self._resident_arrays(batch[RESIDENT], index.device)
            batch = (x[index], y[index])
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], Tensor)
                and batch[0].dtype == torch.uint8 and batch[0].dim() == 4):
            return batch  # already transformed by the loader
        training = bool(getattr(self, "trainer", None) is not None and self.trainer.training)
        return self._transform(augment=training and self.augment)(tuple(batch))

    def _loader(self, dataset: ArrayDataset, train: bool, split: str = "train") -> DataLoader:
        placement = self._placement()
        if placement == "resident":
            dataset, collate = IndexDataset(split, dataset.indices), collate_indices
        else:
            collate = stack_uint8 if placement == "device" else self._transform(augment=train and self.augment)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=collate,
            pin_memory=self.pin_memory,
            drop_last=train and self.drop_last,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Train part of the split (or its ``train_subset``), shuffled and augmented."""
        self.setup()
        d = self.data
        return self._loader(ArrayDataset(d.train_x, d.train_y, self._fit_idx), train=True)

    def val_dataloader(self) -> DataLoader:
        """Held-out valid part, no augmentation. With ``valid_fraction=0`` (NB201's ``cifar10`` split:
        train on everything) this is the test set."""
        self.setup()
        d = self.data
        if len(self._valid_idx) == 0:
            if d.test_x is None:
                raise DataError(f"{self.name}: valid_fraction=0 and no test set, so there is nothing to "
                                "validate on")
            log.info("%s: valid_fraction=0, validating on the test set", self.name)
            return self.test_dataloader()
        return self._loader(ArrayDataset(d.train_x, d.train_y, self._valid_idx), train=False)

    def test_dataloader(self) -> DataLoader:
        """The official test set, no augmentation."""
        self.setup()
        d = self.data
        if d.test_x is None:
            raise DataError(f"{self.name} has no test set{self._test_hint()}")
        # seeded random order for the same reason as the valid part: any prefix is a class-mixed sample
        order = torch.randperm(len(d.test_y), generator=torch.Generator().manual_seed(self.split_seed))
        return self._loader(ArrayDataset(d.test_x, d.test_y, order), train=False, split="test")

    # ----------------------------------------------------------- scoring batch
    def scoring_batch(self, n: int, seed: int, mode: str = "random", split: str = "train") -> ScoringBatch:
        """The same ``n`` normalised, un-augmented images for the same ``seed``, with a fingerprint.

        ``mode="per_class"`` takes ``n // num_classes`` images of every class.
        """
        pool = self.split_indices(split)
        d = self.data
        x_all, y_all = (d.test_x, d.test_y) if split == "test" else (d.train_x, d.train_y)
        idx = select_scoring_indices(y_all, pool, n, seed, mode, self.num_classes,
                                     where=f"the {split} split of {self.name}")
        images, labels = x_all[idx], y_all[idx].to(torch.long)
        fp = fingerprint(self.name, images, labels, n, seed, mode, split, self.mean, self.std)
        return ScoringBatch(normalize(images, self.mean, self.std), labels, fp)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, root={str(self.root) if self.root else None!r}, "
                f"batch_size={self.batch_size}, valid_fraction={self.valid_fraction}, "
                f"split_seed={self.split_seed})")
