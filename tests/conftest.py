"""Shared pytest fixtures: the location of ../shared/data and a quiet, offline W&B."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HNAS_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("WANDB_MODE", "offline")
# Tests use tiny networks: one intra-op thread is faster than two fighting over a loaded 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real NB201 tables, CIFAR-10 folders); skip when a fresh clone has none."""
    if not (SHARED_DATA / "nb201" / "nb201.csv").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (set HNAS_SHARED_DATA or place ../shared/data)")
    return SHARED_DATA
