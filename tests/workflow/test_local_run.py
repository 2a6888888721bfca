"""The real statemachine/forest.asl.json run end to end by the local runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import grove_items, named, small_request

import groves
from groves.data.prepared import read_prepared
from groves.engine import executions
from groves.engine.asl import Interpreter, execute
from groves.engine.asl.history import entered as states_entered
from groves.engine.asl.history import failure, status
from groves.engine.local import FUNCTIONS, local_machine, run_local
from groves.forest.trees import read_grove
from groves.steps import handlers
from groves.store.artifacts import VOTES_SUFFIX, metrics_key, plan_key
from groves.store.codec import get_json
from groves.store.uris import open_store

LambdaThrottled = type("Lambda.TooManyRequestsException", (Exception,), {})


def entered(execution, child: int | None = None) -> list[str]:
    """States entered by the execution, or by the child execution of its Map Run with index
    ``child``."""
    if child is None:
        return states_entered(execution.history)
    (log,) = [log for log in execution.children if log.index == child]
    return states_entered(log.events)


def test_run_with_predict_in_worker_processes(tmp_path: Path) -> None:
    progress: list[tuple[str, int, int]] = []
    run = run_local(
        small_request(n_trees=10, predict=True, groves_per_invocation=3),
        str(tmp_path),
        workers=2,
        on_progress=lambda *p: progress.append(p),
    )
    assert run.status == "SUCCEEDED", run.cause
    assert entered(run) == [
        "Plan",
        "PlannedInParts",
        "TrainGroves",
        "Merge",
        "PredictRequested",
        "Predict",
        "Done",
    ]
    # 4 groves in batches of 3: two child executions, each with a name of its own
    assert all(entered(run, i) == ["TrainGrove"] for i in range(2)), "each child's states"
    children = run.children
    assert [c.index for c in children] == [0, 1] and len({c.name for c in children}) == 2
    assert all(status(c.events) == "SUCCEEDED" for c in children)
    assert progress[-1] == ("TrainGroves", 4, 4), "progress counts groves, not batches"
    (map_run,) = run.map_runs
    assert map_run["maxConcurrency"] == 2
    assert (map_run["executionCounts"]["total"], map_run["itemCounts"]["total"]) == (2, 4)
    output = run.output
    store = open_store(str(tmp_path))
    items = grove_items(output)
    assert [g["n_trees"] for g in items] == [3, 3, 3, 1] and output["n_groves"] == 4
    assert output["model"]["n_trees"] == 10
    run_id = output["run_id"]
    assert get_json(store, "t/latest.json")["run_id"] == run_id
    manifest = get_json(store, f"t/runs/{run_id}/manifest.json")
    assert manifest["n_trees"] == 10 and [g["seed"] for g in manifest["groves"]] == [
        g["seed"] for g in items
    ]
    # ResultWriter: the children's results in the store, not in the state
    details = output["map_run"]["ResultWriterDetails"]
    assert details["Key"].startswith("map-runs/")
    written = get_json(store, details["Key"])
    assert written["MapRunArn"] == output["map_run"]["MapRunArn"]
    assert written["ResultFiles"]["FAILED"] == written["ResultFiles"]["PENDING"] == []
    (succeeded,) = written["ResultFiles"]["SUCCEEDED"]
    results = get_json(store, succeeded["Key"])
    assert {r["Name"] for r in results} == {c.name for c in children}
    trained = [g for r in results for g in json.loads(r["Output"])["groves"]]
    assert sorted(g["grove_id"] for g in trained) == [0, 1, 2, 3]
    assert manifest["data"]["classes"] == [0, 1, 2]
    # the execution's history is stored in the run's folder, in Step Functions' shapes
    (stored,) = executions.stored(store, "t", run_id)
    assert stored["events"] == run.history and stored["mapRuns"] == run.map_runs
    assert stored["execution"]["status"] == "SUCCEEDED"
    assert stored["execution"]["stateMachine"] == "forest"
    assert [c["name"] for c in stored["childExecutions"]] == [c.name for c in children]
    assert {c["status"] for c in stored["childExecutions"]} == {"SUCCEEDED"}
    assert run.history[0]["type"] == "ExecutionStarted"
    assert run.history[-1]["type"] == "ExecutionSucceeded"
    model = groves.load_model(store, "t", run_id)
    split = read_prepared(store, get_json(store, plan_key("t", run_id)))
    accuracy = float(np.mean(model.predict(named(model, split.X_test)) == split.y_test))
    assert output["metrics"]["score"] == pytest.approx(accuracy)
    metrics = get_json(store, metrics_key("t", run_id))
    assert metrics["score"] == output["metrics"]["score"]
    assert [p["n_trees"] for p in metrics["score_by_trees"]] == [3, 6, 9, 10]
    assert metrics["score_by_trees"][-1]["score"] == metrics["score"]
    first_grove = read_grove(store.get_bytes(f"t/runs/{run_id}/groves/grove_00000.trees"))
    alone = float(np.mean(first_grove.predict(split.X_test) == split.y_test))
    assert metrics["score_by_trees"][0]["score"] == pytest.approx(alone)


def test_without_predict_the_choice_skips_scoring(tmp_path: Path) -> None:
    run = run_local(small_request(), str(tmp_path), workers=1)
    assert run.status == "SUCCEEDED", run.cause
    assert entered(run)[-2:] == ["PredictRequested", "Done"] and "metrics" not in run.output
    assert not open_store(str(tmp_path)).exists(metrics_key("t", run.output["run_id"]))


def predictions(tmp_path: Path, build_id: str, seed: int) -> np.ndarray:
    run = run_local(
        small_request(build_id, seed=seed, dataset="digits", n_trees=6), str(tmp_path), workers=1
    )
    assert run.status == "SUCCEEDED", run.cause
    store = open_store(str(tmp_path))
    run_id = run.output["run_id"]
    model = groves.load_model(store, build_id, run_id)
    split = read_prepared(store, get_json(store, plan_key(build_id, run_id)))
    return model.predict_proba(named(model, split.X_test))


def test_same_run_seed_gives_the_same_model(tmp_path: Path) -> None:
    first, second = predictions(tmp_path, "a", 5), predictions(tmp_path, "b", 5)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, predictions(tmp_path, "c", 6))


def test_invalid_request_ends_in_build_failed_before_any_work(tmp_path: Path) -> None:
    run = run_local(small_request(n_trees=-1), str(tmp_path))
    assert run.status == "FAILED" and run.error == "RequestError"
    assert "n_trees: -1 must be an integer" in run.cause
    assert entered(run) == ["Plan", "BuildFailed"]
    assert open_store(str(tmp_path)).list_keys("") == []


def broken_grove(event: dict[str, Any]) -> dict[str, Any]:
    if any(grove["grove_id"] == 1 for grove in event["Items"]):
        raise MemoryError("grove 1 ran out of memory")
    return handlers.train_grove(event)


def interpreter_with(store: Path, **replace: Any) -> tuple[dict[str, Any], Interpreter]:
    """The real definition with some handlers swapped, as a fault would swap them on AWS."""
    return local_machine(str(store), {**FUNCTIONS, **replace})


def test_a_failing_grove_fails_the_map_run_and_no_model_is_written(tmp_path: Path) -> None:
    """ToleratedFailurePercentage 0: one failed child execution fails the Map with
    States.ExceedToleratedFailureThreshold; the grove's own error is in the child's history
    and in ResultWriter's FAILED file."""
    definition, interpreter = interpreter_with(tmp_path, TrainGroveFunctionArn=broken_grove)
    run = execute(definition, small_request(), interpreter)
    assert (run.status, run.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    assert entered(run) == ["Plan", "PlannedInParts", "TrainGroves", "BuildFailed"]
    assert entered(run, 1) == ["TrainGrove", "GroveFailed"]
    failed = next(c for c in run.children if status(c.events) == "FAILED")
    error, cause = failure(failed.events)
    assert error == "MemoryError" and "grove 1 ran out of memory" in (cause or "")
    store = open_store(str(tmp_path))
    keys = store.list_keys("")
    (manifest,) = [k for k in keys if k.endswith("manifest.json")]
    assert manifest.startswith("map-runs/"), "the Map Run's, not a committed run's"
    files = get_json(store, manifest)["ResultFiles"]
    (failed_file,) = files["FAILED"]
    (entry,) = get_json(store, failed_file["Key"])
    assert entry["Status"] == "FAILED" and entry["Error"] == "MemoryError"
    assert entry["Name"] == failed.name


def test_lambda_throttling_is_retried_by_the_deployed_definition(tmp_path: Path) -> None:
    calls = []

    def throttled_once(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event)
        if len(calls) == 1:
            raise LambdaThrottled("Rate exceeded")
        return handlers.plan(event)

    definition, interpreter = interpreter_with(tmp_path, PlanFunctionArn=throttled_once)
    sleeps: list[float] = []
    interpreter.sleep = sleeps.append
    run = execute(definition, small_request(), interpreter)
    assert run.status == "SUCCEEDED", run.cause
    assert len(calls) == 2 and len(sleeps) == 1 and 0 <= sleeps[0] <= 2


def test_run_on_s3_with_worker_processes(s3_server: str) -> None:
    store = f"s3://{s3_server}/builds"
    run = run_local(small_request(predict=True), store, workers=2)
    assert run.status == "SUCCEEDED", run.cause
    run_id = run.output["run_id"]
    folder = f"t/runs/{run_id}"
    assert run.output["model"]["model"] == f"{store}/{folder}/manifest.json"
    manifest_key = run.output["map_run"]["ResultWriterDetails"]["Key"]
    map_folder = manifest_key.removesuffix("/manifest.json")
    assert map_folder.startswith("map-runs/"), "at the top of the bucket, not under builds/"
    assert open_store(f"s3://{s3_server}").list_keys(map_folder) == [
        f"{map_folder}/SUCCEEDED_0.json",
        manifest_key,
    ]
    assert open_store(store).list_keys("t/") == sorted(
        [
            "t/latest.json",
            *(f"{folder}/data/{name}.npy" for name in ("X_test", "y_test")),
            f"{folder}/data/rows_00000.bin",
            f"{folder}/data/rows_00000.index",
            *(
                f"{folder}/groves/grove_{i:05d}.{suffix}"
                for i in range(3)
                for suffix in ("json", "trees", VOTES_SUFFIX)
            ),
            f"{folder}/groves.json",
            f"{folder}/history/{executions.history_name(run.started_at)}",
            f"{folder}/manifest.json",
            f"{folder}/metrics.json",
            f"{folder}/plan.json",
        ]
    )
    assert open_store(store).list_children("t/runs") == [run_id]
