"""Score one network with a list of proxies: shared passes, BN modes, statuses, timing, OOM back-off.

``score_network`` groups the proxies by (BN mode, dtype). Each group gets ONE deep copy of the network
(prepared for that mode/dtype) and one ProxyContext, so non-mutating proxies share the memoised passes of
``ctx.shared`` / ``ctx.main_pass``: e.g. grad_norm + snip + fisher + plain + grasp + jacob_cov + naswot cost
one forward, one input-Jacobian backward, one (create_graph) loss backward and one Hessian-vector backward.
Proxies registered with ``mutates=True`` get a private copy each. The proxies' main-pass items are announced
to the context up front (``ctx.planned``), so the first proxy that asks computes all of them together.

Timing: ``ProxyScore.seconds`` is the wall time of the proxy's own call; a shared pass is charged to the first
proxy that triggered it (the later ones only pay their reduction), and the copy of the network is not charged.

Determinism: the CPU generator (and, on a CUDA device, that device's generator; hnas.proxies.reproducible) is
re-seeded with ``seed`` before each group's copy and before each proxy call (inside a fork of exactly those
generators, so the caller's RNG state is untouched; float32 stays IEEE float32: no TF32 while scoring):
a proxy's value does not depend on
which other proxies ran before it.

BN modes: ``train`` (batch statistics; the default of most proxies and of the references), ``eval`` (running
statistics -- note that a BatchNorm built with ``track_running_stats=False`` still uses batch statistics in
eval mode, and that at initialisation running statistics are mean 0 / var 1, i.e. BN is an affine identity),
``off`` (every BatchNorm1d/2d/3d replaced by ``nn.Identity``). The mode applies to the whole copy
(``train()``/``eval()``), so dropout follows it. LayerNorm/GroupNorm are untouched by every mode.

Statuses: ``ok`` / ``nan`` / ``inf`` from the value (``ProxyScore.from_value``), ``error`` with the message
when the proxy raises (logged; the other proxies go on), ``oom`` when it ran out of memory and could not be
split further. OOM back-off: proxies registered ``splittable=True`` (grad_norm, snip, grasp, fisher, plain,
jacob_cov, epe_nas) are retried on the batch cut into 2, 4, 8, ... chunks with size-weighted losses (see
hnas.proxies.context); the split level then stays for the rest of the group. Others (naswot, synflow, the
NTK/zen/... family unless their module says otherwise) get status ``oom``.
"""

from __future__ import annotations

import copy as copy_module
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from hnas.proxies.context import PASS_ITEMS, ProxyContext
from hnas.proxies.registry import BN_MODES, Proxy, ProxyError, get_proxy
from hnas.proxies.reproducible import ieee_float32, reseed, seeded
from hnas.proxies.result import ProxyScore

logger = logging.getLogger(__name__)

BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm,)


def is_oom(exc: BaseException) -> bool:
    """True for CUDA/host out-of-memory errors (typed or recognised by torch's message)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def remove_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm module of ``model`` by ``nn.Identity`` in place (returns the model)."""
    if isinstance(model, BATCHNORM_TYPES):
        return nn.Identity()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BATCHNORM_TYPES):
                setattr(parent, name, nn.Identity())
    return model


def prepare_network(
    model: nn.Module, bn_mode: str, dtype: torch.dtype, device: torch.device | str | None = None,
    copy: bool = True,
) -> nn.Module:
    """``model`` (a deep copy unless ``copy`` is False) in ``bn_mode``, cast to ``dtype`` (floating tensors
    only), on ``device``, with every parameter requiring grad (proxies differentiate w.r.t. weights even if the
    caller froze them)."""
    if bn_mode not in BN_MODES:
        raise ProxyError(f"bn_mode {bn_mode!r} is not one of {BN_MODES}")
    net = copy_module.deepcopy(model) if copy else model
    if bn_mode == "off":
        net = remove_batchnorm(net)
    net.to(device=device, dtype=dtype)
    net.train(bn_mode != "eval")
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def resolve_proxies(
    proxies: Sequence[str | Proxy], options: dict[str, dict[str, Any]] | None = None
) -> list[Proxy]:
    """Proxy objects for names (with ``options[name]`` applied); duplicates and stray options are errors."""
    options = dict(options or {})
    out: list[Proxy] = []
    for p in proxies:
        if isinstance(p, str):
            proxy = get_proxy(p, **options.get(p, {}))
        elif isinstance(p, Proxy):
            proxy = p.with_options(**options[p.name]) if p.name in options else p
        else:
            raise ProxyError(f"a proxy must be a name or a Proxy, got {type(p).__name__}: {p!r}")
        out.append(proxy)
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ProxyError(f"proxy(ies) {dupes} listed more than once")
    stray = sorted(set(options) - set(names))
    if stray:
        raise ProxyError(f"options given for proxies {stray} that are not scored; scored: {names}")
    return out


def infer_num_classes(model: nn.Module) -> int:
    """``out_features`` of the network's last ``nn.Linear`` (the classifier in every space here)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            "cannot infer num_classes: the network has no nn.Linear; pass num_classes explicitly"
        )
    return int(linears[-1].out_features)


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"a proxy must return a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().cpu().item()
    if isinstance(value, complex):
        raise TypeError(f"a proxy must return a real number, got {value!r}")
    return float(value)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a wall-clock interval covers them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_proxy(proxy: Proxy, ctx: ProxyContext, seed: int, max_splits: int) -> ProxyScore:
    ctx.options = dict(proxy.options)
    n = 0 if ctx.inputs is None else int(ctx.inputs.shape[0])
    t0 = time.perf_counter()
    while True:
        try:
            reseed(seed, ctx.device)
            value = _to_float(proxy.fn(ctx))
            synchronize(ctx.device)
            return ProxyScore.from_value(value, seconds=time.perf_counter() - t0)
        except Exception as e:  # one proxy's failure must not stop the others
            seconds = time.perf_counter() - t0
            if is_oom(e):
                ctx.clear()
                if ctx.device.type == "cuda":
                    torch.cuda.empty_cache()
                if proxy.splittable and ctx.splits * 2 <= min(n, max_splits):
                    ctx.splits *= 2
                    logger.warning(
                        "proxy %s ran out of memory; retrying on the batch in %d chunks",
                        proxy.name,
                        ctx.splits,
                    )
                    continue
                logger.warning("proxy %s ran out of memory (%d chunk(s)): %s", proxy.name, ctx.splits, e)
                return ProxyScore(None, "oom", seconds, message=str(e)[:1000])
            logger.warning("proxy %s failed: %s: %s", proxy.name, type(e).__name__, e)
            logger.debug("traceback of proxy %s", proxy.name, exc_info=True)
            return ProxyScore(None, "error", seconds, message=f"{type(e).__name__}: {e}"[:1000])


def score_network(
    model: nn.Module,
    proxies: Sequence[str | Proxy],
    inputs: torch.Tensor,
    labels: torch.Tensor | None,
    num_classes: int,
    seed: int = 0,
    bn_mode: str | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
    max_splits: int = 64,
    copy: bool = True,
) -> dict[str, ProxyScore]:
    """Score ``model`` with every proxy of ``proxies`` on one batch; ``{proxy name: ProxyScore}`` in order.

    ``bn_mode`` / ``dtype`` None use each proxy's registered default; a value overrides it for all.
    ``options``: ``{proxy name: {option: value}}``. ``model`` itself is never modified (proxies run on copies),
    unless ``copy=False``: a caller that built the network for this call alone gives it away, and the last
    group of proxies then runs on it without a deep copy.
    """
    resolved = resolve_proxies(proxies, options)
    if bn_mode is not None and bn_mode not in BN_MODES:
        raise ProxyError(f"bn_mode {bn_mode!r} is not one of {BN_MODES} (or None for each proxy's default)")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ProxyError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    if inputs is None:
        raise ValueError("score_network needs an input batch (data-free proxies still take its sample shape)")
    if device is None:
        device = next((p.device for p in model.parameters()), inputs.device)
    device = torch.device(device)
    inputs = inputs.to(device)
    labels = None if labels is None else labels.to(device)
    if labels is not None and labels.shape[0] != inputs.shape[0]:
        raise ValueError(f"{inputs.shape[0]} inputs but {labels.shape[0]} labels")

    groups: dict[tuple[Any, ...], list[Proxy]] = {}
    for p in resolved:
        key: tuple[Any, ...] = (bn_mode or p.bn_mode, dtype or p.dtype)
        groups.setdefault(key + ((p.name,) if p.mutates else ()), []).append(p)

    results: dict[str, ProxyScore] = {}
    last = len(groups) - 1
    with seeded(seed, device), ieee_float32(device):
        for gi, (key, group) in enumerate(groups.items()):
            g_bn, g_dtype = key[0], key[1]
            todo = []
            for p in group:
                if p.needs_labels and labels is None:
                    results[p.name] = ProxyScore(
                        None, "error", message=f"proxy {p.name!r} needs labels; none given"
                    )
                else:
                    todo.append(p)
            if not todo:
                continue
            reseed(seed, device)
            try:  # the caller's network is only used in place when it gave it away (copy=False), by the last group
                net = prepare_network(model, g_bn, g_dtype, device, copy=copy or gi < last)
            except Exception as e:  # e.g. a module deepcopy cannot handle
                status = "oom" if is_oom(e) else "error"
                for p in todo:
                    results[p.name] = ProxyScore(
                        None, status, message=f"copying the network: {type(e).__name__}: {e}"
                    )
                continue
            planned = frozenset(i for p in todo for i in p.passes if i in PASS_ITEMS)
            ctx = ProxyContext(
                net,
                inputs,
                labels,
                num_classes,
                seed=seed,
                loss_fn=loss_fn,
                bn_mode=g_bn,
                dtype=g_dtype,
                planned=planned,
            )
            for p in todo:
                results[p.name] = _run_proxy(p, ctx, seed, max_splits)
                logger.debug("proxy %s: %s (%.3f s)", p.name, results[p.name].status, results[p.name].seconds)
            del ctx, net
    return {p.name: results[p.name] for p in resolved}


def zero_cost(
    model: nn.Module,
    batch: Any,
    proxies: Sequence[str | Proxy],
    num_classes: int | None = None,
    **kwargs: Any,
) -> dict[str, ProxyScore]:
    """``score_network`` for a training batch: ``(x, y)``, ``(x, y, fingerprint)``, a ScoringBatch, or ``x``.

    ``num_classes`` defaults to the last ``nn.Linear``'s width. Called by ``CandidateModule.zero_cost``.
    """
    if isinstance(batch, torch.Tensor):
        x, y = batch, None
    elif isinstance(batch, dict):
        x, y = batch["x"], batch.get("y")
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        x, y = batch[0], batch[1]
    else:
        raise ValueError(
            f"batch must be a tensor, (x, y[, fingerprint]) or {{'x', 'y'}}, got {type(batch).__name__}"
        )
    if num_classes is None:
        num_classes = infer_num_classes(model)
    return score_network(model, proxies, x, y, num_classes, **kwargs)


def score_values(scores: dict[str, ProxyScore]) -> dict[str, float]:
    """``{name: value}`` with NaN for every score that is not ``ok`` (for tables and plots, not the store)."""
    return {k: (s.value if s.ok else math.nan) for k, s in scores.items()}
