"""Executions: states, retries, catchers, Map iterations in threads, Task invocations in the
calling thread or in a ``WorkerPool``'s processes."""

from __future__ import annotations

import json
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from groves.asl.choice import rule_matches
from groves.asl.distributed import (
    THRESHOLD_CAUSE,
    THRESHOLD_ERROR,
    MapRun,
    Objects,
    batches,
    is_distributed,
    read_items,
    tolerated_failures,
)
from groves.asl.errors import StatesError
from groves.asl.paths import evaluate, get_path, select, set_path
from groves.asl.validation import Handler, validate
from groves.workers import Outcome, WorkerPool

TERMINAL_ERRORS = frozenset({"States.Runtime", "States.DataLimitExceeded"})
PAYLOAD_LIMIT = 262_144  # Step Functions' limit on a state's input or output, in bytes


class _NotStarted(Exception):
    """A Map iteration that did not start because another one had failed."""


@dataclass
class Execution:
    """What an execution ended with, as ``describe-execution`` would report it."""

    name: str
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    """Where a state runs: how many Map iterations run beside it, which iteration it is, and
    (in a Distributed Map) the name of the child execution it runs in."""

    concurrency: int = 1
    iteration: int | None = None
    execution: str | None = None


@dataclass
class Interpreter:
    """Runs a (validated) definition. Map iterations run in up to ``workers`` threads; Task
    invocations run in ``pool``'s worker processes when one is given, else in the thread."""

    resources: Mapping[str, Handler]
    workers: int = 1
    worker_env: Callable[[int], dict[str, str]] = lambda concurrency: {}
    on_progress: Callable[[str, int, int], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    pool: WorkerPool | None = None
    buckets: Mapping[str, Objects] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def _record(self, kind: str, state: str, scope: Scope, **fields: Any) -> None:
        event = {"type": kind, "state": state, "timestamp": _now(), **fields}
        if scope.iteration is not None:
            event["iteration"] = scope.iteration
        if scope.execution is not None:
            event["execution"] = scope.execution
        self.history.append(event)  # list.append is atomic: iterations may record at once

    def run(
        self, machine: Mapping[str, Any], data: Any, context: dict[str, Any], scope: Scope = Scope()
    ) -> Any:
        states, name = machine["States"], machine["StartAt"]
        while True:
            state = states[name]
            self._record("StateEntered", name, scope)
            context = {**context, "State": {"Name": name, "EnteredTime": _now(), "RetryCount": 0}}
            kind = state["Type"]
            if kind == "Fail":
                raise StatesError(*self._failure(state, data))
            if kind == "Succeed":
                return select(
                    select(data, state.get("InputPath", "$")), state.get("OutputPath", "$")
                )
            if kind == "Choice":
                name = self._choose(name, state, select(data, state.get("InputPath", "$")))
                data = select(
                    select(data, state.get("InputPath", "$")), state.get("OutputPath", "$")
                )
                continue
            try:
                data = self._run_state(name, state, data, context, scope)
            except StatesError as err:
                catcher = next(
                    (
                        c
                        for c in state.get("Catch", [])
                        if _error_matches(c["ErrorEquals"], err.error)
                    ),
                    None,
                )
                if catcher is None:
                    raise
                self._record("Caught", name, scope, error=err.error)
                data = set_path(
                    data, catcher.get("ResultPath", "$"), {"Error": err.error, "Cause": err.cause}
                )
                name = catcher["Next"]
                continue
            self._record("StateExited", name, scope)
            if state.get("End"):
                return data
            name = state["Next"]

    def _failure(self, state: Mapping[str, Any], data: Any) -> tuple[str, str]:
        error = get_path(data, state["ErrorPath"]) if "ErrorPath" in state else state.get("Error")
        cause = get_path(data, state["CausePath"]) if "CausePath" in state else state.get("Cause")
        return str(error or "States.Failed"), str(cause or "")

    def _choose(self, name: str, state: Mapping[str, Any], data: Any) -> str:
        for rule in state["Choices"]:
            if rule_matches(rule, data):
                return rule["Next"]
        if "Default" not in state:
            raise StatesError("States.NoChoiceMatched", f"no choice of {name!r} matched")
        return state["Default"]

    def _run_state(
        self, name: str, state: Mapping[str, Any], raw: Any, context: dict, scope: Scope
    ) -> Any:
        effective = select(raw, state.get("InputPath", "$"))
        if state["Type"] == "Pass":
            result = state.get("Result", effective)
            if "Parameters" in state:
                result = evaluate(state["Parameters"], effective, context)
        else:
            result = self._with_retry(name, state, effective, context, scope)
        if "ResultSelector" in state:
            result = evaluate(state["ResultSelector"], result, context)
        output = select(
            set_path(raw, state.get("ResultPath", "$"), result), state.get("OutputPath", "$")
        )
        _check_size(name, output)
        return output

    def _with_retry(
        self, name: str, state: Mapping[str, Any], data: Any, context: dict, scope: Scope
    ) -> Any:
        attempts: dict[int, int] = {}
        while True:
            try:
                if state["Type"] == "Task":
                    return self._task(name, state, data, context, scope)
                return self._map(name, state, data, context)
            except StatesError as err:
                index = next(
                    (
                        i
                        for i, r in enumerate(state.get("Retry", []))
                        if _error_matches(r["ErrorEquals"], err.error)
                    ),
                    None,
                )
                if index is None:
                    raise
                retrier = state["Retry"][index]
                done = attempts.get(index, 0)
                if done >= retrier.get("MaxAttempts", 3):
                    raise
                attempts[index] = done + 1
                delay = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** done
                delay = min(delay, retrier.get("MaxDelaySeconds", delay))
                if retrier.get("JitterStrategy") == "FULL":
                    delay = random.uniform(0, delay)
                self._record("Retry", name, scope, error=err.error)
                context["State"]["RetryCount"] = done + 1
                self.sleep(delay)

    def _task(
        self, name: str, state: Mapping[str, Any], data: Any, context: dict, scope: Scope
    ) -> Any:
        payload = evaluate(state["Parameters"], data, context) if "Parameters" in state else data
        _check_size(name, payload)
        resource = state["Resource"]
        if self.pool is None:
            outcome = call_handler(self.resources[resource], payload)
        else:
            outcome = self.pool.invoke(resource, payload, self.worker_env(scope.concurrency))
        if outcome[0] == "error":
            raise StatesError(outcome[1], outcome[2])
        return outcome[1]

    def _map(self, name: str, state: Mapping[str, Any], data: Any, context: dict) -> Any:
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
        if is_distributed(state):
            run = MapRun(context["StateMachine"]["Name"], state.get("Label", name), inputs, counts)
            return self._map_run(name, state, run, n_threads, data, context)
        self._record("MapStarted", name, Scope(), items=len(items), workers=n_threads)
        processor = state["ItemProcessor"]

        def iteration(index: int) -> Any:
            return self.run(processor, inputs[index], context, Scope(n_threads, index))

        if n_threads == 1:
            results = []
            for index in range(len(inputs)):
                results.append(iteration(index))
                self._progress(name, index + 1, len(inputs))
            return results
        return self._map_in_threads(name, iteration, len(inputs), n_threads)

    def _map_run(
        self,
        name: str,
        state: Mapping[str, Any],
        run: MapRun,
        n_threads: int,
        data: Any,
        context: dict,
    ) -> Any:
        """A Distributed Map: each input runs as a child execution with a name and a context of
        its own. Once more items failed than tolerated, no child starts (they stay PENDING) and
        the ones still running end ABORTED, as Step Functions stops them; ResultWriter's files
        are written either way, then the Map fails with States.ExceedToleratedFailureThreshold."""
        processor = state["ItemProcessor"]
        tolerated = tolerated_failures(state, sum(c.n_items for c in run.children))
        exceeded, lock = threading.Event(), threading.Lock()
        self._record(
            "MapRunStarted",
            name,
            Scope(),
            map_run=run.arn,
            children=len(run.children),
            items=sum(c.n_items for c in run.children),
            workers=n_threads,
        )

        def child_execution(index: int) -> None:
            child = run.children[index]
            if exceeded.is_set():
                return
            child.status, child.started = "RUNNING", _now()
            scope = Scope(n_threads, index, child.name)
            child_context = {
                "Execution": {
                    "Id": child.arn,
                    "Name": child.name,
                    "Input": child.input,
                    "StartTime": child.started,
                },
                "StateMachine": {"Id": run.machine_arn, "Name": f"{run.machine}/{run.label}"},
            }
            self._record("ChildExecutionStarted", name, scope)
            try:
                output, failure = self.run(processor, child.input, child_context, scope), None
            except StatesError as err:
                output, failure = None, err
            with lock:
                child.stopped = _now()
                if failure is not None:
                    child.status, child.error, child.cause = "FAILED", failure.error, failure.cause
                elif exceeded.is_set():
                    child.status, child.error, child.cause = "ABORTED", "States.Aborted", ""
                else:
                    child.status, child.output = "SUCCEEDED", output
                if run.failed_items() > tolerated:
                    exceeded.set()
                done = sum(c.n_items for c in run.children if c.status == "SUCCEEDED")
            self._record(
                f"ChildExecution{child.status.title()}",
                name,
                scope,
                **({"error": child.error, "cause": child.cause} if child.error else {}),
            )
            if child.status == "SUCCEEDED":
                self._progress(name, done, n_items)

        n_items = sum(c.n_items for c in run.children)
        if n_threads == 1:
            for index in range(len(run.children)):
                child_execution(index)
        elif run.children:
            self._map_in_threads(name, child_execution, len(run.children), n_threads, False)
        output: Any = [c.output for c in run.children]
        if "ResultWriter" in state:
            output = run.write_results(name, state["ResultWriter"], data, context, self.buckets)
        if exceeded.is_set():
            self._record("MapRunFailed", name, Scope(), failed_items=run.failed_items())
            raise StatesError(THRESHOLD_ERROR, THRESHOLD_CAUSE)
        self._record("MapRunSucceeded", name, Scope())
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

    def _progress(self, name: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(name, done, total)


def call_handler(handler: Handler, payload: Any) -> Outcome:
    """Call a handler as Lambda would: JSON in, JSON out, an exception named by its type."""
    try:
        return ("ok", json.loads(json.dumps(handler(json.loads(json.dumps(payload))))))
    except Exception as exc:
        cause = {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "stackTrace": traceback.format_exception(exc)[-6:],
        }
        return ("error", type(exc).__name__, json.dumps(cause))


def _error_matches(names: list[str], error: str) -> bool:
    """Whether a retrier's or catcher's ErrorEquals matches an error. The terminal errors
    (``States.Runtime``, ``States.DataLimitExceeded``) match only by their own name: neither
    ``States.ALL`` nor ``States.TaskFailed`` catches them."""
    if error in names:
        return True
    if error in TERMINAL_ERRORS:
        return False
    return "States.ALL" in names or ("States.TaskFailed" in names and error != "States.Timeout")


def _check_size(name: str, value: Any) -> None:
    size = len(json.dumps(value).encode())
    if size > PAYLOAD_LIMIT:
        raise StatesError(
            "States.DataLimitExceeded",
            f"{name}: {size} bytes exceed the {PAYLOAD_LIMIT}-byte payload limit",
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def execute(
    machine: Mapping[str, Any], data: Any, interpreter: Interpreter, name: str | None = None
) -> Execution:
    """Run a whole execution; a failure ends as status FAILED with its error and cause."""
    validate(machine, interpreter.resources)
    name = name or uuid.uuid4().hex
    context = {
        "Execution": {"Id": f"local:{name}", "Name": name, "Input": data, "StartTime": _now()},
        "StateMachine": {"Id": "local", "Name": "local"},
    }
    started = time.perf_counter()
    execution = Execution(name=name, status="RUNNING", history=interpreter.history)
    try:
        execution.output = interpreter.run(machine, data, context)
        execution.status = "SUCCEEDED"
    except StatesError as err:
        execution.status, execution.error, execution.cause = "FAILED", err.error, err.cause
    execution.seconds = time.perf_counter() - started
    return execution
