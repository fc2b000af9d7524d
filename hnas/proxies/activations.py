"""Find activation modules in any network by type, so hooks see GELU/SiLU/... as well as ReLU.

Reference scripts test ``'ReLU' in type(m).__name__``, which misses every other nonlinearity (NAFBee-VGG
swaps ReLU for GELU, SiLU, Mish, ...). Matching against torch's own activation classes (plus a name
heuristic for user-defined ones) keeps RBFleX, NASWOT and linear-region hooks valid on any nn.Module.
"""

from __future__ import annotations

from torch import nn

# Every elementwise nonlinearity torch ships as a module. Softmax-like (normalising) modules are
# deliberately absent: they mix features and are not "activations" in the sense of the proxies.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Tanhshrink,
    nn.Tanh,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Threshold,
    nn.GLU,
)

# ReLU-family types: piecewise linear with a kink at 0, where "sign pattern" means a linear region.
RELU_LIKE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.Hardtanh,
)


def is_activation(module: nn.Module) -> bool:
    """True for torch's activation modules and for leaf modules whose class name says activation."""
    if isinstance(module, ACTIVATION_TYPES):
        return True
    # User-defined activation leaves are caught by class name (e.g. Hugging Face's GELUActivation).
    is_leaf = next(iter(module.children()), None) is None
    return is_leaf and "activation" in type(module).__name__.lower()


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every activation module of ``model`` as ``(qualified name, module)`` in ``named_modules()`` order.

    A module instance reused at several places is listed once (named_modules de-duplicates); a hook on
    it fires at every call, which is what the proxies want.
    """
    return [(n, m) for n, m in model.named_modules() if is_activation(m)]
