"""ZiCo (Li et al., ICLR 2023): inverse coefficient of variation of weight gradients across mini-batches.

Semantics (methods.md §2.12, official ZiCo code): split the scoring batch into ``n_batches`` chunks; per
chunk forward, loss, backward, keep the flattened *weight* gradient of every Conv/Linear layer (no optimizer
step). Per layer: σ_k = std over chunks (ddof 0), μ_k = mean |g|; keep k with σ_k ≠ 0; S_l = Σ μ_k/σ_k;
ZiCo = Σ log S_l over layers with S_l ≠ 0.

The layer set (``weight_layers``) is shared with SiGeo and the NTK proxies: Conv1d/2d/3d, transposed convs
and Linear — i.e. the layers whose weights multiply features. Norm layers (BN/LN/GN affine) are excluded as
in the references; attention layers built from nn.Linear (q/k/v/out projections) are included through their
Linear modules; nn.MultiheadAttention's fused in-projection is a bare Parameter and is not counted.
"""

from __future__ import annotations

import math

import torch

from hnas.proxies.context import ProxyContext, model_logits, weight_layers
from hnas.proxies.registry import register_proxy


def split_batches(ctx: ProxyContext, n_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``ctx.inputs``/``ctx.labels`` in ``n_batches`` contiguous chunks (sizes differ by at most one)."""
    if ctx.inputs is None or ctx.labels is None:
        raise ValueError("this proxy needs inputs and labels; the context has none")
    n = int(n_batches)
    if n < 2 or n > ctx.inputs.shape[0]:
        raise ValueError(
            f"n_batches={n_batches!r} must be an integer in [2, batch size {ctx.inputs.shape[0]}] "
            "(the standard deviation over one chunk is always 0)"
        )
    return list(zip(torch.tensor_split(ctx.inputs, n), torch.tensor_split(ctx.labels, n)))


def chunk_weight_grads(ctx: ProxyContext, n_batches: int) -> list[list[torch.Tensor]]:
    """Per chunk, the flattened loss gradient of every weight layer (float64), without touching ``.grad``.

    Shared between zico and sigeo (when sigeo takes no step) through ``ctx.shared``.
    """

    def compute() -> list[list[torch.Tensor]]:
        weights = [m.weight for _, m in weight_layers(ctx.model)]
        dtype = next(iter(ctx.model.parameters())).dtype if weights else torch.float32
        out: list[list[torch.Tensor]] = []
        for x, y in split_batches(ctx, n_batches):
            loss = ctx.loss_fn(model_logits(ctx.model(x.to(dtype))), y)
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            out.append(
                [
                    (torch.zeros_like(w) if g is None else g).detach().flatten().double()
                    for w, g in zip(weights, grads)
                ]
            )
        return out

    return ctx.shared(f"zico.chunk_weight_grads:{int(n_batches)}", compute)


def zico_layer_terms(grads: list[list[torch.Tensor]]) -> list[float | None]:
    """S_l = Σ_k μ_k/σ_k per layer over chunks (σ ddof 0, entries with σ=0 dropped); None where S_l = 0."""
    sums = []
    for layer in range(len(grads[0])):
        g = torch.stack([chunk[layer] for chunk in grads])  # (B, P_l)
        sd = g.std(dim=0, unbiased=False)
        mu = g.abs().mean(dim=0)
        keep = sd != 0
        sums.append((mu[keep] / sd[keep]).sum())
    values = torch.stack(sums).cpu().tolist() if sums else []  # one host sync for all layers
    return [s if s != 0 else None for s in values]


def zico_from_terms(terms: list[float | None]) -> float:
    """Σ_l log S_l over layers with S_l ≠ 0.

    When no layer qualifies (a network whose weight gradients do not vary, e.g. an input-independent one)
    the reference returns its empty sum 0.0, which would rank such a network above every network with a
    negative score; we return -inf instead (status ``inf``), the limit of log S as S -> 0.
    """
    kept = [s for s in terms if s is not None]
    if not kept:
        return float("-inf")
    return float(sum(math.log(s) for s in kept))


@register_proxy(
    "zico",
    needs_data=True,
    needs_labels=True,
    bn_mode="train",
    dtype=torch.float32,
    higher_is_better=True,
    version=1,
    mutates=False,
    options={"n_batches": 2},
)
def zico(ctx: ProxyContext) -> float:
    """ZiCo: Σ_l log Σ_k mean|g| / std(g) of weight gradients over ``n_batches`` chunks of the batch."""
    return zico_from_terms(zico_layer_terms(chunk_weight_grads(ctx, ctx.option("n_batches", 2))))
