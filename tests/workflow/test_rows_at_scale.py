"""Rows at any scale: the training rows are shards of stripes, each grove reads a seeded sample
of its own (only those stripes, by ranged reads), and a table whose rows do not fit a grove's
memory is sampled by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import train_batch
from sklearn.datasets import make_classification

import groves
from groves.data import shards
from groves.data.prepared import read_prepared
from groves.engine.local import run_local
from groves.errors import RequestError
from groves.steps import handlers
from groves.steps.cost import TRAIN_MEMORY_ENV
from groves.steps.planned import grove_sample
from groves.steps.score import score_build
from groves.store.artifacts import read_plan
from groves.store.codec import get_json
from groves.store.local import LocalStore


@pytest.fixture
def table(tmp_path: Path) -> str:
    X, y = make_classification(6_000, 8, n_informative=5, random_state=0)
    np.savez(tmp_path / "t.npz", X=X, y=y)
    return str(tmp_path / "t.npz")


def grove_records(store: Path, build_id: str, run_id: str) -> list[dict[str, Any]]:
    folder = store / build_id / "runs" / run_id / "groves"
    return [
        get_json(LocalStore(store), str(p.relative_to(store)))
        for p in sorted(folder.glob("*.json"))
    ]


def test_each_grove_reads_only_its_own_sample_by_ranged_reads(
    tmp_path: Path, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[tuple[str, int, int]] = []
    original = LocalStore.get_range

    def counted(self: LocalStore, key: str, start: int, stop: int) -> bytes:
        read.append((key, start, stop))
        return original(self, key, start, stop)

    monkeypatch.setattr(LocalStore, "get_range", counted)
    store = tmp_path / "st"
    request = {"build_id": "s", "dataset": table, "n_trees": 8, "grove_size": 2, "seed": 4}
    request |= {"rows_per_grove": 450, "predict": True}
    planned = handlers.plan({"store": str(store), "request": request})
    train_batch(planned)  # in this process, so that its reads are counted
    run_id = planned["run_id"]
    plan = read_plan(LocalStore(store), "s", run_id)
    train = plan["data"]["prepared"]["train"]
    assert plan["sample"]["rows"] == 450 and plan["sample"]["of"] == 4_500
    metas = grove_records(store, "s", run_id)
    step = train["stripe_rows"]
    assert all(450 <= m["n_train"] < 450 + step for m in metas)
    row_bytes = 4 * 8 + 8
    assert (
        sum(stop - start for _, start, stop in read) == sum(m["n_train"] for m in metas) * row_bytes
    )
    samples = {tuple(shards.sample_stripes(train, 450, m["seed"])) for m in metas}
    assert len(samples) == len(metas)  # each grove its own rows
    handlers.merge({"store": str(store), "build_id": "s", "run_id": run_id})
    assert score_build(LocalStore(store), "s", run_id)["score"] > 0.8


def test_every_grove_reads_every_row_by_default_and_fits_as_scikit_learn(
    tmp_path: Path, table: str
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    request = {"build_id": "a", "dataset": table, "n_trees": 4, "grove_size": 4, "seed": 1}
    out = run_local(request, str(tmp_path / "st"), workers=1)
    assert out.status == "SUCCEEDED", out.cause
    plan = read_plan(LocalStore(tmp_path / "st"), "a", out.output["run_id"])
    assert plan["sample"]["rows"] is None
    from groves.data.prepared import read_prepared

    split = read_prepared(LocalStore(tmp_path / "st"), plan)
    seed = grove_records(tmp_path / "st", "a", out.output["run_id"])[0]["seed"]
    forest = RandomForestClassifier(4, random_state=seed).fit(split.X_train, split.y_train)
    model = groves.load_model(str(tmp_path / "st"), "a")
    np.testing.assert_array_equal(
        model.predict_proba(split.X_test), forest.predict_proba(split.X_test)
    )


def test_a_table_larger_than_a_groves_memory_is_sampled_by_default() -> None:
    spec = {"rows_per_grove": None}
    record = {"n_rows": 400_000_000, "n_features": 26, "weighted": False}
    record |= {"y_dtype": "<i8", "y_shape": []}
    sample = grove_sample(spec, record)
    assert sample["rows"] == sample["fits"] < 400_000_000 and not sample["asked"]
    # what it holds: twice its rows' bytes and the trees' share, in train_grove's memory
    # its rows and ~256 bytes a row of fitting, in 60% of train_grove's 3,008 MB
    assert sample["fits"] == int(0.6 * 3008 * 2**20) // (4 * 26 + 8 + 256)
    small = grove_sample(spec, {**record, "n_rows": 1_000})
    assert small["rows"] is None


def test_a_run_held_to_less_memory_samples_what_its_groves_hold(tmp_path: Path, table: str) -> None:
    """The plan sizes each grove's sample by train_grove's memory as the run holds it (the
    template's, or --memory-mb), which the runner passes to plan as the template does."""
    request = {"build_id": "m", "dataset": table, "n_trees": 4, "grove_size": 2, "seed": 1}
    held = run_local(request, str(tmp_path / "st"), workers=1, memory_mb=1024)
    assert held.status == "SUCCEEDED", held.cause
    sample = held.output["sample"]
    assert sample["memory_mb"] == 1024 and not sample["asked"]
    record = {"n_rows": sample["of"], "n_features": 8, "weighted": False}
    record |= {"y_dtype": "<i8", "y_shape": []}
    assert sample["fits"] < grove_sample({"rows_per_grove": None}, record)["fits"]


def test_too_little_memory_for_a_groves_sample_is_refused_naming_what_to_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """train_grove held to 160 MB holds about one row beside its runtime: the plan refuses,
    where it sampled one row a grove without a word; asking for rows_per_grove still works."""
    monkeypatch.setenv(TRAIN_MEMORY_ENV, "160")
    record = {"n_rows": 150_000, "n_features": 12, "weighted": False}
    record |= {"y_dtype": "<i8", "y_shape": []}
    with pytest.raises(RequestError, match=r"train_grove's 160 MB holds about 1 of the 150,000 "):
        grove_sample({"rows_per_grove": None}, record)
    assert grove_sample({"rows_per_grove": 500}, record)["rows"] == 500
    assert grove_sample({"rows_per_grove": None}, {**record, "n_rows": 1})["rows"] is None


def messy(rows: int, seed: int) -> Any:
    """A table as users have them: text with gaps, numbers with gaps, a boolean, text labels."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    carrier = rng.choice(["AA", "B6", "DL", "UA", None], rows)
    delay = np.where(rng.random(rows) < 0.1, np.nan, rng.normal(10, 30, rows))
    weekend = rng.random(rows) < 0.3
    late = (np.nan_to_num(delay) > 20) ^ (rng.random(rows) < 0.1)
    return pd.DataFrame(
        {
            "carrier": carrier,
            "delay": delay,
            "weekend": weekend,
            "status": np.where(late, "late", "on time"),
        }
    )


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_folder_is_planned_in_parts_as_one_table(tmp_path: Path, kind: str) -> None:
    """A folder's files are one table planned a file an invocation (the plan's Maps): the
    same columns, classes and rows as the files joined into one; its split decided file by
    file, the same however many workers ran the parts."""
    import pandas as pd

    parts = [messy(700, seed) for seed in range(3)]
    (tmp_path / "parts").mkdir()
    for i, part in enumerate(parts):
        path = tmp_path / "parts" / f"part-{i}.{kind}"
        part.to_parquet(path) if kind == "parquet" else part.to_csv(path, index=False)
    whole = tmp_path / f"whole.{kind}"
    frame = pd.concat(parts, ignore_index=True)
    frame.to_parquet(whole) if kind == "parquet" else frame.to_csv(whole, index=False)
    request = {"n_trees": 4, "grove_size": 2, "seed": 2, "target": "status", "predict": True}
    folder = {**request, "dataset": f"{tmp_path}/parts/"}
    store = str(tmp_path / "st")
    runs = {
        "one": run_local({"build_id": "one", "dataset": str(whole), **request}, store, workers=1),
        "many": run_local({"build_id": "many", **folder}, store, workers=2),
        "again": run_local({"build_id": "again", **folder}, store, workers=1),
    }
    assert {r.status for r in runs.values()} == {"SUCCEEDED"}, [r.cause for r in runs.values()]
    plans = {b: read_plan(LocalStore(store), b, r.output["run_id"]) for b, r in runs.items()}
    one, many, again = (plans[b]["data"] for b in ("one", "many", "again"))
    for key in ("columns", "classes", "n_rows", "feature_names"):
        assert one[key] == many[key], key
    assert many["split_fingerprint"] == again["split_fingerprint"]
    assert len(plans["many"]["part_usages"]) == 6 and "part_usages" not in plans["one"]
    for data in (one, many):
        assert abs(data["n_held_out"] / data["n_rows"] - 0.25) < 0.04
    a, b = (groves.load_model(store, name) for name in ("many", "again"))
    X = frame.drop(columns="status")
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert min(runs[b].output["metrics"]["score"] for b in ("one", "many")) > 0.7


def test_a_folder_planned_in_parts_equals_its_parts_planned_in_turn(tmp_path: Path) -> None:
    """The Map's parts, each in its own worker through the store, join into exactly the rows
    the same steps give run one after the other in one process."""
    from groves.data import stream
    from groves.steps.prepare import decide, table_record, writer_for

    (tmp_path / "parts").mkdir()
    for i in range(3):
        messy(400 + 100 * i, i).to_csv(tmp_path / "parts" / f"p{i}.csv", index=False)
    source = f"{tmp_path}/parts/"
    store = str(tmp_path / "st")
    run = run_local({"build_id": "b", "dataset": source, "target": "status", "seed": 5}, store)
    assert run.status == "SUCCEEDED", run.cause
    plan = read_plan(LocalStore(store), "b", run.output["run_id"])
    spec, split = plan["spec"], stream.Split(0.25, 5, 200_000)
    table = stream.open_table(source, "status", None)
    scans = [stream.scan_part(table, k, True, split) for k in range(3)]
    decided = decide(stream.merge(table, scans, True, True), spec)
    local = LocalStore(str(tmp_path / "inline"))
    prefix = "x/runs/r/data/"
    rows = [
        stream.prepare_part(table, decided, k, split, writer_for(local, prefix)) for k in range(3)
    ]
    inline = table_record(local, {**spec, "build_id": "x"}, "r", decided, rows)
    assert inline == {**plan["data"], "prepared": inline["prepared"]}
    assert inline["prepared"]["train"] == plan["data"]["prepared"]["train"]


def test_an_s3_prefix_of_parquet_files_trains_on_a_moto_server(
    tmp_path: Path, s3_server: str
) -> None:
    import boto3

    client = boto3.client("s3")
    for i in range(3):
        path = tmp_path / f"p{i}.parquet"
        messy(500, i).to_parquet(path)
        client.upload_file(str(path), s3_server, f"tables/flights/part-{i}.parquet")
    client.put_object(Bucket=s3_server, Key="tables/flights/_SUCCESS", Body=b"")
    request = {"build_id": "s3", "dataset": f"s3://{s3_server}/tables/flights/", "target": "status"}
    run = run_local(
        {**request, "n_trees": 4, "grove_size": 2, "predict": True},
        f"s3://{s3_server}/builds",
        workers=1,
    )
    assert run.status == "SUCCEEDED", run.cause
    assert run.output["data"]["n_rows"] == 1500


def test_held_out_rows_are_capped_for_scoring_and_split_by_row(tmp_path: Path) -> None:
    frame = messy(4000, 7)
    frame.to_parquet(tmp_path / "t.parquet")
    request = {"build_id": "c", "dataset": str(tmp_path / "t.parquet"), "target": "status"}
    run = run_local(
        {**request, "n_trees": 2, "grove_size": 2, "max_test_rows": 300, "predict": True},
        str(tmp_path / "st"),
        workers=1,
    )
    assert run.status == "SUCCEEDED", run.cause
    plan = read_plan(LocalStore(tmp_path / "st"), "c", run.output["run_id"])
    data = plan["data"]
    assert 0.22 < data["n_held_out"] / 4000 < 0.28  # test_size 0.25, row by row
    assert data["n_test"] <= 330 and data["n_train"] + data["n_held_out"] == 4000
    assert run.output["metrics"]["n_test"] == data["n_test"]
    late = (frame["status"] == "late").mean()
    split = read_prepared(LocalStore(tmp_path / "st"), plan)
    assert abs((split.y_train == "late").mean() - late) < 0.03  # stratified in expectation


def test_a_tables_regression_labels_are_checked_for_poisson_from_the_scan(tmp_path: Path) -> None:
    """The streamed plan keeps no labels, yet a poisson criterion still needs non-negative
    training labels with a positive sum (as for arrays)."""
    from groves.errors import RequestError
    from groves.steps.plan import plan_build
    from groves.store.local import LocalStore as Store

    frame = messy(400, 3).assign(status=np.linspace(-5, 5, 400))
    frame.to_parquet(tmp_path / "r.parquet")
    request = {"build_id": "p", "dataset": str(tmp_path / "r.parquet"), "target": "status"}
    request |= {"estimator": "regressor", "params": {"criterion": "poisson"}}
    with pytest.raises(RequestError, match=r"params\.criterion: 'poisson' needs non-negative"):
        plan_build(Store(tmp_path / "st"), request)
    frame.assign(status=np.linspace(0, 5, 400)).to_parquet(tmp_path / "r.parquet")
    assert plan_build(Store(tmp_path / "st"), request)["data"]["n_rows"] == 400
