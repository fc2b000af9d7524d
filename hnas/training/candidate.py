"""CandidateModule: the one LightningModule around one candidate network.

The same object supplies the zero-cost proxy scores at initialisation (``zero_cost``) and the short warm-up
training (Lightning ``fit``), so a candidate is built once per evaluation and the proxies see exactly the network
that is trained.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from hnas.errors import ConfigError
from hnas.spaces import SearchSpace, get_space

INITS = ("default", "kaiming_fan_in", "kaiming_fan_out", "xavier")


def initialise(model: nn.Module, scheme: str = "default") -> None:
    """Re-initialise ``model`` in place. ``default`` = PyTorch's own reset_parameters of every layer."""
    if scheme not in INITS:
        raise ConfigError(f"unknown init scheme {scheme!r}; valid: {', '.join(INITS)}")
    for m in model.modules():
        if scheme == "default" or not isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
            continue
        if scheme == "xavier":
            nn.init.xavier_uniform_(m.weight)
        else:
            mode = "fan_in" if scheme == "kaiming_fan_in" else "fan_out"
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


SCHEDULES = ("cosine", "linear")
LR_INTERVALS = ("step", "epoch")


class CandidateModule(L.LightningModule):
    """One candidate: (space, arch, num_classes) -> network, NAS-Bench-201 training recipe by default.

    Recipe (NB201): SGD, nesterov, momentum 0.9, lr 0.1 with per-step cosine decay to 0 over the run,
    weight decay 5e-4, cross-entropy. The DARTS recipes also use: ``lr_min`` (cosine floor), ``schedule``
    ``linear`` (ImageNet), ``lr_interval`` ``epoch`` (the reference steps its scheduler once per epoch),
    ``drop_path`` (the final probability, ramped linearly from 0 over the epochs as the reference does, on
    networks with ``set_drop_path``), ``auxiliary_weight`` (the auxiliary head's loss weight, on networks
    built with ``auxiliary=True``) and ``label_smoothing``.
    """

    def __init__(
        self,
        space: str | SearchSpace,
        arch: Any,
        num_classes: int = 10,
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        lr_min: float = 0.0,
        init: str = "default",
        seed: int | None = None,
        build_kwargs: dict[str, Any] | None = None,
        schedule: str = "cosine",
        lr_interval: str = "step",
        drop_path: float = 0.0,
        auxiliary_weight: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.space = get_space(space) if isinstance(space, str) else space
        self.arch = self.space.coerce(arch)
        self.arch_str = self.space.format(self.arch)
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
        if init not in INITS:
            raise ConfigError(f"unknown init scheme {init!r}; valid: {', '.join(INITS)}")
        if schedule not in SCHEDULES:
            raise ConfigError(f"unknown lr schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
        if lr_interval not in LR_INTERVALS:
            raise ConfigError(f"lr_interval {lr_interval!r} is not one of: {', '.join(LR_INTERVALS)}")
        for name, v, hi in (("drop_path", drop_path, 1.0), ("auxiliary_weight", auxiliary_weight, None),
                            ("label_smoothing", label_smoothing, 1.0), ("lr", lr, None), ("lr_min", lr_min, None),
                            ("weight_decay", weight_decay, None), ("momentum", momentum, 1.0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (hi is not None and v >= hi):
                raise ConfigError(f"{name}={v!r} must be a number >= 0" + (f" and < {hi}" if hi else ""))
        self.save_hyperparameters(
            {"space": self.space.name, "arch": self.arch_str, "num_classes": num_classes, "lr": lr,
             "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay, "lr_min": lr_min,
             "init": init, "seed": seed, "build_kwargs": dict(build_kwargs or {}), "schedule": schedule,
             "lr_interval": lr_interval, "drop_path": drop_path, "auxiliary_weight": auxiliary_weight,
             "label_smoothing": label_smoothing}
        )
        self.build_kwargs = dict(build_kwargs or {})
        if seed is not None:
            torch.manual_seed(seed)
        self.net = self.space.build(self.arch, num_classes=num_classes, **self.build_kwargs)
        if init != "default":
            initialise(self.net, init)
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        # top-5 where it means something (more than 5 classes), on held-out data only: final training reports it
        top5 = num_classes > 5
        self.val_acc_top5 = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro") if top5 else None
        self.test_acc_top5 = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro") if top5 else None

    # --- model -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def reinit(self, seed: int) -> CandidateModule:
        """Re-draw the initial weights deterministically (same seed -> same weights)."""
        torch.manual_seed(seed)
        initialise(self.net, self.hparams["init"])
        return self

    def zero_cost(self, batch: tuple[torch.Tensor, torch.Tensor], proxies: list[str], **kwargs: Any) -> dict:
        """Training-free scores of this candidate at its current weights (a copy is scored, never this net)."""
        from hnas.proxies.runtime import zero_cost

        return zero_cost(self.net, batch, proxies, num_classes=self.hparams["num_classes"], **kwargs)

    # --- training ----------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        """Drop-path ramp: ``drop_path * epoch / epochs`` (DARTS's ``drop_path_prob * epoch / epochs``); under a
        step budget (``max_epochs`` unset) ``epochs`` is the number of epochs the budget spans."""
        set_drop_path = getattr(self.net, "set_drop_path", None)
        if callable(set_drop_path) and self.hparams["drop_path"] > 0:
            set_drop_path(self.hparams["drop_path"] * min(1.0, self.current_epoch / self._ramp_epochs()))

    def _ramp_epochs(self) -> int:
        """The epochs of this fit: ``max_epochs``, else ``max_steps`` worth of epochs of the train loader."""
        t = self.trainer
        if t.max_epochs is not None and t.max_epochs > 0:
            return int(t.max_epochs)
        per_epoch = t.num_training_batches / max(1, t.accumulate_grad_batches)
        if t.max_steps and t.max_steps > 0 and math.isfinite(per_epoch) and per_epoch > 0:
            return max(1, math.ceil(t.max_steps / per_epoch))
        return 1

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        ce = functools.partial(nn.functional.cross_entropy, label_smoothing=self.hparams["label_smoothing"]
                               if stage == "train" else 0.0)
        aux_w = self.hparams["auxiliary_weight"]
        with_aux = getattr(self.net, "forward_with_aux", None)
        if stage == "train" and aux_w > 0 and callable(with_aux):
            logits, aux = with_aux(x)
            loss = ce(logits, y) + (aux_w * ce(aux, y) if aux is not None else 0.0)
        else:
            logits = self(x)
            loss = ce(logits, y)
        metric = {"train": self.train_acc, "val": self.val_acc, "test": self.test_acc}[stage]
        metric(logits.detach(), y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "train",
                 sync_dist=stage != "train", batch_size=x.shape[0])
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        top5 = {"val": self.val_acc_top5, "test": self.test_acc_top5}.get(stage)
        if top5 is not None:
            top5(logits.detach(), y)
            self.log(f"{stage}/acc_top5", top5, on_step=False, on_epoch=True, batch_size=x.shape[0])
        return loss

    def training_step(self, batch, batch_idx):  # noqa: D102
        self.log("train/steps", float(self.global_step + 1), on_step=True, on_epoch=False, batch_size=1)
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):  # noqa: D102
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):  # noqa: D102
        self._step(batch, "test")

    def configure_optimizers(self):  # noqa: D102
        hp = self.hparams
        opt = torch.optim.SGD(self.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                              nesterov=hp["nesterov"] and hp["momentum"] > 0, weight_decay=hp["weight_decay"])
        per_epoch = hp["lr_interval"] == "epoch"
        total = max(1, int(self.trainer.max_epochs if per_epoch and self.trainer.max_epochs and
                           self.trainer.max_epochs > 0 else self.trainer.estimated_stepping_batches))
        ratio = hp["lr_min"] / hp["lr"] if hp["lr"] > 0 else 0.0
        linear = hp["schedule"] == "linear"

        def factor(step: int) -> float:
            t = min(step, total) / total
            shape = 1 - t if linear else 0.5 * (1 + math.cos(math.pi * t))
            return ratio + (1 - ratio) * shape

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": hp["lr_interval"]}}
