"""What the CLI's commands share: progress bars, one-line failures, and following a deployed
execution (its Map Run's progress, the failed child behind a threshold error)."""

from __future__ import annotations

import secrets
import sys
import threading
import time
from typing import Any, TextIO

from groves.engine.asl import Execution
from groves.engine.asl.distributed import THRESHOLD_ERROR
from groves.engine.asl.history import failure, failure_message, state_name, status

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class UsageError(Exception):
    """A command line that cannot work; printed as one line, exit 2."""


def aws_problem(
    exc: Exception,
    stack_name: str | None,
    options: tuple[str, str] = ("--stack-name", "--state-machine-arn"),
) -> str:
    """One line saying what is wrong with the AWS set-up behind botocore's ``exc`` and what to
    do; ``options`` name the stack and the state machine as the caller takes them (botocore
    is imported here, not at start-up)."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_DEFAULT_REGION (or AWS_REGION), or run aws configure"
    if isinstance(exc, NoCredentialsError):
        return (
            "no AWS credentials: run aws configure, or set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        if code == "ValidationError" and "does not exist" in message:
            return (
                f"stack {stack_name or '?'!r} does not exist in this region: "
                f"deploy it with sam deploy, or pass {options[0]} or {options[1]}"
            )
        if code == "StateMachineDoesNotExist":
            return f"{message}: check {options[1]} (and the region)"
        return f"AWS refused {exc.operation_name}: {code}: {message}"
    return f"cannot reach AWS: {exc}"


# The plan's Maps count a table's files, not the unit of the run's own Map.
MAP_UNITS = {"ScanParts": "files", "PrepareParts": "files"}


class Progress:
    """What a local execution is doing, with elapsed times: one line per step as it ends
    (``Merge  2.04 s  (12.3 s in all)``), and a tqdm bar for a Map's items on a terminal, or a
    line per tenth of them otherwise. Fed by the interpreter's top-level events and the Maps'
    progress. ``unit`` names a Map's items, but for the plan's Maps over a table's files."""

    def __init__(self, stream: TextIO, unit: str = "groves") -> None:
        self.stream, self.unit = stream, unit
        self.terminal = stream.isatty()
        self.started = time.monotonic()
        self.entered: dict[str, float] = {}
        self.failing: str | None = None  # the step whose last attempt failed
        self.bar: Any = None
        self.shown: int | None = None
        self.lock = threading.Lock()  # Map iterations report from several threads

    def event(self, event: dict[str, Any]) -> None:
        """A history event of the execution: a step that succeeded is printed with its time
        when it exits (one that failed into a Catch is not: the failure is printed instead)."""
        now = time.monotonic()
        name, kind = state_name(event), event["type"]
        with self.lock:
            if kind.endswith("StateEntered"):
                self.entered[name or ""] = now
            elif kind in ("LambdaFunctionFailed", "MapStateFailed") and self.entered:
                self.failing = list(self.entered)[-1]  # the step running now
            elif kind == "LambdaFunctionSucceeded":
                self.failing = None  # a retry succeeded
            elif kind.endswith("StateExited") and name in self.entered:
                took = now - self.entered.pop(name)
                total = now - self.started
                if name != self.failing:
                    self._line(f"{name:<16} {took:7.2f} s  ({total:.1f} s in all)")
                self.failing = None

    def __call__(self, state: str, done: int, total: int) -> None:
        """A Map's items: ``done`` of ``total``; 0 when the Map starts (a bar starts then, so
        its rate counts from the Map's start)."""
        with self.lock:
            if done == 0 and self.terminal:
                from tqdm import tqdm

                unit = f" {MAP_UNITS.get(state, self.unit)}"
                self.bar = tqdm(total=total, desc=state, unit=unit, file=self.stream)
                return
            if self.bar is not None:
                self.bar.update(done - self.bar.n)
                if done == total:
                    self.bar.close()
                    self.bar = None
                return
            tenth = 10 * done // max(total, 1)
            if tenth != self.shown:
                self.shown = tenth
                elapsed = time.monotonic() - self.started
                unit = MAP_UNITS.get(state, self.unit)
                self._line(f"{state:<16} {done}/{total} {unit}  ({elapsed:.1f} s in all)")

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()


def report_failure(error: str | None, cause: str | None, heading: str) -> int:
    """One line on stderr: an invalid request (exit 2) or a failed build (exit 1)."""
    if error == "RequestError":
        detail = failure_message(error, cause).split(": ", 1)[1]
        print(f"invalid request: {detail}", file=sys.stderr)
        return 2
    print(f"{heading}: {failure_message(error, cause)}", file=sys.stderr)
    return 1


def stack_output(session: Any, stack_name: str, output: str) -> str:
    """An output of a deployed stack (``StateMachineArn``, ``StoreUri``, ...)."""
    stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks["Stacks"][0].get("Outputs", [])}
    if output not in outputs:
        raise UsageError(f"stack {stack_name!r} has no {output} output")
    return outputs[output]


def execution_name(build_id: str, kind: str = "") -> str:
    """A unique name for a deployed execution that says what it is: ``NAME[-kind]-<UTC
    time>-<random>`` within Step Functions' 80 characters (two starts in one second, as
    back-to-back estimator fits make, must not collide: a repeated name is refused)."""
    suffix = f"{'-' + kind if kind else ''}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    return build_id[: 80 - len(suffix)] + suffix


def state_machine_arn(
    session: Any, stack_name: str, arn: str | None, output: str = "StateMachineArn"
) -> str:
    """``arn``, or the ``output`` of stack ``stack_name``."""
    return arn or stack_output(session, stack_name, output)


def items_done(sfn: Any, execution_arn: str) -> int:
    """How many items the execution's Map Run has succeeded so far (0 before it starts)."""
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if not runs:
        return 0
    return sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]["succeeded"]


def follow(
    sfn: Any,
    execution_arn: str,
    progress: tuple[str, int | None, str],
    poll_seconds: float,
    show: bool = True,
) -> dict[str, Any]:
    """Poll a deployed execution to its end, with a progress bar of its Map Run's items
    (``progress``: the Map state, the item count if known, what an item is) unless not
    ``show``."""
    state, total, unit = progress
    bar = Progress(sys.stderr, unit=unit)
    total = total if show else None
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] in TERMINAL:
            return described
        if total:
            bar(state, min(items_done(sfn, execution_arn), total), total)
        time.sleep(poll_seconds)


def deployed_root_cause(sfn: Any, described: dict[str, Any]) -> tuple[str | None, str | None]:
    """A deployed execution's error and cause; for a Map that failed over its tolerated
    failures, those of its first failed child execution, which name the grove or chunk."""
    error, cause = described.get("error"), described.get("cause")
    if error != THRESHOLD_ERROR:
        return error, cause
    for run in sfn.list_map_runs(executionArn=described["executionArn"]).get("mapRuns", []):
        failed = sfn.list_executions(mapRunArn=run["mapRunArn"], statusFilter="FAILED")
        for child in failed.get("executions", [])[:1]:
            child_run = sfn.describe_execution(executionArn=child["executionArn"])
            return child_run.get("error", ""), child_run.get("cause", "")
    return error, cause


def local_root_cause(execution: Execution) -> tuple[str | None, str | None]:
    """As ``deployed_root_cause``, from a local execution's child executions' histories."""
    if execution.error == THRESHOLD_ERROR:
        for child in execution.children:
            if status(child.events) == "FAILED":
                return failure(child.events)
    return execution.error, execution.cause
