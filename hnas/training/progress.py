"""What a run prints while it trains: Lightning's own messages once each and without its advertising, and one
compact line per epoch (plus a few per long epoch) when there is no terminal for Lightning's progress bar.

Why: under Hydra's logging, Lightning's loggers could print every message twice (its own handler plus the
root's), and a warm-up with the progress bar switched off was silent for minutes.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L

log = logging.getLogger("hnas.training")

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                     "lightning.fabric.utilities.rank_zero")


#: Lightning's per-Trainer hardware banner: a search makes two Trainers per query, the banner says nothing new
BANNERS = ("GPU available:", "TPU available:", "HPU available:", "IPU available:")


class DropTips(logging.Filter):
    """Lightning's advertising ("💡 Tip: ...") is not information about this run, and its hardware banner is
    shown once per process, not once per Trainer."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        if "Tip:" in message:
            return False
        if message.startswith(BANNERS):
            if message in self.seen:
                return False
            self.seen.add(message)
        return True


def quiet_lightning() -> None:
    """Each Lightning message once: when the root logger has handlers (Hydra's), Lightning's loggers use them
    only; their tips are dropped. Idempotent."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=Warning)
    root_has_handlers = bool(logging.getLogger().handlers)
    for name in LIGHTNING_LOGGERS:
        lg = logging.getLogger(name)
        if root_has_handlers:
            for h in list(lg.handlers):
                if isinstance(h, logging.StreamHandler):
                    lg.removeHandler(h)
            lg.propagate = True
        if not any(isinstance(f, DropTips) for f in lg.filters):
            lg.addFilter(DropTips())
        for h in lg.handlers:
            if not any(isinstance(f, DropTips) for f in h.filters):
                h.addFilter(DropTips())


def on_terminal() -> bool:
    """Lightning's progress bar only where a person watches (a TTY); logs and CI get the epoch line instead."""
    return sys.stderr.isatty()


def _of(trainer: L.Trainer) -> str:
    """``/N`` for an epoch budget; nothing for a step budget (max_epochs -1)."""
    return f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    return None if v is None else float(v)


class EpochLog(L.Callback):
    """``epoch 3/200  train loss 1.234 acc 55.1%  val acc 60.2% (top-5 95.1%)  lr 0.0976  41.2 s``; without a
    progress bar also ``every`` steps (default: a tenth of an epoch) ``epoch 1/1  step 40/196  loss ...``."""

    def __init__(self, every: int | None = None, label: str = "epoch") -> None:
        self._t0 = time.perf_counter()
        self.every = every
        self.label = label

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero or trainer.progress_bar_callback is not None:
            return
        total = trainer.num_training_batches
        if not isinstance(total, int) or total < 20:
            return
        if trainer.max_steps > 0:  # a step budget ends the epoch early: count to it
            total = min(total, batch_idx + 1 + trainer.max_steps - trainer.global_step)
        every = self.every or max(1, total // 10)
        done = batch_idx + 1
        if done % every or done == total:
            return
        per_step = (time.perf_counter() - self._t0) / done
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss_text = f"  loss {float(loss):.4f}" if loss is not None else ""
        log.info("%s %d%s  step %d/%d%s  %.2f s/step, epoch ends in %.0f s", self.label, trainer.current_epoch + 1,
                 _of(trainer), done, total, loss_text, per_step, per_step * (total - done))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"{self.label} {trainer.current_epoch + 1}{_of(trainer)}", f"steps {trainer.global_step}"]
        loss, acc = _metric(m, "train/loss_epoch"), _metric(m, "train/acc")
        if loss is not None:
            parts.append(f"train loss {loss:.4f}" + (f" acc {100 * acc:.2f}%" if acc is not None else ""))
        val, top5 = _metric(m, "val/acc"), _metric(m, "val/acc_top5")
        if val is not None:
            parts.append(f"val acc {100 * val:.2f}%" + (f" (top-5 {100 * top5:.2f}%)" if top5 is not None else ""))
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.4g}")
        parts.append(f"{time.perf_counter() - self._t0:.1f} s")
        log.info("  ".join(parts))
