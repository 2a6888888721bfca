"""Validate a build request and plan its groves, before any training is spent."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from groves.data import datasets, stream
from groves.data.datasets import data_record
from groves.data.prepared import write_prepared
from groves.data.shards import Layout, shard_count
from groves.errors import CorruptFile, RequestError
from groves.steps.checks import validate_request
from groves.steps.cost import Invocation
from groves.steps.planned import n_groves, planned_groves, run_plan
from groves.steps.prepare import (
    check_params_against_data,
    decide_scans,
    is_table,
    open_table,
    plan_rows,
    split_of,
    table_record,
    writer_for,
)
from groves.store.artifacts import (
    RUN_ID_FORM,
    check_build_id,
    check_run_id,
    data_prefix,
    digest,
    is_finished,
    items_key,
    latest_uncommitted,
    new_run_id,
    plan_key,
    read_plan,
    read_verified,
)
from groves.store.codec import dump_npy, get_json, put_json
from groves.store.protocol import ArtifactNotFound, Store
from groves.store.records import COLUMN, COUNT, DATA, DIGEST, List, Match, Range, Rec, check
from groves.store.uris import check_store


def write_items(store: Store, spec: dict[str, Any], run_id: str) -> None:
    """The run's grove items as one JSON array: the Distributed Map's ItemReader input."""
    items = json.dumps(planned_groves(spec), separators=(",", ":")).encode()
    store.put_bytes(items_key(spec["build_id"], run_id), items)


def plan_build(store: Store, request: Any, invocation: Invocation | None = None) -> dict[str, Any]:
    """Validate the request and its data, write a new run's ``plan.json`` (with the plan step's
    ``usage``, given its ``invocation``), and return the plan; a request with ``resume`` returns
    the stored plan of the run it continues instead. A table of several files is planned by the
    state machine's Map, a part (file) an invocation: this returns the table's record
    (``parts`` in it) and ``plan_scanned`` and ``plan_prepared`` go on."""
    if isinstance(request, dict) and "resume" in request:
        return resume_plan(store, request)
    spec = validate_request(request)
    check_store(store)  # a store that cannot exist is one line naming it, as on the CLI
    invocation = invocation or Invocation.begin("plan")
    run_id = new_run_id()
    if not is_table(spec["dataset"]):
        data = plan_arrays(store, spec, run_id)
        return write_plan(store, spec, run_id, data, {"usage": invocation.usage()})
    table = open_table(spec)
    if len(table.files) > 1:
        return start_parts(store, spec, run_id, table, invocation)
    data = plan_table(store, spec, run_id, table)
    return write_plan(store, spec, run_id, data, {"usage": invocation.usage()})


def write_plan(
    store: Store, spec: dict[str, Any], run_id: str, data: dict[str, Any], usage: dict[str, Any]
) -> dict[str, Any]:
    """The run's grove items and ``plan.json`` (with the plan's ``usage``) written."""
    write_items(store, spec, run_id)
    plan = {**run_plan(spec, run_id, data), **usage}
    put_json(store, plan_key(spec["build_id"], run_id), plan)
    return plan


def plan_arrays(store: Store, spec: dict[str, Any], run_id: str) -> dict[str, Any]:
    """An array dataset's split (stratified by scikit-learn) written, and its data record."""
    dataset = datasets.load_dataset(spec["dataset"], spec["target"], spec["weight"])
    held_out = spec["test_size"] > 0
    classes = datasets.check_target(dataset, spec["estimator"], spec["dataset"], held_out)
    split = datasets.split(dataset, spec["test_size"], spec["seed"], classes is not None)
    if not datasets.every_class_trains(split.y_train, classes):
        raise RequestError("test_size", "leaves some class without training rows; lower it")
    check_params_against_data(spec["params"], split.y_train, classes)
    prepared = write_prepared(store, spec["build_id"], run_id, split)
    return data_record(dataset, split, classes, prepared)


def plan_table(
    store: Store, spec: dict[str, Any], run_id: str, table: stream.Table
) -> dict[str, Any]:
    """A one-file table planned here, by the steps the Map runs for a folder's files: scanned,
    checked, then its rows written as training shards and (capped) held-out rows; its data
    record."""
    decided, parts = plan_rows(store, spec, table, spec["build_id"], run_id)
    return table_record(store, spec, run_id, decided, parts)


# A table of several files is planned in parts, its files' record and the parts' results
# beside the prepared rows: ``data/table.json`` (the request and the table),
# ``data/parts.json`` (the Map's items), ``data/scan_NNNNN.json``, ``data/decided.json``,
# ``data/part_NNNNN.json`` and ``data/test_NNNNN.npy`` (a part's shards, and its held-out rows:
# two ``.npy`` arrays, one after the other).
def part_key(build_id: str, run_id: str, name: str) -> str:
    return f"{data_prefix(build_id, run_id)}{name}"


def start_parts(
    store: Store, spec: dict[str, Any], run_id: str, table: stream.Table, invocation: Invocation
) -> dict[str, Any]:
    """Write the table's record and the Map's items (one a file); what the Map needs."""
    build_id = spec["build_id"]
    record = {
        "build_id": build_id,
        "run_id": run_id,
        "spec": spec,
        "table": table.record(),
        "plan_usages": [invocation.usage()],
    }
    put_json(store, part_key(build_id, run_id, "table.json"), record)
    items = [{"part": k} for k in range(len(table.files))]
    put_json(store, part_key(build_id, run_id, "parts.json"), items)
    return record


def read_part(store: Store, key: str, *fields: str) -> dict[str, Any]:
    """A record a step of the plan's Map wrote, read back: a JSON object with ``fields``."""
    record = get_json(store, key)
    if not isinstance(record, dict) or any(f not in record for f in fields):
        raise CorruptFile(f"{store.uri}/{key} is damaged (it needs {', '.join(fields)})")
    return record


def read_table(store: Store, build_id: str, run_id: str) -> tuple[dict[str, Any], stream.Table]:
    """The table's record (its request validated again) and the table."""
    key = part_key(build_id, run_id, "table.json")
    record = read_part(store, key, "spec", "table", "plan_usages")
    spec = validate_request(record["spec"])
    if spec["build_id"] != build_id:
        raise CorruptFile(f"{store.uri}/{key} is another build's")
    return {**record, "spec": spec}, stream.Table.of(record["table"])


def plan_part(
    store: Store, build_id: str, run_id: str, part: Any, phase: Any, invocation: Invocation
) -> dict[str, Any]:
    """One file of a table in parts: its scan (``phase`` ``scan``) or its rows written
    (``prepare``), as the plan's Map runs it."""
    if phase not in ("scan", "prepare"):
        raise RequestError("phase", f"{phase!r} is not scan or prepare")
    record, table = read_table(store, build_id, run_id)
    if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < len(table.files):
        raise RequestError(
            "part", f"{part!r} is not a part of this table (0 to {len(table.files) - 1})"
        )
    spec, split = record["spec"], split_of(record["spec"])
    name = f"{part:05d}"
    if phase == "scan":
        found = stream.scan_part(table, part, spec["estimator"] == "classifier", split)
        scan = {"scan": found.record(), "usage": invocation.usage()}
        put_json(store, part_key(build_id, run_id, f"scan_{name}.json"), scan)
        return {"part": part, "rows": found.n_rows}
    decided = read_decided(store, build_id, run_id, len(table.files))
    prefix = data_prefix(build_id, run_id)
    rows = stream.prepare_part(table, decided, part, split, writer_for(store, prefix))
    blob = dump_npy(rows.X_test) + dump_npy(rows.y_test)
    store.put_bytes(part_key(build_id, run_id, f"test_{name}.npy"), blob)
    result = {"shards": rows.shards, "test": digest(blob), "usage": invocation.usage()}
    put_json(store, part_key(build_id, run_id, f"part_{name}.json"), result)
    return {"part": part, "shards": len(rows.shards)}


# What PlanScanned decided for the parts' second pass (``prepare.decide``), as read back.
DECIDED = Rec(
    {
        "columns": List(COLUMN, 1),
        "layout": Rec(
            {
                "n_features": Range(1, 1 << 31),
                "y_dtype": Match(r"<U\d{1,7}|\|b1|<i8|<f8"),
                "y_shape": List(int, 0, 0),
                "weighted": bool,
            }
        ),
        "stripe_rows": Range(1, 1 << 31),
        "keep_share": float,
        "validation_share": float,  # a search's validation rows kept (0 for a build)
        "parts": List(Rec({"n_rows": COUNT, "n_train": COUNT, "first_shard": COUNT}), 1),
        "data": DATA,
    }
)


def read_decided(store: Store, build_id: str, run_id: str, n_parts: int) -> dict[str, Any]:
    """``decided.json``, checked: its schema, a part for each of the table's files, as many
    columns as its rows' layout has features, and shares of rows kept in [0, 1]."""
    key = part_key(build_id, run_id, "decided.json")
    decided = get_json(store, key)
    problem = check(decided, DECIDED)
    if problem is None and (
        len(decided["parts"]) != n_parts
        or len(decided["columns"]) != decided["layout"]["n_features"]
        or not 0 <= decided["keep_share"] <= 1
        or not 0 <= decided["validation_share"] <= 1
    ):
        problem = "its parts, columns or share of held-out rows do not fit the table"
    if problem:
        raise CorruptFile(f"{store.uri}/{key} is damaged: {problem}")
    return decided


def plan_scanned(
    store: Store, build_id: str, run_id: str, invocation: Invocation
) -> dict[str, Any]:
    """The parts' scans added up and checked (``stream.merge``); what the parts' second pass
    writes, decided once for all of them."""
    record, table = read_table(store, build_id, run_id)
    scans, usages = [], []
    for part in range(len(table.files)):
        key = part_key(build_id, run_id, f"scan_{part:05d}.json")
        found = read_part(store, key, "scan", "usage")
        scans.append(stream.PartScan.of(found["scan"], part))
        usages.append(found["usage"])
    decided = decide_scans(table, scans, record["spec"])
    put_json(store, part_key(build_id, run_id, "decided.json"), decided)
    record = {
        **record,
        "plan_usages": [*record["plan_usages"], invocation.usage()],
        "part_usages": usages,
    }
    put_json(store, part_key(build_id, run_id, "table.json"), record)
    return {"parts": len(table.files)}


def plan_prepared(
    store: Store, build_id: str, run_id: str, invocation: Invocation
) -> dict[str, Any]:
    """The parts' rows joined into the run's prepared data; ``plan.json`` and the grove items
    written, as a one-file table's plan writes them."""
    record, table = read_table(store, build_id, run_id)
    spec = record["spec"]
    decided = read_decided(store, build_id, run_id, len(table.files))
    parts, usages = [], list(record.get("part_usages", []))
    for part in range(len(table.files)):
        name = f"{part:05d}"
        where = part_key(build_id, run_id, f"part_{name}.json")
        result = read_part(store, where, "shards", "test", "usage")
        shards = part_shards(result["shards"], decided, part, f"{store.uri}/{where}")
        key = part_key(build_id, run_id, f"test_{name}.npy")
        blob = read_verified(store, key, result["test"], f"the held-out rows of part {part}")
        parts.append(part_rows(blob, shards, decided, f"{store.uri}/{key}"))
        usages.append(result["usage"])
    data = table_record(store, spec, run_id, decided, parts)
    usage = {
        "usage": invocation.usage(),
        "plan_usages": record["plan_usages"],
        "part_usages": usages,
    }
    return write_plan(store, spec, run_id, data, usage)


SHARD = Rec({"rows": Range(1, 1 << 62), "bytes": COUNT, "index": DIGEST})


def part_shards(
    shards: Any, decided: dict[str, Any], part: int, where: str
) -> list[dict[str, Any]]:
    """A part's shards as its record lists them: as many as its training rows fill, each
    with its rows, bytes and index digest."""
    layout, planned = Layout.of(decided["layout"]), decided["parts"][part]
    expected = shard_count(planned["n_train"], decided["stripe_rows"], layout.row_bytes)
    good = isinstance(shards, list) and len(shards) == expected
    for shard in shards if good else []:
        good = good and check(shard, SHARD) is None
    if not good or sum(s["rows"] for s in shards) != planned["n_train"]:
        raise CorruptFile(f"{where} is damaged (its shards are not the part's training rows)")
    return shards


def part_rows(
    blob: bytes, shards: list[dict[str, Any]], decided: dict[str, Any], where: str
) -> stream.PartRows:
    """A part's held-out rows (two ``.npy`` arrays, one after the other), checked."""
    handle = io.BytesIO(blob)
    try:
        X, y = (np.load(handle, allow_pickle=False) for _ in range(2))
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptFile(f"{where} is damaged") from exc
    layout = Layout.of(decided["layout"])
    if not (
        X.dtype == np.float32
        and X.ndim == 2
        and X.shape[1] == layout.n_features
        and y.dtype == layout.y_dtype
        and y.shape == (len(X),)
    ):
        raise CorruptFile(f"{where} is damaged (not the part's held-out rows)")
    return stream.PartRows(shards, X, y)


def state_output(store: Store, plan: dict[str, Any]) -> dict[str, Any]:
    """What the plan step passes on through Step Functions: ids, counts, the Map's settings and
    where its ItemReader reads the grove items (its ResultWriter writes to the same bucket,
    under ``map-runs/``). The same few hundred bytes for 1 or 100,000 groves; the rest stays
    in ``plan.json``."""
    build_id, run_id, spec = plan["build_id"], plan["run_id"], plan["spec"]
    counts = ("n_rows", "n_features", "n_train", "n_test")
    output = {
        "store": store.uri,
        "build_id": build_id,
        "run_id": run_id,
        "created_at": plan["created_at"],
        "n_groves": n_groves(spec),
        "max_concurrency": spec["max_concurrency"],
        "groves_per_invocation": spec.get("groves_per_invocation", 1),
        "predict": spec["predict"],
        "items": store.location(items_key(build_id, run_id)),
        "data": {key: plan["data"][key] for key in counts},
        "sample": plan.get("sample"),
        "warnings": shown_warnings(plan["data"].get("warnings", [])),
    }
    if plan.get("resumed"):
        output["resumed"] = True
    return output


def parts_output(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    """What the plan step passes on for a table of several files: where the Maps over its
    parts read their items, and at most how many run at once."""
    build_id, run_id = record["build_id"], record["run_id"]
    return {
        "store": store.uri,
        "build_id": build_id,
        "run_id": run_id,
        "max_concurrency": record["spec"]["max_concurrency"],
        "parts": store.location(part_key(build_id, run_id, "parts.json")),
        "n_parts": len(record["table"]["files"]),
    }


SHOWN_WARNINGS = 10  # the execution's output stays small however many columns look like ids


def shown_warnings(warnings: list[str]) -> list[str]:
    """The plan's first warnings, and how many more ``plan.json`` has."""
    more = len(warnings) - SHOWN_WARNINGS
    tail = [f"and {more:,} more warnings in plan.json (data.warnings)"] if more > 0 else []
    return warnings[:SHOWN_WARNINGS] + tail


def resume_plan(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    """The plan of the run to continue: ``resume: true`` takes the newest uncommitted run of
    the build, ``resume: RUN_ID`` that run. Its groves that are done are not trained again."""
    build_id = check_build_id(request)
    extra = sorted(set(request) - {"build_id", "resume"})
    if extra:
        raise RequestError(
            extra[0], "cannot be changed when resuming: the run continues with its stored plan"
        )
    resume = request["resume"]
    if resume is True:
        run_id = latest_uncommitted(store, build_id)
        if run_id is None:
            raise RequestError("resume", f"build {build_id!r} has no uncommitted run to resume")
    elif isinstance(resume, str):
        run_id = check_run_id(resume, "resume")
    else:
        raise RequestError("resume", f"{resume!r} must be true or {RUN_ID_FORM}")
    if is_finished(store, build_id, run_id):
        raise RequestError("resume", f"run {run_id} of build {build_id!r} is already committed")
    try:
        plan = read_plan(store, build_id, run_id)
    except ArtifactNotFound as exc:
        raise RequestError("resume", f"build {build_id!r} has no run {run_id}") from exc
    if not store.exists(items_key(build_id, run_id)):  # stopped before plan wrote them
        write_items(store, plan["spec"], run_id)
    return {**plan, "resumed": True}
