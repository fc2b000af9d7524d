"""``hnas bench-warmup``: seconds per warm-up step of an NB201 candidate (Lightning fit, the search's recipe).

    hnas bench-warmup                              # cell 6111, batch 64, 40 steps, synthetic 32x32 images
    hnas bench-warmup --images ../shared/data/cifar10 --batch 256

Prints the median seconds per step after the first 5 (warm-up of kernels and allocator) and the device and
data path used. Not a test: timings depend on the machine's load; compare two versions side by side.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from hnas.cli import exits_on_user_error


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    import lightning as L
    import torch

    from hnas.data import build_datamodule
    from hnas.spaces import get_space
    from hnas.training.candidate import CandidateModule

    ap = argparse.ArgumentParser(prog="hnas bench-warmup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=6111, help="NB201 index")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", default=None, help="image folder (root/train/<class>/...); default synthetic")
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.images:
        dm = build_datamodule("imagefolder", root=args.images, batch_size=args.batch)
    else:
        dm = build_datamodule("synthetic", num_train=4 * args.batch * args.steps, num_test=0, batch_size=args.batch)
    times: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_start(self, *a) -> None:
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, *a) -> None:
            if trainer.strategy.root_device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    L.seed_everything(0, verbose=False)
    module = CandidateModule(get_space("nb201"), args.arch, num_classes=dm.num_classes, seed=0)
    trainer = L.Trainer(max_steps=args.steps, accelerator=args.accelerator, devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[Clock()])
    trainer.fit(module, datamodule=dm)
    steady = times[5:] or times
    print(f"NB201 #{args.arch}, batch {args.batch}, {len(times)} steps on {trainer.strategy.root_device}, "  # noqa: T201
          f"torch threads {torch.get_num_threads()}, data {'images' if args.images else 'synthetic'}")
    print(f"median seconds per step (after 5): {statistics.median(steady):.4f}")  # noqa: T201
    return 0
