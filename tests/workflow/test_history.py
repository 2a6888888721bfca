"""Execution histories: a local run stores its own in its folder, in Step Functions' shapes, and
``groves history`` prints a local run's or, through ``get_execution_history``, a deployed one's."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import finished_execution, small_request
from moto import mock_aws

from groves import cli
from groves.engine import executions
from groves.engine.local import FUNCTIONS, run_local
from groves.steps import handlers
from groves.store.uris import open_store


def broken_grove(event: dict[str, Any]) -> dict[str, Any]:
    if any(grove["grove_id"] == 1 for grove in event["Items"]):
        raise MemoryError("grove 1 ran out of memory")
    return handlers.train_grove(event)


def test_history_prints_a_local_runs_events_and_child_executions(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = str(tmp_path)
    args = ["-t", "4", "-g", "2", "--dataset", "iris", "-p", "--store", store]
    assert cli.main(["run", "h", *args]) == 0
    capsys.readouterr()
    assert cli.main(["history", "h", "--store", store]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("execution h (forest): SUCCEEDED in ")
    events = [line.split()[2:4] for line in lines[2:31]]
    assert events[:3] == [
        ["ExecutionStarted"],
        ["TaskStateEntered", "Plan"],
        ["LambdaFunctionScheduled", "Plan"],
    ]
    assert ["MapRunStarted", "TrainGroves"] in events and events[-1] == ["ExecutionSucceeded"]
    assert any("2 child executions (succeeded 2)" in line for line in lines)
    children = [line.split() for line in lines if line.split()[-1:] == ["SUCCEEDED"]]
    assert [child[0] for child in children] == ["0", "1"]


def test_a_failed_run_keeps_its_history_with_the_failed_child(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    functions = {**FUNCTIONS, "TrainGroveFunctionArn": broken_grove}
    run = run_local(small_request("f"), str(tmp_path), workers=1, functions=functions)
    assert run.status == "FAILED"
    run_id = next(iter(open_store(str(tmp_path)).list_children("f/runs")))
    assert cli.main(["history", "f", "--run", run_id, "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(forest): FAILED" in out
    assert "error: States.ExceedToleratedFailureThreshold" in out
    failed = [line for line in out.splitlines() if " FAILED " in line and line.split()[0] == "1"]
    assert len(failed) == 1 and "MemoryError: grove 1 ran out of memory" in failed[0]
    # one at a time: the third child never started once the second failed
    assert "3 child executions (failed 1, pending 1, succeeded 1)" in out


def test_history_needs_a_build_or_an_execution(tmp_path: Path, capsys) -> None:
    assert cli.main(["history", "--store", str(tmp_path)]) == 2
    assert "name a build" in capsys.readouterr().err
    assert cli.main(["history", "none", "--store", str(tmp_path)]) == 1
    assert "build 'none' has no stored history" in capsys.readouterr().err


def test_history_of_a_deployed_execution_comes_from_step_functions(
    aws_env: None, capsys: pytest.CaptureFixture
) -> None:
    definition = {
        "StartAt": "First",
        "States": {
            "First": {"Type": "Pass", "Result": {"n": 1}, "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions")
        arn = finished_execution(sfn, definition, "history")
        expected = [e["type"] for e in sfn.get_execution_history(executionArn=arn)["events"]]
        assert cli.main(["history", "--execution-arn", arn]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"execution {arn.rsplit(':', 1)[-1]} (") and "SUCCEEDED" in lines[0]
    assert [line.split()[2] for line in lines[2:]] == expected
    assert "PassStateEntered" in expected and "First" in lines[3]
    assert cli.main(["history", "b", "--execution-arn", arn]) == 2


def test_the_stored_history_is_step_functions_shape(tmp_path: Path) -> None:
    run = run_local(small_request("s", n_trees=2, grove_size=1), str(tmp_path), workers=1)
    (history,) = executions.stored(open_store(str(tmp_path)), "s")
    assert set(history) == {"execution", "events", "mapRuns", "childExecutions"}
    for events in [history["events"], *(c["events"] for c in history["childExecutions"])]:
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        assert all(0 <= e["previousEventId"] < e["id"] for e in events)
        assert (
            events[0]["type"] == "ExecutionStarted"
            and "input" in events[0]["executionStartedEventDetails"]
        )
        assert events[-1]["type"] == "ExecutionSucceeded"
    scheduled = next(e for e in history["events"] if e["type"] == "LambdaFunctionScheduled")
    assert set(scheduled["lambdaFunctionScheduledEventDetails"]) == {"resource", "input"}
    assert json.loads(history["execution"]["output"]) == run.output


def test_history_of_a_batch_prediction_and_a_search(tmp_path: Path, capsys) -> None:
    store = ["--store", str(tmp_path)]
    assert cli.main(["run", "b", "-t", "4", "-g", "2", "--dataset", "iris", *store]) == 0
    out = str(tmp_path / "p.csv")
    assert cli.main(["predict", "b", "--data", "iris", "--out", out, *store]) == 0
    search = ["search", "b", "-t", "4", "-g", "2", "--dataset", "iris", *store]
    assert cli.main([*search, "--grid", "max_depth=1,null"]) == 0
    capsys.readouterr()
    assert cli.main(["history", "b", "--batch", *store]) == 0
    assert "(batch_predict): SUCCEEDED" in capsys.readouterr().out
    assert cli.main(["history", "b", *store]) == 0  # the run's history has only its own
    assert capsys.readouterr().out.count("execution b (forest): SUCCEEDED") == 1
    assert cli.main(["history", "b", "--search", *store]) == 0
    table = capsys.readouterr().out
    assert "(search): SUCCEEDED" in table and "TrainCandidates" in table
    with pytest.raises(SystemExit) as usage:  # argparse: --run and --batch exclude each other
        cli.main(["history", "b", "--run", "x", "--batch", *store])
    assert usage.value.code == 2


class MapRunOf:
    """Step Functions (moto) with one Map Run whose child executions are ``children``: moto
    cannot list a Map Run's children, so the listing is given; every other call, the children's
    histories included, is moto's."""

    def __init__(self, sfn: Any, children: list[str]) -> None:
        self.sfn, self.children = sfn, children
        self.map_run = "arn:aws:states:us-east-1:123456789012:mapRun:parent/TrainGroves:1"

    def list_map_runs(self, executionArn: str) -> dict[str, Any]:
        return {"mapRuns": [{"mapRunArn": self.map_run}]}

    def describe_map_run(self, mapRunArn: str) -> dict[str, Any]:
        counts = {"failed": 1, "succeeded": len(self.children) - 1, "total": len(self.children)}
        return {
            "mapRunArn": mapRunArn,
            "status": "FAILED",
            "maxConcurrency": 2,
            "executionCounts": counts,
        }

    def get_paginator(self, name: str) -> Any:
        if name != "list_executions":
            return self.sfn.get_paginator(name)
        keep = ("executionArn", "stateMachineArn", "name", "status", "startDate", "stopDate")
        listed = [
            {k: v for k, v in self.sfn.describe_execution(executionArn=a).items() if k in keep}
            for a in self.children
        ]
        return types.SimpleNamespace(paginate=lambda **kwargs: [{"executions": listed}])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sfn, name)


def test_a_deployed_history_shows_each_failed_childs_own_events(aws_env: None) -> None:
    """GIVEN a deployed execution whose Map Run has a failed child, WHEN its history is read,
    THEN the failed child's own events are read (newest pages first, bounded) and printed with
    its error, so a failed grove is read without the console."""
    grove = {
        "StartAt": "TrainGrove",
        "States": {
            "TrainGrove": {"Type": "Pass", "Next": "Failed"},
            "Failed": {
                "Type": "Fail",
                "Error": "MemoryError",
                "Cause": "grove 3 ran out of memory",
            },
        },
    }
    ok = {"StartAt": "TrainGrove", "States": {"TrainGrove": {"Type": "Pass", "End": True}}}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions")
        parent = finished_execution(sfn, ok, "parent")
        children = [
            finished_execution(sfn, ok, "grove-0"),
            finished_execution(sfn, grove, "grove-3"),
        ]
        history = executions.deployed(MapRunOf(sfn, children), parent)
        child_events = [
            e["type"] for e in sfn.get_execution_history(executionArn=children[1])["events"]
        ]
    failed = [c for c in history["childExecutions"] if c["status"] == "FAILED"]
    assert len(failed) == 1 and [e["type"] for e in failed[0]["events"]] == child_events
    assert [c["events"] for c in history["childExecutions"] if c["status"] == "SUCCEEDED"] == [[]]
    lines = executions.table(history)
    at = lines.index(f"failed child execution {failed[0]['name']}:")
    assert "FailStateEntered" in "\n".join(lines[at:])
    assert any("MemoryError: grove 3 ran out of memory" in line for line in lines[at:])
    assert len(child_events) <= executions.CHILD_EVENTS_SHOWN
