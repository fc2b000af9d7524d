"""Proxy registry: registration by decorator, modules listed explicitly.

Every proxy module is named in ``PROXY_MODULES`` and imported by ``load_all`` — nothing depends on a
caller having imported a module first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hnas.errors import HNASError

BN_MODES = ("train", "eval", "off")

# Every module that registers proxies. Keep this list complete: lookups import exactly these.
PROXY_MODULES: list[str] = [
    "hnas.proxies.gradient",
    "hnas.proxies.synflow",
    "hnas.proxies.jacobian",
    "hnas.proxies.naswot",
    "hnas.proxies.baseline",
    "hnas.proxies.ntk",
    "hnas.proxies.zico",
    "hnas.proxies.sigeo",
    "hnas.proxies.rbflex",
    "hnas.proxies.zen",
    "hnas.proxies.linear_regions",
]


class ProxyError(HNASError, ValueError):
    """Unknown proxy name or bad proxy option."""


@dataclass(frozen=True)
class Proxy:
    """A registered training-free metric and its metadata.

    ``fn(ctx)`` returns a float (or 0-d tensor). ``mutates`` proxies get their own deep copy of the
    network; the others share one copy (and its cached passes, see ProxyContext.shared).
    """

    name: str
    fn: Callable[..., Any]
    needs_data: bool = True
    needs_labels: bool = True
    bn_mode: str = "train"
    dtype: torch.dtype = torch.float32
    higher_is_better: bool = True
    version: int = 1
    mutates: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    #: shared main-pass items this proxy reads (ProxyContext.main_pass); the runtime plans them up front
    passes: tuple[str, ...] = ()
    #: the runtime may retry it on a batch split into chunks after an out-of-memory error
    splittable: bool = False

    @property
    def key_name(self) -> str:
        """Name under which scores are cached: the name, plus every option that differs from the default."""
        base = _REGISTRY.get(self.name)
        defaults = base.options if base is not None else {}
        changed = {k: v for k, v in sorted(self.options.items()) if defaults.get(k, object()) != v}
        if not changed:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in changed.items())}]"

    def with_options(self, **options: Any) -> Proxy:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ProxyError(
                f"proxy {self.name!r} has no option(s) {unknown}; valid: {sorted(self.options) or 'none'}"
            )
        merged = {**self.options, **options}
        return Proxy(**{**self.__dict__, "options": merged})


_REGISTRY: dict[str, Proxy] = {}
_LOADED = False


def register_proxy(
    name: str,
    *,
    needs_data: bool = True,
    needs_labels: bool = True,
    bn_mode: str = "train",
    dtype: torch.dtype = torch.float32,
    higher_is_better: bool = True,
    version: int = 1,
    mutates: bool = False,
    options: dict[str, Any] | None = None,
    passes: tuple[str, ...] = (),
    splittable: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn(ctx) -> float`` under ``name`` with its metadata.

    ``passes``: the shared main-pass items (see hnas.proxies.context) the proxy reads, so the runtime can
    compute them for all proxies of a call in one forward; ``splittable``: the proxy gives the same value
    when the runtime cuts the batch into chunks after an out-of-memory error.
    """
    if bn_mode not in BN_MODES:
        raise ProxyError(f"bn_mode {bn_mode!r} of proxy {name!r} is not one of {BN_MODES}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ProxyError(f"proxy {name!r} registered twice")
        _REGISTRY[name] = Proxy(
            name=name,
            fn=fn,
            needs_data=needs_data,
            needs_labels=needs_labels,
            bn_mode=bn_mode,
            dtype=dtype,
            higher_is_better=higher_is_better,
            version=version,
            mutates=mutates,
            options=dict(options or {}),
            doc=(fn.__doc__ or "").strip().split("\n")[0],
            passes=tuple(passes),
            splittable=splittable,
        )
        return fn

    return deco


def load_all() -> None:
    """Import every module of PROXY_MODULES (idempotent); a listed module that is missing is an error."""
    global _LOADED
    if _LOADED:
        return
    for mod in PROXY_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            raise ProxyError(
                f"proxy module {mod!r} is listed in hnas.proxies.registry.PROXY_MODULES but does not exist"
            ) from e
    _LOADED = True


def proxy_names() -> list[str]:
    load_all()
    return sorted(_REGISTRY)


def get_proxy(name: str, **options: Any) -> Proxy:
    """The proxy called ``name``; an unknown name lists the valid ones."""
    load_all()
    if name not in _REGISTRY:
        raise ProxyError(f"unknown proxy {name!r}; valid: {', '.join(sorted(_REGISTRY))}")
    p = _REGISTRY[name]
    return p.with_options(**options) if options else p
