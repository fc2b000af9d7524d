"""What a run prints while it trains: Lightning's own messages once each and without its advertising, and one
compact line per warm-up epoch when there is no terminal for Lightning's progress bar.

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


class EpochLine(L.Callback):
    """One log line per training epoch: epoch, steps, train loss, seconds."""

    def __init__(self, label: str = "warm-up") -> None:
        self.label = label
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        m: dict[str, Any] = trainer.callback_metrics
        loss = m.get("train/loss_epoch", m.get("train/loss"))
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        log.info("%s epoch %d%s  steps %d  train loss %s  %.1f s", self.label, trainer.current_epoch + 1, epochs,
                 trainer.global_step, "–" if loss is None else f"{float(loss):.4f}", time.perf_counter() - self._t0)
