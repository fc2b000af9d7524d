"""Batched image transforms in plain torch (no torchvision): uint8 NHWC in, normalised float NCHW out.

Working on a whole batch at once costs one gather instead of one Python call per image, which is what
makes a CPU epoch fast; the crop runs on uint8 before the float conversion to touch 4x fewer bytes. Every
tensor is made on the batch's device, so the same functions run on a GPU batch (``HNASDataModule`` does that
after the uint8 batch is on the accelerator); random draws come from ``generator`` (on its device) or, without
one, from the batch's device's default generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _check_nhwc_uint8(x: Tensor) -> None:
    if x.dim() != 4 or x.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 batch of shape (N, H, W, C), got {x.dtype} of shape "
                         f"{tuple(x.shape)}")


def _randint(high: int, n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(0, high, (n,), generator=generator, device=device).to(x.device)


def _rand(n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else x.device
    return torch.rand(n, generator=generator, device=device).to(x.device)


def _gather_windows(x: Tensor, padding: int, oy: Tensor, ox: Tensor, flip: Tensor | None) -> Tensor:
    """One flat ``index_select`` that cuts window (oy, ox) of each zero-padded image, mirrored where
    ``flip``; crop and flip together cost about as much as one copy of the batch."""
    n, h, w, c = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    padded = torch.nn.functional.pad(x, (0, 0, padding, padding, padding, padding)) if padding else x
    dev = x.device
    cols = torch.arange(w, device=dev).expand(n, w)
    if flip is not None:
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    cols = cols + ox[:, None]
    rows = oy[:, None] + torch.arange(h, device=dev)
    idx = torch.arange(n, device=dev)[:, None, None] * (hp * wp) + rows[:, :, None] * wp + cols[:, None, :]
    return padded.reshape(-1, c).index_select(0, idx.view(-1)).view(n, h, w, c)


def random_crop_flip(x: Tensor, padding: int, flip_p: float = 0.5,
                     generator: torch.Generator | None = None) -> Tensor:
    """Random crop with zero padding, then a horizontal flip with probability ``flip_p``, per image.

    ``x`` is uint8 (N, H, W, C); the result has the same shape. Crop offsets are uniform in
    0..2*padding, as in the standard CIFAR recipe.
    """
    _check_nhwc_uint8(x)
    if padding < 0:
        raise ValueError(f"crop padding must be >= 0, got {padding}")
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"flip probability must be in [0, 1], got {flip_p}")
    n = x.shape[0]
    if n == 0:
        return x
    oy = _randint(2 * padding + 1, n, x, generator)
    ox = _randint(2 * padding + 1, n, x, generator)
    flip = _rand(n, x, generator) < flip_p
    return _gather_windows(x, padding, oy, ox, flip)


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad each (N, H, W, C) uint8 image by ``padding`` and cut a random window of the original size."""
    _check_nhwc_uint8(x)
    if padding < 0:
        raise ValueError(f"crop padding must be >= 0, got {padding}")
    if padding == 0 or x.shape[0] == 0:
        return x
    n = x.shape[0]
    oy = _randint(2 * padding + 1, n, x, generator)
    ox = _randint(2 * padding + 1, n, x, generator)
    return _gather_windows(x, padding, oy, ox, None)


def random_hflip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p``; ``x`` is (N, H, W, C)."""
    _check_nhwc_uint8(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability must be in [0, 1], got {p}")
    flip = _rand(x.shape[0], x, generator) < p
    return torch.where(flip[:, None, None, None], x.flip(2), x)


def cutout(x: Tensor, length: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero one ``length`` x ``length`` square per image (DeVries & Taylor 2017; DARTS's ``--cutout``), in place.

    ``x`` is a float (N, C, H, W) batch *after* normalisation, as in DARTS's pipeline, so the square holds the
    dataset mean colour. The centre is uniform over all pixels and the square is clipped at the border (DARTS's
    rule: rows ``clip(cy - length // 2, 0, H)`` to ``clip(cy + length // 2, 0, H)``, columns alike), so a
    square near an edge covers fewer pixels. One vectorised mask for the whole batch.
    """
    if x.dim() != 4 or not x.dtype.is_floating_point:
        raise ValueError(f"cutout expects a float batch of shape (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"cutout length must be an int >= 0, got {length!r}")
    n, _, h, w = x.shape
    if length == 0 or n == 0:
        return x
    cy = _randint(h, n, x, generator)
    cx = _randint(w, n, x, generator)
    half = length // 2
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= (cy - half).clamp(0, h)[:, None]) & (rows < (cy + half).clamp(0, h)[:, None])
    in_cols = (cols >= (cx - half).clamp(0, w)[:, None]) & (cols < (cx + half).clamp(0, w)[:, None])
    hole = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
    return x.masked_fill_(hole[:, None], 0.0)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) with ``(x / 255 - mean) / std`` per channel.

    ``mean``/``std`` are on the [0, 1] scale (as NAS-Bench-201 states them). The permute happens on
    uint8 and the arithmetic in place, which is 4x cheaper than on a strided float tensor.
    """
    _check_nhwc_uint8(x)
    c = x.shape[-1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean/std need one value per channel ({c}), got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be > 0, got {list(std)}")
    m = torch.tensor([255.0 * v for v in mean], dtype=torch.float32, device=x.device).view(1, c, 1, 1)
    s = torch.tensor([255.0 * v for v in std], dtype=torch.float32, device=x.device).view(1, c, 1, 1)
    out = x.permute(0, 3, 1, 2).contiguous().to(torch.float32)
    return out.sub_(m).div_(s)


def stack_uint8(batch: tuple[Tensor, Tensor] | list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Collate without transforming: the uint8 (N, H, W, C) batch and its labels, 4x fewer bytes to move to an
    accelerator than normalised floats; the transform then runs there (``HNASDataModule.on_after_batch_transfer``)."""
    if isinstance(batch, list):
        return torch.stack([b[0] for b in batch]), torch.as_tensor([int(b[1]) for b in batch], dtype=torch.long)
    return batch


class BatchTransform:
    """Collate function: stacks (if needed), augments and normalises one batch (then cutout, when set).

    A plain class (not a closure) so DataLoader workers can pickle it. It takes either the
    ``(x_uint8_nhwc, y)`` pair that :class:`~hnas.data.base.ArrayDataset` returns for a whole batch, or a
    list of per-item pairs from a plain dataset.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], augment: bool, padding: int = 4,
                 flip_p: float = 0.5, cutout: int = 0) -> None:
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.augment = augment
        self.padding = padding
        self.flip_p = flip_p
        self.cutout = cutout

    def __call__(self, batch: tuple[Tensor, Tensor] | list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        if isinstance(batch, list):
            x = torch.stack([b[0] for b in batch])
            y = torch.as_tensor([int(b[1]) for b in batch], dtype=torch.long)
        else:
            x, y = batch
        if self.augment:
            x = random_crop_flip(x, self.padding, self.flip_p)
        out = normalize(x, self.mean, self.std)
        if self.augment and self.cutout:
            out = cutout(out, self.cutout)
        return out, y

    def __repr__(self) -> str:
        return (f"BatchTransform(mean={self.mean}, std={self.std}, augment={self.augment}, "
                f"padding={self.padding}, flip_p={self.flip_p}, cutout={self.cutout})")
