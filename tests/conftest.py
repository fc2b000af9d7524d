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

# after the environment above (torch reads OMP_NUM_THREADS when it is first imported): hnas's OmegaConf resolvers
# for every config a test composes
import hnas.experiment  # noqa: E402,F401

#: CI sets this: there the real data must be present, and a test that needs it fails instead of skipping
REQUIRE_SHARED_DATA = os.environ.get("HNAS_REQUIRE_SHARED_DATA") == "1"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real NB201 tables, CIFAR-10 folders); skip when a fresh clone has none (fail under CI,
    HNAS_REQUIRE_SHARED_DATA=1)."""
    if not (SHARED_DATA / "nb201" / "nb201.csv").is_file():
        message = f"real data not found at {SHARED_DATA} (set HNAS_SHARED_DATA or place ../shared/data)"
        if REQUIRE_SHARED_DATA:
            pytest.fail(message + "; HNAS_REQUIRE_SHARED_DATA=1 requires it")
        pytest.skip(message)
    return SHARED_DATA


def wandb_log_bytes(pattern: str, root: Path, needles: list[bytes], timeout_s: float = 60.0) -> bytes:
    """The bytes of the one offline ``.wandb`` transaction log under ``root`` matching ``pattern``, once every
    needle is in it (or the timeout passed: the caller's assertion then fails with what was written).

    ``run.finish()`` returns before wandb's service process has necessarily flushed the log (CI once read a bare
    7-byte header), so W&B is torn down first — that waits for the service — and the file is re-read briefly."""
    import time

    import wandb

    wandb.teardown()
    deadline = time.monotonic() + timeout_s
    while True:
        logs = sorted(root.glob(pattern))
        blob = logs[0].read_bytes() if len(logs) == 1 else b""
        if (blob and all(n in blob for n in needles)) or time.monotonic() > deadline:
            assert len(logs) == 1, f"expected one W&B log matching {pattern} under {root}, found {logs}"
            return blob
        time.sleep(0.5)
