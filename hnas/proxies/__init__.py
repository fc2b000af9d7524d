"""Training-free proxies: registry, shared-pass runtime, score cache.

``score_network(model, ["synflow", "jacob_cov"], x, y, num_classes)`` scores one network;
``score_cached(store, space, arch, build, proxies, batch)`` does the same through the store. Every proxy
module is listed in ``registry.PROXY_MODULES`` and imported on the first lookup.
"""

from hnas.proxies.registry import (
    PROXY_MODULES,
    Proxy,
    ProxyError,
    get_proxy,
    load_all,
    proxy_names,
    register_proxy,
)
from hnas.proxies.result import ProxyScore
from hnas.proxies.runtime import score_network, zero_cost

__all__ = [
    "PROXY_MODULES",
    "Proxy",
    "ProxyError",
    "ProxyScore",
    "get_proxy",
    "load_all",
    "proxy_names",
    "register_proxy",
    "score_network",
    "zero_cost",
]
