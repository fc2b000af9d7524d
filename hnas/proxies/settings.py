"""ScoringSettings: how proxy scores are computed — the scoring batch, the initialisation seed, BN mode,
dtype and per-proxy options (the ``proxies`` config group).

Why a value type: these settings are part of every score's cache key, and the run, ``hnas score``, the RBFleX
protocol and the NAFBee ranking must read them the same way, with the same validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from hnas.errors import ConfigError
from hnas.proxies.registry import BN_MODES, Proxy, get_proxy

BATCH_MODES = ("random", "per_class")


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ScoringSettings:
    """``batch_size`` images of the training split drawn with ``batch_seed`` (``batch_mode`` random or
    per_class); networks built under ``torch.manual_seed(init_seed)``; ``bn_mode``/``dtype`` None = each proxy's
    own default; ``options``: {proxy name: {option: value}}; ``device``: where networks are scored (None = the
    CPU; ``cuda``, ``cuda:1``, or ``auto`` = a GPU when there is one). A score computed on a GPU carries the device
    type in its cache key (float32 is IEEE float32 there: scoring turns TF32 off, but the order of floating-point
    operations differs from the CPU's), so it is never read as a CPU score -- unless ``device_equivalent`` declares
    them interchangeable (e.g. after checking their agreement with launch/gpu_check.sh)."""

    batch_size: int = 64
    batch_seed: int = 0
    batch_mode: str = "random"
    init_seed: int = 0
    bn_mode: str | None = None
    dtype: str | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    device: str | None = None
    device_equivalent: bool = False

    def __post_init__(self) -> None:
        _int("proxies.batch.size", self.batch_size, 1)
        _int("proxies.batch.seed", self.batch_seed, 0)
        _int("proxies.init_seed", self.init_seed, 0)
        if self.batch_mode not in BATCH_MODES:
            raise ConfigError(f"proxies.batch.mode {self.batch_mode!r} is not one of: {', '.join(BATCH_MODES)}")
        if self.bn_mode is not None and self.bn_mode not in BN_MODES:
            raise ConfigError(f"proxies.bn_mode {self.bn_mode!r} is not one of: {', '.join(BN_MODES)} "
                              "(or null = each proxy's default)")
        if self.dtype is not None and not isinstance(getattr(torch, str(self.dtype), None), torch.dtype):
            raise ConfigError(f"proxies.dtype {self.dtype!r} is not a torch dtype name (e.g. float32, float64)")
        if not isinstance(self.options, Mapping) or not all(isinstance(v, Mapping) for v in self.options.values()):
            raise ConfigError("proxies.options must map proxy names to option dicts, e.g. "
                              f"{{rbflex: {{n_images: 16}}}}, got {self.options!r}")
        object.__setattr__(self, "options", {str(k): dict(v) for k, v in self.options.items()})
        if self.device is not None and str(self.device) != "auto":
            try:
                torch.device(str(self.device))
            except (RuntimeError, ValueError):
                raise ConfigError(f"proxies.device {self.device!r} is not a torch device (cpu, cuda, cuda:1) or "
                                  "auto") from None

    @classmethod
    def from_config(cls, p: Mapping[str, Any]) -> ScoringSettings:
        """From the ``proxies`` config group as plain containers (``batch: {size, seed, mode}``, ...)."""
        b = dict(p.get("batch") or {})
        return cls(batch_size=b.get("size", 64), batch_seed=b.get("seed", 0), batch_mode=str(b.get("mode", "random")),
                   init_seed=p.get("init_seed", 0), bn_mode=p.get("bn_mode"), dtype=p.get("dtype"),
                   options=dict(p.get("options") or {}), device=p.get("device"),
                   device_equivalent=bool(p.get("device_equivalent", False)))

    @property
    def torch_dtype(self) -> torch.dtype | None:
        return getattr(torch, self.dtype) if self.dtype else None

    @property
    def torch_device(self) -> torch.device | None:
        """The scoring device (None: the CPU, where networks are built); ``auto`` resolves to ``cuda`` when a
        GPU is visible; a CUDA device without a GPU is a ConfigError."""
        if self.device is None:
            return None
        name = str(self.device)
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"proxies.device={name!r} but torch sees no CUDA GPU (torch {torch.__version__}); "
                              "use proxies.device=cpu or auto")
        return device

    @property
    def device_tag(self) -> str | None:
        """What the score keys record of the device: None on the CPU (or when declared equivalent), else its type."""
        device = self.torch_device
        if device is None or device.type == "cpu" or self.device_equivalent:
            return None
        return device.type

    def proxy(self, name: str) -> Proxy:
        """The registered proxy ``name`` with this run's options for it."""
        return get_proxy(name, **self.options.get(name, {}))

    def with_options(self, name: str, **options: Any) -> ScoringSettings:
        """A copy where proxy ``name`` also gets ``options``."""
        merged = {k: dict(v) for k, v in self.options.items()}
        merged.setdefault(name, {}).update(options)
        return replace(self, options=merged)

    def batch(self, datamodule: Any) -> Any:
        """The fixed scoring batch of ``datamodule`` (a ScoringBatch: x, y, fingerprint)."""
        return datamodule.scoring_batch(self.batch_size, self.batch_seed, mode=self.batch_mode)
