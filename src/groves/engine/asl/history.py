"""Execution histories in the shape Step Functions' ``get_execution_history`` returns them.

Each event has an ``id`` (from 1), the ``previousEventId`` of the event before it in the same
thread of the execution (an inline Map's iterations are threads of their own), a ``timestamp``,
a ``type`` and the details Step Functions gives that type, e.g.::

    {"id": 2, "previousEventId": 0, "timestamp": "...", "type": "TaskStateEntered",
     "stateEnteredEventDetails": {"name": "Plan", "input": "{...}"}}

The types used: ``ExecutionStarted/Succeeded/Failed/Aborted``, ``<Kind>StateEntered`` and
``<Kind>StateExited`` (Task, Map, Choice, Pass, Succeed, Fail), ``LambdaFunctionScheduled/
Started/Succeeded/Failed`` (a retry schedules the function again), ``MapStateStarted/Succeeded/
Failed``, ``MapIterationStarted/Succeeded/Failed/Aborted`` (inline Maps), ``MapRunStarted/
Succeeded/Failed`` (Distributed Maps, whose child executions have histories of their own).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# The details key of each event type that has details.
DETAILS = {
    "ExecutionStarted": "executionStartedEventDetails",
    "ExecutionSucceeded": "executionSucceededEventDetails",
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionAborted": "executionAbortedEventDetails",
    "LambdaFunctionScheduled": "lambdaFunctionScheduledEventDetails",
    "LambdaFunctionSucceeded": "lambdaFunctionSucceededEventDetails",
    "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails",
    "MapStateStarted": "mapStateStartedEventDetails",
    "MapIterationStarted": "mapIterationStartedEventDetails",
    "MapIterationSucceeded": "mapIterationSucceededEventDetails",
    "MapIterationFailed": "mapIterationFailedEventDetails",
    "MapIterationAborted": "mapIterationAbortedEventDetails",
    "MapRunStarted": "mapRunStartedEventDetails",
    "MapRunFailed": "mapRunFailedEventDetails",
}
END_STATUS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionAborted": "ABORTED",
}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def as_json(value: Any) -> str:
    """A state's input or output as the history gives it: a JSON string."""
    return json.dumps(value, separators=(",", ":"))


@dataclass
class EventLog:
    """One execution's history; child executions of a Distributed Map have their own, with
    their ``name`` and ``index`` in the Map Run."""

    name: str | None = None
    index: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, kind: str, previous: int, details: Mapping[str, Any] | None = None) -> int:
        """Record an event after event ``previous``; its id."""
        with self.lock:
            event: dict[str, Any] = {
                "id": len(self.events) + 1,
                "previousEventId": previous,
                "timestamp": now(),
                "type": kind,
            }
            if kind in DETAILS:
                event[DETAILS[kind]] = dict(details or {})
            elif details:
                event[
                    "stateEnteredEventDetails" if "Entered" in kind else "stateExitedEventDetails"
                ] = dict(details)
            self.events.append(event)
            return event["id"]


@dataclass
class Scope:
    """Where a state runs: its execution's history and the last event of its thread there, how
    many Map iterations run beside it, and which iteration (or child execution) it is."""

    log: EventLog = field(default_factory=EventLog)
    last: int = 0
    concurrency: int = 1
    iteration: int | None = None

    @property
    def top(self) -> bool:
        """The execution itself, outside any Map iteration or child execution."""
        return self.iteration is None and self.log.name is None

    def record(self, kind: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self.last = self.log.add(kind, self.last, details)
        return self.log.events[self.last - 1]


def failure_message(error: str | None, cause: str | None) -> str:
    """``error: message``, the message of a Lambda error's JSON cause (``errorMessage``) if the
    cause is one, else the cause as it is. For ``Lambda.Unknown`` (the runtime exited, ran out
    of memory or timed out) Lambda's own error type comes first: ``Lambda.Unknown:
    Runtime.OutOfMemory: ...``."""
    try:
        body = json.loads(cause or "")
        detail = body["errorMessage"]
    except (ValueError, KeyError, TypeError):
        return f"{error}: {cause or ''}"
    if error == "Lambda.Unknown" and isinstance(body.get("errorType"), str):
        detail = f"{body['errorType']}: {detail}"
    return f"{error}: {detail or ''}"


def state_name(event: Mapping[str, Any]) -> str | None:
    details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
    return details["name"] if details else None


def entered(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names of the states entered, in order."""
    return [state_name(e) or "" for e in events if e["type"].endswith("StateEntered")]


def status(events: list[Mapping[str, Any]]) -> str:
    """An execution's status from its history: RUNNING until an Execution* end event."""
    ends = [END_STATUS[e["type"]] for e in events if e["type"] in END_STATUS]
    return ends[-1] if ends else "RUNNING"


def failure(events: Iterable[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """The error and cause of a failed execution."""
    for event in events:
        if event["type"] == "ExecutionFailed":
            details = event["executionFailedEventDetails"]
            return details.get("error"), details.get("cause")
    return None, None


def iteration(events: list[Mapping[str, Any]], index: int, map_state: str) -> list[dict]:
    """The events of iteration ``index`` of inline Map ``map_state``: those whose chain of
    ``previousEventId`` leads back to that iteration's MapIterationStarted."""
    start = next(
        e["id"]
        for e in events
        if e["type"] == "MapIterationStarted"
        and e["mapIterationStartedEventDetails"] == {"name": map_state, "index": index}
    )
    inside = {start}
    found = []
    for event in events:  # an event always comes after the one it follows
        if event["previousEventId"] in inside:
            inside.add(event["id"])
            found.append(dict(event))
    return found
