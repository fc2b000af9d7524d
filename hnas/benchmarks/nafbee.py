"""NAFBee ground truth: test accuracy of a fixed network with each of 11 activation functions.

CSV format (as in ../shared/data/nafbee/nafbee.csv): ``activation`` and one ``<task>_acc`` column per task,
e.g. ``vgg19_cifar10_acc`` (VGG-19 with BN on CIFAR-10) and ``bert_sst2_acc`` (BERT on SST-2).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from hnas.benchmarks.table import BenchmarkError, numeric_columns, read_table
from hnas.files import sha256_file

HOW_TO_GET = (
    "give the NAFBee CSV with columns activation, vgg19_cifar10_acc, bert_sst2_acc "
    "(built from NAFBee_VGG19.json / NAFBee_BERT.json of the NAFBee repository)"
)
SUFFIX = "_acc"


class NAFBeeTable:
    """Accuracy per activation function and task; activations match case-insensitively."""

    name = "nafbee"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        df = read_table(self.path, ("activation",), "NAFBee table", HOW_TO_GET)
        task_cols = [c for c in df.columns if c.endswith(SUFFIX)]
        if not task_cols:
            raise BenchmarkError(
                f"NAFBee table {self.path} has no '<task>_acc' column; required: activation and at least one "
                "of vgg19_cifar10_acc, bert_sst2_acc"
            )
        df = numeric_columns(df, task_cols, self.path)
        df["activation"] = df["activation"].astype(str)
        dup = df["activation"][df["activation"].str.lower().duplicated()]
        if len(dup):
            raise BenchmarkError(f"activation {dup.iloc[0]!r} appears twice in {self.path}")
        self.frame = df.set_index("activation")
        self._tasks = [c[: -len(SUFFIX)] for c in task_cols]
        self._lower = {a.lower(): a for a in self.frame.index}

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the file: a run's trial log is only replayed against the table it was written with."""
        return sha256_file(self.path)

    def values(self, activations: Any, metric: str) -> np.ndarray:
        return np.array([self.value(a, metric) for a in activations], dtype=np.float64)

    def tasks(self) -> list[str]:
        return list(self._tasks)

    def activations(self) -> list[str]:
        return list(self.frame.index)

    def metrics(self) -> list[str]:
        """Column names, for the same interface as NB201Benchmark."""
        return [t + SUFFIX for t in self._tasks]

    def _activation(self, activation: Any) -> str:
        if isinstance(activation, tuple) and len(activation) == 1:
            activation = activation[0]
        if not isinstance(activation, str) or activation.lower() not in self._lower:
            raise BenchmarkError(
                f"unknown activation {activation!r} in {self.path}; valid: {', '.join(self.activations())}"
            )
        return self._lower[activation.lower()]

    def _column(self, task: str) -> str:
        if task not in self._tasks:
            raise BenchmarkError(f"unknown NAFBee task {task!r}; valid: {', '.join(self._tasks)}")
        return task + SUFFIX

    def accuracy(self, activation: Any, task: str = "vgg19_cifar10") -> float:
        """Test accuracy (%) of the ``task`` network with ``activation``."""
        return float(self.frame.at[self._activation(activation), self._column(task)])

    def ranking(self, task: str = "vgg19_cifar10") -> list[tuple[str, float]]:
        """(activation, accuracy) best first; ties keep the file's order."""
        col = self.frame[self._column(task)]
        return [(str(a), float(v)) for a, v in col.sort_values(ascending=False, kind="stable").items()]

    def lookup(self, activation: Any) -> dict[str, float]:
        a = self._activation(activation)
        return {m: float(self.frame.at[a, m]) for m in self.metrics()}

    def value(self, activation: Any, metric: str) -> float:
        task = metric[: -len(SUFFIX)] if metric.endswith(SUFFIX) else metric
        return self.accuracy(activation, task)

    def optimum(self, metric: str = "vgg19_cifar10_acc") -> tuple[str, float]:
        task = metric[: -len(SUFFIX)] if metric.endswith(SUFFIX) else metric
        return self.ranking(task)[0]
