"""Search spaces, looked up by name."""

from __future__ import annotations

from hnas.spaces.base import Arch, SearchSpace, SearchSpaceError

_SPACES = {
    "nb201": ("hnas.spaces.nb201", "NB201Space"),
    "nats_sss": ("hnas.spaces.nats_sss", "NATSSizeSpace"),
    "nafbee": ("hnas.spaces.nafbee", "NAFBeeSpace"),
    "darts": ("hnas.spaces.darts", "DARTSSpace"),
}


def space_names() -> list[str]:
    return sorted(_SPACES)


def get_space(name: str, **kwargs) -> SearchSpace:
    """Instantiate the space called ``name``; an unknown name lists the valid ones."""
    import importlib

    if name not in _SPACES:
        raise SearchSpaceError(f"unknown search space {name!r}; valid: {', '.join(space_names())}")
    module, cls = _SPACES[name]
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["Arch", "SearchSpace", "SearchSpaceError", "get_space", "space_names"]
