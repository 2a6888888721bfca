"""Execution histories of runs: what a local execution stores in its run's folder, what Step
Functions returns for a deployed one, and both printed as one table (``groves history``).

A stored history (``history/<start time>.json`` in the run's folder, one per execution: a
stopped run and the execution that resumed it each keep theirs; a batch's or a search's folder
for those state machines) holds, in Step Functions' shapes::

    execution        describe-execution's fields: name, stateMachine, status, startDate,
                     stopDate, input, output or error and cause
    events           get-execution-history's events of the execution
    mapRuns          describe-map-run of each Distributed Map Run
    childExecutions  each child execution of a Map Run: name, index, status and its events

Timestamps are ISO 8601 strings.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from groves.engine.asl import Execution
from groves.engine.asl.history import failure_message, state_name, status
from groves.errors import BuildError, CorruptFile
from groves.store.artifacts import RUN_ID
from groves.store.codec import get_json, put_json
from groves.store.protocol import Store
from groves.store.records import ANY, List, Match, Maybe, Rec, check

FAILED_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
FAILED_CHILDREN_SHOWN = 10  # failed child executions whose events a deployed history reads
CHILD_EVENTS_SHOWN = 200  # the last events read of each

HISTORY = "history"
# The id a first Task's output names, and the build's folder of such ids; a batch's output
# also names the run whose model it uses, so batches and searches come first.
FOLDERS = {"batch_id": "predictions", "search_id": "searches", "run_id": "runs"}
DETAIL_WIDTH = 90


def history_folder(ids: dict[str, Any]) -> str | None:
    """Where the histories of the executions of a run (or batch, or search) go; ``ids`` is
    the first Task's output, which names its build and run."""
    build_id = ids.get("build_id")
    for field, folder in FOLDERS.items():
        if isinstance(build_id, str) and isinstance(ids.get(field), str):
            return f"{build_id}/{folder}/{ids[field]}/{HISTORY}"
    return None


def history_name(started_at: str) -> str:
    """An execution's history file, named by its start so that the names sort by time."""
    when = datetime.fromisoformat(started_at)
    return f"{when:%Y%m%dT%H%M%S}{when.microsecond // 1000:03d}Z.json"


def first_task_output(events: list[dict[str, Any]]) -> dict[str, Any]:
    for event in events:
        if event["type"] == "LambdaFunctionSucceeded":
            output = json.loads(event["lambdaFunctionSucceededEventDetails"]["output"])
            return output if isinstance(output, dict) else {}
    return {}


def document(execution: Execution, machine: str) -> dict[str, Any]:
    """A local execution's stored history."""
    described: dict[str, Any] = {
        "name": execution.name,
        "stateMachine": machine,
        "status": execution.status,
        "startDate": execution.started_at,
        "stopDate": execution.stopped_at,
    }
    started = next((e for e in execution.history if e["type"] == "ExecutionStarted"), None)
    if started is not None:
        described["input"] = started["executionStartedEventDetails"]["input"]
    if execution.status == "SUCCEEDED":
        described["output"] = json.dumps(execution.output)
    elif execution.error is not None:
        described["error"], described["cause"] = execution.error, execution.cause
    return {
        "execution": described,
        "events": execution.history,
        "mapRuns": execution.map_runs,
        "childExecutions": [
            {"name": c.name, "index": c.index, "status": status(c.events), "events": c.events}
            for c in execution.children
        ],
    }


def save(store: Store, execution: Execution, machine: str) -> str | None:
    """Store a local execution's history in the folder of the run it planned; the key, or
    ``None`` if it failed before a run had a folder (an invalid request)."""
    folder = history_folder(first_task_output(execution.history))
    if folder is None:
        return None
    key = f"{folder}/{history_name(execution.started_at)}"
    put_json(store, key, document(execution, machine))
    return key


def stored(
    store: Store, build_id: str, run_id: str | None = None, kind: str = "runs"
) -> list[dict[str, Any]]:
    """The stored histories of a run's executions, oldest first: ``run_id``'s, or those of the
    newest run of the build that has any; ``kind`` ``predictions`` or ``searches`` reads a batch
    prediction's or a search's instead."""
    ids = sorted(n for n in store.list_children(f"{build_id}/{kind}") if RUN_ID.fullmatch(n))
    for candidate in [run_id] if run_id else reversed(ids):
        folder = f"{build_id}/{kind}/{candidate}/{HISTORY}"
        names = sorted(n for n in store.list_children(folder) if n.endswith(".json"))
        if names:
            return [checked_history(store, f"{folder}/{name}") for name in names]
    which = f"{kind} {run_id} of build {build_id!r}" if run_id else f"build {build_id!r}"
    raise BuildError(f"{which} has no stored history of {kind} in {store.uri}")


# What ``table`` and the report read of a stored history (a local execution's, as written by
# ``save``); a history is written by the runner and not covered by any sha256, so a damaged one
# is refused naming the file rather than read into a traceback.
TIMESTAMP = Match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}:\d{2}")
DETAILS = Rec(
    {},
    {"error": Maybe(str), "cause": Maybe(str), "resource": str, "name": str, "mapRunArn": ANY},
)
EVENT = Rec({"id": int, "type": str, "timestamp": TIMESTAMP}, {"previousEventId": Maybe(int)})
STORED_HISTORY = Rec(
    {
        "execution": Rec(
            {},
            {
                "startDate": Maybe(TIMESTAMP),
                "stopDate": Maybe(TIMESTAMP),
                "error": Maybe(str),
                "cause": Maybe(str),
            },
        ),
        "events": List(EVENT),
    },
    {
        "mapRuns": List(Rec({"mapRunArn": ANY}, {"executionCounts": Rec({})})),
        "childExecutions": List(
            Rec(
                {"name": str},
                {
                    "startDate": Maybe(TIMESTAMP),
                    "stopDate": Maybe(TIMESTAMP),
                    "index": Maybe(int),
                    "status": str,
                    "events": Maybe(List(EVENT)),
                },
            )
        ),
    },
)


def checked_history(store: Store, key: str) -> dict[str, Any]:
    """A stored history that has the fields and types ``table`` and the report read; else a
    ``CorruptFile`` naming the file and the field."""
    history = get_json(store, key)
    problem = check(history, STORED_HISTORY)
    events = [] if problem else list(history["events"])
    for child in [] if problem else history.get("childExecutions", []):
        events += child.get("events") or []
    for event in events:  # each event's details: one field ending in EventDetails, an object
        for field, details in event.items():
            if problem is None and field.endswith("EventDetails"):
                problem = check(details, DETAILS, f"events[{event['id']}].{field}.")
    if problem:
        raise CorruptFile(f"{store.uri}/{key} is not a valid execution history: {problem}")
    return history


def deployed(sfn: Any, execution_arn: str) -> dict[str, Any]:
    """A deployed execution's history in the same shape, from Step Functions: its events, its
    Map Runs and their child executions, with the last events of each failed child (at most
    ``FAILED_CHILDREN_SHOWN`` children, ``CHILD_EVENTS_SHOWN`` events each, read page by page):
    a failed grove is read without the console."""
    described = sfn.describe_execution(executionArn=execution_arn)
    history = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    events = [_iso(e) for page in history for e in page["events"]]
    map_runs, children = [], []
    for listed in sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", []):
        map_runs.append(_iso(sfn.describe_map_run(mapRunArn=listed["mapRunArn"])))
        pages = sfn.get_paginator("list_executions").paginate(mapRunArn=listed["mapRunArn"])
        found = [c for page in pages for c in page.get("executions", [])]
        children += [{**_iso(c), "index": None, "events": []} for c in found]
    failed = [c for c in children if c.get("status") in FAILED_STATUSES]
    for child in failed[:FAILED_CHILDREN_SHOWN]:
        child["events"] = last_events(sfn, child["executionArn"], CHILD_EVENTS_SHOWN)
    keep = ("name", "stateMachineArn", "status", "startDate", "stopDate", "error", "cause")
    execution = {k: v for k, v in _iso(described).items() if k in keep}
    return {
        "execution": execution,
        "events": events,
        "mapRuns": map_runs,
        "childExecutions": children,
    }


def last_events(sfn: Any, execution_arn: str, limit: int) -> list[dict[str, Any]]:
    """An execution's last ``limit`` events, oldest first (read newest page first, and no
    further than ``limit``)."""
    pages = sfn.get_paginator("get_execution_history").paginate(
        executionArn=execution_arn, reverseOrder=True, PaginationConfig={"MaxItems": limit}
    )
    return sorted((_iso(e) for page in pages for e in page["events"]), key=lambda e: e["id"])


def _iso(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _short(text: str) -> str:
    return text if len(text) <= DETAIL_WIDTH else text[: DETAIL_WIDTH - 1] + "…"


def _detail(event: dict[str, Any]) -> str:
    """What an event says besides its type and state, on one line."""
    details = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
    if "error" in details:
        return _short(failure_message(details["error"], details.get("cause")))
    if "resource" in details:
        text = details["resource"].rsplit(":", 1)[-1]
    elif "mapRunArn" in details:
        text = details["mapRunArn"]
    elif "length" in details:
        text = f"{details['length']} items"
    elif "index" in details:
        text = f"iteration {details['index']}"
    else:
        text = ""
    return _short(text)


def _states(events: list[dict[str, Any]]) -> dict[int, str]:
    """The state each event belongs to: the last state entered on its chain of events."""
    names: dict[int, str] = {}
    for event in events:
        name = state_name(event) or names.get(event.get("previousEventId") or 0, "")
        names[event["id"]] = "" if event["type"].startswith("Execution") else name
    return names


def table(history: dict[str, Any]) -> list[str]:
    """A history as text lines: the execution, its events with seconds since it started, and
    its child executions."""
    execution, events = history["execution"], history["events"]
    took = _seconds(execution.get("startDate"), execution.get("stopDate"))
    machine = execution.get("stateMachine") or execution.get("stateMachineArn")
    took_text = f" in {took:.2f} s" if took is not None else ""
    lines = [
        f"execution {execution.get('name')} ({machine}): {execution.get('status')}{took_text}, "
        f"started {execution.get('startDate')}"
    ]
    if execution.get("error"):
        lines.append(
            f"error: {_short(failure_message(execution['error'], execution.get('cause')))}"
        )
    lines += event_lines(events)
    for run in history.get("mapRuns", []):
        counts = run.get("executionCounts", {})
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v and k != "total")
        lines.append(
            f"map run {run['mapRunArn']}: {run.get('status')}, {counts.get('total', 0)} child "
            f"executions ({shown}), at most {run.get('maxConcurrency')} at once"
        )
    children = history.get("childExecutions", [])
    if children:
        lines.append(f"{'index':>5} {'seconds':>8}  {'child execution':<38} {'status':<10} error")
    for child in children:
        events = child.get("events") or []
        begin = child.get("startDate") or (events[0]["timestamp"] if events else None)
        end = child.get("stopDate") or (events[-1]["timestamp"] if events else None)
        seconds = _seconds(begin, end)
        failed = next((e for e in events if e["type"] == "ExecutionFailed"), None)
        index = "-" if child.get("index") is None else child["index"]
        lines.append(
            f"{index:>5} {'-' if seconds is None else f'{seconds:.3f}':>8}  {child['name']:<38} "
            f"{child.get('status', ''):<10} {_detail(failed) if failed else ''}".rstrip()
        )
    failed = [c for c in children if c.get("status") in FAILED_STATUSES and c.get("events")]
    for child in failed[:FAILED_CHILDREN_SHOWN]:
        lines.append(f"failed child execution {child['name']}:")
        lines += event_lines(child["events"][-CHILD_EVENTS_SHOWN:])
    return lines


def event_lines(events: list[dict[str, Any]]) -> list[str]:
    """Events as table lines: id, seconds since the first, type, state and detail."""
    lines = [f"{'id':>5} {'seconds':>8}  {'event':<26} {'state':<18} detail"]
    start = events[0]["timestamp"] if events else None
    names = _states(events)
    for event in events:
        at = _seconds(start, event["timestamp"]) or 0.0
        lines.append(
            f"{event['id']:>5} {at:>8.3f}  {event['type']:<26} {names.get(event['id'], ''):<18} "
            f"{_detail(event)}".rstrip()
        )
    return lines
