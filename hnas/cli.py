"""Command-line error reporting: bad input ends a command with one clear line, not a traceback."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("hnas")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the input is wrong' (their messages name the value and what is valid)."""
    from hnas.benchmarks.table import BenchmarkError
    from hnas.data.errors import DataError
    from hnas.experiment import ConfigError
    from hnas.proxies.registry import ProxyError
    from hnas.search import PoolError, SearchError, StrategyError
    from hnas.spaces import SearchSpaceError
    from hnas.store import StoreError

    return (ConfigError, SearchSpaceError, BenchmarkError, DataError, PoolError, StrategyError, SearchError,
            ProxyError, StoreError, FileNotFoundError)


def reports_user_errors(fn: F) -> F:
    """Run ``fn``; on a user error print ``error: <message>`` to stderr and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except user_errors() as e:
            print(f"error: {e}", file=sys.stderr)  # noqa: T201 - the CLI's one-line answer
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
