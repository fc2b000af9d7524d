"""One final training of one architecture: ``hnas train`` (and ``train_best=true`` at the end of a search).

config -> architecture (arch string, a search's result.json or a W&B artifact; see ``arch_source``) -> the
recipe's network and data -> one Lightning fit with a checkpoint every epoch -> the test set -> result.json,
the weights (``model.pt``) and, with ``logger=wandb``, the per-epoch metrics and the weights as a W&B artifact.

Several GPUs: this is one fit, so Lightning's real ``ddp`` strategy runs the whole command once per rank
(``trainer=ddp_train``; torchrun and SLURM's srun start the ranks themselves). Every rank takes part in the
fit and the test; only global rank 0 writes files and talks to W&B. ``ddp_spawn`` (``trainer=ddp_sim``, 2 CPU
processes) runs the command once and spawns the ranks for the fit and the test.

Resume: the run folder is named after the config (``outputs/train/<recipe>/seedN-<hash>``), so the same
command after a kill finds ``checkpoints/last.ckpt`` and continues from it -- weights, optimizer, LR schedule,
loop counters and every rank's RNG states (``hnas.training.resume``): the data order and augmentation continue
as if the fit had never stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hnas.errors import ConfigError
from hnas.experiment.arch_source import ArchSpec, arch_source
from hnas.experiment.build import Parts, check_seed, plain
from hnas.experiment.results import write_json
from hnas.files import atomic_path

log = logging.getLogger("hnas.train")

#: the recipe ``train_best`` (and the README) uses for a space when none is named
DEFAULT_RECIPES = {"nb201": "nb201", "darts": "darts_cifar10"}
#: recipe keys that are CandidateModule arguments
MODULE_KEYS = ("lr", "lr_min", "momentum", "nesterov", "weight_decay", "schedule", "lr_interval", "drop_path",
               "auxiliary_weight", "label_smoothing", "init")
#: recipe keys of the fit itself, and its documentation
FIT_KEYS = ("name", "epochs", "gradient_clip_val", "description")
#: data options a recipe decides (train_best keeps the search's dataset and location, takes these from the recipe)
RECIPE_DATA_KEYS = ("batch_size", "eval_batch_size", "valid_fraction", "augment", "crop_padding", "flip_p", "cutout",
                    "train_subset", "drop_last", "image_size")
#: config parts that do not change what is trained (left out of the run folder's hash: a resume may change them)
NOT_IDENTITY = ("trainer", "logger", "hydra", "resume", "checkpoint", "val_every_n_epochs")
SPEC_FILE = "train_spec.json"


class TrainError(ConfigError):
    """A training config that cannot work (the recipe, the architecture's space, the run folder)."""


# --- the run folder ------------------------------------------------------------------------------------------
def train_identity(cfg: DictConfig) -> dict[str, Any]:
    """What a training run is: everything but how it is run (trainer, logger) and its bookkeeping."""
    return {k: plain(v) for k, v in cfg.items() if k not in NOT_IDENTITY}


def train_dir_name(cfg: DictConfig) -> str:
    """``seedN-<8 hex>`` over ``train_identity``: the same command (even on another number of GPUs) resumes the
    same folder; any change to what is trained gets its own."""
    digest = hashlib.sha1(json.dumps(train_identity(cfg), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"seed{cfg.get('seed', 0)}-{digest}"


def register_train_resolvers() -> None:
    """``${hnas_train_dir:}`` in ``conf/train.yaml``'s Hydra run dir."""
    if not OmegaConf.has_resolver("hnas_train_dir"):
        OmegaConf.register_new_resolver("hnas_train_dir", lambda *, _root_: train_dir_name(_root_))


def launched_as_rank_zero() -> bool:
    """Whether this process is global rank 0 as the launchers announce it before Lightning sets up (torchrun:
    RANK; srun: SLURM_PROCID; Lightning's own ddp launcher: NODE_RANK and LOCAL_RANK); True for a plain run."""
    env = os.environ
    if "RANK" in env:
        return env["RANK"] == "0"
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return env["SLURM_PROCID"] == "0"
    return env.get("NODE_RANK", "0") in ("", "0") and env.get("LOCAL_RANK", "0") in ("", "0")


def check_run_folder(out: Path, spec: dict[str, Any], resume: bool) -> Path | None:
    """The checkpoint to resume from (or None); rank 0 records what the folder trains in ``train_spec.json``.
    A folder that trains something else, or ``resume=false`` on a folder with checkpoints, is refused."""
    spec_path = out / SPEC_FILE
    if spec_path.is_file():
        held = json.loads(spec_path.read_text())
        if (held.get("space"), held.get("arch")) != (spec["space"], spec["arch"]):
            raise TrainError(f"{out} holds the training of {held.get('arch')!r} ({held.get('space')}), not "
                             f"{spec['arch']!r}: use another run folder (hydra.run.dir=...) or remove it")
    from hnas.training.resume import last_checkpoint

    ckpt = last_checkpoint(out / "checkpoints")
    if ckpt is not None and not resume:
        raise TrainError(f"resume=false but {out / 'checkpoints'} holds checkpoints of an earlier fit: remove the "
                         "folder, pick another one (hydra.run.dir=...), or resume=true to continue it")
    if launched_as_rank_zero() and not spec_path.is_file():
        write_json(spec_path, spec)
    return ckpt


# --- the pieces --------------------------------------------------------------------------------------------
def recipe_of(cfg: DictConfig) -> dict[str, Any]:
    """The ``recipe`` node, checked: known keys, epochs > 0, a clip value > 0 or null."""
    recipe = dict(plain(cfg.get("recipe")) or {})
    unknown = sorted(set(recipe) - set(MODULE_KEYS) - set(FIT_KEYS))
    if unknown:
        raise TrainError(f"recipe has no key(s) {unknown}; valid: {', '.join(FIT_KEYS + MODULE_KEYS)}")
    epochs = recipe.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise TrainError(f"recipe.epochs must be an integer >= 1, got {epochs!r}")
    clip = recipe.get("gradient_clip_val")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
        raise TrainError(f"recipe.gradient_clip_val must be a number > 0 (or null: no clipping), got {clip!r}")
    return recipe


def resolve_arch(cfg: DictConfig, space_name: str) -> ArchSpec:
    """The configured architecture; its source's space must be the recipe's (else: which recipe to use)."""
    spec = arch_source(cfg.get("arch"), cfg.get("from_result"), cfg.get("from_artifact"))
    if spec.space is not None and spec.space != space_name:
        hint = DEFAULT_RECIPES.get(spec.space)
        fix = f"add recipe={hint}" if hint else f"no recipe trains the {spec.space} space yet"
        raise TrainError(f"the architecture is in the {spec.space} space but recipe "
                         f"{cfg.recipe.get('name')!r} trains {space_name} networks: {fix}")
    return spec


def lightning_logger(cfg: DictConfig, out: Path, run_name: str) -> Any:
    """The Lightning logger of the ``logger`` group: W&B (offline unless WANDB_MODE says otherwise), CSV, none."""
    logger = dict(plain(cfg.get("logger")) or {"kind": "none"})
    kind = logger.pop("kind", "none")
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(out), name="csv", version="")
    if kind == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        from hnas.tracking import wandb_run_id

        mode = logger.get("mode") or os.environ.get("WANDB_MODE") or "offline"
        return WandbLogger(project=logger.get("project") or "hnas", name=run_name,
                           id=wandb_run_id(f"train:{out.resolve()}"), save_dir=str(out), mode=mode, resume="allow")
    raise TrainError(f"unknown logger.kind {kind!r} for hnas train; valid: wandb, csv, none")


def trainer_args(parts: Parts, recipe: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """``lightning.Trainer`` arguments: the trainer group (precision ``auto`` resolved) over the recipe's fit."""
    from hnas.training.precision import resolve_trainer_precision

    every = cfg.get("val_every_n_epochs", 1)
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
        raise TrainError(f"val_every_n_epochs must be an integer >= 0 (0: no validation), got {every!r}")
    args: dict[str, Any] = {
        "max_epochs": int(recipe["epochs"]), "num_sanity_val_steps": 0, "enable_model_summary": False,
        "enable_progress_bar": sys.stderr.isatty(), "default_root_dir": str(parts.output_dir),
        "check_val_every_n_epoch": max(1, int(every or 1)), "deterministic": bool(cfg.get("deterministic", False)),
    }
    if not every:
        args["limit_val_batches"] = 0
    if recipe.get("gradient_clip_val") is not None:
        args["gradient_clip_val"] = float(recipe["gradient_clip_val"])
    args.update(parts.trainer)
    return resolve_trainer_precision(args)


def inference_parameters(net: Any) -> int:
    """Parameters of the network that predicts (an auxiliary head only helps training; DARTS counts this way)."""
    return sum(p.numel() for name, p in net.named_parameters() if "auxiliary" not in name)


def artifact_name(run_name: str) -> str:
    """A W&B artifact name for the weights (letters, digits, ``-``, ``_``, ``.`` only)."""
    return "model-" + re.sub(r"[^\w.-]+", "-", run_name).strip("-")


# --- the command ---------------------------------------------------------------------------------------------
def train_final(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any] | None:
    """Train the configured architecture; returns the result dict written to result.json (None on ranks > 0)."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from hnas.evaluators.training import steps_done, weights_digest
    from hnas.training.candidate import CandidateModule
    from hnas.training.progress import EpochLog, quiet_lightning
    from hnas.training.resume import ExactResume

    quiet_lightning()
    t0 = time.perf_counter()
    out = Path(output_dir)
    seed = check_seed("seed", cfg.get("seed", 0))
    recipe = recipe_of(cfg)
    parts = Parts(cfg, out)
    space = parts.space
    spec = resolve_arch(cfg, space.name)
    arch = space.coerce(spec.arch)
    arch_str = space.format(arch)
    keep = (plain(cfg.get("checkpoint")) or {}).get("keep", 1)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < -1:
        raise TrainError(f"checkpoint.keep must be an integer >= -1 (-1: every epoch's checkpoint), got {keep!r}")
    L.seed_everything(seed, workers=True, verbose=False)
    dm = parts.datamodule
    module = CandidateModule(space, arch, num_classes=dm.num_classes, seed=seed, build_kwargs=parts.build_kwargs,
                             **{k: recipe[k] for k in MODULE_KEYS if k in recipe})
    # after every config check (data, network, recipe), so that bad input leaves nothing in the run folder
    ckpt = check_run_folder(out, {"space": space.name, "arch": arch_str, "recipe": recipe.get("name"),
                                  "seed": seed, "source": spec.source}, bool(cfg.get("resume", True)))
    run_name = f"train-{recipe.get('name', 'custom')}-{out.name}"
    logger = lightning_logger(cfg, out, run_name)
    callbacks: list[Any] = [
        ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="epoch{epoch:04d}", auto_insert_metric_name=False,
                        save_last=True, save_top_k=keep, every_n_epochs=1),
        ExactResume(), EpochLog(),
    ]
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    args = trainer_args(parts, recipe, cfg)
    trainer = L.Trainer(logger=logger, callbacks=callbacks, **args)
    if trainer.is_global_zero:
        log.info("hnas train: %s (%s) with recipe %s, %d epochs, %s, %d device(s) x %d node(s), precision %s%s",
                 arch_str, space.name, recipe.get("name"), recipe["epochs"], dm.name, trainer.num_devices,
                 trainer.num_nodes, args["precision"], f"; resuming from {ckpt}" if ckpt else "")
    finished = False
    try:
        fit_t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # the last steps' kernels belong to the fit's time
        fit_s = time.perf_counter() - fit_t0
        steps = steps_done(trainer)
        epochs = epochs_done(trainer, out / "checkpoints")
        metrics = test_set_metrics(trainer, module, dm, args)
        if not trainer.is_global_zero:
            finished = True
            return None
        result = result_dict(cfg, space.name, arch_str, spec, recipe, module, trainer, metrics, args, steps, epochs)
        result.update(fit_s=round(fit_s, 3), wall_s=round(time.perf_counter() - t0, 3),
                      resumed_from=str(ckpt) if ckpt else None, weights_digest=weights_digest(module.net))
        save_weights(out / "model.pt", module, result)
        write_json(out / "result.json", result)
        if is_wandb(logger):
            log_weights_artifact(logger, out / "model.pt", run_name, result)
        log.info("test top-1 %.2f%% (top-5 %s) after %d epochs -> %s", result["test"]["top1"],
                 result["test"].get("top5"), result["epochs"], out / "result.json")
        finished = True
        return result
    finally:
        if is_wandb(logger) and trainer.is_global_zero:
            import wandb

            if wandb.run is not None:  # a resumed command must find the run closed, never half-open
                wandb.finish(exit_code=0 if finished else 1)


def epochs_done(trainer: Any, checkpoints: Path) -> int:
    """Epochs the fit completed: the trainer's count, or (a spawning strategy: this process's trainer never
    stepped) the last checkpoint's, which rank 0 wrote at the end of its last epoch."""
    if trainer.current_epoch > 0:
        return int(trainer.current_epoch)
    from hnas.training.resume import last_checkpoint

    last = last_checkpoint(checkpoints)
    if last is None:
        return 0
    import torch

    return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) + 1


def test_set_metrics(trainer: Any, module: Any, dm: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The test set's metrics. Under ``ddp`` every rank tests its shard (torchmetrics syncs the counts); under
    a spawning strategy the ranks are gone after the fit, and this process -- which holds the trained weights
    -- tests on one device instead of spawning them again."""
    import lightning as L

    if "spawn" not in str(args.get("strategy", "")):
        return trainer.test(module, datamodule=dm, verbose=False)[0]
    single = L.Trainer(accelerator=args.get("accelerator", "auto"), devices=1, precision=args["precision"],
                       logger=False, enable_checkpointing=False, enable_model_summary=False,
                       enable_progress_bar=False)
    return single.test(module, datamodule=dm, verbose=False)[0]


def is_wandb(logger: Any) -> bool:
    return type(logger).__name__ == "WandbLogger"


def result_dict(cfg: DictConfig, space: str, arch: str, spec: ArchSpec, recipe: dict[str, Any], module: Any,
                trainer: Any, metrics: dict[str, Any], args: dict[str, Any], steps: int,
                epochs: int) -> dict[str, Any]:
    """result.json of a training: what was trained, how, and its test accuracy (%, top-1/top-5)."""
    def pct(key: str) -> float | None:
        return None if key not in metrics else round(100.0 * float(metrics[key]), 4)

    return {
        "kind": "train", "space": space, "arch": arch, "source": spec.source, "recipe": recipe,
        "data": plain(cfg.data), "seed": int(cfg.get("seed", 0)), "epochs": epochs,
        "steps": steps, "world_size": int(trainer.world_size), "precision": str(args["precision"]),
        "images_per_epoch": int(len(trainer.datamodule.fit_indices)) if trainer.datamodule is not None else None,
        "params": inference_parameters(module.net),
        "test": {"top1": pct("test/acc"), "top5": pct("test/acc_top5"),
                 "loss": float(metrics["test/loss"]) if "test/loss" in metrics else None},
    }


def save_weights(path: Path, module: Any, result: dict[str, Any]) -> None:
    """``model.pt``: the network's state dict plus what rebuilds it (space, arch, build arguments, classes)."""
    import torch

    payload = {"space": result["space"], "arch": result["arch"], "num_classes": module.hparams["num_classes"],
               "build_kwargs": dict(module.build_kwargs), "state_dict": module.net.state_dict(),
               "test": result["test"]}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def log_weights_artifact(logger: Any, path: Path, run_name: str, result: dict[str, Any]) -> None:
    """The trained weights as a W&B ``model`` artifact (name ``model-<run>``), with arch and test accuracy."""
    import wandb

    art = wandb.Artifact(artifact_name(run_name), type="model",
                         metadata={"space": result["space"], "arch": result["arch"], "test": result["test"],
                                   "recipe": result["recipe"].get("name"), "epochs": result["epochs"]})
    art.add_file(str(path))
    art.add_file(str(path.with_name("result.json")))
    logger.experiment.log_artifact(art)
    logger.experiment.summary.update({f"test/{k}": v for k, v in result["test"].items() if v is not None})


# --- the search hook -----------------------------------------------------------------------------------------
def search_train_config(search_cfg: DictConfig, arch: str, space: str) -> DictConfig:
    """The ``hnas train`` config for a search's best architecture: ``train.recipe`` (or the space's default
    recipe) and ``train.overrides``, on the search's dataset, trainer and logger."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    train = dict(plain(search_cfg.get("train")) or {})
    recipe = train.get("recipe") or DEFAULT_RECIPES.get(space)
    if recipe is None:
        raise TrainError(f"train_best: the {space} space has no default recipe; give train.recipe=NAME "
                         f"(recipes: {', '.join(sorted(set(DEFAULT_RECIPES.values())))})")
    extra = train.get("overrides") or []
    if isinstance(extra, str) or not all(isinstance(o, str) for o in extra):
        raise TrainError("train.overrides must be a list of hnas train overrides, e.g. "
                         f"'train.overrides=[\"recipe.epochs=1\"]', got {extra!r}")
    overrides = [f"recipe={recipe}", *extra]
    if GlobalHydra.instance().is_initialized():  # inside `hnas run`: the app's config path is set up
        cfg = compose(config_name="train", overrides=overrides)
    else:
        with initialize_config_module(config_module="hnas.conf", version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
    data = OmegaConf.create(plain(search_cfg.data))
    for k in RECIPE_DATA_KEYS:
        if k in cfg.data:
            data[k] = cfg.data[k]
    cfg.data = data
    for k in ("trainer", "logger"):
        cfg[k] = OmegaConf.create(plain(search_cfg.get(k)) or {})
    cfg.arch = arch
    cfg.seed = int(search_cfg.get("seed", 0))
    return cfg


def train_best(search_cfg: DictConfig, result: dict[str, Any], output_dir: str | Path) -> dict[str, Any]:
    """``train_best=true``: train the search's best architecture into ``output_dir``; a summary for the
    search's result.json (or why nothing was trained)."""
    arch = (result.get("best") or {}).get("arch")
    if not arch:
        return {"note": "the search has no best architecture, so nothing was trained"}
    cfg = search_train_config(search_cfg, arch, str(result["space"]))
    trained = train_final(cfg, output_dir)
    if trained is None:
        return {}
    return {"result": str(Path(output_dir) / "result.json"), "recipe": trained["recipe"].get("name"),
            "epochs": trained["epochs"], "test": trained["test"]}
