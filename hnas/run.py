"""Hydra entry point of a search: ``python -m hnas.run +experiment=NAME [overrides]``.

One run = a space, a candidate pool (with proxy scores from the store when the strategy needs them), a
strategy, an evaluator and a tracker; the trial log in the store makes a re-started run with the same run id
continue where it stopped. Every run writes ``result.json`` (and a trajectory plot) in its output directory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("hnas.run")

CONF_DIR = Path(__file__).resolve().parent / "conf"


def _atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Execute one search described by ``cfg``; returns the result dict also written to result.json."""
    from hnas.experiment import build_experiment

    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    exp = build_experiment(cfg, output_dir)
    result = exp.execute()
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    _atomic_write_text(output_dir / "result.json", json.dumps(result, indent=2, default=float) + "\n")
    if cfg.get("plot", True):
        exp.plot(result, output_dir / "trajectory.png")
    log.info("best %s value=%.4f test=%s -> %s", result["best"]["arch"], result["best"]["value"],
             result["best"].get("test"), output_dir / "result.json")
    return result


@hydra.main(version_base="1.3", config_path="conf", config_name="run")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from hnas.cli import reports_user_errors

    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    result = reports_user_errors(run)(cfg, HydraConfig.get().runtime.output_dir)
    return float(result["best"]["value"])


if __name__ == "__main__":
    main()
