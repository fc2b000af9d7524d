"""One log line per epoch of a fit: what a long training prints when no progress bar is shown.

Why: a log file (a SLURM job, ``nohup``) gets no use from Lightning's progress bar -- it writes carriage
returns that become one enormous line -- yet a 200-epoch fit must say where it is. Rank 0 only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L

log = logging.getLogger("hnas.train")


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    return None if v is None else float(v)


class EpochLog(L.Callback):
    """``epoch 3/200  train loss 1.234 acc 55.1%  val acc 60.2% (top-5 95.1%)  lr 0.0976  41.2 s``; without a
    progress bar also ``every`` steps (default: a tenth of an epoch) ``epoch 1/1  step 40/196  loss ...``."""

    def __init__(self, every: int | None = None) -> None:
        self._t0 = time.perf_counter()
        self.every = every

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero or trainer.progress_bar_callback is not None:
            return
        total = trainer.num_training_batches
        if not isinstance(total, int) or total < 20:
            return
        every = self.every or max(1, total // 10)
        done = batch_idx + 1
        if done % every or done == total:
            return
        per_step = (time.perf_counter() - self._t0) / done
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss_text = f"  loss {float(loss):.4f}" if loss is not None else ""
        log.info("epoch %d/%d  step %d/%d%s  %.2f s/step, epoch ends in %.0f s", trainer.current_epoch + 1,
                 trainer.max_epochs, done, total, loss_text, per_step, per_step * (total - done))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
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
