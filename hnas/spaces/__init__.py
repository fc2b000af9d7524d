"""Search spaces, looked up by name."""

from __future__ import annotations

import inspect
from typing import Any

from hnas.registry import Registry
from hnas.spaces.base import Arch, SearchSpace, SearchSpaceError

#: ``space.name`` -> class
SPACES: Registry[type[SearchSpace]] = Registry("search space", {
    "nb201": "hnas.spaces.nb201:NB201Space",
    "nats_sss": "hnas.spaces.nats_sss:NATSSizeSpace",
    "nafbee": "hnas.spaces.nafbee:NAFBeeSpace",
    "darts": "hnas.spaces.darts:DARTSSpace",
}, SearchSpaceError)


def space_names() -> list[str]:
    return SPACES.names()


def get_space(name: str, **kwargs: Any) -> SearchSpace:
    """Instantiate the space called ``name`` with its options; an unknown name or option lists the valid ones."""
    cls = SPACES.get(name)
    valid = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise SearchSpaceError(f"space {name!r} has no option(s) {unknown}; valid: {', '.join(valid) or 'none'} "
                               "(network sizes go under space.build)")
    return cls(**kwargs)


__all__ = ["SPACES", "Arch", "SearchSpace", "SearchSpaceError", "get_space", "space_names"]
