"""NASWOT (methods.md §2.7, "hook_logdet"): log|det K| of the activation-pattern kernel.

For every activation module (found by type through hnas.proxies.activations: ReLU, GELU, SiLU, ELU, ...),
the module's INPUT for the batch is flattened per sample and binarised, c = 1[x > 0];
K = Σ_modules [c cᵀ + (1−c)(1−c)ᵀ], i.e. K[i, j] = N_A − Hamming(c_i, c_j). Score = log|det K| (slogdet,
sign ignored). The codes ride on the shared main-pass forward (no extra pass when other proxies already
run one). Functional activations (``F.relu``) are invisible to module hooks -- a network built from them
has no codes and K = 0, reported as status ``inf`` (log 0 = −inf). The NASWOT script only counts ReLUs a
preceding backward visited; NASLib (followed here) counts every activation module. Not splittable: K
couples every pair of samples (the codes are taken from one no-grad forward of the whole batch when the
runtime has split the batch for other proxies).
"""

from __future__ import annotations

import torch

from hnas.proxies.context import ProxyContext
from hnas.proxies.registry import register_proxy


def naswot_score(k: torch.Tensor) -> float:
    """log|det K| in float64 (−inf for a singular K)."""
    _, logabsdet = torch.linalg.slogdet(k.double().cpu())  # N x N: the CPU solver is faster at this size
    return float(logabsdet)


@register_proxy("naswot", needs_labels=False, passes=("codes",))
def naswot(ctx: ProxyContext) -> float:
    """log|det K_H| of the binary activation codes (Mellor et al. 2021, v2)."""
    return naswot_score(ctx.main_pass("codes")["codes"])
