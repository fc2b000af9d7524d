"""``hnas train arch=...|from_result=...|from_artifact=... [recipe=NAME] [overrides]``: train ONE architecture
with a final-training recipe (Hydra config ``train``; see hnas.experiment.final)."""

from __future__ import annotations

import importlib.util
import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from hnas.cli import exits_on_user_error
from hnas.experiment.final import register_train_resolvers, train_final

log = logging.getLogger("hnas.train")

register_train_resolvers()


def relaunchable_as_module() -> None:
    """Make Lightning's ``ddp`` launcher re-run *this command* in the other ranks.

    Why: the launcher starts rank k as ``python -m <__main__.__spec__.name> <sys.argv[1:]>`` (or the script path
    when there is no spec). Started as ``hnas train`` (console script) or ``python -m hnas train``, that would
    be the bare ``hnas`` dispatcher without the ``train`` word; pointing ``__main__``'s spec at ``hnas.train``
    makes it ``python -m hnas.train <the same overrides>``, the same command. (``python -m hnas.train`` needs
    nothing.) multiprocessing's spawn (``ddp_spawn``) then imports ``hnas.train`` as the children's main
    module, which defines the command and runs nothing.
    """
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if main_module is not None and (spec is None or spec.name in ("hnas", "hnas.__main__")):
        main_module.__spec__ = importlib.util.find_spec("hnas.train")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    relaunchable_as_module()
    result = exits_on_user_error(train_final)(cfg, HydraConfig.get().runtime.output_dir)
    return None if result is None else result["test"]["top1"]
