"""The command line: one ``hnas`` entry with sub-commands, and the rule that bad input ends in one line.

``hnas COMMAND [ARGS]`` (or ``python -m hnas COMMAND [ARGS]``) runs ``COMMANDS[COMMAND]``; each command is
one module of this package. Hydra commands take Hydra overrides (``hnas run +experiment=cifar10 seed=1``),
the others their own flags (``hnas report --help``). ``python -m hnas.run`` keeps working as ``hnas run``.

Every command runs its body through ``exits_on_user_error``: an ``HNASError`` (and a mandatory config value
left at ``???``) prints ``error: <message>`` on stderr and exits with status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from omegaconf.errors import MissingMandatoryValue

from hnas.errors import HNASError

F = TypeVar("F", bound=Callable[..., Any])

#: sub-command -> (module:function, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("hnas.cli.run:main", "one search (Hydra): hnas run +experiment=NAME [overrides]"),
    "score": ("hnas.cli.score:main", "score a pool with proxies and correlate with a benchmark (Hydra)"),
    "report": ("hnas.cli.report:main", "aggregate result.json files into a table and a trajectory plot"),
    "efficiency": ("hnas.cli.efficiency:main", "query efficiency of runs: test accuracy after k queries"),
    "rbflex-protocol": ("hnas.cli.rbflex_protocol:main", "the RBFleX-NAS protocol: trials x sampled archs (Hydra)"),
    "nafbee-ranking": ("hnas.cli.nafbee_ranking:main", "RBFleX ranking of NAFBee's 11 activations (Hydra)"),
    "warmup-table": ("hnas.cli.warmup_table:main", "SiGeo/ZiCo rank correlation vs supernet warm-up (Hydra)"),
    "bench-proxies": ("hnas.cli.bench_proxies:main", "time a proxy suite against one forward+backward"),
    "bench-warmup": ("hnas.cli.bench_warmup:main", "seconds per warm-up step of an NB201 candidate"),
    "bench-parallel": ("hnas.cli.bench_parallel:main", "wall-time speedup of q candidates at once (NB201 table)"),
    "nats-export": ("hnas.cli.nats_export:main", "export the official NATS-Bench topology file to the CSV"),
    "train": ("hnas.cli.train:main", "train ONE architecture with a final recipe (Hydra): hnas train arch=..."),
}


#: ``hydra/launcher=NAME`` -> (the Hydra plugin module it needs, the hnas extra that installs it)
LAUNCHER_PLUGINS: dict[str, tuple[str, str]] = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
}


def check_launcher(argv: Sequence[str]) -> None:
    """A sweep launcher whose Hydra plugin is not installed ends in one line naming the extra (Hydra itself
    would end in a traceback, ``Unknown plugin class``)."""
    import importlib.util

    for arg in argv:
        if not arg.startswith("hydra/launcher="):
            continue
        name = arg.partition("=")[2]
        module, extra = LAUNCHER_PLUGINS.get(name, (None, None))
        if module is None:
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            print(f"error: hydra/launcher={name} needs the Hydra plugin {module.split('.')[-1]}, which is not "  # noqa: T201
                  f"installed: pip install 'hnas[{extra}]' (or pip install -e '.[{extra}]' in a checkout)",
                  file=sys.stderr)
            sys.exit(2)


def missing_value_message(e: MissingMandatoryValue) -> str:
    key = getattr(e, "full_key", None) or str(e)
    return f"config value {key} is missing (???): set it on the command line, e.g. {key}=..."


def exits_on_user_error(fn: F) -> F:
    """Run ``fn``; on bad input print ``error: <message>`` to stderr and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HNASError as e:
            message = str(e)
        except MissingMandatoryValue as e:
            message = missing_value_message(e)
        print(f"error: {message}", file=sys.stderr)  # noqa: T201 - the command's one-line answer
        sys.exit(2)

    return wrapper  # type: ignore[return-value]


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hnas COMMAND [ARGS]   (or: python -m hnas COMMAND [ARGS])", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Any:
    """The ``hnas`` console script: dispatch to the sub-command (its arguments pass through untouched)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())  # noqa: T201
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; valid: {', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    check_launcher(rest)
    module, _, func = COMMANDS[name][0].partition(":")
    sys.argv = [f"hnas {name}", *rest]  # Hydra and argparse read sys.argv
    return getattr(importlib.import_module(module), func)()
