"""SiGeo (Zheng et al., arXiv 2311.13169): ZiCo term + Fisher–Rao term − training loss (methods.md §5.3).

Follows the CV reference (NASLib-SiGeo ``SiGeo.py``): an SGD optimizer (lr 1, no momentum) over *all*
parameters; the batch is cut into chunks (``batching`` below); per chunk: zero grads, loss, backward, keep the
weight gradients of every Conv/Linear layer (taken before the step), then — with ``step_during_scoring``
(reference: True) — take an optimizer step, so later chunks see updated weights. θ = weights after the last
step. Per layer with S_l ≠ 0 (ZiCo's S): Z += log S_l and FR += |Σ_k (Σ_b g_b)_k θ_k|;
SiGeo = Z + λ2 · 2 log(FR + 1e-5) − λ3 · (loss of the last chunk).

Batching (option ``batching``):

* ``split`` (default): the whole scoring batch in ``n_batches`` (4) contiguous chunks (sizes differ by at
  most one); warm-up only when ``warmup_steps`` > 0 (below).
* ``reference``: what ``get_sigeo(net, inputs, targets)`` of the reference does with the batch it is given.
  With more than 256 samples it first warms the network up by itself: 10 epochs over ALL the given samples
  (the 256 scoring samples included), in order, in chunks of 128 (the last one shorter when 128 does not
  divide the count), SGD lr ``lr`` (reference 1), and λ's (50, 1). Then it scores the LAST 256 samples (all
  of them when there are fewer) in consecutive fixed chunks of 64 (the last one shorter when 64 does not
  divide the count); ``n_batches`` is ignored. Fewer than 65 samples give one chunk, whose std is 0: an
  error. ``reference_batches`` gives these index ranges.

Why ``split`` is the default: the hnas pipelines that use SiGeo (the sigeo strategy, hnas.warmup_table)
score a 256-image batch with n_batches = 4, where both modes cut the same four 64-sample chunks and give the
same value; on other batch sizes ``reference`` makes the batch size switch a 10-epoch lr-1 training of every
network on (> 256) or leaves a single chunk (< 65: the 64-image default batch of ``hnas.score``), whereas hnas
asks for warm-up explicitly (``warmup_steps``, the strategy's ``per_candidate``).

λ's: ``lambda2``/``lambda3`` = None means the reference's choice — (1, 0) without warm-up, (50, 1) when the
network is warmed up (``warmup_steps`` > 0, or the reference mode's automatic warm-up); numbers override it.
Explicit warm-up (per candidate, ``warmup_steps`` SGD steps with the same optimizer, before the reference
mode's automatic one when both apply): chunks of ``warmup_batch_size`` (128, as the reference) cycled in order
over ``warmup_data`` (an ``(inputs, labels)`` pair) or, when that is None, over the scoring batch. The
reference runs 10 epochs over B_w samples, i.e. ``warmup_steps = 10 * ceil(B_w / 128)``.

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

BATCHING = ("split", "reference")
# the reference's fixed sizes (NASLib-SiGeo SiGeo.py): scoring chunks, chunks scored, warm-up epochs and chunk
REF_CHUNK = 64
REF_CHUNKS = 4
REF_WARMUP_EPOCHS = 10
REF_WARMUP_CHUNK = 128


def reference_batches(n: int) -> tuple[list[slice], list[slice]]:
    """(warm-up steps, scoring chunks) of the reference mode for a batch of ``n`` samples, as index ranges.

    Warm-up: none for n <= 256, else 10 epochs of consecutive 128-sample ranges over all n samples (the last
    range of an epoch shorter when 128 does not divide n). Scoring: the last min(n, 256) samples in
    consecutive 64-sample ranges (the last one shorter when 64 does not divide that count).
    """
    window = REF_CHUNK * REF_CHUNKS
    warm: list[slice] = []
    if n > window:
        epoch = [slice(a, min(a + REF_WARMUP_CHUNK, n)) for a in range(0, n, REF_WARMUP_CHUNK)]
        warm = epoch * REF_WARMUP_EPOCHS
    start = max(0, n - window)
    chunks = [slice(a, min(a + REF_CHUNK, n)) for a in range(start, n, REF_CHUNK)]
    return warm, chunks


def _sgd_step(ctx: ProxyContext, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              dtype: torch.dtype) -> None:
    opt.zero_grad(set_to_none=True)
    ctx.loss_fn(model_logits(ctx.model(x.to(ctx.device, dtype))), y.to(ctx.device)).backward()
    opt.step()


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
        _sgd_step(ctx, opt, xs_chunks[step % len(xs_chunks)], ys_chunks[step % len(ys_chunks)], dtype)


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
        "batching": "split",  # split | reference (module docstring: what each does, why split is the default)
    },
)
def sigeo(ctx: ProxyContext) -> float:
    """SiGeo: ZiCo term + λ2·2·log(Fisher–Rao + 1e-5) − λ3·loss, scoring steps with SGD lr 1 (reference)."""
    n_batches = ctx.option("n_batches", 4)
    warmup = int(ctx.option("warmup_steps", 0))
    if warmup < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup}")
    batching = ctx.option("batching", "split")
    if batching not in BATCHING:
        raise ValueError(f"sigeo batching={batching!r} is not one of: {', '.join(BATCHING)}")
    auto_warm: list[slice] = []
    if batching == "reference":
        if ctx.inputs is None or ctx.labels is None:
            raise ValueError("this proxy needs inputs and labels; the context has none")
        auto_warm, ref_chunks = reference_batches(int(ctx.inputs.shape[0]))
        if len(ref_chunks) < 2:
            raise ValueError(
                f"sigeo batching=reference needs more than {REF_CHUNK} samples (at least 2 chunks of "
                f"{REF_CHUNK}; the std over one chunk is 0), got {ctx.inputs.shape[0]}"
            )
    warmed = warmup > 0 or bool(auto_warm)
    lam2 = ctx.option("lambda2")
    lam3 = ctx.option("lambda3")
    lam2 = (50.0 if warmed else 1.0) if lam2 is None else float(lam2)
    lam3 = (1.0 if warmed else 0.0) if lam3 is None else float(lam3)
    step = bool(ctx.option("step_during_scoring", True))
    model = ctx.model
    opt = torch.optim.SGD(model.parameters(), lr=float(ctx.option("lr", 1.0)))
    weights = [m.weight for _, m in weight_layers(model)]
    dtype = weights[0].dtype if weights else torch.float32
    if warmup > 0:
        _warm_up(ctx, opt, warmup, ctx.option("warmup_batch_size", 128))
    if batching == "reference":
        for sl in auto_warm:
            _sgd_step(ctx, opt, ctx.inputs[sl], ctx.labels[sl], dtype)
        chunks = [(ctx.inputs[sl], ctx.labels[sl]) for sl in ref_chunks]
    else:
        chunks = split_batches(ctx, n_batches)

    last_loss = float("nan")
    if not step and warmup == 0 and batching == "split":
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
        dots = []
        for layer, s in enumerate(s_terms):
            if s is None:
                continue
            g_sum = torch.stack([chunk[layer] for chunk in grads]).sum(dim=0)
            theta = weights[layer].detach().flatten().double()
            dots.append((g_sum * theta).sum())
        for d in (torch.stack(dots).cpu().tolist() if dots else []):  # one host sync, the same sum order
            fr += abs(d)
        score += lam2 * 2.0 * math.log(fr + 1e-5)
    if lam3 != 0:
        score -= lam3 * last_loss
    return float(score)
