"""Tabular ground truth used as an evaluator/oracle: NAS-Bench-201 and NAFBee, looked up by name."""

from __future__ import annotations

import os

from hnas.benchmarks.nafbee import NAFBeeTable
from hnas.benchmarks.nb201 import NB201Benchmark
from hnas.benchmarks.table import BenchmarkError, BenchmarkFileNotFound

BENCHMARKS = {"nb201": NB201Benchmark, "nafbee": NAFBeeTable}


def load_benchmark(name: str, path: str | os.PathLike[str]) -> NB201Benchmark | NAFBeeTable:
    """The benchmark table ``name`` (nb201, nafbee) read from ``path``."""
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; valid: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name](path)


__all__ = [
    "BENCHMARKS",
    "BenchmarkError",
    "BenchmarkFileNotFound",
    "NAFBeeTable",
    "NB201Benchmark",
    "load_benchmark",
]
