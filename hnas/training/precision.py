"""Which numeric precision a Lightning fit uses: ``precision: auto`` picks the fastest safe one.

Why a rule instead of a fixed value: bf16 mixed precision needs no loss scaling and is the fast path on GPUs
that have it (Ampere and later: A100, H100, H200), fp16 mixed precision is the fast path on older GPUs, and a
CPU gains nothing from either (CPU autocast to bf16 is slower than float32 on most CPUs). An explicit setting
(``32-true``, ``16-mixed``, ``bf16-mixed``, ...) is passed to Lightning unchanged.
"""

from __future__ import annotations

from typing import Any

#: accelerator names that mean "a CUDA GPU if there is one"
GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def resolve_precision(setting: Any, accelerator: Any = "auto") -> Any:
    """``setting`` unless it is ``None``/``"auto"``; then ``bf16-mixed`` on a CUDA GPU that supports bf16,
    ``16-mixed`` on other CUDA GPUs, ``32-true`` on a CPU (or any other accelerator)."""
    if setting is not None and str(setting) != "auto":
        return setting
    import torch

    on_gpu = str(accelerator or "auto") in GPU_ACCELERATORS and torch.cuda.is_available()
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def resolve_trainer_precision(trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``lightning.Trainer`` arguments with ``precision`` resolved (see ``resolve_precision``)."""
    out = dict(trainer_kwargs)
    out["precision"] = resolve_precision(out.get("precision"), out.get("accelerator", "auto"))
    return out
