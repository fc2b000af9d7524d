"""``hnas bench-proxies``: seconds per architecture of a proxy suite vs one plain forward+backward.

    hnas bench-proxies          # 20 random NB201 archs, C=16 N=5, batch 64, random data
    hnas bench-proxies --images ../shared/data/cifar10/train --n-archs 50

For every architecture (a fixed-seed sample of the NB201 space) the real-size network is built, one plain
forward+backward of the batch is timed, then ``score_network`` with the suite (default: grad_norm, snip,
grasp, fisher, synflow, jacob_cov). The medians and their ratio are printed, with each proxy's median share
(a shared pass is charged to the first proxy that needs it). Not a test: timings depend on the machine's load.
With ``--device cuda`` the networks and the batch are moved to the GPU and every interval waits for its kernels.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hnas.cli import exits_on_user_error
from hnas.data.errors import DataError
from hnas.errors import ConfigError
from hnas.proxies.runtime import score_network, synchronize
from hnas.proxies.settings import ScoringSettings

SIX = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def load_images(folder: Path, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (CIFAR-normalised) drawn with ``seed`` from an image folder with class sub-folders."""
    from PIL import Image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"--images {folder} has no class sub-folders (expected <folder>/<class>/*.jpg)")
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((folder / name).iterdir())]
    idx = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
    xs, ys = [], []
    for i in idx:
        f, c = files[int(i)]
        img = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
        xs.append((img - CIFAR_MEAN) / CIFAR_STD)
        ys.append(c)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float().contiguous()
    return x, torch.tensor(ys)


def fwd_bwd_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.train()
    synchronize(x.device)
    t0 = time.perf_counter()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    synchronize(x.device)
    dt = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return dt


@exits_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hnas bench-proxies", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-archs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--proxies", default=",".join(SIX), help="comma-separated proxy names")
    ap.add_argument(
        "--images", type=Path, default=None, help="image folder (class sub-folders); default random"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="where the networks are scored: cpu, cuda, cuda:1, auto")
    ap.add_argument(
        "--separate",
        action="store_true",
        help="also time each proxy in its own score_network call (no pass shared between proxies)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    from hnas.spaces import get_space

    space = get_space("nb201")
    archs = space.sample_many(args.n_archs, np.random.default_rng(args.seed))
    if args.images is not None:
        x, y = load_images(args.images, args.batch, args.seed)
    else:
        g = torch.Generator().manual_seed(args.seed)
        x, y = (
            torch.randn(args.batch, 3, 32, 32, generator=g),
            torch.randint(0, 10, (args.batch,), generator=g),
        )
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    try:  # the scoring commands' own check and resolution (auto: a GPU when there is one)
        device = ScoringSettings(device=args.device).torch_device or torch.device("cpu")
    except ConfigError as e:
        raise ConfigError(f"--device {args.device!r}: {e}") from None
    x, y = x.to(device), y.to(device)
    builds: list[float] = []

    def build(arch) -> nn.Module:
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        net = space.build(arch, C=args.C, N=args.N).to(device)
        synchronize(device)
        builds.append(time.perf_counter() - t0)
        return net

    # warm-up: first calls pay one-off initialisation (kernels, allocator) that no architecture should carry
    warm = build(archs[0])
    fwd_bwd_seconds(warm, x, y)
    score_network(warm, proxies, x, y, 10, seed=args.seed)

    suite, plain, separate, per_proxy = [], [], [], {p: [] for p in proxies}
    failed = 0
    for i, arch in enumerate(archs):
        model = build(arch)
        plain.append(fwd_bwd_seconds(model, x, y))
        synchronize(device)
        t0 = time.perf_counter()
        scores = score_network(model, proxies, x, y, 10, seed=args.seed)
        synchronize(device)
        suite.append(time.perf_counter() - t0)
        failed += sum(s.status in ("error", "oom") for s in scores.values())
        for p, s in scores.items():
            per_proxy[p].append(s.seconds)
        if args.separate:
            t0 = time.perf_counter()
            for p in proxies:
                score_network(model, [p], x, y, 10, seed=args.seed)
            separate.append(time.perf_counter() - t0)
        sys.stderr.write(f"\r{i + 1}/{len(archs)} archs")
    sys.stderr.write("\n")
    med_suite, med_plain = statistics.median(suite), statistics.median(plain)
    data = f"images {args.images}" if args.images else "random"
    print(
        f"NB201 C={args.C} N={args.N}, batch {args.batch} ({data} data), {len(archs)} archs "
        f"(seed {args.seed}), torch threads {torch.get_num_threads()}, device {device}"
    )
    print(f"suite: {', '.join(proxies)}")
    print(f"median suite seconds per arch     : {med_suite:.3f}")
    print(f"median one forward+backward (s)   : {med_plain:.3f}")
    print(f"median build (+ move to device) s : {statistics.median(builds[1:]):.3f}")
    print(f"ratio suite / forward+backward    : {med_suite / med_plain:.2f}")
    print(
        "median seconds charged per proxy  : "
        + ", ".join(f"{p} {statistics.median(v):.3f}" for p, v in per_proxy.items())
    )
    if separate:
        med_sep = statistics.median(separate)
        print(f"median seconds, one call per proxy: {med_sep:.3f} (ratio {med_sep / med_plain:.2f})")
    print(f"failed scores (error/oom)         : {failed}")
    return 0
