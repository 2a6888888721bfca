"""The parts of a Distributed Map that are not iterations: ItemReader (a JSON array in S3),
ItemBatcher (``{"Items": [...], "BatchInput": {...}}`` per child execution), the tolerated
failure threshold, and ResultWriter's files.

S3 is reached through ``buckets``: a bucket name -> an object store with ``get_bytes`` and
``put_bytes``. The local runner maps the store's bucket (or a local directory's stand-in name)
to the store, so the definition's ``Bucket``/``Key`` fields are followed as Step Functions does.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from groves.engine.asl.errors import StatesError
from groves.engine.asl.paths import evaluate, get_path

GET_OBJECT = "arn:aws:states:::s3:getObject"
PUT_OBJECT = "arn:aws:states:::s3:putObject"
THRESHOLD_ERROR = "States.ExceedToleratedFailureThreshold"
THRESHOLD_CAUSE = "The specified tolerated failure threshold was exceeded"
ARN_PREFIX = "arn:aws:states:local:000000000000"


class Objects(Protocol):
    """What ItemReader and ResultWriter need of a bucket."""

    def get_bytes(self, key: str) -> bytes: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...


def is_distributed(state: Mapping[str, Any]) -> bool:
    config = state["ItemProcessor"].get("ProcessorConfig", {})
    return config.get("Mode", "INLINE") == "DISTRIBUTED"


def read_items(
    name: str, reader: Mapping[str, Any], data: Any, context: Any, buckets: Mapping[str, Objects]
) -> list[Any]:
    """The JSON array ItemReader names; any failure is ``States.ItemReaderFailed``."""
    where = evaluate(reader["Parameters"], data, context)
    bucket, key = where.get("Bucket"), where.get("Key")
    if bucket not in buckets:
        raise StatesError("States.ItemReaderFailed", f"{name}: no access to bucket {bucket!r}")
    try:
        items = json.loads(buckets[bucket].get_bytes(key))
    except FileNotFoundError as exc:
        raise StatesError("States.ItemReaderFailed", f"{name}: s3://{bucket}/{key}: {exc}") from exc
    except ValueError as exc:
        raise StatesError(
            "States.ItemReaderFailed", f"{name}: s3://{bucket}/{key} is not JSON"
        ) from exc
    if not isinstance(items, list):
        raise StatesError(
            "States.ItemReaderFailed", f"{name}: s3://{bucket}/{key} is not a JSON array"
        )
    return items


def batches(
    name: str, batcher: Mapping[str, Any], items: list[Any], data: Any, context: Any
) -> list[dict[str, Any]]:
    """Consecutive items in batches of at most MaxItemsPerBatch, each with the BatchInput."""
    size = (
        get_path(data, batcher["MaxItemsPerBatchPath"])
        if "MaxItemsPerBatchPath" in batcher
        else batcher["MaxItemsPerBatch"]
    )
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise StatesError("States.Runtime", f"{name}: MaxItemsPerBatch {size!r} is not >= 1")
    batch_input = evaluate(batcher.get("BatchInput"), data, context)
    out = []
    for start in range(0, len(items), size):
        batch: dict[str, Any] = {"Items": items[start : start + size]}
        if "BatchInput" in batcher:
            batch["BatchInput"] = batch_input
        out.append(batch)
    return out


def tolerated_failures(state: Mapping[str, Any], n_items: int) -> int:
    """How many items may fail before the Map Run fails (ToleratedFailureCount/-Percentage;
    neither means none)."""
    limits = []
    if "ToleratedFailureCount" in state:
        limits.append(state["ToleratedFailureCount"])
    if "ToleratedFailurePercentage" in state:
        limits.append(math.floor(n_items * state["ToleratedFailurePercentage"] / 100))
    return min(limits) if limits else 0


@dataclass
class Child:
    """One child workflow execution of a Map Run, as ResultWriter reports it."""

    index: int
    name: str
    arn: str
    input: Any
    n_items: int
    status: str = "PENDING"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    started: str | None = None
    stopped: str | None = None

    def record(self, machine_arn: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ExecutionArn": self.arn,
            "Name": self.name,
            "Input": json.dumps(self.input),
            "InputDetails": {"Included": True},
            "StateMachineArn": machine_arn,
            "Status": self.status,
        }
        if self.started:
            entry["StartDate"] = self.started
        if self.stopped:
            entry["StopDate"] = self.stopped
        if self.status == "SUCCEEDED":
            entry["Output"] = json.dumps(self.output)
            entry["OutputDetails"] = {"Included": True}
        elif self.error is not None:
            entry["Error"], entry["Cause"] = self.error, self.cause
        return entry


@dataclass
class MapRun:
    """A Distributed Map's run: its ARN, its children, and the files ResultWriter writes."""

    machine: str
    label: str
    inputs: list[Any]
    n_items: list[int]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    children: list[Child] = field(init=False)

    def __post_init__(self) -> None:
        self.children = []
        for index, (value, count) in enumerate(zip(self.inputs, self.n_items, strict=True)):
            name = str(uuid.uuid4())
            arn = f"{ARN_PREFIX}:execution:{self.machine}/{self.label}:{name}"
            self.children.append(Child(index, name, arn, value, count))

    @property
    def arn(self) -> str:
        return f"{ARN_PREFIX}:mapRun:{self.machine}/{self.label}:{self.id}"

    @property
    def machine_arn(self) -> str:
        return f"{ARN_PREFIX}:stateMachine:{self.machine}/{self.label}"

    def describe(self, max_concurrency: int, tolerated: int) -> dict[str, Any]:
        """The Map Run as ``describe-map-run`` reports it (``maxConcurrency``: the child
        executions that ran at once here)."""
        statuses = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED")
        executions = {s.lower(): sum(c.status == s for c in self.children) for s in statuses}
        items = {
            s.lower(): sum(c.n_items for c in self.children if c.status == s) for s in statuses
        }
        running = executions["pending"] + executions["running"]
        failed = executions["failed"] + executions["aborted"]
        return {
            "mapRunArn": self.arn,
            "status": "FAILED" if failed else "RUNNING" if running else "SUCCEEDED",
            "maxConcurrency": max_concurrency,
            "toleratedFailureCount": tolerated,
            "executionCounts": {**executions, "total": len(self.children)},
            "itemCounts": {**items, "total": sum(self.n_items)},
        }

    def failed_items(self) -> int:
        return sum(c.n_items for c in self.children if c.status in ("FAILED", "ABORTED"))

    def write_results(
        self, name: str, writer: Mapping[str, Any], data: Any, context: Any, buckets: Mapping
    ) -> dict[str, Any]:
        """ResultWriter's files, ``<Prefix>/<map run id>/``: ``manifest.json`` and one file per
        status; returns what the Map state outputs in place of the results."""
        where = evaluate(writer["Parameters"], data, context)
        bucket, prefix = where.get("Bucket"), str(where.get("Prefix", ""))
        if bucket not in buckets:
            raise StatesError("States.ResultWriterFailed", f"{name}: no access to {bucket!r}")
        folder = f"{prefix.rstrip('/')}/{self.id}" if prefix else self.id
        groups = {
            "SUCCEEDED": ["SUCCEEDED"],
            "FAILED": ["FAILED", "ABORTED"],
            "PENDING": ["PENDING"],
        }
        files: dict[str, list[dict[str, Any]]] = {}
        for group, statuses in groups.items():
            entries = [c.record(self.machine_arn) for c in self.children if c.status in statuses]
            files[group] = []
            if entries:
                key = f"{folder}/{group}_0.json"
                body = json.dumps(entries).encode()
                buckets[bucket].put_bytes(key, body)
                files[group].append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": bucket, "MapRunArn": self.arn, "ResultFiles": files}
        manifest_key = f"{folder}/manifest.json"
        buckets[bucket].put_bytes(manifest_key, json.dumps(manifest, indent=2).encode())
        return {
            "MapRunArn": self.arn,
            "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key},
        }
