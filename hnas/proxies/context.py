"""ProxyContext: what a proxy function sees, plus memoised passes shared between proxies.

Proxies that can share a forward/backward ask for it through ``ctx.shared(key, compute)``: the first
proxy that needs e.g. the weight gradients of the loss computes them, every later proxy scoring the same
network in the same call reuses the result.

The main shared pass (``ctx.main_pass(...)``) computes, from ONE forward of the scoring batch, whichever of
these items the proxies of the call need (the runtime announces them up front in ``ctx.planned`` so that the
first proxy to ask computes them all):

* ``grads``    -- gradient of the mean loss w.r.t. every layer weight (grad_norm, snip, plain, fisher, grasp);
* ``hvp``      -- H g, the loss Hessian times ``grads`` (grasp), from ``create_graph`` on the same backward;
* ``fisher``   -- per layer, per output channel Σ_n (Σ_spatial a ⊙ ∂L/∂a)² of the layer outputs a (fisher);
* ``jacobian`` -- ∂(Σ_c f_c(x_n))/∂x_n, N × D, by ``autograd.grad(outputs.sum(), x, retain_graph=True)``
  (jacob_cov, epe_nas);
* ``codes``    -- NASWOT's K = Σ_activations [c cᵀ + (1−c)(1−c)ᵀ] of the binary codes c = 1[input > 0] of
  every activation module (naswot).

Layers: every ``nn.Conv1d/2d/3d`` (any ``_ConvNd``) and ``nn.Linear`` module with a weight tensor -- the
reference codes' layer set, biases ignored. Norm layers (BatchNorm/LayerNorm/GroupNorm) are not layers: their
affine parameters enter no proxy sum (as in zero-cost-nas). ``nn.MultiheadAttention`` contributes its
``out_proj`` (an ``nn.Linear``); its packed ``in_proj_weight`` is a bare parameter, not a layer, and is left
out.

Batch splitting (OOM back-off): ``ctx.splits`` > 1 cuts the batch into that many contiguous chunks whose
losses are weighted by chunk size / N, so accumulated gradients equal the full-batch mean-loss gradient
(exactly, unless train-mode BN couples the samples: then each chunk has its own batch statistics). The
reference codes instead sum the per-chunk *mean* losses (a ``splits``-fold larger gradient); the ranking of
one network's proxies is unaffected, values differ by that factor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T")

#: Module types whose ``weight`` is a "layer" for the per-weight proxies.
WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)

#: Items ``ProxyContext.main_pass`` can compute from one shared forward.
PASS_ITEMS: frozenset[str] = frozenset({"grads", "hvp", "fisher", "jacobian", "codes"})


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv/Linear modules with a weight tensor, in ``named_modules()`` order (the references' layer set)."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, WEIGHT_LAYER_TYPES) and isinstance(getattr(m, "weight", None), torch.Tensor)
    ]


def model_logits(out: Any) -> torch.Tensor:
    """The logits of a forward output: a tensor, a dict's ``"logits"``, or a tuple/list's last element
    (the official NB201 network returns ``(features, logits)``)."""
    if isinstance(out, dict) and "logits" in out:
        out = out["logits"]
    if isinstance(out, (tuple, list)) and out:
        out = out[-1]
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            "network output must be a tensor, a dict with 'logits' or a tuple ending in one, "
            f"got {type(out).__name__}"
        )
    return out


@dataclass
class ProxyContext:
    model: nn.Module
    inputs: torch.Tensor | None
    labels: torch.Tensor | None
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy
    bn_mode: str = "train"
    dtype: torch.dtype = torch.float32
    #: main-pass items the proxies of this call will ask for (computed together on the first request)
    planned: frozenset[str] = frozenset()
    #: number of chunks the batch is cut into (raised by the runtime's OOM back-off)
    splits: int = 1
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def shared(self, key: str, compute: Callable[[], T]) -> T:
        """Compute once per (network, batch) and reuse: the pass-sharing mechanism."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def clear(self) -> None:
        """Forget every memoised pass (after an OOM, before retrying with more splits)."""
        self._memo.clear()

    # ------------------------------------------------------------------ helpers for proxy functions
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the context's model for ``x`` (cast to the context dtype)."""
        if x.is_floating_point():
            x = x.to(self.dtype)
        return model_logits(self.model(x))

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        return weight_layers(self.model)

    def require_inputs(self) -> torch.Tensor:
        if self.inputs is None:
            raise ValueError("this proxy needs an input batch; the context has inputs=None")
        return self.inputs

    def require_labels(self) -> torch.Tensor:
        if self.labels is None:
            raise ValueError("this proxy needs labels; the context has labels=None")
        return self.labels

    def main_pass(self, *items: str) -> dict[str, Any]:
        """The requested shared-pass items (see module doc); missing ones are computed together with every
        other still-missing ``planned`` item in one forward."""
        unknown = sorted(set(items) - PASS_ITEMS)
        if unknown:
            raise ValueError(f"unknown main-pass item(s) {unknown}; valid: {sorted(PASS_ITEMS)}")
        missing = {i for i in items if f"pass:{i}" not in self._memo}
        if missing:
            extra = {i for i in self.planned if f"pass:{i}" not in self._memo}
            if self.splits > 1:
                extra.discard("codes")  # on a split batch the codes need their own full-batch forward anyway
            want = missing | extra
            for name, value in compute_pass(self, want).items():
                self._memo[f"pass:{name}"] = value
        return {i: self._memo[f"pass:{i}"] for i in items}


def _chunks(n: int, splits: int) -> list[slice]:
    splits = max(1, min(int(splits), n))
    bounds = [round(i * n / splits) for i in range(splits + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _channel_products(layer: nn.Module, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """g_{n,k} = Σ_spatial a ⊙ ∂L/∂a per sample n and output channel k (channel = dim 1 for convs, the last
    dim for Linear so that token/sequence dims count as "spatial")."""
    prod = act * grad
    if isinstance(layer, nn.Linear) and prod.dim() > 2:
        prod = prod.movedim(-1, 1)
    return prod.sum(dim=tuple(range(2, prod.dim()))) if prod.dim() > 2 else prod


def _appender(store: list[torch.Tensor]) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        store.append(out)

    return hook


def _naswot_hook(state: dict[str, Any]) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].detach()
        c = x.reshape(x.shape[0], -1) > 0
        d = c.shape[1]
        # K = c cᵀ + (1-c)(1-c)ᵀ = (D + s sᵀ)/2 with s = 2c - 1: one matmul
        # (float32 sums of ±1 are exact below 2^24 features)
        s = c.to(torch.float32 if d < 2**24 else torch.float64) * 2 - 1
        k = (s @ s.T).double().add_(d).mul_(0.5)
        state["K"] = k if state["K"] is None else state["K"] + k

    return hook


def naswot_kernel(ctx: ProxyContext) -> torch.Tensor:
    """K of NASWOT from one no-grad forward of the full batch (the path used when the batch is split)."""
    from hnas.proxies.activations import activation_modules

    state: dict[str, Any] = {"K": None}
    handles = [m.register_forward_pre_hook(_naswot_hook(state)) for _, m in activation_modules(ctx.model)]
    try:
        with torch.no_grad():
            ctx.forward(ctx.require_inputs())
    finally:
        for h in handles:
            h.remove()
    return _finish_kernel(state["K"], ctx.require_inputs().shape[0])


def _finish_kernel(k: torch.Tensor | None, n: int) -> torch.Tensor:
    # a network without activation modules has K = 0 (singular): log|det| = -inf, reported as such
    return torch.zeros(n, n, dtype=torch.float64, device="cpu") if k is None else k.cpu()


def compute_pass(ctx: ProxyContext, items: set[str], temperature: float = 1.0) -> dict[str, Any]:
    """Compute ``items`` (see module doc) in one forward per batch chunk; logits divided by ``temperature``.

    Returns a dict with the requested items plus ``loss`` (float) when a loss was computed:
    ``grads``/``hvp``: list of tensors aligned with ``weight_layers``; ``fisher``: list of per-channel
    Σ_n g_nk² / N tensors (None for layers marked ``dont_ch_prune``); ``jacobian``: N × D float64 tensor;
    ``codes``: N × N float64 kernel.
    """
    from hnas.proxies.activations import activation_modules

    items = set(items)
    unknown = sorted(items - PASS_ITEMS)
    if unknown:
        raise ValueError(f"unknown main-pass item(s) {unknown}; valid: {sorted(PASS_ITEMS)}")
    x_all = ctx.require_inputs()
    n = x_all.shape[0]
    need_loss = bool(items & {"grads", "hvp", "fisher"})
    y_all = ctx.require_labels() if need_loss else ctx.labels
    need_jac = "jacobian" in items
    need_hvp = "hvp" in items
    chunks = _chunks(n, ctx.splits)
    single = len(chunks) == 1
    codes_inline = "codes" in items and single
    layers = [m for _, m in weight_layers(ctx.model)]
    weights = [m.weight for m in layers]
    fisher_layers = [i for i, m in enumerate(layers) if not hasattr(m, "dont_ch_prune")]

    grads: list[torch.Tensor] | None = [torch.zeros_like(w) for w in weights] if need_loss else None
    fisher = {i: None for i in fisher_layers}
    hvp: list[torch.Tensor] | None = None
    jac_parts: list[torch.Tensor] = []
    loss_total = 0.0
    naswot_state: dict[str, Any] = {"K": None}

    for sl in chunks:
        x = x_all[sl].to(ctx.dtype) if x_all.is_floating_point() else x_all[sl]
        if need_jac:
            x = x.detach().requires_grad_(True)
        acts: dict[int, list[torch.Tensor]] = {i: [] for i in fisher_layers} if "fisher" in items else {}
        handles = [layers[i].register_forward_hook(_appender(acts[i])) for i in acts]
        if codes_inline:
            handles += [
                m.register_forward_pre_hook(_naswot_hook(naswot_state))
                for _, m in activation_modules(ctx.model)
            ]
        try:
            with torch.set_grad_enabled(need_loss or need_jac):
                out = ctx.forward(x)
                if temperature != 1.0:
                    out = out / temperature
        finally:
            for h in handles:
                h.remove()
        if need_jac:
            if out.requires_grad:
                (j,) = torch.autograd.grad(out.sum(), x, retain_graph=need_loss, allow_unused=True)
            else:
                j = None
            jac_parts.append((torch.zeros_like(x) if j is None else j).detach().reshape(x.shape[0], -1))
        if need_loss:
            loss = ctx.loss_fn(out, y_all[sl]) * ((sl.stop - sl.start) / n)
            loss_total += float(loss.detach())
            act_list = [(i, a) for i, lst in acts.items() for a in lst]
            targets = weights + [a for _, a in act_list]
            create = need_hvp and single
            if loss.requires_grad and targets:
                gs = torch.autograd.grad(loss, targets, allow_unused=True, create_graph=create)
            else:
                gs = (None,) * len(targets)
            wg = gs[: len(weights)]
            for k, g in enumerate(wg):
                if g is not None:
                    grads[k] += g.detach()
            for (i, a), g in zip(act_list, gs[len(weights) :]):
                if g is None:
                    continue
                sq = _channel_products(layers[i], a.detach(), g.detach()).pow(2).sum(0)
                fisher[i] = sq if fisher[i] is None else fisher[i] + sq
            if create:
                z = sum((g.detach() * g).sum() for g in wg if g is not None and g.requires_grad)
                hvp = _hvp_of(z, weights)
            del gs, wg, act_list, acts, loss
        del out

    result: dict[str, Any] = {}
    if need_loss:
        result["loss"] = loss_total
    if "grads" in items:
        result["grads"] = grads
    if need_hvp:
        if hvp is None and not single:  # split batch: a second sweep with the full-batch g
            hvp = [torch.zeros_like(w) for w in weights]
            for sl in chunks:
                x = x_all[sl]
                out = ctx.forward(x)
                if temperature != 1.0:
                    out = out / temperature
                loss = ctx.loss_fn(out, y_all[sl]) * ((sl.stop - sl.start) / n)
                gf = torch.autograd.grad(loss, weights, allow_unused=True, create_graph=True)
                z = sum((g0 * g).sum() for g0, g in zip(grads, gf) if g is not None and g.requires_grad)
                for k, h in enumerate(_hvp_of(z, weights)):
                    hvp[k] += h
        result["hvp"] = hvp if hvp is not None else [torch.zeros_like(w) for w in weights]
    if "fisher" in items:
        result["fisher"] = [
            (
                None
                if i not in fisher
                else (fisher[i] / n if fisher[i] is not None
                      else torch.zeros(m.weight.shape[0], device=m.weight.device))
            )
            for i, m in enumerate(layers)
        ]
    if need_jac:
        result["jacobian"] = torch.cat(jac_parts).double()
    if "codes" in items:
        result["codes"] = _finish_kernel(naswot_state["K"], n) if codes_inline else naswot_kernel(ctx)
    return result


def _hvp_of(z: Any, weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """∂z/∂W for z = <g, ∇L>, i.e. H g; zeros when z does not depend on the weights (e.g. a linear net)."""
    if not isinstance(z, torch.Tensor) or not z.requires_grad:
        return [torch.zeros_like(w) for w in weights]
    hs = torch.autograd.grad(z, weights, allow_unused=True)
    return [torch.zeros_like(w) if h is None else h.detach() for w, h in zip(weights, hs)]
