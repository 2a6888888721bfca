"""What the CLI's commands share: progress bars, one-line failures, and following a deployed
execution (its Map Run's progress, the failed child behind a threshold error)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from groves.asl import Execution
from groves.asl.distributed import THRESHOLD_ERROR

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class UsageError(Exception):
    """A command line that cannot work; printed as one line, exit 2."""


class ProgressBar:
    """``TrainGroves [#########-----------] 9/20 groves``: redrawn in place on a terminal,
    otherwise one line per tenth done."""

    def __init__(self, stream: TextIO, width: int = 30, unit: str = "groves") -> None:
        self.stream, self.width, self.unit = stream, width, unit
        self.redraw = stream.isatty()
        self.shown: int | None = None

    def __call__(self, state: str, done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if not self.redraw and tenth == self.shown:
            return
        self.shown = tenth
        filled = self.width * done // max(total, 1)
        bar = f"{state} [{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} {self.unit}"
        if self.redraw:
            self.stream.write(f"\r{bar}" + ("\n" if done == total else ""))
        else:
            self.stream.write(f"{bar}\n")
        self.stream.flush()


def failure_message(error: str | None, cause: str | None) -> str:
    try:
        detail = json.loads(cause or "")["errorMessage"]
    except (ValueError, KeyError, TypeError):
        detail = cause
    return f"{error}: {detail}"


def report_failure(error: str | None, cause: str | None, heading: str) -> int:
    """One line on stderr: an invalid request (exit 2) or a failed build (exit 1)."""
    if error == "RequestError":
        detail = failure_message(error, cause).split(": ", 1)[1]
        print(f"invalid request: {detail}", file=sys.stderr)
        return 2
    print(f"{heading}: {failure_message(error, cause)}", file=sys.stderr)
    return 1


def state_machine_arn(
    args: argparse.Namespace, session: Any, output: str = "StateMachineArn"
) -> str:
    """``--state-machine-arn``, or the ``output`` of stack ``--stack-name``."""
    if args.state_machine_arn:
        return args.state_machine_arn
    stacks = session.client("cloudformation").describe_stacks(StackName=args.stack_name)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks["Stacks"][0].get("Outputs", [])}
    if output not in outputs:
        raise UsageError(f"stack {args.stack_name!r} has no {output} output")
    return outputs[output]


def items_done(sfn: Any, execution_arn: str) -> int:
    """How many items the execution's Map Run has succeeded so far (0 before it starts)."""
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if not runs:
        return 0
    return sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]["succeeded"]


def follow(
    sfn: Any, execution_arn: str, progress: tuple[str, int | None, str], poll_seconds: float
) -> dict[str, Any]:
    """Poll a deployed execution to its end, with a progress bar of its Map Run's items
    (``progress``: the Map state, the item count if known, what an item is)."""
    state, total, unit = progress
    bar = ProgressBar(sys.stderr, unit=unit)
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
    """As ``deployed_root_cause``, from a local execution's history."""
    if execution.error == THRESHOLD_ERROR:
        for event in execution.history:
            if event["type"] == "ChildExecutionFailed":
                return event["error"], event["cause"]
    return execution.error, execution.cause
