"""The real definition on two independent engines: groves' interpreter and moto's Step Functions
(``execute_state_machine``, a port of LocalStack's ASL interpreter), with every Lambda invocation
routed to the groves handlers in this process. Each scenario must end the same on both: status,
error, the states entered, and the files written. A change to the definition that only one
engine accepts fails here.

Where moto departs from the States Language specification, the local engine keeps to the
specification and the test says so:
- moto names a Lambda *service* error (throttling: ``TooManyRequestsException`` from the Invoke
  API) ``Exception`` instead of ``Lambda.TooManyRequestsException``, so the definition's Retry
  does not apply there and the build fails; on Step Functions (and here) it is retried.
- moto takes a Choice's ``Default`` when the rule's Variable is missing; the specification makes
  that a ``States.Runtime`` failure.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import small_request
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

from groves import handlers
from groves.artifacts import grove_key
from groves.asl import Interpreter, call_handler, execute
from groves.local import FUNCTIONS, STORE_SUBSTITUTION, load_definition
from groves.storage import open_store

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"
LambdaThrottled = type("Lambda.TooManyRequestsException", (Exception,), {})


def failing_grove(event: dict[str, Any]) -> dict[str, Any]:
    """The last grove fails once the others are done, so both engines end with the same files
    whatever their concurrency (moto runs iterations at once, the local engine here in turn)."""
    if event["grove"]["grove_id"] == 2:
        store, deadline = open_store(event["store"]), time.monotonic() + 30
        others = [grove_key(event["build_id"], event["run_id"], i, "json") for i in (0, 1)]
        while not all(map(store.exists, others)) and time.monotonic() < deadline:
            time.sleep(0.02)
        raise MemoryError("grove 2 ran out of memory")
    return handlers.train_grove(event)


def throttled_once() -> Callable[[dict[str, Any]], dict[str, Any]]:
    calls: list[int] = []

    def plan(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise LambdaThrottled("Rate exceeded")
        return handlers.plan(event)

    return plan


SCENARIOS: dict[str, Callable[[], dict[str, Callable[..., Any]]]] = {
    "happy path": lambda: {},
    "a failing grove": lambda: {"TrainGroveFunctionArn": failing_grove},
    "Lambda throttling": lambda: {"PlanFunctionArn": throttled_once()},
}


class RoutedLambda:
    """The Lambda client moto's engine invokes functions with, answering as Lambda does: a
    handler's exception is a function error (``FunctionError``, payload with ``errorType``),
    a ``Lambda.*`` service exception is an error of the Invoke API itself."""

    def __init__(self, functions: dict[str, Callable[..., Any]]) -> None:
        self.functions = functions

    def invoke(self, FunctionName: str, Payload: bytes = b"{}", **_: Any) -> dict[str, Any]:
        outcome = call_handler(self.functions[FunctionName], json.loads(Payload))
        if outcome[0] == "error" and outcome[1].startswith("Lambda."):
            error = {"Code": outcome[1].removeprefix("Lambda."), "Message": outcome[2]}
            raise ClientError({"Error": error}, "Invoke")
        if outcome[0] == "ok":
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(outcome[1]).encode())}
        return {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "Payload": io.BytesIO(outcome[2].encode()),
        }


def functions_for(replace: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    return {ARN.format(name): handler for name, handler in {**FUNCTIONS, **replace}.items()}


def definition(store: Path) -> dict[str, Any]:
    return load_definition(
        {**{n: ARN.format(n) for n in FUNCTIONS}, STORE_SUBSTITUTION: str(store)}
    )


def written(store: Path) -> list[str]:
    """The files a run wrote, with its run id replaced by RUN."""
    keys = [p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()]
    runs = {key.split("/")[2] for key in keys if key.startswith("t/runs/")}
    text = json.dumps(sorted(keys))
    for run in runs:
        text = text.replace(run, "RUN")
    return json.loads(text)


def run_local_engine(store: Path, replace: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    interpreter = Interpreter(functions_for(replace), sleep=lambda seconds: None)
    run = execute(definition(store), small_request(predict=True), interpreter)
    entered = [e["state"] for e in run.history if e["type"] == "StateEntered"]
    return {"status": run.status, "error": run.error, "entered": Counter(entered)}


@pytest.fixture
def moto_engine(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Runs the definition on moto's engine, Lambda invocations routed to the handlers."""
    routed: dict[str, RoutedLambda] = {}
    real = lambda_eval_utils.boto_client_for

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        return routed["lambda"] if service == "lambda" else real(region, service, state_credentials)

    monkeypatch.setattr(lambda_eval_utils, "boto_client_for", client_for)

    def run(store: Path, replace: dict[str, Callable[..., Any]]) -> dict[str, Any]:
        routed["lambda"] = RoutedLambda(functions_for(replace))
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name=f"groves-{time.monotonic_ns()}",
            definition=json.dumps(definition(store)),
            roleArn="arn:aws:iam::123456789012:role/r",
        )
        arn = sfn.start_execution(
            stateMachineArn=machine["stateMachineArn"],
            input=json.dumps(small_request(predict=True)),
        )["executionArn"]
        deadline = time.monotonic() + 60
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "moto's execution did not finish"
            time.sleep(0.05)
        events = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
        entered = [
            e["stateEnteredEventDetails"]["name"]
            for page in events
            for e in page["events"]
            if e["type"].endswith("StateEntered")
        ]
        return {
            "status": described["status"],
            "error": described.get("error"),
            "entered": Counter(entered),
        }

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield run


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_both_engines_end_the_same(scenario: str, tmp_path: Path, moto_engine) -> None:
    ours = run_local_engine(tmp_path / "local", SCENARIOS[scenario]())
    theirs = moto_engine(tmp_path / "moto", SCENARIOS[scenario]())
    if scenario == "Lambda throttling":
        # moto names the throttle "Exception", so its Retry does not match (see the module
        # docstring); the specification retries it, and so does the local engine.
        assert (theirs["status"], theirs["error"]) == ("FAILED", "Exception")
        assert theirs["entered"] == Counter(["Plan", "BuildFailed"])
        happy = run_local_engine(tmp_path / "happy", {})
        assert ours == happy and written(tmp_path / "local") == written(tmp_path / "happy")
        return
    assert ours == theirs
    assert written(tmp_path / "local") == written(tmp_path / "moto")
    if scenario == "happy path":
        assert ours["status"] == "SUCCEEDED" and "t/runs/RUN/metrics.json" in written(
            tmp_path / "local"
        )
    else:
        assert (ours["status"], ours["error"]) == ("FAILED", "MemoryError")
        assert not [k for k in written(tmp_path / "local") if k.endswith("model.joblib")]


def test_a_choice_on_a_missing_variable_is_a_runtime_error_not_the_default() -> None:
    """moto takes the Default here; the specification (and the local engine) fail."""
    machine = {
        "StartAt": "Which",
        "States": {
            "Which": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.missing", "BooleanEquals": True, "Next": "Yes"}],
                "Default": "No",
            },
            "Yes": {"Type": "Succeed"},
            "No": {"Type": "Succeed"},
        },
    }
    run = execute(machine, {}, Interpreter({}))
    assert (run.status, run.error) == ("FAILED", "States.Runtime")
