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
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from hnas.errors import ConfigError
from hnas.evaluators import EVALUATORS, Evaluator
from hnas.proxies.settings import ScoringSettings
from hnas.search.executor import ExecutorSpec
from hnas.spaces import SearchSpace, get_space
from hnas.store import Store

log = logging.getLogger(__name__)

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
    """8 hex digits over the config groups a trial log depends on (``RUN_ID_GROUPS``, data name/root, and
    ``search.parallel``/``search.mode`` when not 1/sync -- so sequential runs keep their run ids)."""
    parts = {k: plain(cfg.get(k)) for k in RUN_ID_GROUPS}
    proxies = parts.get("proxies")
    if isinstance(proxies, dict):  # the scoring device counts by what it changes in the scores' keys (GPU: a tag)
        device, equivalent = proxies.pop("device", None), proxies.pop("device_equivalent", False)
        tag = ScoringSettings(device=device, device_equivalent=bool(equivalent)).device_tag if device else None
        if tag:
            parts["score_device"] = tag
    parts["data"] = {k: plain(cfg.data.get(k)) for k in ("name", "root")} if cfg.get("data") else None
    search = cfg.get("search") or {}
    batching = {"parallel": search.get("parallel", 1), "mode": search.get("mode", "sync")}
    if batching != {"parallel": 1, "mode": "sync"}:
        parts["search"] = batching
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


PROFILES = ("auto", "gpu", "cpu")


def hardware_profile(name: str) -> str:
    """``gpu`` or ``cpu``: ``auto`` is ``gpu`` when CUDA is present."""
    if name not in PROFILES:
        raise ConfigError(f"profile={name!r} is not one of: {', '.join(PROFILES)}")
    if name == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return name


def by_profile(gpu: Any, cpu: Any, *, _root_: DictConfig) -> Any:
    """``${hnas_profile:GPU_VALUE,CPU_VALUE}``: the value of the config's hardware ``profile``. A key set on the
    command line replaces the interpolation, so an explicit setting always wins."""
    return gpu if hardware_profile(str(_root_.get("profile", "auto"))) == "gpu" else cpu


def register_resolvers() -> None:
    """``${hnas_run_dir:}`` in Hydra's output paths (``run_dir_name`` of the whole config) and
    ``${hnas_profile:GPU,CPU}`` for experiments sized by the hardware."""
    if not OmegaConf.has_resolver("hnas_run_dir"):
        OmegaConf.register_new_resolver("hnas_run_dir", lambda *, _root_: run_dir_name(_root_))
    if not OmegaConf.has_resolver("hnas_profile"):
        OmegaConf.register_new_resolver("hnas_profile", by_profile)


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


@dataclass(frozen=True)
class Parallelism:
    """The ``search`` config group: q candidates at once (``parallel``), ``mode`` and the executor."""

    parallel: int = 1
    mode: str = "sync"
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    @classmethod
    def from_config(cls, cfg: Any) -> Parallelism:
        c = dict(plain(cfg) or {})
        q, mode = c.get("parallel", 1), c.get("mode", "sync")
        if isinstance(q, bool) or not isinstance(q, int) or q < 1:
            raise ConfigError(f"search.parallel={q!r} must be an integer >= 1 (candidates evaluated at once)")
        if mode not in ("sync", "async"):
            raise ConfigError(f"search.mode={mode!r} is not one of: sync, async")
        unknown = sorted(set(c) - {"parallel", "mode", "executor", "workers", "retries", "start_method", "ray"})
        if unknown:
            raise ConfigError(f"search has no key(s) {unknown}; valid: parallel, mode, executor, workers, retries, "
                              "start_method, ray")
        return cls(q, str(mode), ExecutorSpec.from_config(c))


class EvaluatorRecipe:
    """Builds the run's evaluator from its (resolved) config: what a worker process or Ray task receives, so
    the evaluator need not be picklable and the training evaluator loads its data set in the worker."""

    def __init__(self, cfg: DictConfig, output_dir: str | Path) -> None:
        self.cfg = plain(cfg)
        self.output_dir = str(Path(output_dir).resolve())
        self.cwd = os.getcwd()

    def __call__(self) -> Evaluator:
        if Path(self.cwd).is_dir() and os.getcwd() != self.cwd:  # relative paths mean the driver's folder (a Ray
            os.chdir(self.cwd)                                   # worker starts elsewhere); other nodes: theirs
        return self.parts().evaluator

    def parts(self) -> Parts:
        """The worker's Parts: built from the config, with a store that refuses every use."""
        parts = Parts(OmegaConf.create(self.cfg), self.output_dir)
        parts.__dict__["store"] = NoStore()  # a worker never opens the SQLite file (network filesystems)
        return parts


class NoStore:
    """The store of a worker's Parts: any use is a bug (results travel back to the driver, which writes)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"a worker process used the store ({name}); only the driver may open the SQLite file")


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

        if b.get("optional") and not Path(str(b.path)).is_file():  # e.g. the main job's reference table
            log.info("no benchmark table at %s: the run has no table reference (set benchmark.path to add one)",
                     b.path)
            return None
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
    def parallelism(self) -> Parallelism:
        """How many candidates are evaluated at once, how, and where (config group ``search``)."""
        return Parallelism.from_config(self.cfg.get("search"))

    @functools.cached_property
    def run_id(self) -> str:
        return str(self.cfg.get("run_id") or default_run_id(self.cfg))

    @functools.cached_property
    def target(self) -> str | None:
        t = self.cfg.get("target")
        return None if t is None else str(t)
