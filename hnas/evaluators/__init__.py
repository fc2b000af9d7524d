"""Evaluators: the Evaluator protocol + Observation, table evaluators, the training evaluator."""

from __future__ import annotations

from hnas.errors import ConfigError
from hnas.evaluators.base import BuildContext, Evaluator, Observation
from hnas.registry import Registry

#: ``evaluator.kind`` -> class
EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator.kind", {
    "benchmark": "hnas.evaluators.table:TableEvaluator",
    "train": "hnas.evaluators.training:TrainingEvaluator",
}, ConfigError)

__all__ = ["EVALUATORS", "BuildContext", "Evaluator", "Observation"]
