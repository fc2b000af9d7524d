"""SynFlow (methods.md §2.5): Σ |W ⊙ ∂R/∂W| with R = Σ f(1) on the all-positive network.

Every entry of the state (parameters AND buffers, e.g. BN running statistics) is replaced by its absolute
value, the network runs in float64 (the registry's dtype; the runtime casts the copy) on one all-ones input
of the batch's sample shape, R = Σ outputs is back-propagated, and |W ⊙ ∂R/∂W| is summed over the Conv/Linear
weights. Instead of flipping signs in place and back (the reference), the absolute values are passed through
``torch.func.functional_call`` -- the network itself is never modified, so synflow needs no private copy and
``synflow`` / ``synflow_log`` share one pass.

* ``synflow``: BN replaced by identity (reference ``bn=False``); ``synflow_bn``: BN kept (train mode).
* ``synflow_log``: log of ``synflow``. The float64 value can still overflow to +inf on deep networks; the
  status then says ``inf`` (NASLib instead stores -1e8). A score of 0 gives log = -inf: status ``inf``.
"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call

from hnas.proxies.context import ProxyContext, model_logits
from hnas.proxies.registry import register_proxy


def synflow_layer_sums(ctx: ProxyContext) -> torch.Tensor:
    """Per-layer Σ |W ⊙ ∂R/∂W| (float64 vector), memoised per context."""

    def compute() -> torch.Tensor:
        model = ctx.model
        layer_names = [f"{n}.weight" if n else "weight" for n, _ in ctx.weight_layers()]
        if not layer_names:
            raise ValueError("synflow needs at least one Conv/Linear layer; the network has none")
        params = {n: p.detach().abs().requires_grad_(True) for n, p in model.named_parameters()}
        buffers = {n: b.detach().abs() for n, b in model.named_buffers()}
        shape = tuple(ctx.require_inputs().shape[1:])
        x = torch.ones((1, *shape), dtype=ctx.dtype, device=ctx.device)
        out = model_logits(functional_call(model, {**params, **buffers}, (x,)))
        targets = [params[n] for n in layer_names]
        grads = (
            torch.autograd.grad(out.sum(), targets, allow_unused=True)
            if out.requires_grad
            else [None] * len(targets)
        )
        return torch.stack(
            [
                (w.detach().double() * g.double()).abs().sum()
                if g is not None
                else torch.zeros((), dtype=torch.float64, device=w.device)
                for w, g in zip(targets, grads)
            ]
        ).cpu()

    return ctx.shared("synflow.layer_sums", compute)


@register_proxy("synflow", needs_data=False, needs_labels=False, bn_mode="off", dtype=torch.float64)
def synflow(ctx: ProxyContext) -> float:
    """Σ |W ⊙ ∂R/∂W| on |state|, all-ones input, float64, BN off (zero-cost-nas 'synflow')."""
    return float(synflow_layer_sums(ctx).sum())


@register_proxy("synflow_bn", needs_data=False, needs_labels=False, bn_mode="train", dtype=torch.float64)
def synflow_bn(ctx: ProxyContext) -> float:
    """synflow with BatchNorm kept (train mode, batch statistics of the single all-ones input)."""
    return float(synflow_layer_sums(ctx).sum())


@register_proxy("synflow_log", needs_data=False, needs_labels=False, bn_mode="off", dtype=torch.float64)
def synflow_log(ctx: ProxyContext) -> float:
    """log(synflow): the same ranking on a usable scale (0 -> -inf and overflow -> +inf stay statuses)."""
    s = float(synflow_layer_sums(ctx).sum())
    if s == 0.0:
        return -math.inf
    return math.log(s)
