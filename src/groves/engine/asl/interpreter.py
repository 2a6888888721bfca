"""Executions: states, retries, catchers, Map iterations in threads, Task invocations in the
calling thread or in a ``WorkerPool``'s processes."""

from __future__ import annotations

import json
import random
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from groves.engine.asl.choice import rule_matches
from groves.engine.asl.distributed import Objects
from groves.engine.asl.errors import StatesError
from groves.engine.asl.history import EventLog, Scope, as_json, now
from groves.engine.asl.maps import MapStates
from groves.engine.asl.paths import evaluate, get_path, select, set_path
from groves.engine.asl.validation import Handler, validate
from groves.engine.workers import Outcome, WorkerPool

TERMINAL_ERRORS = frozenset({"States.Runtime", "States.DataLimitExceeded"})
PAYLOAD_LIMIT = 262_144  # Step Functions' limit on a state's input or output, in bytes


@dataclass
class Execution:
    """What an execution ended with, as ``describe-execution`` would report it, with its
    history (``get_execution_history``'s events), its Distributed Maps' child executions' (each
    an ``EventLog``) and its Map Runs (as ``describe-map-run`` reports them)."""

    name: str
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    seconds: float = 0.0
    started_at: str = ""
    stopped_at: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    children: list[EventLog] = field(default_factory=list)
    map_runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Interpreter(MapStates):
    """Runs a (validated) definition. Map iterations run in up to ``workers`` threads; Task
    invocations run in ``pool``'s worker processes when one is given, else in the thread."""

    resources: Mapping[str, Handler]
    workers: int = 1
    worker_env: Callable[[int], dict[str, str]] = lambda concurrency: {}
    on_progress: Callable[[str, int, int], None] | None = None
    on_event: Callable[[dict[str, Any]], None] | None = None  # the execution's own events
    sleep: Callable[[float], None] = time.sleep
    pool: WorkerPool | None = None
    buckets: Mapping[str, Objects] = field(default_factory=dict)
    execution: Execution | None = None  # the last one started, as far as it got
    children: list[EventLog] = field(default_factory=list)  # child executions' histories
    map_runs: list[dict[str, Any]] = field(default_factory=list)

    def _record(
        self, scope: Scope, kind: str, details: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record an event in ``scope``'s history; the execution's own events also go to
        ``on_event``."""
        event = scope.record(kind, details)
        if self.on_event is not None and scope.top:
            self.on_event(event)
        return event

    def run(
        self, machine: Mapping[str, Any], data: Any, context: dict[str, Any], scope: Scope
    ) -> Any:
        states, name = machine["States"], machine["StartAt"]
        while True:
            state = states[name]
            kind = state["Type"]
            self._record(scope, f"{kind}StateEntered", {"name": name, "input": as_json(data)})
            context = {**context, "State": {"Name": name, "EnteredTime": now(), "RetryCount": 0}}
            if kind == "Fail":
                raise StatesError(*self._failure(state, data))
            if kind in ("Succeed", "Choice"):  # their output is their input, through the paths
                chosen = self._choose(name, state, select(data, state.get("InputPath", "$")))
                data = select(
                    select(data, state.get("InputPath", "$")), state.get("OutputPath", "$")
                )
                self._exited(scope, kind, name, data)
                if chosen is None:
                    return data
                name = chosen
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
                data = set_path(
                    data, catcher.get("ResultPath", "$"), {"Error": err.error, "Cause": err.cause}
                )
                self._exited(scope, kind, name, data)
                name = catcher["Next"]
                continue
            self._exited(scope, kind, name, data)
            if state.get("End"):
                return data
            name = state["Next"]

    def _exited(self, scope: Scope, kind: str, name: str, output: Any) -> None:
        self._record(scope, f"{kind}StateExited", {"name": name, "output": as_json(output)})

    def _failure(self, state: Mapping[str, Any], data: Any) -> tuple[str, str]:
        error = get_path(data, state["ErrorPath"]) if "ErrorPath" in state else state.get("Error")
        cause = get_path(data, state["CausePath"]) if "CausePath" in state else state.get("Cause")
        return str(error or "States.Failed"), str(cause or "")

    def _choose(self, name: str, state: Mapping[str, Any], data: Any) -> str | None:
        """The next state a Choice picks; ``None`` for a Succeed state, which ends."""
        if state["Type"] == "Succeed":
            return None
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
                return self._map(name, state, data, context, scope)
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
                context["State"]["RetryCount"] = done + 1
                self.sleep(delay)

    def _task(
        self, name: str, state: Mapping[str, Any], data: Any, context: dict, scope: Scope
    ) -> Any:
        payload = evaluate(state["Parameters"], data, context) if "Parameters" in state else data
        _check_size(name, payload)
        resource = state["Resource"]
        scheduled = {"resource": resource, "input": as_json(payload)}
        self._record(scope, "LambdaFunctionScheduled", scheduled)
        self._record(scope, "LambdaFunctionStarted")
        if self.pool is None:
            outcome = call_handler(self.resources[resource], payload)
        else:
            outcome = self.pool.invoke(resource, payload, self.worker_env(scope.concurrency))
        if outcome[0] == "error":
            failed = {"error": outcome[1], "cause": outcome[2]}
            self._record(scope, "LambdaFunctionFailed", failed)
            raise StatesError(outcome[1], outcome[2])
        self._record(scope, "LambdaFunctionSucceeded", {"output": as_json(outcome[1])})
        return outcome[1]

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


def execute(
    machine: Mapping[str, Any], data: Any, interpreter: Interpreter, name: str | None = None
) -> Execution:
    """Run a whole execution; a failure ends as status FAILED with its error and cause. An
    interrupt (any other exception) ends it ABORTED (``ExecutionAborted``, and
    ``interpreter.execution`` keeps it), and goes on."""
    validate(machine, interpreter.resources)
    name = name or uuid.uuid4().hex
    scope = Scope()
    interpreter.children[:], interpreter.map_runs[:] = [], []
    execution = interpreter.execution = Execution(
        name=name,
        status="RUNNING",
        started_at=now(),
        history=scope.log.events,
        children=interpreter.children,
        map_runs=interpreter.map_runs,
    )
    context = {
        "Execution": {
            "Id": f"local:{name}",
            "Name": name,
            "Input": data,
            "StartTime": execution.started_at,
        },
        "StateMachine": {"Id": "local", "Name": "local"},
    }
    started = time.perf_counter()
    interpreter._record(scope, "ExecutionStarted", {"input": as_json(data)})
    try:
        execution.output = interpreter.run(machine, data, context, scope)
        execution.status = "SUCCEEDED"
        interpreter._record(scope, "ExecutionSucceeded", {"output": as_json(execution.output)})
    except StatesError as err:
        execution.status, execution.error, execution.cause = "FAILED", err.error, err.cause
        interpreter._record(scope, "ExecutionFailed", {"error": err.error, "cause": err.cause})
    except BaseException:
        execution.status = "ABORTED"
        interpreter._record(scope, "ExecutionAborted", {})
        raise
    finally:
        execution.seconds = time.perf_counter() - started
        execution.stopped_at = now()
    return execution
