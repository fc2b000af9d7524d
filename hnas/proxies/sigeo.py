"""SiGeo (Zheng et al., arXiv 2311.13169): ZiCo term + Fisher–Rao term − training loss (methods.md §5.3).

Follows the CV reference (NASLib-SiGeo ``SiGeo.py``): an SGD optimizer (lr 1, no momentum) over *all*
parameters; the batch is split into ``n_batches`` (4) chunks; per chunk: zero grads, loss, backward, keep the
weight gradients of every Conv/Linear layer (taken before the step), then — with ``step_during_scoring``
(reference: True) — take an optimizer step, so later chunks see updated weights. θ = weights after the last
step. Per layer with S_l ≠ 0 (ZiCo's S): Z += log S_l and FR += |Σ_k (Σ_b g_b)_k θ_k|;
SiGeo = Z + λ2 · 2 log(FR + 1e-5) − λ3 · (loss of the last chunk).

λ's: ``lambda2``/``lambda3`` = None means the reference's choice — (1, 0) without warm-up, (50, 1) when
``warmup_steps`` > 0; numbers override it. Warm-up (per candidate, ``warmup_steps`` SGD steps with the same
optimizer): chunks of ``warmup_batch_size`` (128, as the reference) cycled in order over ``warmup_data``
(an ``(inputs, labels)`` pair) or, when that is None, over the scoring batch. The reference runs 10 epochs
over B_w samples, i.e. ``warmup_steps = 10 * ceil(B_w / 128)``.

A network where no layer has a nonzero S scores -inf, as zico does. With λ2 = λ3 = 0, no warm-up and
``step_during_scoring=False`` SiGeo equals zico with the same chunks
(the paper's Remark); then the gradients are shared with zico through ``ctx.shared``.
"""

from __future__ import annotations

import math

import torch

from hnas.proxies.context import ProxyContext, model_logits, weight_layers
from hnas.proxies.registry import register_proxy
from hnas.proxies.zico import chunk_weight_grads, split_batches, zico_from_terms, zico_layer_terms


def _warm_up(ctx: ProxyContext, opt: torch.optim.Optimizer, steps: int, batch_size: int) -> None:
    data = ctx.option("warmup_data")
    if data is None:
        xs, ys = ctx.inputs, ctx.labels
    else:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError(
                f"warmup_data must be an (inputs, labels) pair or None, got {type(data).__name__}"
            )
        xs, ys = data
    if int(batch_size) < 1:
        raise ValueError(f"warmup_batch_size must be a positive integer, got {batch_size!r}")
    dtype = next(iter(ctx.model.parameters())).dtype
    xs_chunks = torch.split(xs, int(batch_size))
    ys_chunks = torch.split(ys, int(batch_size))
    for step in range(steps):
        x, y = xs_chunks[step % len(xs_chunks)], ys_chunks[step % len(ys_chunks)]
        opt.zero_grad(set_to_none=True)
        ctx.loss_fn(model_logits(ctx.model(x.to(ctx.device, dtype))), y.to(ctx.device)).backward()
        opt.step()


@register_proxy(
    "sigeo",
    needs_data=True,
    needs_labels=True,
    bn_mode="train",
    dtype=torch.float32,
    higher_is_better=True,
    version=1,
    mutates=True,
    options={
        "n_batches": 4,
        "lr": 1.0,
        "lambda2": None,
        "lambda3": None,
        "warmup_steps": 0,
        "warmup_batch_size": 128,
        "warmup_data": None,
        "step_during_scoring": True,
    },
)
def sigeo(ctx: ProxyContext) -> float:
    """SiGeo: ZiCo term + λ2·2·log(Fisher–Rao + 1e-5) − λ3·loss, scoring steps with SGD lr 1 (reference)."""
    n_batches = ctx.option("n_batches", 4)
    warmup = int(ctx.option("warmup_steps", 0))
    if warmup < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup}")
    lam2 = ctx.option("lambda2")
    lam3 = ctx.option("lambda3")
    lam2 = (50.0 if warmup > 0 else 1.0) if lam2 is None else float(lam2)
    lam3 = (1.0 if warmup > 0 else 0.0) if lam3 is None else float(lam3)
    step = bool(ctx.option("step_during_scoring", True))
    model = ctx.model
    opt = torch.optim.SGD(model.parameters(), lr=float(ctx.option("lr", 1.0)))
    if warmup > 0:
        _warm_up(ctx, opt, warmup, ctx.option("warmup_batch_size", 128))
    chunks = split_batches(ctx, n_batches)
    weights = [m.weight for _, m in weight_layers(model)]
    dtype = weights[0].dtype if weights else torch.float32

    last_loss = float("nan")
    if not step and warmup == 0:
        grads = chunk_weight_grads(ctx, n_batches)  # the exact zico pass, shared with it
        if lam3 != 0:
            x, y = chunks[-1]
            with torch.no_grad():
                last_loss = float(ctx.loss_fn(model_logits(model(x.to(dtype))), y))
    else:
        grads = []
        for x, y in chunks:
            opt.zero_grad(set_to_none=True)
            loss = ctx.loss_fn(model_logits(model(x.to(dtype))), y)
            loss.backward()
            grads.append(
                [
                    (torch.zeros_like(w) if w.grad is None else w.grad).detach().flatten().double().clone()
                    for w in weights
                ]
            )
            last_loss = float(loss.detach())
            if step:
                opt.step()
    s_terms = zico_layer_terms(grads)
    score = zico_from_terms(s_terms)  # -inf when no layer has a nonzero S (see zico)
    if lam2 != 0:
        fr = 0.0
        for layer, s in enumerate(s_terms):
            if s is None:
                continue
            g_sum = torch.stack([chunk[layer] for chunk in grads]).sum(dim=0)
            theta = weights[layer].detach().flatten().double()
            fr += abs(float((g_sum * theta).sum()))
        score += lam2 * 2.0 * math.log(fr + 1e-5)
    if lam3 != 0:
        score -= lam3 * last_loss
    return float(score)
