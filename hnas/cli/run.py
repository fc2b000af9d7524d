"""``hnas run +experiment=NAME [overrides]``: one search (Hydra config ``run``; see hnas.experiment.runner)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from hnas.cli import exits_on_user_error
from hnas.experiment.build import register_resolvers
from hnas.experiment.runner import run_experiment

log = logging.getLogger("hnas.run")

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="run")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    result = exits_on_user_error(run_experiment)(cfg, HydraConfig.get().runtime.output_dir)
    return result["best"]["value"]  # the sweep's objective (None when no query had a finite value)
