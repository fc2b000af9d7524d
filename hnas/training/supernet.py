"""Sub-one-shot scoring (SiGeo, methods.md §5): warm up an NB201 supernet once, score sub-networks with it.

* ``SupernetModule`` -- the LightningModule around ``NB201Supernet``: uniform path sampling (the path of step
  ``s`` is ``sample_path(seed, s)``, identical on every DDP rank), the NB201 recipe (SGD nesterov 0.9, lr 0.1,
  wd 5e-4, per-step cosine). Parameters off the sampled path get a zero-weighted term in the loss, so DDP
  (``ddp``/``ddp_spawn``) finds a gradient for every parameter without ``find_unused_parameters``; their
  gradients are then dropped (``None``) so that momentum and weight decay leave them alone, as a plain
  single-path step would.
* ``warm_up_supernet`` -- trains it on ``fraction`` of the training images (the data module's seeded
  ``train_subset``) and saves the weights to a file named after (space, fraction, seed, data fingerprint,
  steps, recipe hash); a later call with the same inputs loads that file and does not train.
* ``score_subnets`` -- proxy scores (SiGeo, ZiCo, ...) of sub-networks with inherited weights. Each
  sub-network is scored on a deep copy of its own view (``score_network`` copies the model), i.e. a scratch
  copy of only that sub-network's weights: SiGeo's optimizer steps during scoring never reach the supernet.
* ``score_candidates`` -- the per-candidate mode of the reference CV code: each candidate is built from its
  own initialisation and warmed up on its own (SGD lr 1, chunks of 128, ``epochs`` passes over B_w images).

λ's (methods.md §5.3/§5.7): SiGeo's λ2, λ3 default to (1, 0) without warm-up and (50, 1) with warm-up --
supernet warm-up counts as warm-up here. ZiCo is scored on the same 4 chunks as SiGeo (the SiGeo fork's
ZiCo), not the official 2.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from tqdm.auto import tqdm

from hnas.errors import HNASError
from hnas.files import atomic_path
from hnas.nn.nb201_net import nb201_channels
from hnas.nn.supernet import NB201Supernet, sample_path
from hnas.proxies.result import ProxyScore
from hnas.proxies.runtime import score_network

log = logging.getLogger(__name__)

#: SiGeo's (λ2, λ3) of the CV reference code without / with warm-up
SIGEO_LAMBDAS: dict[bool, tuple[float, float]] = {False: (1.0, 0.0), True: (50.0, 1.0)}
#: ZiCo as the SiGeo fork scores it: the same 4 chunks as SiGeo
ZICO_CHUNKS = 4
CHECKPOINT_VERSION = 1


class WarmupError(HNASError, ValueError):
    """A bad warm-up setting (fraction, steps, batch size); the message names the value and what is valid."""


@dataclass(frozen=True)
class WarmupConfig:
    """How the supernet is built and warmed up.

    ``fraction``: share of ALL training images of the dataset (e.g. 0.1 of CIFAR-10's 50,000 = 5,000, drawn
    by the data module's seeded ``train_subset`` from its train part); 0 = no warm-up (the supernet at its
    seeded initialisation). ``max_steps`` (when given) overrides ``epochs`` passes over the subset.
    """

    fraction: float = 0.1
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 64
    seed: int = 0
    C: int = 16
    N: int = 5
    bn_affine: bool = True
    bn_track_running_stats: bool = False
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        f = self.fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= float(f) <= 1.0:
            raise WarmupError(f"warmup.fraction must be a number in [0, 1] (share of the training images), got {f!r}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("C", 1), ("N", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise WarmupError(f"warmup.{name} must be an int >= {low}, got {v!r}")
        ms = self.max_steps
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int) or ms < 1):
            raise WarmupError(f"warmup.max_steps must be an int >= 1 or None (use epochs), got {ms!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> WarmupConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise WarmupError(f"unknown warmup option(s) {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)

    @property
    def channels(self) -> list[int]:
        return nb201_channels(self.C, self.N)

    def recipe_hash(self) -> str:
        """Hash of everything except fraction/seed/steps (those are spelled out in the file name)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("fraction", "seed", "epochs", "max_steps")}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def build_supernet(cfg: WarmupConfig, num_classes: int, in_channels: int = 3) -> NB201Supernet:
    """The supernet of ``cfg`` at its initialisation drawn from ``cfg.seed`` (caller's RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return NB201Supernet(cfg.channels, num_classes, cfg.bn_affine, cfg.bn_track_running_stats, in_channels)


class SupernetModule(L.LightningModule):
    """Uniform single-path training of an ``NB201Supernet`` with the NB201 recipe (see module doc)."""

    def __init__(self, cfg: WarmupConfig, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"cfg": asdict(cfg), "num_classes": num_classes, "in_channels": in_channels})
        self.supernet = build_supernet(cfg, num_classes, in_channels)
        self._off_path: list[nn.Parameter] = []

    def forward(self, x: torch.Tensor, arch: Sequence[str]) -> torch.Tensor:
        return self.supernet(x, arch)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        arch = sample_path(self.cfg.seed, int(self.global_step))
        on_path = self.supernet.path_parameters(arch)
        self._off_path = [p for p in self.supernet.parameters() if id(p) not in on_path]
        loss = nn.functional.cross_entropy(self.supernet(x, arch), y)
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True, batch_size=x.shape[0])
        if self._off_path:  # every parameter gets a (zero) gradient: DDP needs no unused-parameter search
            loss = loss + 0.0 * sum(p.sum() for p in self._off_path)
        return loss

    def on_after_backward(self) -> None:
        for p in self._off_path:
            p.grad = None  # SGD skips it: no weight decay / momentum for ops off the sampled path

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.cfg
        opt = torch.optim.SGD(self.parameters(), lr=c.lr, momentum=c.momentum,
                              nesterov=c.nesterov and c.momentum > 0, weight_decay=c.weight_decay)
        total = max(1, int(self.trainer.max_steps if self.trainer.max_steps > 0
                           else self.trainer.estimated_stepping_batches))

        def cosine(step: int) -> float:
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ---------------------------------------------------------------------------------------------- warm-up
def subset_size(datamodule: Any, fraction: float) -> int:
    """Number of warm-up images: ``fraction`` of ALL training images of the dataset (>= 1 when > 0)."""
    total = len(datamodule.data.train_y)
    n = int(math.floor(fraction * total + 0.5))
    return max(1, n) if fraction > 0 else 0


def warmup_datamodule(datamodule: Any, count: int, batch_size: int) -> Any:
    """A shallow copy of ``datamodule`` (sharing its loaded arrays) that trains on a seeded subset of
    ``count`` images of its train part, in batches of ``batch_size``."""
    train = len(datamodule.split_indices("train"))
    if count > train:
        raise WarmupError(f"warm-up needs {count} images but the train part of {datamodule.name} has {train} "
                          f"(valid_fraction={datamodule.valid_fraction}); lower warmup.fraction")
    return datamodule.with_train_subset(count, batch_size)


def data_fingerprint(dm: Any) -> str:
    """16 hex digits over the dataset name, the chosen warm-up images and labels, normalisation and
    augmentation: a different subset (seed, fraction, data files) gives a different checkpoint."""
    idx = dm.fit_indices
    d = dm.data
    h = hashlib.sha256()
    head = {"name": dm.name, "n": len(idx), "mean": list(dm.mean), "std": list(dm.std), "augment": dm.augment,
            "crop_padding": dm.crop_padding, "flip_p": dm.flip_p}
    h.update(json.dumps(head, sort_keys=True).encode())
    h.update(idx.to(torch.int64).numpy().tobytes())
    h.update(d.train_x[idx].contiguous().numpy().tobytes())
    h.update(d.train_y[idx].to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:16]


def checkpoint_path(cache_dir: str | os.PathLike, space: str, cfg: WarmupConfig, data_fp: str, steps: int) -> Path:
    """``<cache_dir>/<space>-f<fraction>-s<seed>-<data fp>-<steps>steps-<recipe hash>.pt``."""
    name = f"{space}-f{cfg.fraction:g}-s{cfg.seed}-{data_fp}-{steps}steps-{cfg.recipe_hash()}.pt"
    return Path(cache_dir).expanduser() / name


@dataclass
class WarmedSupernet:
    """A supernet and where it came from: ``path`` None when ``fraction`` is 0 (nothing trained)."""

    supernet: NB201Supernet
    cfg: WarmupConfig
    path: Path | None
    steps: int
    trained_now: bool

    @property
    def warmed(self) -> bool:
        return self.steps > 0

    @property
    def fingerprint(self) -> str:
        """Identity of these weights (for score caches): the checkpoint name, or the init seed/recipe."""
        return self.path.stem if self.path is not None else f"init-s{self.cfg.seed}-{self.cfg.recipe_hash()}"


def _trainer_args(trainer: dict[str, Any] | None, steps: int) -> dict[str, Any]:
    args: dict[str, Any] = {"accelerator": "auto", "devices": 1, "logger": False, "enable_checkpointing": False,
                            "enable_model_summary": False, "enable_progress_bar": False,
                            "limit_val_batches": 0, "num_sanity_val_steps": 0}
    for k, v in (trainer or {}).items():
        if k in ("max_steps", "max_epochs", "max_time", "min_steps", "min_epochs"):
            log.debug("warm-up ignores trainer.%s (its length is warmup.epochs / warmup.max_steps)", k)
            continue
        args[k] = v
    args.update(max_steps=steps, max_epochs=-1)
    return args


def warm_up_supernet(
    datamodule: Any,
    cfg: WarmupConfig,
    cache_dir: str | os.PathLike,
    trainer: dict[str, Any] | None = None,
    space: str = "nb201",
) -> WarmedSupernet:
    """The supernet of ``cfg`` warmed up on ``cfg.fraction`` of ``datamodule``'s training images -- loaded
    from ``cache_dir`` when that warm-up was done before, else trained (Lightning ``fit``) and saved.

    ``trainer``: extra ``lightning.Trainer`` arguments (accelerator, devices, strategy, precision); DDP works
    with ``ddp_spawn`` (the weights come back to this process) and ``ddp``.
    """
    num_classes = int(datamodule.num_classes)
    in_channels = int(datamodule.input_shape[0])
    if cfg.fraction == 0:
        return WarmedSupernet(build_supernet(cfg, num_classes, in_channels), cfg, None, 0, False)
    count = subset_size(datamodule, cfg.fraction)
    dm = warmup_datamodule(datamodule, count, cfg.batch_size)
    steps = cfg.max_steps or cfg.epochs * math.ceil(count / cfg.batch_size)
    path = checkpoint_path(cache_dir, space, cfg, data_fingerprint(dm), steps)
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = build_supernet(cfg, num_classes, in_channels)
        net.load_state_dict(state["state_dict"])
        log.info("supernet warm-up loaded from %s", path)
        return WarmedSupernet(net, cfg, path, steps, False)
    log.info("warming up the %s supernet on %d images (%g of %d) for %d steps -> %s", space, count,
             cfg.fraction, len(datamodule.data.train_y), steps, path)
    module = SupernetModule(cfg, num_classes, in_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        L.Trainer(**_trainer_args(trainer, steps)).fit(module, datamodule=dm)
    net = module.supernet.cpu()
    meta = {"version": CHECKPOINT_VERSION, "space": space, "cfg": asdict(cfg), "steps": steps, "images": count,
            "num_classes": num_classes}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": net.state_dict(), "meta": json.dumps(meta)}, tmp)
    return WarmedSupernet(net, cfg, path, steps, True)


# ---------------------------------------------------------------------------------------------- scoring
def proxy_options(proxies: Sequence[str], warmed: bool, options: dict[str, dict[str, Any]] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Per-proxy options for scoring: SiGeo's λ's for the warm-up state (unless given), ZiCo on 4 chunks
    (unless given); ``options`` win."""
    options = {k: dict(v) for k, v in (options or {}).items()}
    out: dict[str, dict[str, Any]] = {}
    for p in proxies:
        o = dict(options.get(p, {}))
        if p == "sigeo":
            lam2, lam3 = SIGEO_LAMBDAS[bool(warmed)]
            if o.get("lambda2") is None:
                o["lambda2"] = lam2
            if o.get("lambda3") is None:
                o["lambda3"] = lam3
        elif p == "zico":
            o.setdefault("n_batches", ZICO_CHUNKS)
        if o:
            out[p] = o
    return out


def score_subnets(
    supernet: NB201Supernet,
    archs: Sequence[Sequence[str]],
    batch: tuple[torch.Tensor, torch.Tensor],
    proxies: Sequence[str] = ("sigeo", "zico"),
    warmed: bool = True,
    options: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[dict[str, ProxyScore]]:
    """Proxy scores of each sub-network ``arch`` with the supernet's weights (``warmed``: pick the warm-up
    λ's). The supernet is never modified: each sub-network is scored on a copy of its own weights."""
    x, y = batch[0], batch[1]
    opts = proxy_options(proxies, warmed, options)
    out = []
    for arch in tqdm(archs, desc="supernet scoring", disable=not progress, leave=False):
        out.append(score_network(supernet.subnet(arch), list(proxies), x, y, supernet.num_classes, seed=seed,
                                 options=opts, device=device))
    return out


def warm_up_copy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], steps: int, batch_size: int = 128,
                 lr: float = 1.0) -> nn.Module:
    """A train-mode copy of ``model`` after ``steps`` SGD steps (lr 1, no momentum) on chunks of
    ``batch_size`` cycled in order over ``data`` -- the reference's per-candidate warm-up, the same loop the
    sigeo proxy runs for its ``warmup_steps`` (used here for proxies that have no warm-up of their own)."""
    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    xs, ys = torch.split(data[0], batch_size), torch.split(data[1], batch_size)
    first = next(net.parameters())
    for step in range(steps):
        x, y = xs[step % len(xs)], ys[step % len(ys)]
        opt.zero_grad(set_to_none=True)
        out = net(x.to(first.device, first.dtype))
        logits = out[-1] if isinstance(out, (tuple, list)) else out
        nn.functional.cross_entropy(logits, y.to(first.device)).backward()
        opt.step()
    return net


def score_candidates(
    build: Callable[[Any], nn.Module],
    archs: Sequence[Any],
    batch: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    proxies: Sequence[str] = ("sigeo", "zico"),
    warmup_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    warmup_epochs: int = 10,
    warmup_batch_size: int = 128,
    options: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[dict[str, ProxyScore]]:
    """Per-candidate mode: ``build(arch)`` under ``torch.manual_seed(seed)``, each candidate warmed up on its
    own on ``warmup_data`` (``warmup_epochs`` passes in chunks of ``warmup_batch_size``; none when None),
    then scored. SiGeo warms up through its own ``warmup_steps``; the other proxies score a warmed copy."""
    steps = 0
    if warmup_data is not None and len(warmup_data[0]) > 0:
        steps = int(warmup_epochs) * math.ceil(len(warmup_data[0]) / int(warmup_batch_size))
    opts = proxy_options(proxies, steps > 0, options)
    x, y = batch[0], batch[1]
    out = []
    for arch in tqdm(archs, desc="candidate scoring", disable=not progress, leave=False):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build(arch)
        if device is not None:
            net = net.to(device)
        scores: dict[str, ProxyScore] = {}
        others = [p for p in proxies if p != "sigeo"]
        if "sigeo" in proxies:
            o = dict(opts.get("sigeo", {}))
            if steps:
                o.update(warmup_steps=steps, warmup_data=warmup_data, warmup_batch_size=int(warmup_batch_size))
            scores.update(score_network(net, ["sigeo"], x, y, num_classes, seed=seed, options={"sigeo": o},
                                        device=device))
        if others:
            target = warm_up_copy(net, warmup_data, steps, int(warmup_batch_size)) if steps else net
            scores.update(score_network(target, others, x, y, num_classes, seed=seed,
                                        options={p: opts[p] for p in others if p in opts}, device=device))
        out.append({p: scores[p] for p in proxies})
    return out
