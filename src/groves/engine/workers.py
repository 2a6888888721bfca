"""Warm worker processes that run Task invocations the way Lambda runs a function: apart from
the runner, so that a crash, an out-of-memory kill or a stop request ends only what it should.

- Workers fork from a server that imported the handlers' modules once (``forkserver``; ``spawn``
  where there is none), take the runner's environment, and serve one invocation at a time.
- A worker that dies (killed, out of memory) fails exactly the invocation it was running with
  Step Functions' error for a Lambda that exited: ``Lambda.Unknown``; a fresh worker replaces it.
- Each function's memory size and timeout (``limits``) are enforced as Lambda enforces them: a
  worker over either is killed and its invocation fails as Lambda's would
  (``Runtime.OutOfMemory``, ``Sandbox.Timedout``; see ``groves.engine.limits``).
- ``close()`` terminates every worker (SIGTERM, then SIGKILL after a grace period), so a stopped
  build leaves no process behind; a worker whose runner dies exits on its own.
- Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the runner decides.

``concurrent.futures`` cannot tell which task a dead worker was running nor (before Python 3.14)
terminate its workers, so this is a small dispatch over ``multiprocessing``'s own primitives.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context, parent_process, spawn
from multiprocessing.connection import Connection, wait
from typing import Any

from groves.engine.limits import (
    MEMORY_ENV,
    POLL_SECONDS,
    Limit,
    out_of_memory,
    peak_mb,
    reset_peak,
    resident_mb,
    timed_out,
)
from groves.steps.cost import TRAIN_MEMORY_ENV

# ("ok", result) or ("error", error name, cause), as Step Functions sees a Lambda invocation end.
Outcome = tuple[str, Any] | tuple[str, str, str]
Call = Callable[[Callable[[Any], Any], Any], Outcome]
GRACE_SECONDS = 1.0
KEPT_MB = 64  # memory another function's invocation may leave in a worker it hands on
START_METHOD = "forkserver" if "forkserver" in get_all_start_methods() else "spawn"
SIGNAL_WORDS = {"SIGKILL": "killed", "SIGTERM": "terminated", "SIGSEGV": "segmentation fault"}


# Workers run groves' handlers, never the caller's own code, so they need not re-import the
# caller's ``__main__`` as multiprocessing's spawn and forkserver children do: a script or a
# ``python -m`` module without an ``if __name__ == "__main__":`` guard would run again in
# every worker (and in the fork server), start workers of its own and fail. Processes started
# by this module's pools are prepared without the main module; other uses of multiprocessing
# in the caller's process are left as they are.
_preparing = threading.local()
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name", "main_path")
_get_preparation_data = spawn.get_preparation_data


def _preparation_data(name: str) -> dict[str, Any]:
    data = _get_preparation_data(name)
    if getattr(_preparing, "without_main", False):
        for key in _MAIN_KEYS:
            data.pop(key, None)
    return data


spawn.get_preparation_data = _preparation_data


@contextlib.contextmanager
def _without_main() -> Any:
    """Processes started in this block (in this thread) do not re-import ``__main__``."""
    _preparing.without_main = True
    try:
        yield
    finally:
        _preparing.without_main = False


class PoolClosed(RuntimeError):
    """The pool was closed (the build is stopping) while an invocation waited for it."""


@dataclass
class _Worker:
    process: Any
    conn: Connection
    resource: str | None = None  # the function it last served


class WorkerPool:
    """``size`` worker processes serving ``invoke(resource, payload)`` from any thread, each
    invocation held to its resource's ``limits`` (none for a resource without one)."""

    def __init__(
        self,
        size: int,
        handlers: Mapping[str, Callable[[Any], Any]],
        call: Call,
        preload: Sequence[str] = (),
        limits: Mapping[str, Limit] | None = None,
    ):
        self._context = get_context(START_METHOD)
        if START_METHOD == "forkserver":
            # workers fork from one server that imported these modules once
            self._context.set_forkserver_preload(list(preload))
        self._handlers, self._call = dict(handlers), call
        self.limits = dict(limits or {})
        self._train_mb = next(
            (x.memory_mb for x in self.limits.values() if x.step == "train_grove"), None
        )
        self._fresh_mb = float("inf")  # a fresh worker's resident memory, once one is seen
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._starting = 0  # workers being started (outside the lock: it can take seconds)
        self.size = size
        self.closed = False
        # Starting waits for the fork server to import its modules: do it in the background,
        # so that the caller's own start-up runs meanwhile; invocations wait for a worker.
        threading.Thread(target=self._start_all, name="groves-workers", daemon=True).start()

    def _start_all(self) -> None:
        for _ in range(self.size):
            try:
                worker = self._start_if_short()
            except PoolClosed:
                return
            except Exception:
                if self.closed:  # an interrupt stopped the fork server under this start
                    return
                raise
            if worker is None:
                return
            self._idle.put(worker)

    def _start_if_short(self) -> _Worker | None:
        """A new worker if the pool is open and short of ``size``, else ``None``."""
        with self._lock:
            if self.closed or len(self._workers) + self._starting >= self.size:
                return None
            self._starting += 1
        try:
            return self._start()
        finally:
            with self._lock:
                self._starting -= 1

    def _start(self) -> _Worker:
        """A new registered worker; one that comes up after ``close()`` is stopped at once."""
        parent_end, child_end = self._context.Pipe()
        # a forked worker gets the runner's environment as it is now, as a spawned one would
        process = self._context.Process(
            target=_serve,
            args=(child_end, self._handlers, self._call, dict(os.environ)),
            daemon=True,
        )
        with _without_main():
            process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        with self._lock:
            self._workers.append(worker)
            closed = self.closed
        if closed:
            process.kill()
            raise PoolClosed("the build is stopping")
        return worker

    def _take(self) -> _Worker:
        """An idle live worker; a fresh one in place of a worker that died."""
        while not self.closed:
            replacement = self._start_if_short()  # a worker still to start, or a dead one's
            if replacement is not None:
                return replacement
            try:
                worker = self._idle.get(timeout=0.2)
            except queue.Empty:
                continue
            if worker.process.is_alive():
                return worker
            self._forget(worker)
        raise PoolClosed("the build is stopping")

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.remove(worker)
        worker.conn.close()

    def invoke(self, resource: str, payload: Any, env: Mapping[str, str]) -> Outcome:
        """Run one invocation in an idle worker and wait for its outcome; a worker that goes
        over its limits is killed, and the invocation fails as Lambda's would."""
        worker = self._take()
        limit = self.limits.get(resource)
        if limit is not None and worker.resource not in (None, resource) and self._kept(worker):
            worker = self._fresh(worker)
        if worker.resource is None:  # a fresh worker: what one holds before any invocation
            now = resident_mb(worker.process.pid)
            self._fresh_mb = min(self._fresh_mb, now) if now is not None else self._fresh_mb
        worker.resource = resource
        if limit is not None:
            env = {**env, MEMORY_ENV: str(limit.memory_mb)}
        if self._train_mb is not None:  # plan sizes each grove's sample by it, as deployed
            env = {**env, TRAIN_MEMORY_ENV: str(self._train_mb)}
        over: Outcome | None = None
        reply = None
        try:
            worker.conn.send((resource, payload, dict(env)))
            over = self._watch(worker, limit)
            if over is None and worker.conn.poll():
                reply = worker.conn.recv()
        except (EOFError, OSError):
            reply = None
        if reply is not None:
            outcome, peak = reply
            if limit is None or peak is None or peak <= limit.memory_mb:
                self._idle.put(worker)
                return outcome
            over = out_of_memory(limit, peak, worker.process.pid)  # between two readings
        if over is not None:
            worker.process.kill()
        worker.process.join(GRACE_SECONDS)
        if self.closed:
            raise PoolClosed("the build is stopping")
        self._forget(worker)
        return over or _exited(worker.process.pid, worker.process.exitcode)

    def _kept(self, worker: _Worker) -> bool:
        """Whether a worker holds more than ``KEPT_MB`` beyond a fresh one's memory: what
        another function's invocation left (plan's freed but kept pages) would count against
        this one's memory size, as it never does on Lambda."""
        now = resident_mb(worker.process.pid)
        return now is None or now > self._fresh_mb + KEPT_MB

    def _fresh(self, worker: _Worker) -> _Worker:
        """A new worker in place of an idle one that served another function and kept memory
        (``_kept``): on Lambda each function has sandboxes of its own."""
        worker.process.kill()
        worker.process.join(GRACE_SECONDS)
        self._forget(worker)
        return self._start()

    @staticmethod
    def _watch(worker: _Worker, limit: Limit | None) -> Outcome | None:
        """Wait for the worker's reply (or its end); what the invocation fails with if it
        goes over ``limit`` first: its memory size, read every ``POLL_SECONDS``, or its
        timeout."""
        ready = [worker.conn, worker.process.sentinel]
        if limit is None:
            wait(ready)
            return None
        pid = worker.process.pid
        deadline = time.monotonic() + limit.timeout_seconds
        while not wait(ready, min(POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            peak = peak_mb(pid)
            if peak is not None and peak > limit.memory_mb:
                return out_of_memory(limit, peak, pid)
            if time.monotonic() >= deadline:
                return timed_out(limit, pid)
        return None

    def close(self, interrupted: bool = False) -> None:
        """Terminate every worker; kill the ones still alive after a grace period. When the
        build is interrupted, the fork server goes too (it may still be importing its
        modules, and would otherwise outlive the runner by as long), after its workers, so
        that it reports their ends. Returns once every one of them is gone: when the command
        exits, none of its processes is left."""
        self.closed = True
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in workers:
            worker.process.join(GRACE_SECONDS)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        pids = [w.process.pid for w in workers if w.process.pid]
        if interrupted and START_METHOD == "forkserver":
            pids += _kill_fork_server()  # and any worker it was still forking
        _wait_gone(pids, GRACE_SECONDS)
        if interrupted:
            _stop_resource_tracker()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        # KeyboardInterrupt and the CLI's signal exception are BaseExceptions, not Exceptions
        self.close(interrupted=kind is not None and not issubclass(kind, Exception))


def _kill_fork_server() -> list[int]:
    """Kill this process's fork server and the processes it forked (a worker coming up while
    the pool closed is in no list yet); multiprocessing starts a new server when next needed.
    (There is no public way to stop it; ``_forkserver_pid`` is set as soon as it is spawned.)
    The pids of its children, to wait for."""
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid
    if not pid:
        return []
    children = _children(pid)
    for victim in (pid, *children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # gone, not merely signalled
    return children


def _stop_resource_tracker() -> None:
    """Stop multiprocessing's resource tracker and wait for it: left alone, it notices the
    runner's exit only after it (and cleans up for a moment more). It restarts when next
    needed. (``_stop`` is how CPython's own tests stop it; there is no public way.)"""
    from multiprocessing import resource_tracker

    with contextlib.suppress(Exception):
        resource_tracker._resource_tracker._stop()


def _children(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (from /proc; none where there is no /proc)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def _wait_gone(pids: Sequence[int], seconds: float) -> None:
    """Wait until none of ``pids`` runs (a process that is only a zombie has ended), for at
    most ``seconds``: a worker's parent is the fork server, so this process cannot reap it."""
    deadline = time.monotonic() + seconds
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _running(pid)]
        if pids:
            time.sleep(0.005)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _exited(pid: int | None, exitcode: int | None) -> Outcome:
    """What Step Functions reports when the Lambda runtime exits mid-invocation."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        how = f"signal: {SIGNAL_WORDS.get(name, name.removeprefix('SIG').lower())}"
    else:
        how = f"exit status {exitcode}"
    cause = {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"Runtime exited with error: {how} (worker process {pid})",
    }
    return ("error", "Lambda.Unknown", json.dumps(cause))


def _exit_with_parent() -> None:
    parent = parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os._exit(1)


def _serve(
    conn: Connection,
    handlers: Mapping[str, Callable[[Any], Any]],
    call: Call,
    environ: Mapping[str, str],
) -> None:
    os.environ.clear()
    os.environ.update(environ)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    pid = os.getpid()
    reset_peak()
    while True:
        try:
            resource, payload, env = conn.recv()
        except (EOFError, OSError):
            return
        os.environ.update(env)
        outcome = call(handlers[resource], payload)
        # the invocation's peak memory; the next one's starts from what the worker keeps
        peak = peak_mb(pid)
        reset_peak()
        conn.send((outcome, peak))
