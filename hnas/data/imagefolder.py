"""Image folders (``root/train/<class>/*.jpg|png``, optional ``root/test/<class>/...``), decoded once.

Decoding 60,000 small JPEGs takes a while; doing it at every start would dominate short warm-ups. The
decoded uint8 arrays (and the train mean/std) are cached under ``cache_dir/imagefolder/<key>/``, where the
key hashes the resolved root and the file list with sizes, so an edited folder gets a fresh cache. The
cache never goes next to the data (which may be read-only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from hnas.data.base import ArrayData, HNASDataModule, channel_stats
from hnas.data.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUT = "root/train/<class>/*.jpg|jpeg|png (and optionally root/test/<class>/...)"
CACHE_VERSION = 1
#: folders already read by this process: (root, image size, cache dir) -> (arrays, mean/std). A search builds a
#: datamodule per query and Lightning calls prepare_data per fit; without this each would list and stat every
#: file again and re-read the cache (two scans and two reads per query).
_READ: dict[tuple[str, str, str], tuple[ArrayData, tuple[tuple[float, ...], tuple[float, ...]]]] = {}


def forget_read_folders() -> None:
    """Read every folder again on next use (a folder changed while this process runs)."""
    _READ.clear()


def scan_split(folder: Path,
               classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Sorted class names and ``(relative path, label, size in bytes)`` per image of one split folder."""
    subdirs = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if classes is None:
        classes = subdirs
    elif unknown := sorted(set(subdirs) - set(classes)):
        raise DataError(f"{folder} has class folders {unknown} that are not in the train classes {classes}")
    label = {c: i for i, c in enumerate(classes)}
    files: list[tuple[str, int, int]] = []
    for c in subdirs:
        with os.scandir(folder / c) as it:
            entries = sorted((e.name, e.stat().st_size) for e in it
                             if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        files.extend((f"{c}/{name}", label[c], size) for name, size in entries)
    return classes, files


def _decode_chunk(job: tuple[str, list[str], tuple[int, int] | None]) -> np.ndarray:
    """Decode files to uint8 (n, H, W, 3); module-level so that worker processes can run it."""
    base, rels, size = job
    out = []
    for rel in rels:
        path = os.path.join(base, rel)
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                out.append(np.asarray(im, dtype=np.uint8))
        except OSError as e:
            raise DataError(f"cannot decode image {path}: {e}") from e
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise DataError(f"images under {base} differ in size {sorted(shapes)}; pass image_size=(H, W) "
                        "to resize")
    return np.stack(out)


def decode_images(folder: Path, rels: list[str], size: tuple[int, int] | None, workers: int,
                  desc: str) -> np.ndarray:
    """Decode all files in parallel chunks (order preserved) with a progress bar."""
    chunk = 500
    jobs = [(str(folder), rels[i:i + chunk], size) for i in range(0, len(rels), chunk)]
    parts: list[np.ndarray] = []
    with tqdm(total=len(rels), desc=desc, unit="img", disable=None) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                parts.append(_decode_chunk(job))
                bar.update(len(job[1]))
        else:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(workers) as pool:
                for job, part in zip(jobs, pool.imap(_decode_chunk, jobs)):
                    parts.append(part)
                    bar.update(len(job[1]))
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise DataError(f"images under {folder} differ in size {sorted(shapes)}; pass "
                        "image_size=(H, W) to resize")
    return np.concatenate(parts)


class ImageFolderDataModule(HNASDataModule):
    """Class sub-folders of images; classes sorted by name; mean/std from the train images (cached).

    ``image_size=(H, W)`` resizes every image (needed when sizes differ); ``decode_workers`` processes
    decode the first time.
    """

    name = "imagefolder"

    def __init__(self, root: str | os.PathLike | None = None, image_size: tuple[int, int] | None = None,
                 decode_workers: int = 2, **kwargs) -> None:
        if root is None:
            raise DataError(f"imagefolder needs root=<folder laid out as {LAYOUT}>")
        super().__init__(root=root, **kwargs)
        if image_size is not None:
            image_size = tuple(int(s) for s in image_size)
            if len(image_size) != 2 or min(image_size) < 1:
                raise DataError(f"image_size must be (H, W) with positive sizes, got {image_size}")
        self.image_size = image_size
        self.decode_workers = int(decode_workers)
        self._check_layout()

    def _check_layout(self) -> None:
        train = self.root / "train"
        if not train.is_dir() or not any(e.is_dir() for e in os.scandir(train)):
            raise DataError(f"{self.root} is not an image folder dataset: expected {LAYOUT}")

    def _scan(self) -> tuple[list[str], list[tuple[str, int, int]], list[tuple[str, int, int]] | None]:
        classes, train = scan_split(self.root / "train")
        empty = sorted(set(classes) - {rel.split("/", 1)[0] for rel, _, _ in train})
        if empty:
            raise DataError(f"class folder(s) {empty} under {self.root / 'train'} hold no "
                            f"{'/'.join(IMAGE_EXTENSIONS)} images; expected {LAYOUT}")
        test = scan_split(self.root / "test", classes)[1] if (self.root / "test").is_dir() else None
        return classes, train, test or None

    def cache_key(self, train: list[tuple[str, int, int]], test: list[tuple[str, int, int]] | None) -> str:
        h = hashlib.sha256(f"v{CACHE_VERSION}|{self.root.resolve()}|{self.image_size}".encode())
        for part, files in (("train", train), ("test", test or [])):
            h.update(part.encode())
            for rel, _, size in files:
                h.update(f"{rel}:{size}\n".encode())
        return h.hexdigest()[:16]

    def cache_path(self) -> Path:
        """The cache folder of this dataset (scans the file list)."""
        _, train, test = self._scan()
        return self.cache_dir / "imagefolder" / self.cache_key(train, test)

    def prepare_data(self) -> None:
        """Decode into the cache if it is not there yet (Lightning calls this on one process only)."""
        self._load_or_build()

    def _load(self) -> ArrayData:
        data, stats = self._load_or_build()
        self._stats = stats
        return data

    def _load_or_build(self) -> tuple[ArrayData, tuple[tuple[float, ...], tuple[float, ...]]]:
        memo = (str(self.root.resolve()), repr(self.image_size), str(self.cache_dir.resolve()))
        if memo not in _READ:
            _READ[memo] = self._scan_and_read()
        return _READ[memo]

    def _scan_and_read(self) -> tuple[ArrayData, tuple[tuple[float, ...], tuple[float, ...]]]:
        classes, train, test = self._scan()
        target = self.cache_dir / "imagefolder" / self.cache_key(train, test)
        if (target / "meta.json").is_file():
            t0 = time.perf_counter()
            data, stats = self._read_cache(target)
            log.info("imagefolder: loaded %d images from cache %s in %.2f s", len(data.train_y)
                     + (0 if data.test_y is None else len(data.test_y)), target, time.perf_counter() - t0)
            return data, stats
        t0 = time.perf_counter()
        train_x = decode_images(self.root / "train", [r for r, _, _ in train], self.image_size,
                                self.decode_workers, "decode train")
        train_y = np.array([lab for _, lab, _ in train], dtype=np.int64)
        test_x = test_y = None
        if test:
            test_x = decode_images(self.root / "test", [r for r, _, _ in test], self.image_size,
                                   self.decode_workers, "decode test")
            if test_x.shape[1:] != train_x.shape[1:]:
                raise DataError(f"test images {test_x.shape[1:]} differ in size from train images "
                                f"{train_x.shape[1:]}; pass image_size=(H, W) to resize")
            test_y = np.array([lab for _, lab, _ in test], dtype=np.int64)
        mean, std = channel_stats(torch.from_numpy(train_x))
        self._write_cache(target, train_x, train_y, test_x, test_y,
                          {"classes": classes, "mean": mean, "std": std, "root": str(self.root.resolve()),
                           "n_train": len(train_y), "n_test": 0 if test_y is None else len(test_y),
                           "version": CACHE_VERSION})
        log.info("imagefolder: decoded %d images from %s in %.1f s, cached in %s", len(train_y)
                 + (0 if test_y is None else len(test_y)), self.root, time.perf_counter() - t0, target)
        data = ArrayData(torch.from_numpy(train_x), torch.from_numpy(train_y),
                         None if test_x is None else torch.from_numpy(test_x),
                         None if test_y is None else torch.from_numpy(test_y), tuple(classes))
        return data, (tuple(mean), tuple(std))

    @staticmethod
    def _write_cache(target: Path, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray | None,
                     test_y: np.ndarray | None, meta: dict) -> None:
        """Write into a temporary folder, then rename it into place, so a crash leaves no partial cache."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            np.save(tmp / "train_x.npy", train_x)
            np.save(tmp / "train_y.npy", train_y)
            if test_x is not None:
                np.save(tmp / "test_x.npy", test_x)
                np.save(tmp / "test_y.npy", test_y)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            try:
                os.replace(tmp, target)
            except OSError:
                if not (target / "meta.json").is_file():  # not just a concurrent writer that won
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _read_cache(target: Path) -> tuple[ArrayData, tuple[tuple[float, ...], tuple[float, ...]]]:
        try:
            meta = json.loads((target / "meta.json").read_text())
            train_x = torch.from_numpy(np.load(target / "train_x.npy"))
            train_y = torch.from_numpy(np.load(target / "train_y.npy"))
            test_x = test_y = None
            if meta["n_test"]:
                test_x = torch.from_numpy(np.load(target / "test_x.npy"))
                test_y = torch.from_numpy(np.load(target / "test_y.npy"))
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"image cache {target} is unreadable ({e}); delete that folder to "
                            "rebuild it") from e
        return (ArrayData(train_x, train_y, test_x, test_y, tuple(meta["classes"])),
                (tuple(meta["mean"]), tuple(meta["std"])))
