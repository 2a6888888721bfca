"""Distributed Map on the local engine: ItemReader from a bucket, ItemBatcher's batches, child
executions with names of their own, the tolerated failure threshold, ResultWriter's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from groves.engine.asl import Interpreter, UnsupportedDefinition, execute
from groves.engine.asl.history import entered, failure, status
from groves.store.codec import get_json
from groves.store.local import LocalStore

BUCKET = "items-bucket"


def total(event: dict[str, Any]) -> dict[str, Any]:
    """A batch's sum; a negative item fails the batch, as a failing grove does."""
    values = [item["v"] for item in event["Items"]]
    if any(v < 0 for v in values):
        raise ValueError(f"negative item in {values}")
    return {"sum": sum(values), "tag": event["BatchInput"]["tag"]}


def distributed_map(**changes: Any) -> dict[str, Any]:
    each = {
        "Type": "Map",
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket.$": "$.items.Bucket", "Key.$": "$.items.Key"},
        },
        "ItemSelector": {"v.$": "$$.Map.Item.Value", "at.$": "$$.Map.Item.Index"},
        "ItemBatcher": {"MaxItemsPerBatchPath": "$.per_batch", "BatchInput": {"tag.$": "$.tag"}},
        "MaxConcurrency": 2,
        "ToleratedFailurePercentage": 0,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Sum",
            "States": {"Sum": {"Type": "Task", "Resource": "total", "End": True}},
        },
        "ResultPath": "$.out",
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
        "End": True,
        **changes,
    }
    return {
        "StartAt": "Each",
        "States": {
            "Each": {k: v for k, v in each.items() if v is not None},
            "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        },
    }


WRITER = {
    "Resource": "arn:aws:states:::s3:putObject",
    "Parameters": {"Bucket.$": "$.items.Bucket", "Prefix": "results"},
}


@pytest.fixture
def bucket(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "bucket")


def run(bucket: LocalStore, values: list[int], machine: dict[str, Any], workers: int = 2) -> Any:
    bucket.put_bytes("in/items.json", json.dumps(values).encode())
    data = {"items": {"Bucket": BUCKET, "Key": "in/items.json"}, "per_batch": 2, "tag": "t"}
    interpreter = Interpreter({"total": total}, workers=workers, buckets={BUCKET: bucket})
    return execute(machine, data, interpreter)


def test_items_are_read_selected_batched_and_run_as_named_child_executions(
    bucket: LocalStore,
) -> None:
    done = run(bucket, [1, 2, 3, 4, 5], distributed_map())
    assert done.status == "SUCCEEDED", done.cause
    # batches of 2 consecutive items, each with the BatchInput, outputs in item order
    assert done.output["out"] == [
        {"sum": 3, "tag": "t"},
        {"sum": 7, "tag": "t"},
        {"sum": 5, "tag": "t"},
    ]
    assert [child.index for child in done.children] == [0, 1, 2]
    assert len({child.name for child in done.children}) == 3, "each child has a name of its own"
    for child in done.children:  # each child execution has a history of its own
        assert entered(child.events) == ["Sum"] and status(child.events) == "SUCCEEDED"
        assert child.events[0]["type"] == "ExecutionStarted"
    assert "Sum" not in entered(done.history), "the children's states are not the parent's"
    (map_run,) = done.map_runs
    assert map_run["maxConcurrency"] == 2 and map_run["status"] == "SUCCEEDED"
    assert map_run["executionCounts"]["succeeded"] == map_run["executionCounts"]["total"] == 3
    assert map_run["itemCounts"]["succeeded"] == map_run["itemCounts"]["total"] == 5
    assert map_run["mapRunArn"].startswith("arn:aws:states:local:000000000000:mapRun:local/Each:")
    started = next(e for e in done.history if e["type"] == "MapRunStarted")
    assert started["mapRunStartedEventDetails"] == {"mapRunArn": map_run["mapRunArn"]}


def test_result_writer_writes_the_children_to_the_bucket_not_the_state(bucket: LocalStore) -> None:
    done = run(bucket, [1, 2, 3], distributed_map(ResultWriter=WRITER))
    assert done.status == "SUCCEEDED", done.cause
    details = done.output["out"]["ResultWriterDetails"]
    assert details["Bucket"] == BUCKET and details["Key"].startswith("results/")
    manifest = get_json(bucket, details["Key"])
    assert manifest["MapRunArn"] == done.output["out"]["MapRunArn"]
    assert manifest["ResultFiles"]["FAILED"] == manifest["ResultFiles"]["PENDING"] == []
    (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
    assert succeeded["Size"] == len(bucket.get_bytes(succeeded["Key"]))
    entries = get_json(bucket, succeeded["Key"])
    assert sorted(json.loads(e["Output"])["sum"] for e in entries) == [3, 3]
    assert all(
        e["Status"] == "SUCCEEDED" and e["ExecutionArn"].endswith(e["Name"]) for e in entries
    )
    assert json.loads(entries[0]["Input"])["BatchInput"] == {"tag": "t"}


def test_one_failed_child_over_the_threshold_fails_the_map_and_starts_no_other(
    bucket: LocalStore,
) -> None:
    done = run(bucket, [1, -2, 3, 4, 5, 6], distributed_map(ResultWriter=WRITER), workers=1)
    assert (done.status, done.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    (child,) = done.children  # no other child started after it failed
    assert (child.index, status(child.events), failure(child.events)[0]) == (
        0,
        "FAILED",
        "ValueError",
    )
    assert [e["type"] for e in done.history if e["type"].startswith("MapRun")] == [
        "MapRunStarted",
        "MapRunFailed",
    ]
    assert done.map_runs[0]["executionCounts"]["pending"] == 2
    key = next(f"results/{p.name}/manifest.json" for p in (bucket.root / "results").iterdir())
    files = get_json(bucket, key)["ResultFiles"]
    (failed_entry,) = get_json(bucket, files["FAILED"][0]["Key"])
    assert failed_entry["Error"] == "ValueError" and "negative item" in failed_entry["Cause"]
    pending = get_json(bucket, files["PENDING"][0]["Key"])
    assert [json.loads(e["Input"])["Items"][0]["v"] for e in pending] == [3, 5]
    assert files["SUCCEEDED"] == []


def test_failures_within_the_tolerated_percentage_let_the_map_succeed(bucket: LocalStore) -> None:
    machine = distributed_map(ToleratedFailurePercentage=40)  # 2 of 5 items may fail
    done = run(bucket, [1, -2, 3, 4, 5], machine)
    assert done.status == "SUCCEEDED", done.cause
    assert done.output["out"][0] is None and done.output["out"][1] == {"sum": 7, "tag": "t"}
    done = run(bucket, [1, -2, -3, 4, -5], machine)  # 3 failed items: over 40%
    assert done.error == "States.ExceedToleratedFailureThreshold"


@pytest.mark.parametrize(
    ("items", "where"),
    [
        (None, {"Bucket": "other-bucket", "Key": "in/items.json"}),
        (None, {"Bucket": BUCKET, "Key": "in/missing.json"}),
        (b'{"not": "an array"}', {"Bucket": BUCKET, "Key": "in/object.json"}),
        (b"not json", {"Bucket": BUCKET, "Key": "in/bad.json"}),
    ],
)
def test_items_that_cannot_be_read_fail_with_item_reader_failed(
    bucket: LocalStore, items: bytes | None, where: dict[str, str]
) -> None:
    if items is not None:
        bucket.put_bytes(where["Key"], items)
    data = {"items": where, "per_batch": 2, "tag": "t"}
    interpreter = Interpreter({"total": total}, buckets={BUCKET: bucket})
    done = execute(distributed_map(), data, interpreter)
    assert (done.status, done.error) == ("FAILED", "States.ItemReaderFailed")
    assert where["Key"] in done.cause or where["Bucket"] in done.cause


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {
                "ItemReader": {
                    **distributed_map()["States"]["Each"]["ItemReader"],
                    "ReaderConfig": {"InputType": "CSV"},
                }
            },
            "JSON array",
        ),
        (
            {
                "ItemReader": {
                    **distributed_map()["States"]["Each"]["ItemReader"],
                    "Resource": "arn:aws:states:::s3:listObjectsV2",
                }
            },
            "getObject",
        ),
        ({"ItemBatcher": {"MaxInputBytesPerBatch": 1024}}, "MaxItemsPerBatch"),
        (
            {"ResultWriter": {**WRITER, "WriterConfig": {"OutputType": "JSONL"}}},
            "ResultWriter supports",
        ),
        ({"ToleratedFailurePercentagePath": "$.p"}, "not supported"),
        ({"ItemsPath": "$.items"}, "exclude each other"),
        (
            {"ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"x.$": "States.Format('a')"}}},
            "intrinsic",
        ),
    ],
)
def test_what_the_engine_does_not_implement_is_refused(
    bucket: LocalStore, change: dict[str, Any], words: str
) -> None:
    with pytest.raises(UnsupportedDefinition, match=words):
        run(bucket, [1], distributed_map(**change))
