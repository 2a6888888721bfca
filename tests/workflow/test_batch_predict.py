"""Batch prediction of new rows: statemachine/batch_predict.asl.json run by the local runner,
its handlers alone, and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import BUCKET, named, small_request
from sklearn.datasets import load_diabetes, load_digits

import groves
from groves import cli
from groves.engine.local import run_local
from groves.errors import BuildError, RequestError
from groves.steps import handlers
from groves.store.artifacts import chunk_key
from groves.store.codec import get_json
from groves.store.uris import open_store


def build(store: Path, **request: Any) -> dict[str, Any]:
    run = run_local(small_request(**request), str(store), workers=2)
    assert run.status == "SUCCEEDED", run.cause
    return run.output


def model_of(store: Path, output: dict[str, Any], tmp_path: Path) -> Any:
    path = groves.export_model(str(store), "t", tmp_path / "model.joblib", output["run_id"])
    return joblib.load(path)  # what a scikit-learn user does with the model file


def write_csv(path: Path, X: np.ndarray, names: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows(X.tolist())
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(path.open()))
    return rows[0], rows[1:]


def test_predictions_equal_the_merged_models_row_for_row(tmp_path: Path) -> None:
    store = tmp_path / "store"
    trained = build(store, dataset="digits", n_trees=12, grove_size=5)
    X = load_digits().data.astype(np.float32)
    names = [f"pixel_{i // 8}_{i % 8}" for i in range(64)]
    order = np.random.default_rng(0).permutation(64)  # columns in another order, matched by name
    data = write_csv(tmp_path / "new.csv", X[:, order], [names[i] for i in order])
    out = tmp_path / "out" / "predictions.csv"
    request = {"build_id": "t", "data": str(data), "output": str(out), "rows_per_chunk": 500}
    progress: list[tuple[str, int, int]] = []
    run = run_local(
        request,
        str(store),
        workers=2,
        machine="batch_predict",
        on_progress=lambda *p: progress.append(p),
    )
    assert run.status == "SUCCEEDED", run.cause
    assert progress[-1] == ("PredictChunks", 4, 4), "1,797 rows in chunks of 500"
    model = model_of(store, trained, tmp_path)
    header, rows = read_csv(out)
    assert header == ["prediction"] + [f"proba_{c}" for c in model.classes_]
    assert [int(r[0]) for r in rows] == model.predict(named(model, X)).tolist()
    proba = np.array([[float(v) for v in r[1:]] for r in rows])
    np.testing.assert_array_equal(proba, model.predict_proba(named(model, X)))
    sidecar = json.loads((tmp_path / "out" / "predictions.csv.json").read_text())
    assert (sidecar["build_id"], sidecar["run_id"]) == ("t", trained["run_id"])
    assert sidecar["n_rows"] == 1797 and sidecar["n_trees"] == 12
    manifest = get_json(open_store(str(store)), f"t/runs/{trained['run_id']}/manifest.json")
    assert sidecar["model"] == manifest["model"]


def test_a_regressor_predicts_npz_rows_into_parquet(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    store = tmp_path / "store"
    trained = build(store, dataset="diabetes", estimator="regressor", n_trees=6)
    X = load_diabetes().data.astype(np.float32)
    np.savez(tmp_path / "new.npz", X=X)
    out = tmp_path / "p.parquet"
    request = {"build_id": "t", "data": str(tmp_path / "new.npz"), "output": str(out)}
    run = run_local(request, str(store), workers=1, machine="batch_predict")
    assert run.status == "SUCCEEDED", run.cause
    table = pq.read_table(out)
    assert table.column_names == ["prediction"]
    model = model_of(store, trained, tmp_path)
    expected = model.predict(named(model, X))
    np.testing.assert_array_equal(table.column("prediction").to_numpy(), expected)


@pytest.mark.parametrize(
    ("columns", "words"),
    [
        (
            ["sepal length (cm)", "sepal width (cm)", "petal length (cm)"],
            r"'petal width \(cm\)' is missing",
        ),
        (
            [
                "sepal length (cm)",
                "sepal width (cm)",
                "petal length (cm)",
                "petal width (cm)",
                "target",
            ],
            "column 'target' of .* is not a training feature",
        ),
    ],
)
def test_a_missing_or_extra_column_is_named_before_any_work(
    tmp_path: Path, columns: list[str], words: str
) -> None:
    store = tmp_path / "store"
    build(store)
    data = write_csv(tmp_path / "new.csv", np.ones((3, len(columns))), columns)
    request = {"build_id": "t", "data": str(data), "output": str(tmp_path / "o.csv")}
    with pytest.raises(RequestError, match=words) as caught:
        handlers.plan_batch({"store": str(store), "request": request})
    assert caught.value.field == "data"
    assert not list((store / "t").glob("predictions"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"output": "o.txt"}, "output"),
        ({"rows_per_chunk": 0}, "rows_per_chunk"),
        ({"run_id": "latest"}, "run_id"),
        ({"data": "mnist"}, "data"),
        ({"colour": 1}, "colour"),
        ({"build_id": "nothing-built"}, "build_id"),
    ],
)
def test_bad_batch_requests_name_their_field(tmp_path: Path, change: dict, field: str) -> None:
    store = tmp_path / "store"
    build(store)
    request = {"build_id": "t", "data": "iris", "output": str(tmp_path / "o.csv"), **change}
    with pytest.raises(RequestError) as caught:
        handlers.plan_batch({"store": str(store), "request": request})
    assert caught.value.field == field


def test_a_chunk_is_not_computed_twice_and_a_missing_one_fails_assembly(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build(store)
    request = {
        "build_id": "t",
        "data": "iris",
        "output": str(tmp_path / "o.csv"),
        "rows_per_chunk": 100,
    }
    planned = handlers.plan_batch({"store": str(store), "request": request})
    items = get_json(open_store(str(store)), planned["items"]["Key"])
    assert items == [{"chunk_id": 0, "shard": 0}, {"chunk_id": 1, "shard": 0}]
    event = {"store": str(store), "build_id": "t", "batch_id": planned["batch_id"]}
    first = handlers.predict_chunk({**event, "chunk": items[0]})
    again = handlers.predict_chunk({**event, "chunk": items[0]})
    assert (first["reused"], again["reused"]) == (False, True)
    with pytest.raises(BuildError, match="not part of batch"):
        handlers.predict_chunk({**event, "chunk": {**items[1], "stop": 120}})
    with pytest.raises(BuildError, match=r"chunk 1 \(shard 0\) of batch .* is missing; no output"):
        handlers.assemble_predictions(event)
    assert not (tmp_path / "o.csv").exists()
    votes = chunk_key("t", planned["batch_id"], 0, 0, "votes.npy")
    open_store(str(store)).put_bytes(votes, b"tampered")
    handlers.predict_chunk({**event, "chunk": items[1]})
    with pytest.raises(BuildError, match=r"chunk 0 \(shard 0\): .* bytes but"):
        handlers.assemble_predictions(event)


def test_tiles_of_chunks_and_grove_shards_predict_as_the_model(tmp_path: Path) -> None:
    """A forest cut into shards of groves: every tile reads only its shard's groves, the
    shards' sums are added in the forest's order, and the output is the model's predictions
    (probabilities to float64 rounding: a sum of shard sums is not the tree-by-tree sum)."""
    store = tmp_path / "store"
    trained = build(store, dataset="digits", n_trees=14, grove_size=3)  # 5 groves
    out = tmp_path / "p.parquet"
    request = {"build_id": "t", "data": "digits", "output": str(out), "rows_per_chunk": 700}
    planned = handlers.plan_batch(
        {"store": str(store), "request": {**request, "groves_per_shard": 2}}
    )
    assert (planned["n_chunks"], planned["n_shards"]) == (3, 3)
    items = get_json(open_store(str(store)), planned["items"]["Key"])
    assert len(items) == 9 and items[:3] == [{"chunk_id": c, "shard": 0} for c in range(3)]
    event = {"store": str(store), "build_id": "t", "batch_id": planned["batch_id"]}
    results = [handlers.predict_chunk({**event, "chunk": item}) for item in items]
    assert {(r["first_grove"], r["stop_grove"]) for r in results} == {(0, 2), (2, 4), (4, 5)}
    # a redrive recomputes only the tile whose result is gone
    gone = chunk_key("t", planned["batch_id"], 1, 2, "json")
    open_store(str(store)).put_bytes(gone, b"{}")
    again = [handlers.predict_chunk({**event, "chunk": item})["reused"] for item in items]
    assert again == [True] * 7 + [False, True]
    handlers.assemble_predictions(event)
    model = model_of(store, trained, tmp_path)
    X = named(model, load_digits().data.astype(np.float32))
    table = pq.read_table(out).to_pydict()
    assert table["prediction"] == model.predict(X).tolist()
    proba = np.column_stack([table[f"proba_{c}"] for c in model.classes_])
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-12, atol=1e-15)
    # one shard (the default for a small forest): exactly the model's sums
    whole = handlers.plan_batch({"store": str(store), "request": request})
    assert whole["n_shards"] == 1


def test_cli_predict_writes_the_output_and_reports_it(tmp_path: Path, capsys) -> None:
    store = tmp_path / "store"
    build(store)
    out = tmp_path / "iris.csv"
    argv = ["predict", "t", "--data", "iris", "--out", str(out), "--store", str(store)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    assert "predicted 150 rows with build t" in printed.out and f"output    {out}" in printed.out
    assert "PredictChunks" in printed.err
    assert len(read_csv(out)[1]) == 150
    assert cli.main([*argv[:3], "nope.csv", *argv[4:]]) == 2
    assert "invalid request: data: 'nope.csv' does not exist" in capsys.readouterr().err


def test_on_aws_the_output_must_be_where_the_assemble_function_may_write(
    s3, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"s3://{BUCKET}"
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "groves-PlanBatchFunction")
    request = {"build_id": "t", "data": "iris", "output": f"s3://{BUCKET}/elsewhere/p.csv"}
    with pytest.raises(RequestError, match=rf"on AWS it must be under s3://{BUCKET}/outputs/"):
        handlers.plan_batch({"store": store, "request": request})
    for output in ("/tmp/p.csv", "s3://other-bucket/outputs/p.csv"):
        with pytest.raises(RequestError) as caught:
            handlers.plan_batch({"store": store, "request": {**request, "output": output}})
        assert caught.value.field == "output"
