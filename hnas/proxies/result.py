"""ProxyScore: a proxy's value with its status, never a NaN disguised as a number."""

from __future__ import annotations

import math
from dataclasses import dataclass

STATUSES = ("ok", "nan", "inf", "oom", "error")


@dataclass(frozen=True)
class ProxyScore:
    """``value`` is a finite float only when ``status == 'ok'``; otherwise it is None."""

    value: float | None
    status: str = "ok"
    seconds: float = 0.0
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown proxy status {self.status!r}; valid: {', '.join(STATUSES)}")
        if self.status == "ok" and (self.value is None or not math.isfinite(self.value)):
            raise ValueError(f"status 'ok' needs a finite value, got {self.value!r}")
        if self.status != "ok" and self.value is not None:
            raise ValueError(f"status {self.status!r} must carry value None, got {self.value!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_value(cls, value: float, seconds: float = 0.0) -> ProxyScore:
        """Classify a raw number: NaN -> 'nan', +-inf -> 'inf', else 'ok'."""
        v = float(value)
        if math.isnan(v):
            return cls(None, "nan", seconds)
        if math.isinf(v):
            return cls(None, "inf", seconds, message="+inf" if v > 0 else "-inf")
        return cls(v, "ok", seconds)
