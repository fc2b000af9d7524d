"""Export the official NATS-Bench topology benchmark (``nats_bench``, optional extra) to the compact CSV.

Why: the official file needs the ``nats_bench`` package and minutes to load; the compact CSV (one row per
architecture, see hnas.benchmarks.nb201) loads in a fraction of a second and is what hnas reads.

Column -> query on the official API (``api.get_more_info(i, dataset, hp=..., is_random=False)``, the mean
over training seeds; ``api.get_cost_info(i, dataset)``):

| column                | dataset         | hp  | field          |
|-----------------------|-----------------|-----|----------------|
| cifar10_test          | cifar10         | 200 | test-accuracy  |
| cifar100_test         | cifar100        | 200 | test-accuracy  |
| imagenet16_test       | ImageNet16-120  | 200 | test-accuracy  |
| cifar10_valid         | cifar10-valid   | 200 | valid-accuracy |
| cifar10_valid_12ep    | cifar10-valid   | 12  | valid-accuracy |
| cifar100_valid_12ep   | cifar100        | 12  | valid-accuracy |
| imagenet16_valid_12ep | ImageNet16-120  | 12  | valid-accuracy |
| cost_12ep_s           | cifar10-valid   | 12  | train-all-time |
| train_time_200ep_s    | cifar10-valid   | 200 | train-all-time |
| params_mb             | cifar10 (cost)  |  –  | params         |

Usage: ``hnas nats-export <NATS-tss-v1_0-3ffb9-simple> <out.csv>``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from hnas.benchmarks.table import BenchmarkError, BenchmarkFileNotFound

log = logging.getLogger(__name__)

#: column -> (dataset, hp, field of get_more_info)
MORE_INFO_COLUMNS: dict[str, tuple[str, str, str]] = {
    "cifar10_test": ("cifar10", "200", "test-accuracy"),
    "cifar100_test": ("cifar100", "200", "test-accuracy"),
    "imagenet16_test": ("ImageNet16-120", "200", "test-accuracy"),
    "cifar10_valid": ("cifar10-valid", "200", "valid-accuracy"),
    "cifar10_valid_12ep": ("cifar10-valid", "12", "valid-accuracy"),
    "cifar100_valid_12ep": ("cifar100", "12", "valid-accuracy"),
    "imagenet16_valid_12ep": ("ImageNet16-120", "12", "valid-accuracy"),
    "cost_12ep_s": ("cifar10-valid", "12", "train-all-time"),
    "train_time_200ep_s": ("cifar10-valid", "200", "train-all-time"),
}
#: column -> (dataset, field of get_cost_info)
COST_COLUMNS: dict[str, tuple[str, str]] = {"params_mb": ("cifar10", "params")}
COLUMNS = ["index", "arch", *MORE_INFO_COLUMNS, *COST_COLUMNS]


def _row(api: Any, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"index": i, "arch": str(api.arch(i))}
    infos: dict[tuple[str, str], dict[str, Any]] = {}  # one query per (dataset, hp)
    for col, (dataset, hp, field) in MORE_INFO_COLUMNS.items():
        if (dataset, hp) not in infos:
            infos[(dataset, hp)] = api.get_more_info(i, dataset, hp=hp, is_random=False)
        info = infos[(dataset, hp)]
        if field not in info:
            raise BenchmarkError(
                f"NATS-Bench entry {i} ({dataset}, hp={hp}) has no {field!r}; "
                f"it has: {', '.join(sorted(info))}"
            )
        row[col] = float(info[field])
    for col, (dataset, field) in COST_COLUMNS.items():
        row[col] = float(api.get_cost_info(i, dataset)[field])
    return row


def export_compact_csv(nats_api: Any, out_path: str | os.PathLike[str], progress: bool = True) -> Path:
    """Write the compact CSV of every architecture of ``nats_api`` (a NATS-Bench topology API) atomically.

    The file appears only when complete: rows go to a temporary file in the same folder, renamed at the end.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = len(nats_api)
    rows = [_row(nats_api, i) for i in tqdm(range(n), desc="NATS-Bench export", disable=not progress)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            frame.to_csv(f, index=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("wrote %d architectures to %s", n, out)
    return out


def export_from_nats_path(nats_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Open the official topology file with ``nats_bench`` (fast mode) and export it."""
    if not Path(nats_path).exists():
        raise BenchmarkFileNotFound(
            f"NATS-Bench topology file not found: {nats_path}; download NATS-tss-v1_0-3ffb9-simple "
            "(see the NATS-Bench README) or use a compact CSV"
        )
    try:
        from nats_bench import create
    except ImportError as e:
        raise BenchmarkError(
            "reading the official NATS-Bench file needs the nats_bench package: pip install 'hnas[nats]'"
        ) from e
    api = create(str(nats_path), "tss", fast_mode=True, verbose=False)
    return export_compact_csv(api, out_path)
