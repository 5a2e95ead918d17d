"""Engines: run one function over many cases, in this process, a process pool, or a Ray cluster.

An engine maps ``fn(shared, item)`` over ``items`` and yields ``(item, result)`` pairs as they
complete. ``shared`` (a job's recipe) is shipped to each worker once. Results do not depend on the
engine or the number of workers: each case draws only from its own key.

- `LocalEngine(workers=1)`: in this process, in order (the embedded default; no server).
- `LocalEngine(workers=N)`: a pool of ``N`` fresh worker processes (``spawn``: each imports JAX
  itself; nothing is inherited from the driver's JAX state).
- `RayEngine(address=None)`: tasks on a Ray cluster (``pip install "medphys[ray]"``).
  ``address=None`` starts a local cluster unless ``RAY_ADDRESS`` names one; ``"auto"`` joins the
  cluster this machine belongs to; ``"ray://host:port"`` a remote one. Create (and so start) the
  engine before the driver imports JAX.

Each engine is a context manager; leaving it stops its workers (also on Ctrl-C).
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import multiprocessing
import os
import signal
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


class EngineError(RuntimeError):
    """An engine cannot start (Ray missing, a cluster that does not answer, bad worker count)."""


class AbstractEngine(abc.ABC):
    """Maps a function over items; see the module docstring."""

    #: a short name for provenance and messages (``"local"``, ``"ray"``)
    kind: str = "abstract"

    @abc.abstractmethod
    def map(self, fn: Callable[[S, T], R], shared: S, items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Yield ``(item, fn(shared, item))`` for every item, in completion order."""

    def describe(self) -> dict[str, Any]:
        """What ran the job, for provenance (never part of a digest: results do not depend on it)."""
        return {"engine": self.kind}

    def close(self) -> None:  # noqa: B027 (engines without workers have nothing to stop)
        """Stop the workers (a no-op for engines without any)."""

    def __enter__(self) -> AbstractEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The job's shared payload inside a pool worker (set once by the pool's initializer).
_WORKER_SHARED: Any = None


#: workers of one machine share its accelerator: no worker may take most of its memory up front
_WORKER_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def _worker_init(shared: Any) -> None:
    global _WORKER_SHARED
    # Ctrl-C reaches the whole process group: the driver handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name, value in _WORKER_ENV.items():
        os.environ.setdefault(name, value)
    _WORKER_SHARED = shared


def _worker_call(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_WORKER_SHARED, item)


class LocalEngine(AbstractEngine):
    """This machine: in process (``workers=1``) or a pool of fresh processes (``workers > 1``)."""

    kind = "local"

    def __init__(self, workers: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise EngineError(
                f"medphys.pipelines.LocalEngine: `workers` must be a positive integer "
                f"(got {workers!r})"
            )
        self.workers = workers
        self._pool: cf.ProcessPoolExecutor | None = None

    def describe(self) -> dict[str, Any]:
        return {"engine": self.kind, "workers": self.workers}

    def map(self, fn: Callable[[S, T], R], shared: S, items: Iterable[T]) -> Iterator[tuple[T, R]]:
        items = list(items)
        if self.workers == 1 or len(items) <= 1:
            for item in items:
                yield item, fn(shared, item)
            return
        self._pool = cf.ProcessPoolExecutor(
            max_workers=min(self.workers, len(items)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(shared,),
        )
        try:
            futures = {self._pool.submit(_worker_call, fn, item): item for item in items}
            for future in cf.as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            self.close(kill=True)
            raise
        finally:
            self.close()

    def close(self, *, kill: bool = False) -> None:
        """Stop the pool; ``kill``: end running cases now (after an error or an interrupt)."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if kill:
            # ProcessPoolExecutor has no public way to end running tasks before Python 3.14.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    return fn(shared, item)


class RayEngine(AbstractEngine):
    """A Ray cluster: one task per item (``pip install "medphys[ray]"``).

    Args:
        address: ``None`` (``RAY_ADDRESS`` if set, else start a local cluster), ``"auto"`` (the
            cluster this machine belongs to) or ``"ray://host:port"``.
        num_cpus: CPUs of a cluster started here (``None``: all); ignored when joining one.
        cpus_per_task: CPUs Ray reserves for each case.

    Raises:
        EngineError: Ray is not installed (the message gives the install command), or the cluster
            does not answer. Raised here, before any case runs.
    """

    kind = "ray"

    def __init__(
        self, address: str | None = None, *, num_cpus: int | None = None, cpus_per_task: int = 1
    ) -> None:
        try:
            import ray
        except ImportError:
            raise EngineError(
                'medphys: --engine ray needs Ray: pip install "medphys[ray]" '
                '(or pip install "ray>=2.9")'
            ) from None
        self._ray = ray
        self.address = address if address is not None else os.environ.get("RAY_ADDRESS")
        self.cpus_per_task = int(cpus_per_task)
        self._started_here = False
        if self.address not in (None, "auto"):
            _check_reachable(self.address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "runtime_env": {"env_vars": dict(_WORKER_ENV)},
            }
            if self.address is None:
                kwargs["num_cpus"] = num_cpus
            try:
                with warnings.catch_warnings():
                    # Ray forks helper processes that exec at once and never run JAX code; JAX's
                    # at-fork hook would warn about it when the driver already uses JAX.
                    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
                    ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EngineError(
                    f"medphys: the Ray cluster at {self.address!r} does not answer ({exc}); "
                    "start it (ray start --head) or unset RAY_ADDRESS to run a local one"
                ) from None
            self._started_here = True
        self._remote = ray.remote(num_cpus=self.cpus_per_task)(_ray_call)

    def describe(self) -> dict[str, Any]:
        resources = self._ray.cluster_resources()
        return {
            "engine": self.kind,
            "address": self.address or "local",
            "cluster_cpus": int(resources.get("CPU", 0)),
        }

    def map(self, fn: Callable[[S, T], R], shared: S, items: Iterable[T]) -> Iterator[tuple[T, R]]:
        ray = self._ray
        shared_ref = ray.put(shared)
        pending = {self._remote.remote(fn, shared_ref, item): item for item in items}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item = pending.pop(ref)
                    yield item, ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
            self._started_here = False


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast on a cluster address nothing listens on (Ray itself retries for minutes)."""
    import socket

    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(
            f"medphys: the Ray address must be 'auto', 'host:port' or 'ray://host:port' "
            f"(got {address!r})"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise EngineError(
            f"medphys: the Ray cluster at {address!r} does not answer ({exc.strerror or exc}); "
            "start it (ray start --head) or unset RAY_ADDRESS to run a local one"
        ) from None


def make_engine(
    kind: str = "local", *, workers: int = 1, address: str | None = None
) -> AbstractEngine:
    """An engine by name: ``"local"`` (with ``workers``) or ``"ray"`` (with ``address``).

    Raises:
        EngineError: an unknown kind, a bad worker count, Ray missing or not answering.
    """
    if kind == "local":
        if address is not None:
            raise EngineError("medphys: --address is for --engine ray (got --engine local)")
        return LocalEngine(workers)
    if kind == "ray":
        return RayEngine(address, num_cpus=None if workers == 1 else workers)
    raise EngineError(f"medphys: --engine must be 'local' or 'ray' (got {kind!r})")
