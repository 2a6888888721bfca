"""A local interpreter for the part of the Amazon States Language that groves' state machine uses.

Supported: Task, Map (inline, MaxConcurrency/MaxConcurrencyPath, iterations in threads), Choice,
Pass, Succeed, Fail (Error/Cause and ErrorPath/CausePath), Retry, Catch, InputPath, Parameters,
ItemsPath, ItemSelector, ResultSelector, ResultPath, OutputPath, and the context object
(``$$.Execution``, ``$$.State``, ``$$.Map.Item``). Anything else is refused when the definition is
loaded, so a definition that runs here uses nothing the runner ignores.

Task invocations run in the calling thread, or, given a ``WorkerPool``, in worker processes
as Lambda runs them (a worker that dies fails its invocation with ``Lambda.Unknown``). Map
iterations are interpreted in threads of this process, so the history keeps every iteration's
states and retries, tagged with the iteration's index.
"""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from groves.workers import Outcome, WorkerPool

PAYLOAD_LIMIT = 262_144  # Step Functions' limit on a state's input or output, in bytes
Handler = Callable[[Any], Any]

COMMON = {"Type", "Comment", "Next", "End", "InputPath", "OutputPath"}
FIELDS = {
    "Task": COMMON | {"Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"},
    "Map": COMMON
    | {
        "ItemsPath",
        "ItemSelector",
        "ItemProcessor",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ResultSelector",
        "ResultPath",
        "Retry",
        "Catch",
    },
    "Pass": COMMON | {"Parameters", "Result", "ResultPath"},
    "Choice": {"Type", "Comment", "InputPath", "OutputPath", "Choices", "Default"},
    "Succeed": {"Type", "Comment", "InputPath", "OutputPath"},
    "Fail": {"Type", "Comment", "Error", "Cause", "ErrorPath", "CausePath"},
}
RETRY_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
CATCH_FIELDS = {"ErrorEquals", "ResultPath", "Next", "Comment"}
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "StringEquals": lambda a, b: isinstance(a, str) and a == b,
    "BooleanEquals": lambda a, b: isinstance(a, bool) and a == b,
    "NumericEquals": lambda a, b: _is_number(a) and a == b,
    "NumericLessThan": lambda a, b: _is_number(a) and a < b,
    "NumericGreaterThan": lambda a, b: _is_number(a) and a > b,
    "NumericLessThanEquals": lambda a, b: _is_number(a) and a <= b,
    "NumericGreaterThanEquals": lambda a, b: _is_number(a) and a >= b,
    "IsNull": lambda a, b: (a is None) == b,
    "IsBoolean": lambda a, b: isinstance(a, bool) == b,
    "IsNumeric": lambda a, b: _is_number(a) == b,
    "IsString": lambda a, b: isinstance(a, str) == b,
}
TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class StatesError(Exception):
    """An error as Step Functions names it (``error``) with its ``cause``."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class _NotStarted(Exception):
    """A Map iteration that did not start because another one had failed."""


class UnsupportedDefinition(ValueError):
    """The definition uses something this interpreter does not implement."""


# ---- paths -------------------------------------------------------------------------------


def _tokens(path: str) -> list[str | int]:
    rest, tokens = path[1:], []
    while rest:
        match = TOKEN.match(rest)
        if not match:
            raise UnsupportedDefinition(
                f"path {path!r}: only $.field, $['field'] and [n] steps are supported"
            )
        name, index, quoted = match.groups()
        tokens.append(int(index) if index is not None else name if name is not None else quoted)
        rest = rest[match.end() :]
    return tokens


def get_path(data: Any, path: str, context: Any = None) -> Any:
    """The value at a reference path; ``$$`` paths read the context object."""
    root, rest = (context, path[1:]) if path.startswith("$$") else (data, path)
    if not rest.startswith("$"):
        raise UnsupportedDefinition(f"path {path!r} must start with $")
    value = root
    for token in _tokens(rest):
        try:
            value = value[token]
        except (KeyError, IndexError, TypeError) as exc:
            raise StatesError(
                "States.Runtime", f"the path {path!r} matches nothing in {json.dumps(root)[:500]}"
            ) from exc
    return value


def path_exists(data: Any, path: str) -> bool:
    try:
        get_path(data, path)
    except StatesError:
        return False
    return True


def set_path(data: Any, path: str | None, value: Any) -> Any:
    """Apply a ResultPath: ``None`` keeps the input, ``$`` replaces it, ``$.a.b`` sets a field."""
    if path is None:
        return data
    tokens = _tokens(path)
    if not tokens:
        return value
    result = copy.deepcopy(data) if isinstance(data, dict) else {}
    node = result
    for token in tokens[:-1]:
        if not isinstance(node.get(token), dict):
            node[token] = {}
        node = node[token]
    node[tokens[-1]] = value
    return result


def evaluate(template: Any, data: Any, context: Any) -> Any:
    """Evaluate a payload template (Parameters, ItemSelector, ResultSelector)."""
    if isinstance(template, list):
        return [evaluate(item, data, context) for item in template]
    if not isinstance(template, dict):
        return template
    result = {}
    for key, value in template.items():
        if key.endswith(".$"):
            if not isinstance(value, str) or not value.startswith("$"):
                raise UnsupportedDefinition(
                    f"{key}: {value!r}: only paths are supported, not intrinsic functions"
                )
            result[key[:-2]] = get_path(data, value, context)
        else:
            result[key] = evaluate(value, data, context)
    return result


def _select(data: Any, path: Any) -> Any:
    """Apply an InputPath or OutputPath (``None`` gives ``{}``)."""
    if path is None:
        return {}
    return get_path(data, path)


# ---- validation --------------------------------------------------------------------------


def validate(machine: Mapping[str, Any], resources: Mapping[str, Handler], where: str = "") -> None:
    """Refuse a definition that uses anything this interpreter would not run faithfully."""
    states = machine.get("States", {})
    if machine.get("StartAt") not in states:
        raise UnsupportedDefinition(f"{where}StartAt {machine.get('StartAt')!r} is not a state")
    for name, state in states.items():
        kind = state.get("Type")
        if kind not in FIELDS:
            raise UnsupportedDefinition(f"state {name!r}: type {kind!r} is not supported")
        extra = set(state) - FIELDS[kind]
        if extra:
            raise UnsupportedDefinition(f"state {name!r}: field(s) {sorted(extra)} not supported")
        targets = [state.get("Next"), state.get("Default")]
        targets += [c.get("Next") for c in state.get("Catch", []) + state.get("Choices", [])]
        for target in filter(None, targets):
            if target not in states:
                raise UnsupportedDefinition(f"state {name!r}: Next {target!r} is not a state")
        for retrier in state.get("Retry", []):
            if set(retrier) - RETRY_FIELDS:
                raise UnsupportedDefinition(
                    f"state {name!r}: Retry field(s) {sorted(set(retrier) - RETRY_FIELDS)}"
                )
        for catcher in state.get("Catch", []):
            if set(catcher) - CATCH_FIELDS:
                raise UnsupportedDefinition(
                    f"state {name!r}: Catch field(s) {sorted(set(catcher) - CATCH_FIELDS)}"
                )
        if kind == "Task" and state["Resource"] not in resources:
            raise UnsupportedDefinition(
                f"state {name!r}: no local handler for resource {state['Resource']!r}"
            )
        if kind == "Map":
            processor = state["ItemProcessor"]
            mode = processor.get("ProcessorConfig", {}).get("Mode", "INLINE")
            if mode != "INLINE":
                raise UnsupportedDefinition(f"state {name!r}: Map mode {mode!r} not supported")
            validate(processor, resources, where=f"{where}{name}.")


# ---- execution ---------------------------------------------------------------------------


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
    """Where a state runs: how many Map iterations run beside it, and which iteration it is."""

    concurrency: int = 1
    iteration: int | None = None


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
    history: list[dict[str, Any]] = field(default_factory=list)

    def _record(self, kind: str, state: str, scope: Scope, **fields: Any) -> None:
        event = {"type": kind, "state": state, "timestamp": _now(), **fields}
        if scope.iteration is not None:
            event["iteration"] = scope.iteration
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
                return _select(
                    _select(data, state.get("InputPath", "$")), state.get("OutputPath", "$")
                )
            if kind == "Choice":
                name = self._choose(name, state, _select(data, state.get("InputPath", "$")))
                data = _select(
                    _select(data, state.get("InputPath", "$")), state.get("OutputPath", "$")
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
            if _rule_matches(rule, data):
                return rule["Next"]
        if "Default" not in state:
            raise StatesError("States.NoChoiceMatched", f"no choice of {name!r} matched")
        return state["Default"]

    def _run_state(
        self, name: str, state: Mapping[str, Any], raw: Any, context: dict, scope: Scope
    ) -> Any:
        effective = _select(raw, state.get("InputPath", "$"))
        if state["Type"] == "Pass":
            result = state.get("Result", effective)
            if "Parameters" in state:
                result = evaluate(state["Parameters"], effective, context)
        else:
            result = self._with_retry(name, state, effective, context, scope)
        if "ResultSelector" in state:
            result = evaluate(state["ResultSelector"], result, context)
        output = _select(
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

    def _map(self, name: str, state: Mapping[str, Any], data: Any, context: dict) -> list[Any]:
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
        n_threads = max(1, min(limit or len(items), self.workers, len(items)))
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

    def _map_in_threads(
        self, name: str, iteration: Callable[[int], Any], n_items: int, n_threads: int
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
    return (
        "States.ALL" in names
        or error in names
        or ("States.TaskFailed" in names and error != "States.Timeout")
    )


def _rule_matches(rule: Mapping[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(_rule_matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(_rule_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _rule_matches(rule["Not"], data)
    variable = rule["Variable"]
    operators = set(rule) - {"Variable", "Next", "Comment"}
    if len(operators) != 1:
        raise UnsupportedDefinition(f"choice rule {rule!r} needs exactly one comparison")
    (operator,) = operators
    if operator == "IsPresent":
        return path_exists(data, variable) == rule[operator]
    if operator not in COMPARISONS:
        raise UnsupportedDefinition(f"choice comparison {operator!r} is not supported")
    return COMPARISONS[operator](get_path(data, variable), rule[operator])


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
