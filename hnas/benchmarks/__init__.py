"""Tabular ground truth used as an evaluator/oracle: NAS-Bench-201 and NAFBee, looked up by name."""

from __future__ import annotations

import os

from hnas.benchmarks.nafbee import NAFBeeTable
from hnas.benchmarks.nb201 import NB201Benchmark
from hnas.benchmarks.table import BenchmarkError, BenchmarkFileNotFound
from hnas.registry import Registry

#: ``benchmark.name`` -> table class
BENCHMARKS: Registry[type[NB201Benchmark] | type[NAFBeeTable]] = Registry("benchmark", {
    "nb201": "hnas.benchmarks.nb201:NB201Benchmark",
    "nafbee": "hnas.benchmarks.nafbee:NAFBeeTable",
}, BenchmarkError)


def load_benchmark(name: str, path: str | os.PathLike[str]) -> NB201Benchmark | NAFBeeTable:
    """The benchmark table ``name`` (nb201, nafbee) read from ``path``."""
    return BENCHMARKS.get(name)(path)


__all__ = [
    "BENCHMARKS",
    "BenchmarkError",
    "BenchmarkFileNotFound",
    "NAFBeeTable",
    "NB201Benchmark",
    "load_benchmark",
]
