"""Evaluators: 'how good is this architecture really', answered as an Observation.

A strategy never knows whether an Observation came from a table or from training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Observation:
    """``value``: higher is better (an accuracy in %); ``cost_s``: what obtaining it cost (real or simulated)."""

    value: float
    cost_s: float
    info: dict[str, Any] = field(default_factory=dict)


class Evaluator(Protocol):
    def evaluate(self, arch: Any) -> Observation: ...


class BenchmarkEvaluator:
    """Answers from a tabular benchmark: ``metric`` is the observed value, ``cost`` column the simulated cost.

    Defaults are the signal HNAS and RoBoT observe on NAS-Bench-201: CIFAR-10 validation accuracy after the
    12-epoch schedule, costed at that schedule's simulated train+eval seconds. ``test_metrics`` are copied into
    ``info['test']`` so the final report can show the chosen architecture's test accuracies.
    """

    def __init__(
        self,
        benchmark: Any,
        space: Any,
        metric: str = "cifar10_valid_12ep",
        cost: str | None = "cost_12ep_s",
        test_metrics: tuple[str, ...] | list[str] = ("cifar10_test", "cifar100_test", "imagenet16_test"),
    ) -> None:
        self.benchmark = benchmark
        self.space = space
        cols = set(benchmark.columns)
        for name, col in (("metric", metric), ("cost", cost), *(("test metric", t) for t in test_metrics)):
            if col is not None and col not in cols:
                raise ValueError(f"benchmark has no {name} column {col!r}; available: {', '.join(sorted(cols))}")
        self.metric, self.cost, self.test_metrics = metric, cost, tuple(test_metrics)

    def evaluate(self, arch: Any) -> Observation:
        text = self.space.format(self.space.coerce(arch))
        row = self.benchmark.lookup(text)
        info: dict[str, Any] = {"source": "benchmark", "test": {t: float(row[t]) for t in self.test_metrics}}
        index_of = getattr(self.benchmark, "index_of", None)
        if index_of is not None:
            info["index"] = int(index_of(text))
        cost = float(row[self.cost]) if self.cost else 0.0
        return Observation(float(row[self.metric]), cost, info)

    def test_metrics_of(self, arch: Any) -> dict[str, float]:
        row = self.benchmark.lookup(self.space.format(self.space.coerce(arch)))
        return {t: float(row[t]) for t in self.test_metrics}


class TrainingEvaluator:
    """Answers by training: a Lightning warm-up of a CandidateModule, then its held-out validation accuracy.

    ``budget`` holds any of ``max_steps``, ``max_epochs``, ``max_time`` (seconds); ``trainer`` holds extra
    ``lightning.Trainer`` arguments (accelerator, devices, strategy, precision, ...). Under a multi-process
    strategy use ``ddp_spawn`` so the search loop itself runs once, in this process; validation is then run
    in this process on the weights the spawned ranks hand back.
    """

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
    ) -> None:
        budget = dict(budget or {"max_steps": 100})
        unknown = set(budget) - {"max_steps", "max_epochs", "max_time"}
        if unknown:
            raise ValueError(f"unknown warm-up budget key(s) {sorted(unknown)}; valid: max_steps, max_epochs, max_time")
        for k, v in budget.items():
            if v is not None and v <= 0:
                raise ValueError(f"warm-up budget {k}={v!r} must be > 0")
        if not any(v is not None for v in budget.values()):
            raise ValueError("warm-up budget needs one of max_steps, max_epochs, max_time")
        self.space, self.datamodule, self.budget = space, datamodule, budget
        self.trainer_kwargs = dict(trainer or {})
        self.candidate_kwargs = dict(candidate or {})
        self.seed = seed
        self.limit_val_batches = limit_val_batches
        self.default_root_dir = default_root_dir

    def _trainer_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
            "num_sanity_val_steps": 0, "limit_val_batches": 0, "enable_progress_bar": False,
            "max_epochs": -1, "default_root_dir": self.default_root_dir,
        }
        b = self.budget
        if b.get("max_steps") is not None:
            args["max_steps"] = int(b["max_steps"])
        if b.get("max_epochs") is not None:
            args["max_epochs"] = int(b["max_epochs"])
        if b.get("max_time") is not None:
            args["max_time"] = {"seconds": float(b["max_time"])}
        args.update(self.trainer_kwargs)
        return args

    def evaluate(self, arch: Any) -> Observation:
        import time

        import lightning as L

        from hnas.candidate import CandidateModule

        arch = self.space.coerce(arch)
        L.seed_everything(self.seed, workers=True, verbose=False)
        module = CandidateModule(self.space, arch, num_classes=self.datamodule.num_classes, seed=self.seed,
                                 **self.candidate_kwargs)
        t0 = time.perf_counter()
        trainer = L.Trainer(**self._trainer_args())
        trainer.fit(module, datamodule=self.datamodule)
        train_s = time.perf_counter() - t0
        train_loss = trainer.callback_metrics.get("train/loss_epoch", trainer.callback_metrics.get("train/loss"))
        val_trainer = L.Trainer(
            accelerator=self.trainer_kwargs.get("accelerator", "auto"), devices=1, logger=False,
            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
            limit_val_batches=self.limit_val_batches if self.limit_val_batches is not None else 1.0,
        )
        metrics = val_trainer.validate(module, datamodule=self.datamodule, verbose=False)[0]
        wall = time.perf_counter() - t0
        value = 100.0 * float(metrics["val/acc"])
        info = {"source": "training", "train_s": train_s, "val_loss": float(metrics["val/loss"]),
                "steps": int(trainer.global_step),
                "train_loss": None if train_loss is None else float(train_loss)}
        return Observation(value, wall, info)
