"""A table of several files planned in parts (the forest's ScanParts and PrepareParts Maps): the
records one step of the plan writes for the next are read back as untrusted input (a damaged
one is one line naming it, never a traceback or a wrong plan), and a file that changes between
the two passes is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from groves.errors import BuildError, CorruptFile, RequestError
from groves.steps import handlers
from groves.store.local import LocalStore

PREFIX = "b/runs/{run}/data/"


def folder(tmp_path: Path, files: int = 3, rows: int = 60) -> str:
    rng = np.random.default_rng(0)
    (tmp_path / "t").mkdir()
    for k in range(files):
        x = rng.normal(size=rows)
        frame = pd.DataFrame(
            {
                "x": np.where(rng.random(rows) < 0.1, np.nan, x),
                "colour": rng.choice(["red", "blue", None], rows),
                "label": np.where(x > 0, "up", "down"),
            }
        )
        frame.to_csv(tmp_path / "t" / f"p{k}.csv", index=False)
    return f"{tmp_path}/t/"


def started(tmp_path: Path, files: int = 3) -> tuple[dict[str, Any], LocalStore]:
    """The Plan step on a folder: what the Maps get, and the store."""
    store = str(tmp_path / "st")
    request = {"build_id": "b", "dataset": folder(tmp_path, files), "target": "label"}
    out = handlers.plan({"store": store, "request": {**request, "n_trees": 4, "grove_size": 2}})
    assert out["n_parts"] == files and out["parts"]["Key"].endswith("data/parts.json")
    return out, LocalStore(store)


def run_parts(out: dict[str, Any], phase: str) -> None:
    ids = {k: out[k] for k in ("store", "build_id", "run_id")}
    for part in range(out["n_parts"]):
        handlers.plan_part({**ids, "part": part, "phase": phase})


def step(out: dict[str, Any], phase: str) -> dict[str, Any]:
    return handlers.plan({**{k: out[k] for k in ("store", "build_id", "run_id")}, "phase": phase})


def test_the_steps_in_turn_write_a_plan_the_groves_can_train_on(tmp_path: Path) -> None:
    out, store = started(tmp_path)
    run_parts(out, "scan")
    assert step(out, "scanned") == {"parts": 3}
    run_parts(out, "prepare")
    planned = step(out, "prepared")
    assert planned["n_groves"] == 2 and planned["data"]["n_rows"] == 180
    plan = json.loads(store.get_bytes(f"b/runs/{out['run_id']}/plan.json"))
    assert len(plan["part_usages"]) == 6 and len(plan["plan_usages"]) == 2
    shards = plan["data"]["prepared"]["train"]["shards"]
    assert len(shards) == 3 and sum(s["rows"] for s in shards) == plan["data"]["n_train"]


SCAN_DAMAGE: dict[str, Callable[[Any], Any]] = {
    "not an object": lambda record: [],
    "a negative row count": lambda r: {**r, "scan": {**r["scan"], "n_rows": -1}},
    "more held out than rows": lambda r: {**r, "scan": {**r["scan"], "n_test": 10**6}},
    "another part's scan": lambda r: {**r, "scan": {**r["scan"], "part": 0}},
    "a label that is an object": lambda r: {**r, "scan": {**r["scan"], "labels": [[{}, 1, 1]]}},
    "words that are a list": lambda r: {**r, "scan": {**r["scan"], "words": []}},
}


@pytest.mark.parametrize("damage", sorted(SCAN_DAMAGE))
def test_a_damaged_scan_is_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    out, store = started(tmp_path)
    run_parts(out, "scan")
    key = PREFIX.format(run=out["run_id"]) + "scan_00001.json"
    store.put_bytes(key, json.dumps(SCAN_DAMAGE[damage](json.loads(store.get_bytes(key)))).encode())
    with pytest.raises(CorruptFile, match="scan") as caught:
        step(out, "scanned")
    assert "\n" not in str(caught.value)
    assert not store.exists(PREFIX.format(run=out["run_id"]) + "decided.json")


def test_damaged_part_results_are_refused_before_a_plan_is_written(tmp_path: Path) -> None:
    out, store = started(tmp_path)
    run_parts(out, "scan")
    step(out, "scanned")
    run_parts(out, "prepare")
    prefix = PREFIX.format(run=out["run_id"])
    held = store.get_bytes(prefix + "test_00002.npy")
    store.put_bytes(prefix + "test_00002.npy", held[:-4] + b"\x00\x00\x80\x7f")
    with pytest.raises(BuildError, match="held-out rows of part 2"):
        step(out, "prepared")
    store.put_bytes(prefix + "test_00002.npy", held)
    part = json.loads(store.get_bytes(prefix + "part_00001.json"))
    store.put_bytes(prefix + "part_00001.json", json.dumps({**part, "shards": "x"}).encode())
    with pytest.raises(CorruptFile, match=r"part_00001\.json is damaged \(its shards"):
        step(out, "prepared")
    assert not store.exists(f"b/runs/{out['run_id']}/plan.json")


def test_a_file_that_changes_between_the_passes_is_refused(tmp_path: Path) -> None:
    out, _ = started(tmp_path)
    run_parts(out, "scan")
    step(out, "scanned")
    changed = tmp_path / "t" / "p1.csv"
    changed.write_text(changed.read_text() + "0.5,red,up\n")
    with pytest.raises(RequestError, match=r"p1\.csv' changed while it was planned"):
        run_parts(out, "prepare")


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"part": 3, "phase": "scan"}, "part"),
        ({"part": True, "phase": "scan"}, "part"),
        ({"part": 0, "phase": "train"}, "phase"),
    ],
)
def test_a_bad_part_event_names_its_field(tmp_path: Path, event: dict, field: str) -> None:
    out, _ = started(tmp_path)
    ids = {k: out[k] for k in ("store", "build_id", "run_id")}
    with pytest.raises(RequestError) as caught:
        handlers.plan_part({**ids, **event})
    assert caught.value.field == field


def test_a_folder_with_decimal_labels_and_boolean_features_plans(tmp_path: Path) -> None:
    """Labels of every kind go through the scans' JSON: decimals (as floats), booleans."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "t").mkdir()
    for k in range(2):
        labels = [Decimal(f"{(i * 7 + k) % 5}.0") for i in range(40)]
        table = pa.table(
            {
                "x": pa.array([float(i % 5) for i in range(40)]),
                "flag": pa.array([i % 2 == 0 for i in range(40)]),
                "y": pa.array(labels, pa.decimal128(4, 1)),
            }
        )
        pq.write_table(table, tmp_path / "t" / f"p{k}.parquet")
    store = str(tmp_path / "st")
    request = {"build_id": "b", "dataset": f"{tmp_path}/t/", "target": "y", "n_trees": 2}
    out = handlers.plan({"store": store, "request": {**request, "estimator": "regressor"}})
    run_parts(out, "scan")
    step(out, "scanned")
    run_parts(out, "prepare")
    planned = step(out, "prepared")
    assert planned["data"]["n_rows"] == 80
    out = handlers.plan({"store": store, "request": {**request, "build_id": "c"}})
    run_parts(out, "scan")
    step(out, "scanned")
    plan = json.loads(
        LocalStore(store).get_bytes(
            PREFIX.replace("b/", "c/").format(run=out["run_id"]) + "decided.json"
        )
    )
    assert plan["data"]["classes"] == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_files_header_is_read_where_it_is_not_downloaded(s3: Any, kind: str) -> None:
    """Plan opens a table on S3 from its first file's footer (Parquet) or first block (CSV)
    by ranged reads: a few of its bytes, whatever the file's size."""
    import io

    from conftest import BUCKET

    from groves.data import stream

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"x": rng.normal(size=1_500_000), "colour": rng.choice(["red", "blue"], 1_500_000)}
    )
    frame["label"] = np.where(frame["x"] > 0, "up", "down")
    buffer = io.BytesIO()
    frame.to_parquet(buffer) if kind == "parquet" else frame.to_csv(buffer, index=False)
    s3.put_object(Bucket=BUCKET, Key=f"t/p0.{kind}", Body=buffer.getvalue())
    from botocore.client import BaseClient

    read: list[int] = []
    real = BaseClient._make_api_call

    def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
        response = real(client, operation, params)
        if operation == "GetObject":
            read.append(response["ContentLength"])
        return response

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", counted)
        table = stream.open_table(f"s3://{BUCKET}/t/", "label", None)
    assert table.names == ["x", "colour"] and table.kinds == ["number", "category"]
    assert 0 < sum(read) <= 2 * 2**20 and len(buffer.getvalue()) > 10 * 2**20


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, as a path of keys and indexes."""
    if isinstance(value, dict):
        return [path, *(p for k, v in value.items() for p in leaves(v, (*path, k)))]
    if isinstance(value, list):
        return [path, *(p for i, v in enumerate(value) for p in leaves(v, (*path, i)))]
    return [path]


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def test_a_damaged_decision_is_refused_in_one_line_or_prepares_rows_it_fits(
    tmp_path: Path,
) -> None:
    """GIVEN decided.json (what PlanScanned decided for every part) damaged anywhere, WHEN a
    part's rows are written and joined, THEN it is one groves error line, never a traceback."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from groves.errors import GrovesError

    out, store = started(tmp_path)
    run_parts(out, "scan")
    step(out, "scanned")
    key = PREFIX.format(run=out["run_id"]) + "decided.json"
    good = json.loads(store.get_bytes(key))
    places = leaves(good)
    odd = st.sampled_from([None, -1, 0, 2.5, 10**20, "x", "<U0", True, [], {}, [0], {"a": 1}])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(place=st.sampled_from(places), new=odd)
    def damaged(place: tuple[Any, ...], new: Any) -> None:
        store.put_bytes(key, json.dumps(replaced(good, place, new)).encode())
        try:
            run_parts(out, "prepare")
            step(out, "prepared")
        except GrovesError as exc:
            assert "\n" not in str(exc)

    damaged()
    with pytest.raises(CorruptFile, match=r"decided\.json is damaged: layout\.y_dtype"):
        store.put_bytes(key, json.dumps(replaced(good, ("layout", "y_dtype"), "|O")).encode())
        run_parts(out, "prepare")


def test_a_damaged_table_record_is_refused_in_one_line(tmp_path: Path) -> None:
    """GIVEN table.json (the request and the table Plan opened) damaged anywhere, WHEN a part
    is scanned, THEN it is one groves error line, never a traceback; a column's kind is derived
    again from its type, never taken from the record."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from groves.errors import GrovesError

    out, store = started(tmp_path)
    key = PREFIX.format(run=out["run_id"]) + "table.json"
    good = json.loads(store.get_bytes(key))
    assert "kinds" not in good["table"]
    odd = st.sampled_from([None, -1, "x", "csv", True, [], {}, ["x"], "AAAA"])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(place=st.sampled_from(leaves(good)), new=odd)
    def damaged(place: tuple[Any, ...], new: Any) -> None:
        store.put_bytes(key, json.dumps(replaced(good, place, new)).encode())
        try:
            run_parts(out, "scan")
        except GrovesError as exc:
            assert "\n" not in str(exc)

    damaged()
