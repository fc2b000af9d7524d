"""Executors: where evaluations run while the search loop stays in the driver process.

Why an executor and not DDP: an NB201 network has 0.1-1.5 M parameters, so all-reducing its gradients costs
more than it saves; what a NAS run on several devices needs is several candidates evaluated at once, one per
device. Three kinds, one protocol (``submit`` work under a key, ``wait`` for completions):

- ``inline``: in the driver, one at a time (the default with ``search.parallel=1``; exceptions propagate as
  they are);
- ``local``: a pool of worker processes on this machine, one per device slot -- each GPU (the worker sees
  only its own through ``CUDA_VISIBLE_DEVICES``) or ``workers`` CPU slots; a worker that dies (SIGKILL, the
  OOM killer) is replaced and its evaluation re-submitted, at most ``retries`` times;
- ``ray``: Ray core tasks (``hnas.search.ray_executor``), locally or on a cluster.

Work is ``call(obj, payload)`` where ``obj`` is built once per worker process by a picklable ``factory`` (an
evaluator re-built from its config, so the training evaluator loads its data in the worker). Workers never
open the store: results travel back to the driver, which alone writes the SQLite file (SQLite over a network
filesystem is unsafe).
"""

from __future__ import annotations

import abc
import collections
import logging
import multiprocessing as mp
import os
import pickle
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from hnas.errors import ConfigError, HNASError
from hnas.registry import Registry

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2
WARM = "__hnas_warm__"  # the key of the message that makes a worker build its object


class ExecutorError(HNASError, RuntimeError):
    """An evaluation lost its worker more often than allowed, or the executor could not start."""


@dataclass
class Done:
    """A finished piece of work: its ``result`` or the ``error`` it raised, and which worker ran it."""

    key: Any
    result: Any = None
    error: BaseException | None = None
    worker: str | None = None


class Prebuilt:
    """A factory that hands out an object built in the driver (pickled to each worker as it is)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __call__(self) -> Any:
        return self.obj


def evaluate(evaluator: Any, arch: Any) -> Any:
    """The work of a search: one evaluation (a module-level function, so it pickles by name)."""
    return evaluator.evaluate(arch)


class Executor(abc.ABC):
    """Runs ``call(obj, payload)`` for submitted payloads; ``slots`` of them at a time."""

    name: str = ""
    slots: int = 1

    @abc.abstractmethod
    def submit(self, key: Any, payload: Any) -> str | None:
        """Queue ``payload`` under ``key``; returns the worker it went to when that is known already."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[Done]:
        """Block until at least one submitted piece of work finished (or ``timeout`` seconds passed)."""

    @property
    @abc.abstractmethod
    def busy(self) -> int:
        """Submitted and not returned by ``wait`` yet."""

    def warm(self) -> None:  # noqa: B027 - optional hook
        """Start every worker and build its object now, so that start-up is not mistaken for evaluation time."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the workers (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, payloads: Sequence[Any]) -> list[Any]:
        """Every payload's result, in order (an error raises once the others are collected)."""
        for i, p in enumerate(payloads):
            self.submit(i, p)
        out: dict[int, Any] = {}
        first_error: BaseException | None = None
        while len(out) < len(payloads):
            for d in self.wait():
                out[d.key] = d.result
                if d.error is not None and first_error is None:
                    first_error = d.error
        if first_error is not None:
            raise first_error
        return [out[i] for i in range(len(payloads))]


class InlineExecutor(Executor):
    """In the driver, one at a time, in submission order."""

    name = "inline"

    @classmethod
    def from_spec(cls, spec: ExecutorSpec, factory: Callable[[], Any], call: Callable[[Any, Any], Any],
                  parallel: int, describe: Callable[[Any], str]) -> InlineExecutor:
        return cls(factory, call)

    def __init__(self, factory: Callable[[], Any], call: Callable[[Any, Any], Any]) -> None:
        self.factory, self.call = factory, call
        self._obj: Any = None
        self._queue: collections.deque[tuple[Any, Any]] = collections.deque()

    def submit(self, key: Any, payload: Any) -> str | None:
        self._queue.append((key, payload))
        return "driver"

    @property
    def busy(self) -> int:
        return len(self._queue)

    def wait(self, timeout: float | None = None) -> list[Done]:
        if not self._queue:
            return []
        key, payload = self._queue.popleft()
        if self._obj is None:
            self._obj = self.factory()
        return [Done(key, self.call(self._obj, payload), worker="driver")]  # an exception propagates as is


#: seconds between a waiting worker's checks that its driver still lives
PARENT_CHECK_S = 2.0


# ---------------------------------------------------------------------------------------------- local processes
def _worker_main(conn: Connection, factory: Callable[[], Any], call: Callable[[Any, Any], Any],
                 env: dict[str, str], name: str) -> None:
    """A worker process: build the object once, then answer (key, payload) messages until None or EOF."""
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    threads = env.get("HNAS_WORKER_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    obj: Any = None
    driver = os.getppid()
    while True:
        try:
            # EOF says the driver is gone -- unless a forked sibling still holds its end of the pipe, so also
            # watch for being re-parented (the driver killed with SIGKILL must not leave workers behind)
            while not conn.poll(PARENT_CHECK_S):
                if os.getppid() != driver:
                    return
            msg = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if msg is None:
            return
        key, payload = msg
        try:
            if obj is None:
                obj = factory()
            reply = (key, True, None if key == WARM else call(obj, payload))
        except BaseException as e:  # noqa: BLE001 - reported to the driver, which decides
            reply = (key, False, _portable(e))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling, else a RuntimeError carrying its type, message and traceback."""
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:
        copy = pickle.loads(pickle.dumps(e))
        copy.add_note(f"(raised in a worker process)\n{tb}")
        return copy
    except Exception:  # noqa: BLE001 - an unpicklable exception becomes a plain one
        return RuntimeError(f"{type(e).__name__}: {e}\n(raised in a worker process)\n{tb}")


@dataclass
class _Slot:
    index: int
    env: dict[str, str]
    process: Any = None
    conn: Connection | None = None
    job: tuple[Any, Any] | None = None  # (key, payload) it is running
    started: float = 0.0

    @property
    def label(self) -> str:
        dev = self.env.get("CUDA_VISIBLE_DEVICES")
        where = f"cuda:{dev}" if dev else "cpu"
        pid = self.process.pid if self.process is not None else "-"
        return f"local-{self.index} (pid {pid}, {where})"


@dataclass
class _Job:
    key: Any
    payload: Any
    attempts: int = 0
    lost: list[str] = field(default_factory=list)


class LocalExecutor(Executor):
    """One worker process per slot; ``envs[i]`` is slot i's extra environment (its GPU)."""

    name = "local"

    @classmethod
    def from_spec(cls, spec: ExecutorSpec, factory: Callable[[], Any], call: Callable[[Any, Any], Any],
                  parallel: int, describe: Callable[[Any], str]) -> Executor:
        if spec.in_driver(parallel):
            return InlineExecutor(factory, call)  # one evaluation at a time: no worker process to start
        envs = spec.slot_envs(parallel)
        log.info("local executor: %d worker process(es) (%s)", len(envs),
                 ", ".join(f"cuda:{e['CUDA_VISIBLE_DEVICES']}" if e.get("CUDA_VISIBLE_DEVICES") else "cpu"
                           for e in envs))
        gpus = [e["CUDA_VISIBLE_DEVICES"] for e in envs if e.get("CUDA_VISIBLE_DEVICES")]
        if len(gpus) > len(set(gpus)) and not mps_running():
            log.info("several workers share a GPU without CUDA MPS, so their kernels take turns; with MPS "
                     "(`nvidia-cuda-mps-control -d`) 8 scorers on one H200 went from 9.9 to 26.5 arch/s")
        return cls(factory, call, envs, spec.retries, spec.start_method, describe)

    def __init__(self, factory: Callable[[], Any], call: Callable[[Any, Any], Any], envs: Sequence[dict[str, str]],
                 retries: int = DEFAULT_RETRIES, start_method: str = "spawn", describe: Callable[[Any], str] = str
                 ) -> None:
        if not envs:
            raise ConfigError("the local executor needs at least one worker slot")
        self.factory, self.call, self.retries, self.describe = factory, call, int(retries), describe
        self._ctx = mp.get_context(start_method)
        self._slots = [_Slot(i, dict(env)) for i, env in enumerate(envs)]
        self._queue: collections.deque[_Job] = collections.deque()
        self._jobs: dict[Any, _Job] = {}
        self.slots = len(self._slots)
        self._closed = False

    # ---------------------------------------------------------------- workers
    def _start(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe()
        name = f"hnas-worker-{slot.index}"
        slot.process = self._ctx.Process(target=_worker_main, args=(child, self.factory, self.call, slot.env, name),
                                         name=name, daemon=False)
        slot.process.start()
        child.close()
        slot.conn = parent
        log.debug("started %s", slot.label)

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.job is not None:
                continue
            if slot.process is None or not slot.process.is_alive():
                self._start(slot)
            job = self._queue.popleft()
            slot.job, slot.started = (job.key, job.payload), time.time()
            assert slot.conn is not None
            try:
                slot.conn.send((job.key, job.payload))
            except (BrokenPipeError, OSError):  # died between is_alive and send: the sentinel reports it
                pass

    def warm(self) -> None:
        for slot in self._slots:
            if slot.process is None:
                self._start(slot)
                assert slot.conn is not None
                slot.conn.send((WARM, None))
        for slot in self._slots:
            assert slot.conn is not None
            try:
                key, ok, result = slot.conn.recv()
            except (EOFError, OSError):
                raise ExecutorError(f"worker {slot.label} died while starting (exit status "
                                    f"{slot.process.exitcode})") from None
            if not ok:
                raise result

    def submit(self, key: Any, payload: Any) -> str | None:
        if self._closed:
            raise ExecutorError("the local executor is closed")
        job = _Job(key, payload)
        self._jobs[key] = job
        self._queue.append(job)
        self._dispatch()
        for slot in self._slots:
            if slot.job is not None and slot.job[0] == key:
                return slot.label
        return None

    @property
    def busy(self) -> int:
        return len(self._jobs)

    def wait(self, timeout: float | None = None) -> list[Done]:
        running = [s for s in self._slots if s.job is not None]
        if not running:
            return []
        handles: dict[Any, _Slot] = {}
        for s in running:
            handles[s.conn] = s
            handles[s.process.sentinel] = s
        ready = wait(list(handles), timeout)
        out: list[Done] = []
        seen: set[int] = set()
        for h in ready:
            slot = handles[h]
            if slot.index in seen or slot.job is None:
                continue
            seen.add(slot.index)
            msg = None
            assert slot.conn is not None
            try:
                if slot.conn.poll():
                    msg = slot.conn.recv()
            except (EOFError, OSError):
                msg = None
            key = slot.job[0]
            if msg is not None and msg[0] == key:
                slot.job = None
                job = self._jobs.pop(key)
                out.append(Done(job.key, msg[2] if msg[1] else None, None if msg[1] else msg[2], slot.label))
                continue
            out += self._lost(slot)
        self._dispatch()
        return out

    def _lost(self, slot: _Slot) -> list[Done]:
        """The worker of ``slot`` died mid-evaluation: re-submit its job, or give up after ``retries``."""
        assert slot.job is not None
        slot.process.join(timeout=5)
        code = slot.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        job = self._jobs[slot.job[0]]
        job.attempts += 1
        job.lost.append(f"{slot.label}: {how}")
        slot.job, slot.process, slot.conn = None, None, None
        if job.attempts > self.retries:
            del self._jobs[job.key]
            err = ExecutorError(f"the evaluation of {self.describe(job.payload)} lost its worker {job.attempts} times "
                                f"({'; '.join(job.lost)}); giving up after search.retries={self.retries} (out of "
                                "memory? lower search.parallel, or raise search.retries)")
            return [Done(job.key, error=err, worker=job.lost[-1].split(":")[0])]
        log.warning("worker %s (%s) died while evaluating %s; re-submitting it (attempt %d of %d)", slot.label, how,
                    self.describe(job.payload), job.attempts + 1, self.retries + 1)
        self._queue.appendleft(job)
        return []

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for slot in self._slots:
            if slot.conn is not None:
                try:
                    slot.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        deadline = time.time() + 10
        for slot in self._slots:
            if slot.process is None:
                continue
            slot.process.join(timeout=max(0.1, deadline - time.time()))
            if slot.process.is_alive():
                slot.process.terminate()
                slot.process.join(timeout=5)
            if slot.conn is not None:
                slot.conn.close()


# ---------------------------------------------------------------------------------------------- configuration
@dataclass
class ExecutorSpec:
    """Which executor a run uses (config ``search.executor`` and its keys); ``start`` makes one."""

    kind: str = "inline"
    workers: int | None = None  # local: slots (None: one per visible GPU, else search.parallel CPU slots)
    retries: int = DEFAULT_RETRIES
    start_method: str = "spawn"
    ray: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"search.executor={self.kind!r} is not one of: {', '.join(EXECUTORS.names())}")
        r = self.retries
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ConfigError(f"search.retries={r!r} must be an integer >= 0 (re-submissions of an evaluation "
                              "whose worker died)")
        w = self.workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ConfigError(f"search.workers={w!r} must be an integer >= 1 or null (one per GPU, else "
                              "search.parallel)")
        if self.start_method not in mp.get_all_start_methods():
            raise ConfigError(f"search.start_method={self.start_method!r} is not one of: "
                              f"{', '.join(mp.get_all_start_methods())}")

    def slot_envs(self, parallel: int) -> list[dict[str, str]]:
        """One environment per local worker: its own GPU when there are GPUs, else a CPU slot with an even
        share of the cores as torch threads."""
        gpus = _visible_gpus()
        n = self.workers or (len(gpus) if gpus else max(1, int(parallel)))
        # an even share of the cores on a GPU too: several scorers on one device each run their host-side work
        # (network builds, small linear algebra) on the CPU, and threads that outnumber cores spin-wait
        threads = str(max(1, (os.cpu_count() or 1) // n))
        share = {"HNAS_WORKER_THREADS": threads, "OMP_NUM_THREADS": threads}
        if gpus:
            return [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)], **share} for i in range(n)]
        return [dict(share) for _ in range(n)]

    def in_driver(self, parallel: int) -> bool:
        """True when work runs in the driver itself (``inline``, or ``local`` with one slot and no workers)."""
        return self.kind == "inline" or (self.kind == "local" and int(parallel) == 1 and self.workers is None)

    def start(self, factory: Callable[[], Any], call: Callable[[Any, Any], Any], parallel: int = 1,
              describe: Callable[[Any], str] = str) -> Executor:
        """The executor of this spec for ``call(factory(), payload)`` work, ``parallel`` evaluations at a time."""
        return EXECUTORS.get(self.kind).from_spec(self, factory, call, parallel, describe)

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> ExecutorSpec:
        """From the ``search`` config group (keys ``executor``, ``workers``, ``retries``, ``start_method``,
        ``ray``)."""
        c = dict(cfg or {})
        ray = c.get("ray") or {}
        if not isinstance(ray, dict):
            raise ConfigError(f"search.ray must be a mapping (address, num_cpus, num_gpus, ...), got {ray!r}")
        return cls(kind=str(c.get("executor") or "inline"), workers=c.get("workers"),
                   retries=c.get("retries", DEFAULT_RETRIES) if c.get("retries") is not None else DEFAULT_RETRIES,
                   start_method=str(c.get("start_method") or "spawn"), ray=dict(ray))


def mps_running() -> bool:
    """True when a CUDA MPS control daemon answers in this environment's pipe directory (the default one, or
    ``CUDA_MPS_PIPE_DIRECTORY``): processes started now share the GPU's multiprocessors at once."""
    return os.path.exists(os.path.join(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"), "control"))


def _visible_gpus() -> list[str]:
    """The CUDA devices this process may use (as CUDA_VISIBLE_DEVICES names them), without initialising CUDA."""
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable torch.cuda: no GPUs
        return []
    if n <= 0:
        return []
    given = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return given[:n] if len(given) >= n else [str(i) for i in range(n)]


#: ``search.executor`` -> class (each with ``from_spec``)
EXECUTORS: Registry[Any] = Registry("search.executor", {
    "inline": "hnas.search.executor:InlineExecutor",
    "local": "hnas.search.executor:LocalExecutor",
    "ray": "hnas.search.ray_executor:RayExecutor",
}, ConfigError)
