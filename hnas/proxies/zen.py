"""Zen-score (Lin et al., ICCV 2021): feature-map sensitivity to input perturbation (methods.md §2.13).

Per repeat: re-initialise the network in place (Conv/Linear weights ~ N(0,1), biases 0; BatchNorm/GroupNorm
weight 1, bias 0), draw x, ε ~ N(0,1) with the batch shape, x' = x + γ·ε (``mixup_gamma``, 0.01),
take the feature map before global average pooling for both, Δ = mean_n Σ |f(x)_n - f(x')_n| and
Zen = log Δ + Σ_BN log sqrt(mean_c var_c). The score is the mean over ``repeat`` re-inits.

Feature map: ``model.forward_pre_gap(x)`` when the network defines it (NB201 nets do); otherwise the input of
the last global pooling / flatten module (AdaptiveAvg/MaxPool, Flatten) before the final Linear, captured by
a pre-hook during ``model(x)``; failing that, the input of the final Linear (for an MLP: its last hidden
features).

BN variance (``bn_var``): "running" (default, the reference) reads ``running_var`` after the two forwards
(momentum 0.1 from the initial 1, so it is not the batch variance of the paper's formula; running stats are
not reset between repeats, as in the reference); "batch" uses the per-channel biased variance of each BN's
input during the f(x) forward. A BN without running statistics uses the batch variance in either mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hnas.proxies.context import WEIGHT_LAYER_TYPES, ProxyContext
from hnas.proxies.rbflex import final_layer
from hnas.proxies.registry import register_proxy

BN_VARS = ("running", "batch")
_POOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Flatten,
)


def gaussian_reinit(model: nn.Module, gen: torch.Generator) -> None:
    """Zen-NAS init: Conv/Linear weights N(0,1) and biases 0; BN/GN weight 1, bias 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, WEIGHT_LAYER_TYPES):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, dtype=m.weight.dtype, device=gen.device))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                if m.bias is not None:
                    m.bias.zero_()


def pre_gap_module(model: nn.Module) -> nn.Module:
    """The module whose input is the pre-GAP feature map (see module doc)."""
    final_name, final = final_layer(model)
    before: list[nn.Module] = []
    for name, m in model.named_modules():
        if name == final_name:
            break
        if isinstance(m, _POOL_TYPES):
            before.append(m)
    return before[-1] if before else final


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if callable(getattr(model, "forward_pre_gap", None)):
        return model.forward_pre_gap(x)
    grabbed: list[torch.Tensor] = []
    handle = pre_gap_module(model).register_forward_pre_hook(lambda _m, inp: grabbed.append(inp[0]))
    try:
        model(x)
    finally:
        handle.remove()
    if not grabbed:
        raise ValueError("the forward pass never reached the pre-GAP module; define model.forward_pre_gap")
    return grabbed[-1]


def zen_once(
    model: nn.Module, shape: torch.Size, gen: torch.Generator, bn_var: str, gamma: float = 1e-2
) -> float:
    """One Zen-score draw: re-init, perturb, compare pre-GAP features, add the BN scaling terms."""
    gaussian_reinit(model, gen)
    dtype = next(iter(model.parameters()), torch.empty(0)).dtype
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.randn(shape, generator=gen, dtype=dtype, device=gen.device).to(device)
    eps = torch.randn(shape, generator=gen, dtype=dtype, device=gen.device).to(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    batch_var: dict[int, torch.Tensor] = {}

    def record(m: nn.Module, inp: tuple) -> None:
        if id(m) not in batch_var:  # first call of the f(x) forward
            dims = [d for d in range(inp[0].dim()) if d != 1]
            batch_var[id(m)] = inp[0].detach().var(dim=dims, unbiased=False)

    handles = [m.register_forward_pre_hook(record) for m in bns]
    try:
        with torch.no_grad():
            f_x = _features(model, x)
            for h in handles:
                h.remove()
            handles = []
            f_mix = _features(model, x + gamma * eps)
    finally:
        for h in handles:
            h.remove()
    delta = float((f_x - f_mix).abs().flatten(1).sum(dim=1).mean())
    score = math.log(delta) if delta > 0 else float("-inf")
    means = []
    for m in bns:
        use_running = bn_var == "running" and m.running_var is not None
        var = m.running_var if use_running else batch_var.get(id(m))
        if var is None:  # this BN was not used in the forward
            continue
        means.append(var.double().mean())
    for v in (torch.stack(means).cpu().tolist() if means else []):  # one host sync for every BN layer
        score += math.log(math.sqrt(v))
    return score


@register_proxy(
    "zen",
    needs_data=True,
    needs_labels=False,
    bn_mode="train",
    dtype=torch.float32,
    higher_is_better=True,
    version=1,
    mutates=True,
    options={"repeat": 1, "bn_var": "running", "mixup_gamma": 1e-2},
)
def zen(ctx: ProxyContext) -> float:
    """Zen-score: log of the pre-GAP feature change under a 0.01 Gaussian input perturbation + BN terms."""
    if ctx.inputs is None:
        raise ValueError("zen needs the input shape; the context has no inputs")
    bn_var = ctx.option("bn_var", "running")
    if bn_var not in BN_VARS:
        raise ValueError(f"zen option bn_var={bn_var!r} is not one of {BN_VARS}")
    repeat = int(ctx.option("repeat", 1))
    if repeat < 1:
        raise ValueError(f"zen option repeat must be >= 1, got {repeat}")
    gen = torch.Generator().manual_seed(int(ctx.seed))
    gamma = float(ctx.option("mixup_gamma", 1e-2))
    scores = [zen_once(ctx.model, ctx.inputs.shape, gen, bn_var, gamma) for _ in range(repeat)]
    return float(sum(scores) / repeat)
