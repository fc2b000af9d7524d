"""The Evaluator protocol and its answer, the Observation: "how good is this architecture really".

A strategy never knows whether an Observation came from a table or from training, and an evaluator never
knows which strategy asked. Optional capabilities are methods of the base class with neutral defaults, so the
search loop and the result writer call them unconditionally instead of probing with ``hasattr``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hnas.spaces.base import SearchSpace


@dataclass(frozen=True)
class Observation:
    """``value``: higher is better (an accuracy in %), NaN when the evaluation produced no number (a diverged
    warm-up: recorded, never the best); ``cost_s``: what obtaining it cost (real or simulated seconds)."""

    value: float
    cost_s: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        return math.isfinite(float(self.value))


class BuildContext(Protocol):
    """What an evaluator may take from the assembled run (``hnas.experiment.build.Parts`` provides it)."""

    space: SearchSpace
    seed: int
    output_dir: Path
    build_kwargs: dict[str, Any]

    @property
    def benchmark(self) -> Any: ...

    @property
    def datamodule(self) -> Any: ...

    @property
    def trainer(self) -> dict[str, Any]: ...


class Evaluator(abc.ABC):
    """Answers ``evaluate(arch)`` with an Observation; the other methods are optional capabilities."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: dict[str, Any], ctx: BuildContext) -> Evaluator:
        """The evaluator described by the ``evaluator`` config group (``kind`` already removed)."""

    @abc.abstractmethod
    def evaluate(self, arch: Any) -> Observation:
        """Evaluate one architecture."""

    def test_metrics_of(self, arch: Any) -> dict[str, float] | None:
        """Ground-truth test metrics of ``arch`` for the final report (None: this evaluator has none)."""
        return None

    def reference_of(self, arch: Any) -> dict[str, float] | None:
        """Benchmark-table accuracies of ``arch`` shown beside a real-training observation (None: none)."""
        return None

    def pool_optimum(self, archs: Sequence[Any], metrics: Sequence[str]) -> dict[str, float] | None:
        """Best value of each test metric over ``archs``: what a perfect search of the pool reaches."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """What the meaning of an observation depends on beyond the config text (e.g. the table file's
        content hash); a resumed run refuses to replay a trial log written under another fingerprint."""
        return {}
