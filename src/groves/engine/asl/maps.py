"""Map states: inline iterations in threads, and Distributed Maps' child executions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from typing import Any

from groves.engine.asl.distributed import (
    THRESHOLD_CAUSE,
    THRESHOLD_ERROR,
    MapRun,
    Objects,
    batches,
    is_distributed,
    read_items,
    tolerated_failures,
)
from groves.engine.asl.errors import StatesError
from groves.engine.asl.history import EventLog, Scope, as_json, now
from groves.engine.asl.paths import evaluate, get_path


class _NotStarted(Exception):
    """A Map iteration that did not start because another one had failed."""


class MapStates:
    """The Interpreter's Map states; it provides ``run``, ``_record``, ``_progress``,
    ``workers`` and ``buckets``."""

    workers: int
    buckets: Mapping[str, Objects]
    children: list[EventLog]
    map_runs: list[dict[str, Any]]
    run: Callable[..., Any]
    _record: Callable[..., Any]
    _progress: Callable[[str, int, int], None]

    def _map(
        self, name: str, state: Mapping[str, Any], data: Any, context: dict, scope: Scope
    ) -> Any:
        """A Map state's result. Only Maps of the execution itself report progress; an inline
        Map's iterations stay in the history of the execution ``scope`` runs in."""
        top = scope.top
        if "ItemReader" in state:
            items = read_items(name, state["ItemReader"], data, context, self.buckets)
        else:
            items = get_path(data, state.get("ItemsPath", "$"))
        if not isinstance(items, list):
            raise StatesError("States.Runtime", f"{name}: ItemsPath does not select an array")
        limit = (
            get_path(data, state["MaxConcurrencyPath"])
            if "MaxConcurrencyPath" in state
            else state.get("MaxConcurrency", 0)
        )
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise StatesError(
                "States.Runtime", f"{name}: MaxConcurrency {limit!r} is not a non-negative integer"
            )
        inputs = []
        for index, item in enumerate(items):
            item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
            selector = state.get("ItemSelector")
            inputs.append(evaluate(selector, data, item_context) if selector else item)
        counts = [1] * len(inputs)
        if "ItemBatcher" in state:
            inputs = batches(name, state["ItemBatcher"], inputs, data, context)
            counts = [len(batch["Items"]) for batch in inputs]
        n_threads = max(1, min(limit or len(inputs), self.workers, len(inputs)))
        self._record(scope, "MapStateStarted", {"length": len(items)})
        if top:
            self._progress(name, 0, len(items))
        if is_distributed(state):
            run = MapRun(context["StateMachine"]["Name"], state.get("Label", name), inputs, counts)
            return self._map_run(name, state, run, n_threads, data, context, scope)
        processor = state["ItemProcessor"]
        started_at = scope.last

        def iteration(index: int) -> Any:
            inner = Scope(scope.log, started_at, n_threads, index)
            which = {"name": name, "index": index}
            inner.record("MapIterationStarted", which)
            try:
                result = self.run(processor, inputs[index], context, inner)
            except StatesError:
                inner.record("MapIterationFailed", which)
                raise
            inner.record("MapIterationSucceeded", which)
            return result

        try:
            results = self._iterations(name, iteration, len(inputs), n_threads, top)
        except StatesError:
            self._record(scope, "MapStateFailed")
            raise
        self._record(scope, "MapStateSucceeded")
        return results

    def _iterations(
        self, name: str, iteration: Callable[[int], Any], n: int, n_threads: int, top: bool
    ) -> list[Any]:
        """An inline Map's iterations, in turn or in threads."""
        if n_threads == 1:
            results = []
            for index in range(n):
                results.append(iteration(index))
                if top:
                    self._progress(name, index + 1, n)
            return results
        return self._map_in_threads(name, iteration, n, n_threads, top)

    def _map_run(
        self,
        name: str,
        state: Mapping[str, Any],
        run: MapRun,
        n_threads: int,
        data: Any,
        context: dict,
        scope: Scope,
    ) -> Any:
        """A Distributed Map: each input runs as a child execution with a name and a context of
        its own. Once more items failed than tolerated, no child starts (they stay PENDING) and
        the ones still running end ABORTED, as Step Functions stops them; ResultWriter's files
        are written either way, then the Map fails with States.ExceedToleratedFailureThreshold."""
        processor = state["ItemProcessor"]
        n_items = sum(c.n_items for c in run.children)
        tolerated = tolerated_failures(state, n_items)
        exceeded, lock = threading.Event(), threading.Lock()
        self._record(scope, "MapRunStarted", {"mapRunArn": run.arn})
        described = run.describe(n_threads, tolerated)
        self.map_runs.append(described)
        first_child = len(self.children)  # this Map Run's child histories are appended after

        def child_execution(index: int) -> None:
            child = run.children[index]
            if exceeded.is_set():
                return
            child.status, child.started = "RUNNING", now()
            log = EventLog(child.name, index)
            with lock:
                self.children.append(log)
            inner = Scope(log, 0, n_threads)
            child_context = {
                "Execution": {
                    "Id": child.arn,
                    "Name": child.name,
                    "Input": child.input,
                    "StartTime": child.started,
                },
                "StateMachine": {"Id": run.machine_arn, "Name": f"{run.machine}/{run.label}"},
            }
            inner.record("ExecutionStarted", {"input": as_json(child.input)})
            try:
                output, failure = self.run(processor, child.input, child_context, inner), None
            except StatesError as err:
                output, failure = None, err
            with lock:
                child.stopped = now()
                if failure is not None:
                    child.status, child.error, child.cause = "FAILED", failure.error, failure.cause
                elif exceeded.is_set():
                    child.status, child.error, child.cause = "ABORTED", "States.Aborted", ""
                else:
                    child.status, child.output = "SUCCEEDED", output
                if run.failed_items() > tolerated:
                    exceeded.set()
                done = sum(c.n_items for c in run.children if c.status == "SUCCEEDED")
            if child.status == "SUCCEEDED":
                inner.record("ExecutionSucceeded", {"output": as_json(output)})
            elif child.status == "FAILED":
                inner.record("ExecutionFailed", {"error": child.error, "cause": child.cause})
            else:
                inner.record("ExecutionAborted", {})
            if child.status == "SUCCEEDED" and scope.top:
                self._progress(name, done, n_items)

        if n_threads == 1:
            for index in range(len(run.children)):
                child_execution(index)
        elif run.children:
            self._map_in_threads(name, child_execution, len(run.children), n_threads, False)
        output: Any = [c.output for c in run.children]
        if "ResultWriter" in state:
            output = run.write_results(name, state["ResultWriter"], data, context, self.buckets)
        ours = self.children[first_child:]  # in the order they started: put them in item order
        self.children[first_child:] = sorted(ours, key=lambda log: log.index or 0)
        described.update(run.describe(n_threads, tolerated), stopDate=now())
        if exceeded.is_set():
            failed = {"error": THRESHOLD_ERROR, "cause": THRESHOLD_CAUSE}
            self._record(scope, "MapRunFailed", failed)
            self._record(scope, "MapStateFailed")
            raise StatesError(THRESHOLD_ERROR, THRESHOLD_CAUSE)
        self._record(scope, "MapRunSucceeded")
        self._record(scope, "MapStateSucceeded")
        return output

    def _map_in_threads(
        self,
        name: str,
        iteration: Callable[[int], Any],
        n_items: int,
        n_threads: int,
        report: bool = True,
    ) -> list[Any]:
        """Iterations in ``n_threads`` threads. The first failure fails the Map, as on Step
        Functions: no iteration starts after it, and the ones running are let finish."""
        failed = threading.Event()

        def guarded(index: int) -> Any:
            if failed.is_set():
                raise _NotStarted
            try:
                return iteration(index)
            except BaseException:
                failed.set()
                raise

        executor = ThreadPoolExecutor(n_threads, thread_name_prefix=f"map-{name}")
        try:
            futures = {executor.submit(guarded, i): i for i in range(n_items)}
            results: list[Any] = [None] * n_items
            done_count = 0
            for future in as_completed(futures):
                error = future.exception()
                if error is None:
                    results[futures[future]] = future.result()
                    done_count += 1
                    if report:
                        self._progress(name, done_count, n_items)
                elif not isinstance(error, _NotStarted):
                    wait(futures)
                    raise error
            return results
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
