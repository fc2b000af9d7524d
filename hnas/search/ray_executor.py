"""The Ray executor: each evaluation is a Ray core task with ``num_cpus``/``num_gpus`` of its own.

Why Ray: ``ray.init()`` starts a local cluster by itself, ``address=auto`` (or ``ray://host:10001``) joins a
real one, and Ray documents its SLURM and Kubernetes deployments -- an engine NAS users already run rather
than one we invent. The object built by the factory (the evaluator) is cached per Ray worker process, so a
table is loaded (or a data set decoded) once per worker, not once per evaluation. A task whose worker process
dies is re-run by Ray (``max_retries``); an exception raised by the evaluation itself is not retried. Install
with ``pip install 'hnas[ray]'``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

from hnas.errors import ConfigError
from hnas.search.executor import Done, Executor, ExecutorError

log = logging.getLogger(__name__)

#: per Ray worker process: factory token -> the object it built
_BUILT: dict[str, Any] = {}
RAY_KEYS = ("address", "cpus_per_task", "gpus_per_task", "init")


def run_task(token: str, factory: Callable[[], Any], call: Callable[[Any, Any], Any], payload: Any) -> tuple[Any, str]:
    """The body of one Ray task: build (once per process) and call; returns (result, worker name)."""
    import ray

    obj = _BUILT.get(token)
    if obj is None:
        obj = _BUILT[token] = factory()
    node = ray.get_runtime_context().get_node_id()[:8]
    return call(obj, payload), f"ray:{node}:{os.getpid()}"


class RayExecutor(Executor):
    """``address``: None starts (or reuses) a local Ray instance, ``auto``/``ray://...`` joins a cluster;
    ``cpus_per_task``/``gpus_per_task`` are each evaluation's resources (``gpus_per_task`` None: 1 when the
    cluster has GPUs, else 0); ``init``: extra ``ray.init`` arguments (e.g. ``num_cpus``)."""

    name = "ray"

    def __init__(self, factory: Callable[[], Any], call: Callable[[Any, Any], Any], retries: int = 2,
                 describe: Callable[[Any], str] = str, address: str | None = None, cpus_per_task: float = 1,
                 gpus_per_task: float | None = None, init: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError("search.executor=ray needs Ray: pip install 'hnas[ray]'") from None
        for k, v in (("cpus_per_task", cpus_per_task), ("gpus_per_task", gpus_per_task)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ConfigError(f"search.ray.{k}={v!r} must be a number >= 0")
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            kwargs.update(dict(init or {}))
            if address:
                kwargs["address"] = str(address)
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ExecutorError(f"could not start or join Ray (search.ray.address={address!r}): {e}") from None
            self._owns = True
        if gpus_per_task is None:
            gpus_per_task = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_task, 1e-9)))
        log.info("ray executor: cluster %s, %s per evaluation", ray.cluster_resources(),
                 f"{cpus_per_task} CPU + {gpus_per_task} GPU")
        self.describe, self.retries, self._call = describe, int(retries), call
        self._token = uuid.uuid4().hex
        self._factory = ray.put(factory)
        self._task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=self.retries)(run_task)
        self._refs: dict[Any, tuple[Any, Any]] = {}  # ObjectRef -> (key, payload)

    @classmethod
    def from_spec(cls, spec: Any, factory: Callable[[], Any], call: Callable[[Any, Any], Any], parallel: int,
                  describe: Callable[[Any], str]) -> RayExecutor:
        unknown = sorted(set(spec.ray) - set(RAY_KEYS))
        if unknown:
            raise ConfigError(f"search.ray has no key(s) {unknown}; valid: {', '.join(RAY_KEYS)}")
        init = spec.ray.get("init") or {}
        if not isinstance(init, dict):
            raise ConfigError(f"search.ray.init must be a mapping of ray.init arguments, got {init!r}")
        return cls(factory, call, spec.retries, describe, address=spec.ray.get("address"),
                   cpus_per_task=spec.ray.get("cpus_per_task", 1) if spec.ray.get("cpus_per_task") is not None else 1,
                   gpus_per_task=spec.ray.get("gpus_per_task"), init=dict(init))

    def submit(self, key: Any, payload: Any) -> str | None:
        ref = self._task.remote(self._token, self._factory, self._call, payload)
        self._refs[ref] = (key, payload)
        return "ray"

    @property
    def busy(self) -> int:
        return len(self._refs)

    def wait(self, timeout: float | None = None) -> list[Done]:
        if not self._refs:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            key, payload = self._refs.pop(ref)
            try:
                result, worker = ray.get(ref)
                out.append(Done(key, result, worker=worker))
            except ray.exceptions.RayTaskError as e:  # the evaluation raised: its own exception, not retried
                out.append(Done(key, error=e.as_instanceof_cause(), worker="ray"))
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.RaySystemError) as e:
                out.append(Done(key, error=ExecutorError(
                    f"the evaluation of {self.describe(payload)} lost its Ray worker {self.retries + 1} times "
                    f"(search.retries={self.retries}): {type(e).__name__}: {str(e).splitlines()[0]}"), worker="ray"))
        return out

    def close(self) -> None:
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self._refs.clear()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False
