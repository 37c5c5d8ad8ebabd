"""Where independent tasks run: in this process, in a local process pool, or on a Dask cluster.

Simulation blocks and research retrainings are independent tasks. An :class:`Executor` runs
``fn(*args)`` for each task and yields the results **in the order the tasks were given**, whatever
order they finish in, keeping at most ``window`` tasks in flight (memory does not grow with the
number of tasks). So a result computed from them is the same on any executor: the tasks carry their
own seeds, and nothing depends on which worker ran what or when.

``connect("local:4")`` starts a Dask ``LocalCluster`` of 4 worker processes (one thread each) and
closes it with the executor; ``connect("tcp://host:8786")`` joins a running scheduler;
:class:`DaskExecutor` also wraps a ``distributed.Client`` the caller owns. Functions sent to Dask
are module-level (pickled by reference), so workers need cohep installed, and the files a task
reads or writes must be reachable there (a shared file system on a batch cluster).
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from cohep.core.errors import CohepError


class Executor:
    """Runs tasks; ``workers`` is how many run at once (it sizes the in-flight window)."""

    workers: int = 1

    def map(self, fn: Callable, tasks: Iterable[tuple], *, window: int | None = None) -> Iterator:
        """``fn(*args)`` for each ``args`` in ``tasks``, yielded in the tasks' order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started (a pool, a local cluster); a no-op for borrowed ones."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        return f"{type(self).__name__}({self.workers})"


class SerialExecutor(Executor):
    """Every task in this process, one after the other."""

    def map(self, fn, tasks, *, window=None):
        for args in tasks:
            yield fn(*args)

    def describe(self) -> str:
        return "in-process"


def _in_order(submit: Callable, result: Callable, tasks: Iterable[tuple], window: int, *,
              cancel: Callable[[list], object] | None = None) -> Iterator:
    """``result(submit(args))`` for each task, in the tasks' order, with at most ``window`` submitted
    and not yet yielded; ``cancel`` drops what is still pending when the consumer stops early or a
    task fails."""
    pending: deque = deque()
    it = iter(tasks)
    try:
        for args in it:
            pending.append(submit(args))
            if len(pending) >= window:
                break
        while pending:
            value = result(pending.popleft())
            nxt = next(it, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield value
    finally:
        if pending and cancel is not None:
            cancel(list(pending))


def _quiet_worker() -> None:
    # one thread per worker process: the workers are the parallelism
    os.environ.setdefault("OMP_NUM_THREADS", "1")


class ProcessExecutor(Executor):
    """A local ``multiprocessing`` pool (forked where the platform allows; made before any file is open)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, int(workers))
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        self._pool = ctx.Pool(self.workers, initializer=_quiet_worker)

    def map(self, fn, tasks, *, window=None):
        return _in_order(lambda args: self._pool.apply_async(fn, args), lambda job: job.get(), tasks,
                         window or 3 * self.workers)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def describe(self) -> str:
        return f"{self.workers} local processes"


class DaskExecutor(Executor):
    """Tasks as Dask futures on ``client``'s cluster; ``own``: close the client (and ``cluster``) on close."""

    def __init__(self, client, *, cluster=None, own: bool = False) -> None:
        self.client = client
        self._cluster = cluster
        self._own = own
        try:
            threads = sum(client.nthreads().values())
        except (OSError, TimeoutError) as exc:
            raise CohepError(f"Dask scheduler {_address(client)}: cannot list its workers ({exc})") from None
        self.workers = max(1, int(threads))

    def map(self, fn, tasks, *, window=None):
        def result(fut):
            value = fut.result()
            fut.release()
            return value

        return _in_order(lambda args: self.client.submit(fn, *args, pure=False), result, tasks,
                         window or 3 * self.workers, cancel=self.client.cancel)

    def close(self) -> None:
        if self._own:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._own = False

    def describe(self) -> str:
        return f"Dask at {_address(self.client)} ({self.workers} worker threads)"


def _address(client) -> str:
    return str(getattr(getattr(client, "scheduler", None), "address", None) or "?")


def local_workers(text: str) -> int | None:
    """K from ``local:K`` (None when ``text`` is another address); a bad K is an error naming it."""
    if not text.startswith("local:"):
        return None
    k = text[len("local:"):]
    if not k.isdigit() or int(k) < 1:
        raise CohepError(f"--scheduler {text}: expected local:K with K a positive number of worker processes")
    return int(k)


def connect(address: str, *, timeout_s: float = 20.0) -> DaskExecutor:
    """A Dask executor for ``address``: ``local:K`` starts a LocalCluster of K worker processes (one
    thread each), anything else is a scheduler address (``tcp://host:8786``) to join."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - dask[distributed] is a dependency
        raise CohepError("--scheduler needs dask[distributed] (pip install 'dask[distributed]')") from None
    k = local_workers(address)
    if k is not None:
        cluster = LocalCluster(n_workers=k, processes=True, threads_per_worker=1, dashboard_address=None)
        return DaskExecutor(Client(cluster), cluster=cluster, own=True)
    try:
        client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CohepError(f"--scheduler {address}: cannot connect ({why})") from None
    return DaskExecutor(client, own=True)


def resolve(executor: Executor | None = None, *, client=None, scheduler: str | None = None,
            workers: int = 1) -> tuple[Executor, bool]:
    """The executor to use and whether the caller must close it: an executor given, else a Dask
    ``client``, else a ``scheduler`` address, else a local pool of ``workers`` (1: in-process)."""
    given = [x is not None for x in (executor, client, scheduler)]
    if sum(given) > 1:
        raise CohepError("give at most one of an executor, a Dask client and a scheduler address")
    if executor is not None:
        return executor, False
    if client is not None:
        return DaskExecutor(client), True
    if scheduler is not None:
        return connect(scheduler), True
    if workers > 1:
        return ProcessExecutor(workers), True
    return SerialExecutor(), True
