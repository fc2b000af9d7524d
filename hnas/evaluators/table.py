"""TableEvaluator: answers from a tabular benchmark (NAS-Bench-201, NAFBee, any table with ``lookup``).

``metric`` is the observed value and ``cost`` the column of its (simulated) cost in seconds; the defaults
are the signal HNAS and RoBoT observe on NAS-Bench-201 (CIFAR-10 validation accuracy after the 12-epoch
schedule, costed at that schedule's simulated train+eval seconds). ``test_metrics`` are copied into
``info['test']`` so the report can show the chosen architecture's test accuracies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hnas.benchmarks.table import BenchmarkError
from hnas.errors import ConfigError
from hnas.evaluators.base import BuildContext, Evaluator, Observation


class TableEvaluator(Evaluator):
    """Observation = the table's ``metric`` of the architecture, cost = its ``cost`` column (0 without one).

    ``simulate_time`` > 0 sleeps ``simulate_time * cost`` seconds before answering, so that scheduling and
    parallel evaluation can be measured in wall time on a table.
    """

    def __init__(
        self,
        table: Any,
        space: Any,
        metric: str = "cifar10_valid_12ep",
        cost: str | None = "cost_12ep_s",
        test_metrics: Sequence[str] = ("cifar10_test", "cifar100_test", "imagenet16_test"),
        simulate_time: float = 0.0,
    ) -> None:
        valid = list(table.metrics())
        for what, col in (("evaluator.metric", metric), ("evaluator.cost", cost),
                          *(("evaluator.test_metrics", t) for t in test_metrics)):
            if col is not None and col not in valid:
                raise ConfigError(f"{what}={col!r} is not a column of the benchmark table {table.path}; "
                                  f"valid: {', '.join(valid)}")
        if cost is not None:
            col = np.asarray(table.frame[cost], dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(col) | (col < 0))
            if bad.size:
                where = f"{table.frame.index.name or 'row'} {table.frame.index[bad[0]]!r}"
                raise BenchmarkError(f"cost column {cost!r} of {table.path} holds {float(col[bad[0]])!r} for {where}; "
                                     "a cost must be a finite number of seconds >= 0")
        if isinstance(simulate_time, bool) or not isinstance(simulate_time, (int, float)) \
                or not math.isfinite(simulate_time) or simulate_time < 0:
            raise ConfigError(f"evaluator.simulate_time must be a number >= 0, got {simulate_time!r}")
        self.table, self.space = table, space
        self.metric, self.cost, self.test_metrics = metric, cost, tuple(test_metrics)
        self.simulate_time = float(simulate_time)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], ctx: BuildContext) -> TableEvaluator:
        if ctx.benchmark is None:
            raise ConfigError("evaluator=benchmark needs a benchmark table: set benchmark=nb201 (or "
                              "benchmark.name=nafbee) and benchmark.path=<csv>")
        cfg = dict(cfg)
        tests = cfg.pop("test_metrics", None)
        if tests is not None and not isinstance(tests, (list, tuple)):
            raise ConfigError(f"evaluator.test_metrics must be a list of column names, got {tests!r}")
        unknown = sorted(set(cfg) - {"metric", "cost", "simulate_time"})
        if unknown:
            raise ConfigError(f"evaluator (benchmark) has no option(s) {unknown}; valid: metric, cost, "
                              "test_metrics, simulate_time")
        return cls(ctx.benchmark, ctx.space, metric=str(cfg.get("metric", "cifar10_valid_12ep")),
                   cost=cfg.get("cost"), test_metrics=list(tests if tests is not None else [cfg.get("metric")]),
                   simulate_time=cfg.get("simulate_time") or 0.0)

    def _spelling(self, arch: Any) -> str:
        return self.space.format(self.space.coerce(arch))

    def evaluate(self, arch: Any) -> Observation:
        text = self._spelling(arch)
        row = self.table.lookup(text)
        info: dict[str, Any] = {"source": "benchmark", "test": {t: float(row[t]) for t in self.test_metrics}}
        index_of = getattr(self.table, "index_of", None)
        if callable(index_of):
            info["index"] = int(index_of(text))
        cost = float(row[self.cost]) if self.cost else 0.0
        if self.simulate_time:
            time.sleep(self.simulate_time * cost)
        return Observation(float(row[self.metric]), cost, info)

    def test_metrics_of(self, arch: Any) -> dict[str, float]:
        row = self.table.lookup(self._spelling(arch))
        return {t: float(row[t]) for t in self.test_metrics}

    def pool_optimum(self, archs: Sequence[Any], metrics: Sequence[str]) -> dict[str, float]:
        spellings = [self._spelling(a) for a in archs]
        return {m: float(np.nanmax(self.table.values(spellings, m))) for m in metrics}

    def fingerprint(self) -> dict[str, Any]:
        return {"benchmark": self.table.fingerprint}
