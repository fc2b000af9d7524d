"""TrainingEvaluator: answers by training — a Lightning warm-up of a CandidateModule, then its held-out
validation accuracy.

``budget`` holds any of ``max_steps``, ``max_epochs``, ``max_time`` (seconds); ``trainer`` holds extra
``lightning.Trainer`` arguments (accelerator, devices, strategy, precision, ...). Under a multi-process
strategy use ``ddp_spawn`` so the search loop itself runs once, in this process; validation is then run in
this process on the weights the spawned ranks hand back. A warm-up whose loss diverges returns a NaN value
(recorded in the trial log with the reason, never chosen as the best). With a benchmark table (``reference``),
every observation also carries the table's test accuracies of the architecture as ``info['reference']``: a
reference for the reader of how good the architecture that real training chose is, never used by the search.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from hnas.errors import ConfigError
from hnas.evaluators.base import BuildContext, Evaluator, Observation

log = logging.getLogger(__name__)

BUDGET_KEYS = ("max_steps", "max_epochs", "max_time")


def weights_digest(module: Any, parameters_only: bool = False) -> str:
    """16 hex digits over the module's parameters and buffers: which weights were validated (and, under
    ``ddp_spawn``, proof that the trained weights came back from the spawned ranks). DDP keeps parameters
    equal on every rank but BatchNorm statistics are each rank's own: ``parameters_only`` compares ranks."""
    import hashlib

    h = hashlib.sha256()
    items = module.named_parameters() if parameters_only else module.state_dict().items()
    for name, t in sorted(items):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def steps_done(trainer: Any) -> int:
    """Optimizer steps of the fit: the trainer's own count, or (``ddp_spawn``: the launching process's trainer
    never stepped) the count rank 0 logged, which Lightning hands back with the metrics."""
    logged = trainer.callback_metrics.get("train/steps")
    return int(logged) if trainer.global_step == 0 and logged is not None else int(trainer.global_step)


class TrainingEvaluator(Evaluator):
    def __init__(
        self,
        space: Any,
        datamodule: Any,
        budget: dict[str, Any] | None = None,
        trainer: dict[str, Any] | None = None,
        candidate: dict[str, Any] | None = None,
        seed: int = 0,
        limit_val_batches: int | float | None = None,
        default_root_dir: str | None = None,
        gradient_clip_val: float | None = None,
        reference: Any = None,
        reference_metrics: list[str] | None = None,
    ) -> None:
        budget = dict(budget or {"max_steps": 100})
        unknown = sorted(set(budget) - set(BUDGET_KEYS))
        if unknown:
            raise ConfigError(f"unknown warm-up budget key(s) {unknown}; valid: {', '.join(BUDGET_KEYS)}")
        for k, v in budget.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
                raise ConfigError(f"evaluator.budget.{k}={v!r} must be a number > 0 (or null)")
        if not any(v is not None for v in budget.values()):
            raise ConfigError("the warm-up budget needs one of evaluator.budget.max_steps, max_epochs, max_time")
        gcv = gradient_clip_val
        if gcv is not None and (isinstance(gcv, bool) or not isinstance(gcv, (int, float)) or not gcv > 0):
            raise ConfigError(f"evaluator.gradient_clip_val={gcv!r} must be a number > 0 (or null: no clipping)")
        self.gradient_clip_val = gcv
        self._announced = False
        self.reference = reference
        self.reference_metrics = list(reference_metrics or [])
        if reference is not None:
            valid = list(reference.metrics())
            bad = [m for m in self.reference_metrics if m not in valid]
            if bad:
                raise ConfigError(f"evaluator.reference_metrics {bad} are not columns of the benchmark table "
                                  f"{reference.path}; valid: {', '.join(valid)}")
        lvb = limit_val_batches
        if lvb is not None and (isinstance(lvb, bool) or not isinstance(lvb, (int, float)) or not lvb > 0):
            raise ConfigError(f"evaluator.limit_val_batches={lvb!r} must be > 0 (a count or a fraction) or null")
        self.space, self.datamodule, self.budget = space, datamodule, budget
        self.trainer_kwargs = dict(trainer or {})
        self.candidate_kwargs = dict(candidate or {})
        self.seed = seed
        self.limit_val_batches = limit_val_batches
        self.default_root_dir = default_root_dir

    @classmethod
    def from_config(cls, cfg: dict[str, Any], ctx: BuildContext) -> TrainingEvaluator:
        cfg = dict(cfg)
        unknown = sorted(set(cfg) - {"budget", "candidate", "limit_val_batches", "gradient_clip_val",
                                     "reference_metrics"})
        if unknown:
            raise ConfigError(f"evaluator (train) has no option(s) {unknown}; valid: budget, candidate, "
                              "limit_val_batches, gradient_clip_val, reference_metrics")
        cand = dict(cfg.get("candidate") or {})
        cand.setdefault("build_kwargs", dict(ctx.build_kwargs))
        return cls(ctx.space, ctx.datamodule, budget=cfg.get("budget"), trainer=ctx.trainer, candidate=cand,
                   seed=ctx.seed, limit_val_batches=cfg.get("limit_val_batches"),
                   default_root_dir=str(ctx.output_dir), gradient_clip_val=cfg.get("gradient_clip_val"),
                   reference=ctx.benchmark, reference_metrics=cfg.get("reference_metrics"))

    def reference_of(self, arch: Any) -> dict[str, float] | None:
        """The benchmark table's test accuracies of ``arch``: a reference for the reader, never used by the search."""
        if self.reference is None or not self.reference_metrics:
            return None
        row = self.reference.lookup(self.space.format(self.space.coerce(arch)))
        return {m: float(row[m]) for m in self.reference_metrics}

    def pool_optimum(self, archs: Any, metrics: Any) -> dict[str, float] | None:
        """With a reference table: the best reference value of each metric over the pool."""
        if self.reference is None:
            return None
        import numpy as np

        spellings = [self.space.format(self.space.coerce(a)) for a in archs]
        return {m: float(np.nanmax(self.reference.values(spellings, m))) for m in metrics}

    def fingerprint(self) -> dict[str, Any]:
        return {"reference": self.reference.fingerprint} if self.reference is not None else {}

    def _trainer_args(self) -> dict[str, Any]:
        from hnas.training.progress import EpochLog, on_terminal

        bar = on_terminal()
        args: dict[str, Any] = {
            "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
            "num_sanity_val_steps": 0, "limit_val_batches": 0, "enable_progress_bar": bar,
            "max_epochs": -1, "default_root_dir": self.default_root_dir,
            "callbacks": [] if bar else [EpochLog(label="warm-up epoch")],
        }
        b = self.budget
        if b.get("max_steps") is not None:
            args["max_steps"] = int(b["max_steps"])
        if b.get("max_epochs") is not None:
            args["max_epochs"] = int(b["max_epochs"])
        if b.get("max_time") is not None:
            args["max_time"] = {"seconds": float(b["max_time"])}
        if self.gradient_clip_val is not None:
            args["gradient_clip_val"] = float(self.gradient_clip_val)
        extra = dict(self.trainer_kwargs)
        args["callbacks"] = [*args["callbacks"], *extra.pop("callbacks", [])]
        args.update(extra)
        if "precision" in args:  # `auto` (trainer=gpu/ddp): bf16-mixed where supported, else 16-mixed / 32-true
            from hnas.training.precision import resolve_trainer_precision

            args = resolve_trainer_precision(args)
        return args

    def evaluate(self, arch: Any) -> Observation:
        import lightning as L
        import torch

        from hnas.training.candidate import CandidateModule
        from hnas.training.progress import on_terminal, quiet_lightning

        quiet_lightning()
        arch = self.space.coerce(arch)
        L.seed_everything(self.seed, workers=True, verbose=False)
        module = CandidateModule(self.space, arch, num_classes=self.datamodule.num_classes, seed=self.seed,
                                 **self.candidate_kwargs)
        t0 = time.perf_counter()
        trainer = L.Trainer(**self._trainer_args())
        on_gpu = trainer.strategy.root_device.type == "cuda"
        if not self._announced:
            self._announced = True
            log.info("warm-ups on %s%s, precision %s", trainer.strategy.root_device,
                     f" ({torch.cuda.get_device_name(trainer.strategy.root_device)}), channels_last, cudnn.benchmark"
                     if on_gpu else "", trainer.precision)
        if on_gpu:  # the fast layout and kernel choice for convolutions on a GPU (same numbers otherwise)
            torch.backends.cudnn.benchmark = True
            module = module.to(memory_format=torch.channels_last)
        trainer.fit(module, datamodule=self.datamodule)
        train_s = time.perf_counter() - t0
        trained = weights_digest(module)
        train_loss = trainer.callback_metrics.get("train/loss_epoch", trainer.callback_metrics.get("train/loss"))
        val_trainer = L.Trainer(
            accelerator=self.trainer_kwargs.get("accelerator", "auto"), devices=1, logger=False,
            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=on_terminal(),
            limit_val_batches=self.limit_val_batches if self.limit_val_batches is not None else 1.0,
        )
        metrics = val_trainer.validate(module, datamodule=self.datamodule, verbose=False)[0]
        wall = time.perf_counter() - t0
        loss = None if train_loss is None else float(train_loss)
        value = 100.0 * float(metrics["val/acc"])
        info: dict[str, Any] = {"source": "training", "train_s": train_s, "val_loss": float(metrics["val/loss"]),
                                "steps": steps_done(trainer), "train_loss": loss,
                                "world_size": int(trainer.world_size), "weights": trained}
        if loss is not None and not math.isfinite(loss):
            info["note"] = f"the warm-up diverged (train loss {loss}); no validation accuracy"
            value = math.nan
        reference = self.reference_of(arch)
        if reference is not None:
            info["reference"] = reference
        return Observation(value, wall, info)
