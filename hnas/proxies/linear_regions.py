"""Number of linear regions (TE-NAS, Chen et al., ICLR 2021): distinct activation patterns over inputs.

Each sample's pattern is the concatenation, over every activation module call, of the signs of the
activation's *input* (pre-activation > 0). For ReLU-family modules that is exactly TE-NAS's sign of the
ReLU output; for GELU/SiLU/... it is the same "which side of the kink" partition. The count is exact:
bits are packed to bytes per sample and distinct rows counted with ``torch.unique`` (TE-NAS estimates
Σ_i 1/#(samples sharing i's pattern) with fp16 matrix products, which equals the same count).

Simplification vs TE-NAS (methods.md §2.10): TE-NAS builds a separate thin network (C=1, N=1, no stem) and
feeds 3000 random 3×3 one-channel crops. Here the given network is used as is (works on any nn.Module):
by default on ``ctx.inputs``; with ``tenas_crops=True`` on ``n_crops`` random 3×3 crops of one randomly
chosen channel of random batch images, that channel repeated to the network's input channel count (the
network must accept 3×3 inputs). Train-mode BN, no gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from hnas.proxies.activations import activation_modules
from hnas.proxies.context import ProxyContext, model_logits
from hnas.proxies.registry import register_proxy


def activation_patterns(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n, B) bool matrix: pre-activation > 0 for every unit of every activation call."""
    acts = activation_modules(model)
    if not acts:
        raise ValueError("linear_regions needs activation modules; the network has none")
    parts: list[torch.Tensor] = []

    def on_act(_m: nn.Module, inp: tuple) -> None:
        parts.append((inp[0].detach() > 0).reshape(inp[0].shape[0], -1))

    handles = [m.register_forward_pre_hook(on_act) for _, m in acts]
    try:
        with torch.no_grad():
            model_logits(model(x))
    finally:
        for h in handles:
            h.remove()
    if not parts:
        raise ValueError("the forward pass reached no activation module")
    return torch.cat(parts, dim=1)


def count_distinct_rows(bits: torch.Tensor) -> int:
    """Number of distinct rows of a bool matrix (bytes-packed, exact)."""
    n, b = bits.shape
    pad = (-b) % 8
    if pad:
        bits = torch.cat([bits, bits.new_zeros((n, pad))], dim=1)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32, device=bits.device)
    packed = (bits.view(n, -1, 8).to(torch.int32) * weights).sum(dim=-1).to(torch.uint8)
    return int(torch.unique(packed, dim=0).shape[0])


def tenas_crops(inputs: torch.Tensor, n_crops: int, gen: torch.Generator) -> torch.Tensor:
    """``n_crops`` random 3×3 crops of one random channel of random images, channel repeated C times."""
    n, c, h, w = inputs.shape
    if h < 3 or w < 3:
        raise ValueError(f"tenas_crops needs images of at least 3x3, got {h}x{w}")
    g = gen.device  # the draws follow the generator (the same crops on every device), the indexing the inputs
    img, ch, top, left = (torch.randint(k, (n_crops,), generator=gen, device=g).to(inputs.device)
                          for k in (n, c, h - 2, w - 2))
    dy, dx = torch.meshgrid(torch.arange(3, device=inputs.device), torch.arange(3, device=inputs.device),
                            indexing="ij")
    crops = inputs[img[:, None, None], ch[:, None, None], top[:, None, None] + dy, left[:, None, None] + dx]
    return crops[:, None].expand(n_crops, c, 3, 3).contiguous()


@register_proxy(
    "linear_regions",
    needs_data=True,
    needs_labels=False,
    bn_mode="train",
    dtype=torch.float32,
    higher_is_better=True,
    version=1,
    mutates=False,
    options={"tenas_crops": False, "n_crops": 3000},
)
def linear_regions(ctx: ProxyContext) -> float:
    """TE-NAS linear regions: number of distinct activation sign patterns over the input samples."""
    if ctx.inputs is None:
        raise ValueError("linear_regions needs inputs; the context has none")
    dtype = next(iter(ctx.model.parameters()), torch.empty(0)).dtype
    x = ctx.inputs
    if ctx.option("tenas_crops", False):
        if x.dim() != 4:
            raise ValueError(f"tenas_crops needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
        n_crops = int(ctx.option("n_crops", 3000))
        if n_crops < 1:
            raise ValueError(f"n_crops must be >= 1, got {n_crops}")
        x = tenas_crops(x.cpu(), n_crops, torch.Generator().manual_seed(int(ctx.seed))).to(ctx.device)
        try:
            bits = activation_patterns(ctx.model, x.to(dtype))
        except RuntimeError as err:
            raise ValueError(f"tenas_crops: the network does not accept 3x3 inputs ({err})") from err
    else:
        bits = activation_patterns(ctx.model, x.to(dtype))
    return float(count_distinct_rows(bits))
