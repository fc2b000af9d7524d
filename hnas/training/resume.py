"""Exact resume of a Lightning fit: the random-number states of every rank travel in the checkpoint.

Why: Lightning's checkpoint restores the weights, the optimizer, the LR scheduler and the loop counters, but
not the generators that decide the data order (the sampler draws its seed from torch's global generator when
an epoch's iterator is created) and the augmentation (crop, flip and cutout draw from it batch by batch). A fit
resumed from an end-of-epoch checkpoint therefore continues on a different data order unless these states are
restored too; with them, a fit killed mid-epoch and started again ends with the same weights as one that was
never interrupted (same seed, deterministic kernels).

Every rank saves its own states: under DDP each rank augments its own shard, so ``on_save_checkpoint`` (called
on every rank while the checkpoint is assembled; rank 0 writes the file) gathers all ranks' states and
``on_load_checkpoint`` gives each rank its own back. States are stored as tensors and plain Python values, so
the checkpoint loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)

#: the key of the per-rank RNG states inside a Lightning checkpoint
CHECKPOINT_KEY = "hnas_rng_states"


def rng_state() -> dict[str, Any]:
    """This process's generators: Python's ``random``, numpy's global one, torch's CPU and CUDA ones."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss_next],
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), gauss_next))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((str(name), keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_states(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's ``state``, in rank order (just ``[state]`` without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, state)
    return out


class ExactResume(L.Callback):
    """Puts every rank's RNG states into each checkpoint and restores them on resume (see the module doc)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = gather_states(rng_state())

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(CHECKPOINT_KEY)
        if not states:
            log.warning("the checkpoint holds no RNG states: the resumed fit continues on another data order")
            return
        rank, world = trainer.global_rank, trainer.world_size
        if len(states) != world:
            log.warning("the checkpoint was written by %d ranks and is resumed on %d: each rank restores rank "
                        "%d's RNG states modulo, so the data order is not the uninterrupted one", len(states),
                        world, rank % len(states))
        set_rng_state(states[rank % len(states)])


def last_checkpoint(folder: str | Path) -> Path | None:
    """``folder/last.ckpt`` when a fit saved one there (the file an interrupted fit resumes from)."""
    path = Path(folder) / "last.ckpt"
    return path if path.is_file() else None
