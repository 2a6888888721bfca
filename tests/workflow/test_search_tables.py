"""A search on a table (a CSV or Parquet file, or a folder of them) plans in bounded memory, as a
build's plan does (``groves.steps.prepare``): its held-out, validation and training rows are
decided row by row by seeded hashes, each kind of scored rows capped by ``max_test_rows``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

import groves
from groves.data import stream
from groves.data.prepared import read_prepared
from groves.engine.local import run_local
from groves.errors import RequestError
from groves.steps.search import plan_search, read_search
from groves.store.artifacts import read_plan, search_key
from groves.store.codec import load_npy
from groves.store.local import LocalStore


def flights(rows: int, seed: int) -> pd.DataFrame:
    """Text with gaps, numbers with gaps, a boolean, a text label, and each row's number."""
    rng = np.random.default_rng(seed)
    carrier = rng.choice(np.array(["AA", "B6", "DL", "UA", None], dtype=object), rows)
    delay = np.where(rng.random(rows) < 0.1, np.nan, rng.normal(10, 30, rows))
    weekend = rng.random(rows) < 0.3
    late = (np.nan_to_num(delay) > 20) ^ (rng.random(rows) < 0.05)
    return pd.DataFrame(
        {
            "row": np.arange(rows) + 100_000 * seed,
            "carrier": carrier,
            "delay": delay,
            "weekend": weekend,
            "status": np.where(late, "late", "on time"),
        }
    )


def search_request(dataset: str, **change: Any) -> dict[str, Any]:
    return {
        "build_id": "s",
        "dataset": dataset,
        "target": "status",
        "n_trees": 4,
        "grove_size": 2,
        "seed": 6,
        "search": {"grid": {"max_depth": [2, 6]}},
        **change,
    }


def test_a_search_on_a_csv_with_text_and_gaps_commits_its_best(tmp_path: Path) -> None:
    data = tmp_path / "f.csv"
    flights(1200, 0).drop(columns="row").to_csv(data, index=False, na_rep="")
    store = str(tmp_path / "store")
    run = run_local(search_request(str(data), commit=True), store, workers=2, machine="search")
    assert run.status == "SUCCEEDED", run.cause
    result = run.output["result"]
    assert result["latest"] is True and result["test_score"] > 0.8
    assert (
        json.loads((tmp_path / "store" / "s" / "latest.json").read_text())["run_id"]
        == (result["run_id"])
    )
    model = groves.load_model(store, "s")
    assert isinstance(model, Pipeline)
    assert model[-1].max_depth == result["best"]["params"]["max_depth"]
    new = flights(300, 5)
    assert model.score(new.drop(columns=["row", "status"]), new["status"]) > 0.8
    record = read_search(LocalStore(store), "s", run.output["search_id"])
    # test_size 0.25, then validation_size 0.2 of the rest, row by row
    assert record["n_fit"] + record["n_validation"] + record["n_test"] == 1200
    assert 0.2 < record["n_test"] / 1200 < 0.3 and 0.1 < record["n_validation"] / 1200 < 0.2
    assert record["classes"] == ["late", "on time"] and result["n_test"] == record["n_test"]


def test_a_search_on_a_folder_of_parquet_files(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    for i in range(3):
        flights(500, i).to_parquet(tmp_path / "parts" / f"part-{i}.parquet")
    store = str(tmp_path / "store")
    request = search_request(f"{tmp_path}/parts/", drop=["row"])
    run = run_local(request, store, workers=2, machine="search")
    assert run.status == "SUCCEEDED", run.cause
    assert run.output["result"]["test_score"] > 0.8
    record = read_search(LocalStore(store), "s", run.output["search_id"])
    assert record["n_fit"] + record["n_validation"] + record["n_test"] == 1500
    plan = read_plan(LocalStore(store), "s", record["candidates"][0]["run_id"])
    assert plan["data"]["feature_names"] == ["carrier", "delay", "weekend"]
    assert plan["data"]["dropped"] == ["row"]


def test_validation_and_test_rows_are_apart_from_the_training_rows(tmp_path: Path) -> None:
    """Each row is a training, a validation or a held-out row by its place (the seeded hashes of
    ``stream.Split``), whichever file it is in; at most ``max_test_rows`` of the validation and
    of the held-out rows are kept, and the rest neither train nor score."""
    (tmp_path / "parts").mkdir()
    for i in range(2):
        flights(1000, i).to_csv(tmp_path / "parts" / f"p{i}.csv", index=False)
    store = LocalStore(tmp_path / "store")
    request = search_request(f"{tmp_path}/parts/", validation_size=0.3, max_test_rows=120)
    record = plan_search(store, request)
    plan = read_plan(store, "s", record["candidates"][0]["run_id"])
    rows = read_prepared(store, plan)
    column = plan["data"]["feature_names"].index("row")
    test_key = search_key("s", record["search_id"], "data/X_test.npy")
    test = load_npy(store.get_bytes(test_key))[:, column].astype(int)
    fit, validation = (rows.X_train[:, column].astype(int), rows.X_test[:, column].astype(int))
    assert len(set(fit) | set(validation) | set(test)) == len(fit) + len(validation) + len(test)
    split = stream.Split(0.25, 6, 120, 0.3)
    kinds: dict[str, list[np.ndarray]] = {"fit": [], "validation": [], "test": []}
    for part in range(2):
        numbers = np.arange(1000) + 100_000 * part
        held, checked = split.rows(part, 0, 1000)
        kinds["fit"].append(numbers[~(held | checked)])
        kinds["validation"].append(numbers[checked])
        kinds["test"].append(numbers[held])
    expected = {kind: np.concatenate(found) for kind, found in kinds.items()}
    np.testing.assert_array_equal(fit, expected["fit"])  # in order, none dropped
    assert set(validation) <= set(expected["validation"]) and 80 < len(validation) < 160
    assert set(test) <= set(expected["test"]) and 80 < len(test) < 160
    assert len(expected["validation"]) > 400 and len(expected["test"]) > 400  # the caps bit
    assert (record["n_fit"], record["n_validation"], record["n_test"]) == (
        len(fit),
        len(validation),
        len(test),
    )


def test_a_tables_candidates_are_checked_before_any_row_is_written(tmp_path: Path) -> None:
    data = tmp_path / "f.parquet"
    flights(200, 0).to_parquet(data)
    store = LocalStore(tmp_path / "store")
    request = search_request(str(data), search={"grid": {"max_depth": [2, 500]}})
    with pytest.raises(RequestError, match=r"more than the \d+ training rows") as caught:
        plan_search(store, request)
    assert caught.value.field == "search.candidates[1].params.max_depth"
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("*.*"))
    few = search_request(str(data), validation_size=0.99)
    few["max_test_rows"] = 10
    with pytest.raises(RequestError) as caught:
        plan_search(store, few)
    assert caught.value.field == "validation_size"


def test_a_search_on_a_table_larger_than_its_memory_size_plans_within_it(tmp_path: Path) -> None:
    """GIVEN 2M rows of a Parquet table (9 features, a text label) WHEN a search runs with every
    function held to 512 MB THEN plan_search stays within it: it keeps a block, not the table.
    Loading the table whole, as searches did before (``datasets.load_dataset``, then the
    held-out and validation splits), peaked at 819 MB on it and was killed at 512 MB."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    rows = 250_000
    block = {f"x{j}": rng.normal(size=rows) for j in range(8)}
    block["carrier"] = rng.choice(np.array(["AA", "B6", "DL", "UA"]), rows)
    block["status"] = np.where(block["x0"] + 0.5 * block["x1"] > 0.3, "late", "on time")
    table = pa.table(block)
    data = tmp_path / "big.parquet"
    with pq.ParquetWriter(data, table.schema) as writer:
        for _ in range(8):  # the same block again: 2M rows, ~150 MB of Arrow columns
            writer.write_table(table)
    request = search_request(str(data), n_trees=2, grove_size=1, rows_per_grove=2000)
    request["max_test_rows"] = 2000
    run = run_local(request, str(tmp_path / "store"), workers=2, machine="search", memory_mb=512)
    assert run.status == "SUCCEEDED", run.cause
    planned = run.output["result"]["cost"]["steps"]["plan_search"]
    assert planned["memory_mb"] == 512 and planned["peak_rss_mb"] < 512
    record = read_search(LocalStore(tmp_path / "store"), "s", run.output["search_id"])
    assert record["n_fit"] > 1_100_000 and record["n_validation"] <= 2200
