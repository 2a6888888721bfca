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
- moto's Distributed Map has no ItemBatcher (the test gives moto an ItemSelector making the same
  one-grove batch event), does not apply ``ToleratedFailurePercentage`` (a failed child leaves
  a hole in the results and the Map succeeds; on Step Functions, and here, the Map fails with
  ``States.ExceedToleratedFailureThreshold``), and its ResultWriter writes an empty manifest
  and no result files.
"""

from __future__ import annotations

import copy
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, small_request
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

from groves.engine.asl import Interpreter, call_handler, execute
from groves.engine.asl.history import entered
from groves.engine.local import FUNCTIONS, STORE_SUBSTITUTION, load_definition
from groves.steps import handlers
from groves.store.artifacts import grove_key
from groves.store.codec import get_json
from groves.store.uris import bucket_stores, open_store

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"
LambdaThrottled = type("Lambda.TooManyRequestsException", (Exception,), {})


def failing_grove(event: dict[str, Any]) -> dict[str, Any]:
    """The last grove fails once the others are done, so both engines end with the same files
    whatever their concurrency (moto runs iterations at once, the local engine here in turn)."""
    if any(grove["grove_id"] == 2 for grove in event["Items"]):
        ids = event["BatchInput"]
        store, deadline = open_store(ids["store"]), time.monotonic() + 30
        others = [grove_key(ids["build_id"], ids["run_id"], i, "json") for i in (0, 1)]
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


def definition(store: str, machine: str = "forest") -> dict[str, Any]:
    substitutions = {**{n: ARN.format(n) for n in FUNCTIONS}, STORE_SUBSTITUTION: store}
    return load_definition(substitutions, machine)


def for_moto(machine: dict[str, Any]) -> dict[str, Any]:
    """moto's engine has no ItemBatcher: give it an ItemSelector that makes the same event,
    a batch of one grove (``States.Array`` is an intrinsic function moto runs). Its parser also
    takes ToleratedFailurePercentage only as a decimal (``0.0``, not ``0``), and evaluates
    ResultWriter's paths on the Map's results instead of its input: it gets the bucket as is."""
    machine = copy.deepcopy(machine)
    for distributed in [s for s in machine["States"].values() if "ItemReader" in s]:
        tolerated = distributed["ToleratedFailurePercentage"]
        distributed["ToleratedFailurePercentage"] = float(tolerated)
        distributed["ResultWriter"]["Parameters"] = {"Bucket": BUCKET, "Prefix": "map-runs"}
        if "ItemBatcher" in distributed:
            batcher = distributed.pop("ItemBatcher")
            distributed["ItemSelector"] = {
                "Items.$": "States.Array($$.Map.Item.Value)",
                "BatchInput": batcher["BatchInput"],
            }
    return machine


def written(store: str) -> list[str]:
    """The keys a run wrote under the store, with its run id replaced by RUN."""
    keys = open_store(store).list_keys("")
    runs = {key.split("/")[2] for key in keys if key.startswith("t/runs/")}
    text = json.dumps(sorted(keys))
    for run in runs:
        text = text.replace(run, "RUN")
    return json.loads(text)


def run_local_engine(
    store: str,
    replace: dict[str, Callable[..., Any]],
    machine: str = "forest",
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    interpreter = Interpreter(
        functions_for(replace),
        sleep=lambda seconds: None,
        buckets=bucket_stores(open_store(store)),
    )
    run = execute(definition(store, machine), request or small_request(predict=True), interpreter)
    # the parent execution's history: a Distributed Map's children have histories of their own
    return {
        "status": run.status,
        "error": run.error,
        "entered": Counter(entered(run.history)),
        "events": [e["type"] for e in run.history],
    }


@pytest.fixture
def moto_engine(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Runs the definition on moto's engine, Lambda invocations routed to the handlers."""
    routed: dict[str, RoutedLambda] = {}
    real = lambda_eval_utils.boto_client_for

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        return routed["lambda"] if service == "lambda" else real(region, service, state_credentials)

    monkeypatch.setattr(lambda_eval_utils, "boto_client_for", client_for)

    def run(
        store: str,
        replace: dict[str, Callable[..., Any]],
        machine_name: str = "forest",
        request: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        routed["lambda"] = RoutedLambda(functions_for(replace))
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name=f"groves-{time.monotonic_ns()}",
            definition=json.dumps(for_moto(definition(store, machine_name))),
            roleArn="arn:aws:iam::123456789012:role/r",
        )
        arn = sfn.start_execution(
            stateMachineArn=machine["stateMachineArn"],
            input=json.dumps(request or small_request(predict=True)),
        )["executionArn"]
        deadline = time.monotonic() + 60
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "moto's execution did not finish"
            time.sleep(0.05)
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
        events = [e for page in pages for e in page["events"]]
        return {
            "status": described["status"],
            "error": described.get("error"),
            "entered": Counter(entered(events)),
            "events": [e["type"] for e in events],
        }

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield run


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_both_engines_end_the_same(scenario: str, moto_engine) -> None:
    local, moto = f"s3://{BUCKET}/local", f"s3://{BUCKET}/moto"
    ours = run_local_engine(local, SCENARIOS[scenario]())
    theirs = moto_engine(moto, SCENARIOS[scenario]())
    if scenario == "Lambda throttling":
        # moto names the throttle "Exception", so its Retry does not match (see the module
        # docstring); the specification retries it, and so does the local engine.
        assert (theirs["status"], theirs["error"]) == ("FAILED", "Exception")
        assert theirs["entered"] == Counter(["Plan", "BuildFailed"])
        happy = run_local_engine(f"s3://{BUCKET}/happy", {})
        assert written(local) == written(f"s3://{BUCKET}/happy")
        assert {**ours, "events": None} == {**happy, "events": None}
        # the throttled attempt, then the same events as the happy path's
        attempt = ["LambdaFunctionScheduled", "LambdaFunctionStarted", "LambdaFunctionFailed"]
        assert ours["events"] == happy["events"][:2] + attempt + happy["events"][2:]
        return
    assert written(local) == written(moto)
    # both wrote a Map Run's files to the top of the bucket (moto only an empty manifest)
    assert len(open_store(f"s3://{BUCKET}/map-runs").list_keys("")) >= 2
    if scenario == "happy path":
        assert ours == theirs, "the same history events, event for event"
        assert ours["status"] == "SUCCEEDED" and "t/runs/RUN/metrics.json" in written(local)
    else:
        # moto does not apply ToleratedFailurePercentage (see the module docstring): its Map
        # succeeds without grove 2, and Merge refuses the incomplete run instead
        assert (ours["status"], ours["error"]) == (
            "FAILED",
            "States.ExceedToleratedFailureThreshold",
        )
        assert (theirs["status"], theirs["error"]) == ("FAILED", "BuildError")
        assert ours["entered"] == Counter(["Plan", "PlannedInParts", "TrainGroves", "BuildFailed"])
        assert theirs["entered"] == ours["entered"] + Counter(["Merge"])
        assert ours["events"][-5:] == [
            "MapRunFailed",
            "MapStateFailed",
            "MapStateExited",
            "FailStateEntered",
            "ExecutionFailed",
        ]
        assert not [k for k in written(local) if k.endswith("manifest.json")]


def test_both_engines_plan_a_table_in_parts_the_same(moto_engine, tmp_path: Path) -> None:
    """A folder of CSV files in S3: the plan's two Maps over its files, on both engines."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.sample(frac=1, random_state=0)
    frame["kind"] = np.where(frame["sepal length (cm)"] > 5.8, "long", None)
    for k in range(3):
        body = frame.iloc[k * 50 : (k + 1) * 50].to_csv(index=False).encode()
        boto3.client("s3").put_object(Bucket=BUCKET, Key=f"tables/iris/p{k}.csv", Body=body)
    request = small_request(dataset=f"s3://{BUCKET}/tables/iris/", predict=True)
    ours = run_local_engine(f"s3://{BUCKET}/local", {}, request=request)
    theirs = moto_engine(f"s3://{BUCKET}/moto", {}, request=request)
    assert ours == theirs, "the same history events, event for event"
    assert ours["status"] == "SUCCEEDED"
    planned = ["Plan", "PlannedInParts", "ScanParts", "PlanScanned", "PrepareParts"]
    trained = ["PlanPrepared", "TrainGroves", "Merge", "PredictRequested", "Predict", "Done"]
    assert ours["entered"] == Counter(planned + trained)
    assert written(f"s3://{BUCKET}/local") == written(f"s3://{BUCKET}/moto")
    assert "t/runs/RUN/data/scan_00002.json" in written(f"s3://{BUCKET}/local")


def test_both_engines_predict_new_rows_the_same(moto_engine, tmp_path: Path) -> None:
    """The batch prediction definition on both engines, on the same kind of build."""
    outputs = {}
    for engine, run in (("ours", run_local_engine), ("theirs", moto_engine)):
        store = f"s3://{BUCKET}/{engine}"
        assert run_local_engine(store, {})["status"] == "SUCCEEDED"  # the build to predict with
        request = {"build_id": "t", "data": "iris", "output": str(tmp_path / f"{engine}.csv")}
        outputs[engine] = run(store, {}, "batch_predict", {**request, "rows_per_chunk": 40})
    assert outputs["ours"] == outputs["theirs"]
    assert outputs["ours"]["status"] == "SUCCEEDED"
    assert outputs["ours"]["entered"] == Counter(["PlanBatch", "PredictChunks", "Assemble", "Done"])
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "theirs.csv").read_text()


def test_both_engines_run_a_search_the_same(moto_engine) -> None:
    request = small_request(search={"grid": {"max_depth": [1, 3]}}, validation_size=0.3)
    del request["grove_size"]
    request["grove_size"] = 4
    ours = run_local_engine(f"s3://{BUCKET}/ours", {}, "search", request)
    theirs = moto_engine(f"s3://{BUCKET}/theirs", {}, "search", request)
    assert ours == theirs and ours["status"] == "SUCCEEDED"
    for engine in ("ours", "theirs"):
        store = open_store(f"s3://{BUCKET}/{engine}")
        [search_id] = store.list_children("t/searches")
        board = get_json(store, f"t/searches/{search_id}/leaderboard.json")
        assert board[0]["params"] == {"max_depth": 3}


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
