"""Reproducible scoring: seed exactly the generators a computation uses, and keep float32 IEEE float32.

Why: ``torch.manual_seed`` inside ``fork_rng(devices=[])`` re-seeds every CUDA generator of the process and
restores none of them; and cuDNN/cuBLAS TF32 (on by default for convolutions) makes float32 scores on an
Ampere-or-newer GPU differ from the CPU's in the 4th significant digit. Scoring forks and seeds the CPU
generator and, on a CUDA device, that device's generator only, and turns TF32 off while it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _cuda_index(device: torch.device | str | None) -> int | None:
    if device is None:
        return None
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def reseed(seed: int, device: torch.device | str | None = None) -> None:
    """Seed the CPU generator and, for a CUDA ``device``, that device's generator (no other device's)."""
    torch.default_generator.manual_seed(int(seed))
    index = _cuda_index(device)
    if index is not None:
        torch.cuda.default_generators[index].manual_seed(int(seed))


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """``reseed`` inside a fork of exactly those generators: the caller's RNG states are restored after."""
    index = _cuda_index(device)
    with torch.random.fork_rng(devices=[] if index is None else [index]):
        reseed(seed, device)
        yield


@contextmanager
def ieee_float32(device: torch.device | str | None = None) -> Iterator[None]:
    """No TF32 in matmuls and convolutions on a CUDA ``device`` while the block runs (a no-op on the CPU)."""
    if _cuda_index(device) is None:
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
