"""Registry: the one way a name in the config becomes a class (spaces, strategies, data, benchmarks,
evaluators, trackers).

Entries are ``name -> "module:attribute"`` strings imported on first use, so naming a strategy does not import
every other strategy (or torch-heavy module). A name containing ``:`` is taken as such a path itself, so a user
plugs in their own class from the config (``strategy.name=mypkg.search:MySearch``) without touching hnas. An
unknown name raises the registry's error type with the list of valid names.
"""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from hnas.errors import HNASError

T = TypeVar("T")


class Registry(Generic[T]):
    """``what``: what the names denote (for messages); ``entries``: name -> "module:attribute";
    ``error``: the HNASError subclass raised for an unknown or unloadable name."""

    def __init__(self, what: str, entries: dict[str, str], error: type[HNASError] = HNASError) -> None:
        self.what = what
        self.entries = dict(entries)
        self.error = error

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.entries

    def get(self, name: Any) -> T:
        """The class (or factory) registered as ``name``, or the object at a ``module:attribute`` path."""
        if not isinstance(name, str) or not name:
            raise self.error(f"{self.what} must be a name, got {name!r}; valid: {', '.join(self.names())}")
        target = self.entries.get(name)
        if target is not None:  # a registered entry: an import failure there is a bug, not bad input
            module, _, attr = target.partition(":")
            return getattr(importlib.import_module(module), attr)
        if ":" not in name:
            raise self.error(f"unknown {self.what} {name!r}; valid: {', '.join(self.names())} "
                             "(or a 'package.module:Class' path)")
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as e:
            raise self.error(f"{self.what} {name!r} cannot be loaded: {e}") from e
