"""Config -> the parts of a run: space, data module, store, benchmark table, evaluator, pool architectures.

Pure assembly: ``Parts`` builds each piece the first time it is asked for (a table-only search never loads a
dataset) and computes nothing else -- scoring, searching and writing results are the runner's job. Every
command (``hnas run``, ``hnas score``, the RBFleX protocol, the NAFBee ranking, the warm-up table) takes its
pieces from here, so they are built and validated one way.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from hnas.errors import ConfigError
from hnas.evaluators import EVALUATORS, Evaluator
from hnas.proxies.settings import ScoringSettings
from hnas.spaces import SearchSpace, get_space
from hnas.store import Store

#: config groups whose content decides what a run's trial log means (hashed into the run id)
RUN_ID_GROUPS = ("space", "pool", "proxies", "strategy", "evaluator", "benchmark")


def plain(node: Any) -> Any:
    """A config node as plain Python containers (resolved); other values pass through."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    return node


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer >= 0 (numpy and torch reject negative seeds deep inside, with worse messages)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def config_hash(cfg: DictConfig) -> str:
    """8 hex digits over the config groups a trial log depends on (``RUN_ID_GROUPS``, data name/root)."""
    parts = {k: plain(cfg.get(k)) for k in RUN_ID_GROUPS}
    parts["data"] = {k: plain(cfg.data.get(k)) for k in ("name", "root")} if cfg.get("data") else None
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def default_run_id(cfg: DictConfig) -> str:
    """``name-strategy-seedN-<hash>``: the same command resumes the same run; another pool, proxy source,
    evaluator or strategy option gets its own trial log in a shared store."""
    return f"{cfg.name}-{cfg.strategy.name}-seed{check_seed('seed', cfg.seed)}-{config_hash(cfg)}"


def run_dir_name(cfg: DictConfig) -> str:
    """The last part of a run's output folder: ``seedN-<hash>`` (or the explicit run id), so two runs that
    differ in any override never write the same result.json."""
    if cfg.get("run_id"):
        return str(cfg.run_id)
    return f"seed{cfg.seed}-{config_hash(cfg)}"


def register_resolvers() -> None:
    """``${hnas_run_dir:}`` in Hydra's output paths: ``run_dir_name`` of the whole config."""
    if not OmegaConf.has_resolver("hnas_run_dir"):
        OmegaConf.register_new_resolver("hnas_run_dir", lambda *, _root_: run_dir_name(_root_))


def pool_archs(cfg_pool: Any, space: SearchSpace) -> list[Any]:
    """The candidate architectures named by the ``pool`` config group (sample / all / list / table)."""
    kind = cfg_pool.get("kind", "sample")
    if kind == "sample":
        size, seed = cfg_pool.get("size"), check_seed("pool.seed", cfg_pool.get("seed"))
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ConfigError(f"pool.size must be an integer > 0, got {size!r}")
        archs = space.sample_many(size, np.random.default_rng(seed))
    elif kind == "all":
        archs = list(space.enumerate())
    elif kind == "list":
        given = plain(cfg_pool.get("archs"))
        if not isinstance(given, list):
            raise ConfigError(f"pool.archs must be a list of architecture strings, e.g. pool.archs=['|...|'], "
                              f"got {given!r}")
        if not given:
            raise ConfigError("pool.archs is empty; give architecture strings, e.g. pool.archs=['|...|']")
        archs = [space.coerce(a if isinstance(a, int) and not isinstance(a, bool) else str(a)) for a in given]
    elif kind == "table":
        import pandas as pd

        missing = isinstance(cfg_pool, DictConfig) and OmegaConf.is_missing(cfg_pool, "path")
        if missing or not cfg_pool.get("path"):
            raise ConfigError("pool=table needs pool.path=<CSV with an 'index' column>, e.g. a score table")
        path = Path(str(cfg_pool.path))
        if not path.is_file():
            raise ConfigError(f"pool.path {str(path)!r} does not exist (a CSV with an 'index' column)")
        try:
            idx = pd.read_csv(path, usecols=["index"])["index"]
        except ValueError as e:
            raise ConfigError(f"pool.path {str(path)!r} has no 'index' column ({e})") from None
        if not pd.api.types.is_integer_dtype(idx):
            raise ConfigError(f"pool.path {str(path)!r}: column 'index' must hold integers")
        idx = idx.astype(int).tolist()
        limit = cfg_pool.get("limit")
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
                raise ConfigError(f"pool.limit must be an integer > 0 (or null for every row), got {limit!r}")
            idx = sorted(idx)[: int(limit)]
        archs = [space.from_index(i) for i in idx]
    else:
        raise ConfigError(f"unknown pool.kind {kind!r}; valid: sample, all, list, table")
    shard = cfg_pool.get("shard")
    if shard:
        archs = shard_slice(archs, str(shard))
    return archs


def shard_slice(items: list[Any], shard: str) -> list[Any]:
    """``"i/n"`` -> the i-th (1-based) of n interleaved slices, so shards are balanced and disjoint."""
    try:
        i, n = (int(p) for p in shard.split("/"))
    except ValueError:
        raise ConfigError(f"pool.shard {shard!r} is not of the form i/n (e.g. 3/8)") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ConfigError(f"pool.shard {shard!r}: need 1 <= i <= n")
    return items[i - 1 :: n]


class Parts:
    """The pieces of one run described by ``cfg`` (a composed ``run``/``score`` config), each built on first
    use. ``output_dir``: where the run writes (the training evaluator's Lightning root too)."""

    def __init__(self, cfg: DictConfig, output_dir: str | Path = ".") -> None:
        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.seed = check_seed("seed", cfg.get("seed", 0))

    @functools.cached_property
    def space(self) -> SearchSpace:
        """The search space; keys of the ``space`` group other than ``name``/``build`` are its options."""
        options = {k: v for k, v in (plain(self.cfg.space) or {}).items() if k not in ("name", "build")}
        return get_space(str(self.cfg.space.name), **options)

    @functools.cached_property
    def build_kwargs(self) -> dict[str, Any]:
        """The space's ``build`` arguments (network width, depth, ...)."""
        kw = plain(self.cfg.space.get("build", {})) or {}
        if not isinstance(kw, dict):
            raise ConfigError(f"space.build must be a mapping of build arguments, got {kw!r}")
        return kw

    @functools.cached_property
    def store(self) -> Store:
        return Store(Path(str(self.cfg.store)).expanduser())

    @functools.cached_property
    def benchmark(self) -> Any:
        """The benchmark table, or None without one (``benchmark=none``)."""
        b = self.cfg.get("benchmark")
        if not b or not b.get("name"):
            return None
        from hnas.benchmarks import load_benchmark

        table = load_benchmark(str(b.name), str(b.path))
        target = self.cfg.get("target")
        if target and target not in table.metrics():
            raise ConfigError(f"target={target!r} is not a column of the benchmark table {table.path}; valid: "
                              f"{', '.join(table.metrics())}")
        return table

    @functools.cached_property
    def datamodule(self) -> Any:
        from hnas.data import build_datamodule

        d = dict(plain(self.cfg.data))
        return build_datamodule(d.pop("name"), **d)

    @functools.cached_property
    def trainer(self) -> dict[str, Any]:
        """Extra ``lightning.Trainer`` arguments of the ``trainer`` group."""
        return dict(plain(self.cfg.get("trainer")) or {})

    @functools.cached_property
    def evaluator(self) -> Evaluator:
        e = dict(plain(self.cfg.evaluator))
        kind = e.pop("kind", None)
        return EVALUATORS.get(kind).from_config(e, self)

    @functools.cached_property
    def archs(self) -> list[Any]:
        """The candidate pool's architectures (config group ``pool``)."""
        return pool_archs(self.cfg.pool, self.space)

    @functools.cached_property
    def scoring(self) -> ScoringSettings:
        """How proxy scores are computed (config group ``proxies``)."""
        return ScoringSettings.from_config(plain(self.cfg.proxies))

    @functools.cached_property
    def run_id(self) -> str:
        return str(self.cfg.get("run_id") or default_run_id(self.cfg))

    @functools.cached_property
    def target(self) -> str | None:
        t = self.cfg.get("target")
        return None if t is None else str(t)
