"""HNASError: the base of every error that means "the input is wrong".

Why one base: every command turns exactly these into one line ``error: <message>`` and exit status 2 (see
``hnas.cli``), while a genuine bug still ends in a traceback. Each package defines its own subclasses next to
the code that raises them (``SearchSpaceError``, ``DataError``, ``StoreError``, ...); their messages name the
bad value and what would be valid.
"""

from __future__ import annotations


class HNASError(Exception):
    """Bad user input: a config value, an architecture string, a data path, a corrupt file, a NaN/inf."""


class ConfigError(HNASError, ValueError):
    """A config value that cannot work; the message names it and what would be valid."""
