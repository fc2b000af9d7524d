"""Baseline proxies (methods.md §2.14–2.15): params, flops, l2_norm.

* ``params``: number of parameters in millions (every parameter of the network, BN affine included, as
  NASLib's model statistics). Under ``bn_mode="off"`` the BN layers are gone, and so are their parameters.
* ``flops``: MFLOPs of one forward of a batch-1 input of the batch's sample shape, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (no extra dependency). Torch counts 2 FLOPs per
  multiply-add of convolutions and matrix products and nothing for BN/activations/pooling; tensorwatch
  (NASLib) counts differently, which changes values, not rankings on conv nets.
* ``l2_norm``: Σ_l ||W_l||_F over Conv/Linear weights (data-free).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from hnas.proxies.context import ProxyContext
from hnas.proxies.registry import register_proxy


@register_proxy("params", needs_data=False, needs_labels=False)
def params(ctx: ProxyContext) -> float:
    """Parameter count in millions."""
    return sum(p.numel() for p in ctx.model.parameters()) / 1e6


@register_proxy("flops", needs_data=False, needs_labels=False)
def flops(ctx: ProxyContext) -> float:
    """MFLOPs of a batch-1 forward (torch's flop counter)."""
    x = ctx.require_inputs()[:1]
    was_training = ctx.model.training
    ctx.model.eval()  # the count does not depend on the mode; eval lets BatchNorm1d take one sample
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            ctx.forward(x)
    finally:
        ctx.model.train(was_training)
    return counter.get_total_flops() / 1e6


@register_proxy("l2_norm", needs_data=False, needs_labels=False)
def l2_norm(ctx: ProxyContext) -> float:
    """Σ_l ||W_l||_F of the Conv/Linear weights."""
    return float(sum(m.weight.detach().double().norm() for _, m in ctx.weight_layers()))
