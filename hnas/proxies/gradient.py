"""Pruning-at-initialisation proxies from the loss gradient: grad_norm, snip, grasp, fisher, plain.

methods.md §2.1–2.4 and §2.15. All five read ONE shared forward/backward of the scoring batch
(``ctx.main_pass``): the weight gradients g = ∇_W L of the mean cross-entropy, the Hessian-vector product
H g from ``create_graph`` on that same backward (grasp), and the per-channel activation-gradient products of
every layer output (fisher). Layers: Conv/Linear weights (see hnas.proxies.context). All are splittable: after
an OOM the runtime recomputes the pass on batch chunks with size-weighted losses.
"""

from __future__ import annotations

import torch

from hnas.proxies.context import ProxyContext, compute_pass
from hnas.proxies.registry import register_proxy


def _weights(ctx: ProxyContext) -> list[torch.Tensor]:
    return [m.weight.detach() for _, m in ctx.weight_layers()]


@register_proxy("grad_norm", passes=("grads",), splittable=True)
def grad_norm(ctx: ProxyContext) -> float:
    """Σ_l ||∇_{W_l} L||_F: the sum of per-layer gradient norms (not the global norm), as the reference."""
    grads = ctx.main_pass("grads")["grads"]
    return float(sum(g.double().norm() for g in grads))


@register_proxy("snip", passes=("grads",), splittable=True)
def snip(ctx: ProxyContext) -> float:
    """Σ |W ⊙ ∇_W L|: the connection sensitivity |∂L/∂c| of a unit mask c on every weight."""
    grads = ctx.main_pass("grads")["grads"]
    return float(sum((w.double() * g.double()).abs().sum() for w, g in zip(_weights(ctx), grads)))


@register_proxy("plain", passes=("grads",), splittable=True)
def plain(ctx: ProxyContext) -> float:
    """Σ W ⊙ ∇_W L (signed), NAS-Bench-Suite-Zero's 'plain' baseline."""
    grads = ctx.main_pass("grads")["grads"]
    return float(sum((w.double() * g.double()).sum() for w, g in zip(_weights(ctx), grads)))


@register_proxy("grasp", passes=("grads", "hvp"), splittable=True, options={"temperature": 1.0})
def grasp(ctx: ProxyContext) -> float:
    """Σ −W ⊙ (H g) with g = ∇_W L: GraSP with zero-cost-nas's sign (higher = better) and T = 1.

    The reference takes g from one backward and H g from a second forward + ``create_graph`` backward; here
    both come from one forward (``create_graph`` on the first backward) -- the same numbers, one forward and
    one backward fewer. Option ``temperature`` divides the logits (original GraSP: 200); a value other than 1
    computes its own pass instead of sharing.
    """
    t = float(ctx.option("temperature", 1.0))
    if t <= 0:
        raise ValueError(f"grasp temperature must be > 0, got {t}")
    hvp = (
        ctx.main_pass("hvp")["hvp"] if t == 1.0 else compute_pass(ctx, {"grads", "hvp"}, temperature=t)["hvp"]
    )
    return float(sum((-w.double() * h.double()).sum() for w, h in zip(_weights(ctx), hvp)))


@register_proxy("fisher", passes=("fisher",), splittable=True, options={"weighting": "numel"})
def fisher(ctx: ProxyContext) -> float:
    """Σ_l Σ_k |Δ_{l,k}| · numel(W_l[k]), Δ_{l,k} = ½ mean_n (Σ_spatial a ⊙ ∂L/∂a)² of layer l's output a.

    The numel weighting reproduces the reference, which broadcasts each channel value over that output
    channel's weight slice before summing (methods.md §2.4). Option ``weighting="channel"`` sums the plain
    per-channel values instead. Activations are taken at the raw Conv/Linear output (pre-BN), as the
    reference's
    inserted identity; layers with an attribute ``dont_ch_prune`` are skipped.
    """
    mode = ctx.option("weighting", "numel")
    if mode not in ("numel", "channel"):
        raise ValueError(f"fisher weighting {mode!r} is not one of ('numel', 'channel')")
    per_layer = ctx.main_pass("fisher")["fisher"]
    total = torch.zeros((), dtype=torch.float64, device=ctx.device)
    for (_, m), sq in zip(ctx.weight_layers(), per_layer):
        if sq is None:
            continue
        delta = 0.5 * sq.double().abs()
        scale = m.weight[0].numel() if mode == "numel" else 1
        total = total + delta.sum() * scale  # accumulated on the device: one host sync, below
    return float(total)
