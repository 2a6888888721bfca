"""Tables as users have them: missing values, text columns, booleans, weights, columns in any
order, read by pyarrow from CSV and Parquet; trained, scored, predicted and searched through
the local engine, and loaded as scikit-learn models that predict the same rows alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

import groves
from groves.data.prepared import read_prepared
from groves.data.stream import unit_hash
from groves.engine.local import run_local
from groves.errors import RequestError
from groves.steps.plan import plan_build
from groves.steps.planned import planned_grove
from groves.store.artifacts import plan_key
from groves.store.codec import get_json
from groves.store.local import LocalStore

CARRIERS = np.array(["AA", "B6", "DL", "EV", "UA", "WN", "9E", "MQ"])


def flights(n: int, seed: int = 0) -> pd.DataFrame:
    """A small flights-like table: text with gaps, numbers with NaN, a boolean, a text label
    that depends on all of them."""
    rng = np.random.default_rng(seed)
    carrier = CARRIERS[rng.integers(0, len(CARRIERS), n)]
    origin = np.array(["EWR", "JFK", "LGA"])[rng.integers(0, 3, n)]
    delay = rng.exponential(20, n)
    distance = rng.integers(100, 3000, n)
    weekend = rng.random(n) < 0.3
    late = (delay > 25) ^ (carrier == "EV") | (weekend & (origin == "LGA"))
    frame = pd.DataFrame(
        {
            "carrier": pd.Series(carrier, dtype=object),
            "origin": pd.Series(origin, dtype=object),
            "dep_delay": delay,
            "distance": distance,
            "weekend": weekend,
            "status": np.where(late, "late", "on time"),
        }
    )
    gaps = rng.random((3, n)) < 0.08
    frame.loc[gaps[0], "carrier"] = None
    frame.loc[gaps[1], "dep_delay"] = np.nan
    frame.loc[gaps[2], "origin"] = None
    return frame


def write(frame: pd.DataFrame, path: Path) -> str:
    """CSV with empty cells and ``NA`` for the gaps, or Parquet with nulls."""
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    else:
        text = frame.to_csv(index=False, na_rep="")
        lines = text.splitlines()
        lines[1] = lines[1].replace(",,", ",NA,", 1)  # some gaps spelled NA
        path.write_text("\n".join(lines) + "\n")
    return str(path)


def build(store: Path, dataset: str, **request: Any) -> dict[str, Any]:
    run = run_local(
        {
            "build_id": "t",
            "n_trees": 12,
            "grove_size": 4,
            "dataset": dataset,
            "target": "status",
            "seed": 1,
            "predict": True,
            **request,
        },
        str(store),
        workers=2,
    )
    assert run.status == "SUCCEEDED", run.cause
    return run.output


def predict(store: Path, data: str, out: Path, **request: Any) -> pa.Table:
    run = run_local(
        {"build_id": "t", "data": data, "output": str(out), "rows_per_chunk": 150, **request},
        str(store),
        workers=2,
        machine="batch_predict",
    )
    assert run.status == "SUCCEEDED", run.cause
    return pq.read_table(out) if out.suffix == ".parquet" else pa_csv.read_csv(out)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_text_and_missing_values_train_and_predict_as_the_loaded_pipeline(
    tmp_path: Path, suffix: str
) -> None:
    frame = flights(600)
    built = build(tmp_path / "store", write(frame, tmp_path / f"flights{suffix}"))
    assert built["metrics"]["score"] > 0.75

    model = groves.load_model(str(tmp_path / "store"), "t")
    assert isinstance(model, Pipeline) and isinstance(model[0], ColumnTransformer)
    assert isinstance(model[-1], RandomForestClassifier)
    assert list(model.classes_) == ["late", "on time"]

    new = flights(400, seed=7).drop(columns="status")
    new.loc[:4, "carrier"] = "ZZ"  # a carrier no training row has: treated as missing
    new.insert(0, "flight_id", [f"F{i}" for i in range(len(new))])
    shuffled = new[["distance", "flight_id", "weekend", "origin", "dep_delay", "carrier"]]
    out = predict(
        tmp_path / "store",
        write(shuffled, tmp_path / f"new{suffix}"),
        tmp_path / "out.parquet",
        keep=["flight_id"],
    )
    assert out.column_names == ["flight_id", "prediction", "proba_late", "proba_on time"]
    assert out.column("flight_id").to_pylist() == new["flight_id"].tolist()
    features = new.drop(columns="flight_id")
    assert out.column("prediction").to_pylist() == model.predict(features).tolist()
    np.testing.assert_array_equal(
        np.column_stack([out.column("proba_late"), out.column("proba_on time")]),
        model.predict_proba(features),
    )
    # any column order: the Pipeline selects by name, as groves predict does
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(features))
    # an unseen category is exactly a missing one
    unseen = features.iloc[:5].copy()
    gap = unseen.copy()
    gap["carrier"] = None
    np.testing.assert_array_equal(model.predict_proba(unseen), model.predict_proba(gap))


def test_categories_come_from_the_training_rows_only(tmp_path: Path) -> None:
    frame = flights(400)
    # the rows the plan will hold out: row by row, by a hash of the run seed and the row
    test = unit_hash(3, 0, 0, len(frame)) < 0.25
    train, held = np.flatnonzero(~test), np.flatnonzero(test)
    frame.loc[held[:3], "carrier"] = "RARE"  # a category only held-out rows have
    store = LocalStore(tmp_path / "store")
    dataset = write(frame, tmp_path / "f.csv")
    plan = plan_build(store, {"build_id": "t", "dataset": dataset, "target": "status", "seed": 3})
    columns = {c["name"]: c for c in plan["data"]["columns"]}
    kinds = [columns[n]["kind"] for n in ("carrier", "origin", "dep_delay", "distance", "weekend")]
    assert kinds == ["category", "category", "number", "number", "bool"]
    assert get_json(store, plan_key("t", plan["run_id"]))["data"]["columns"] == list(
        columns.values()
    )

    categories = columns["carrier"]["categories"]
    expected = sorted(set(frame.loc[train, "carrier"].dropna()))
    assert categories == expected  # OrdinalEncoder's order, from the training rows alone
    split = read_prepared(store, plan)
    coded = [categories.index(c) if c in categories else np.nan for c in frame["carrier"]]
    np.testing.assert_array_equal(split.X_train[:, 0], np.array(coded, np.float32)[train])
    np.testing.assert_array_equal(split.X_test[:, 0], np.array(coded, np.float32)[held])
    assert "RARE" not in categories and np.isnan(split.X_test[:3, 0]).all()


def test_numeric_named_columns_give_a_plain_forest_that_checks_names(tmp_path: Path) -> None:
    frame = flights(300)[["dep_delay", "distance", "status"]]
    build(tmp_path / "store", write(frame, tmp_path / "f.csv"))
    model = groves.load_model(str(tmp_path / "store"), "t")
    assert isinstance(model, RandomForestClassifier)
    assert list(model.feature_names_in_) == ["dep_delay", "distance"]
    with pytest.raises(ValueError, match="feature names"):
        model.predict(frame[["distance", "dep_delay"]])  # scikit-learn refuses, not silently


def test_nan_in_an_npz_trains_scores_and_predicts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    X[rng.random(X.shape) < 0.15] = np.nan
    np.savez(tmp_path / "d.npz", X=X, y=y)
    built = build(tmp_path / "store", str(tmp_path / "d.npz"), target=None)
    assert built["metrics"]["score"] > 0.7
    model = groves.load_model(str(tmp_path / "store"), "t")
    assert not hasattr(model, "feature_names_in_")  # an .npz names no columns
    out = predict(tmp_path / "store", str(tmp_path / "d.npz"), tmp_path / "p.csv")
    np.testing.assert_array_equal(out.column("prediction").to_numpy(), model.predict(X))


def test_a_search_runs_on_text_and_missing_values(tmp_path: Path) -> None:
    dataset = write(flights(500), tmp_path / "f.parquet")
    run = run_local(
        {
            "build_id": "s",
            "n_trees": 6,
            "grove_size": 3,
            "dataset": dataset,
            "target": "status",
            "search": {"grid": {"max_depth": [3, None]}},
        },
        str(tmp_path / "store"),
        workers=2,
        machine="search",
    )
    assert run.status == "SUCCEEDED", run.cause
    model = groves.load_model(str(tmp_path / "store"), "s", run.output["result"]["run_id"])
    assert isinstance(model, Pipeline)
    assert model.score(flights(200, seed=5).drop(columns="status"), flights(200, 5)["status"]) > 0.7


def test_weights_reach_every_grove(tmp_path: Path) -> None:
    frame = flights(300)
    frame["w"] = np.random.default_rng(2).integers(0, 4, len(frame)).astype(float)
    store = LocalStore(tmp_path / "store")
    request = {
        "build_id": "t",
        "n_trees": 5,
        "grove_size": 5,
        "dataset": write(frame, tmp_path / "f.csv"),
        "target": "status",
        "weight": "w",
        "seed": 4,
    }
    built = build(tmp_path / "store", request.pop("dataset"), **{**request, "build_id": "t"})
    plan = get_json(store, plan_key("t", built["run_id"]))
    assert plan["data"]["weighted"] and "w" not in plan["data"]["feature_names"]
    split = read_prepared(store, plan)
    alone = RandomForestClassifier(5, random_state=planned_grove(plan["spec"], 0)["seed"])
    alone.fit(split.X_train, split.y_train, sample_weight=split.w_train)
    model = groves.load_model(str(tmp_path / "store"), "t")[-1]
    np.testing.assert_array_equal(
        model.predict_proba(split.X_test), alone.predict_proba(split.X_test)
    )


def test_estimators_take_dataframes_with_text_and_sample_weight(tmp_path: Path) -> None:
    frame = flights(400)
    X, y = frame.drop(columns="status"), frame["status"]
    weights = np.where(y == "late", 2.0, 1.0)
    estimator = groves.GrovesClassifier(8, 4, random_state=0, store=str(tmp_path / "store"))
    estimator.fit(X, y, sample_weight=weights)
    assert list(estimator.feature_names_in_) == list(X.columns)
    assert estimator.n_features_in_ == 5
    assert list(estimator.classes_) == ["late", "on time"]
    new = flights(200, seed=9).drop(columns="status")
    model = groves.load_model(str(tmp_path / "store"), estimator.build_id_, estimator.run_id_)
    assert estimator.predict(new).tolist() == estimator.classes_[model.predict(new)].tolist()
    assert estimator.score(new, flights(200, seed=9)["status"]) > 0.75


def test_table_problems_name_the_column_and_row_before_any_work(tmp_path: Path) -> None:
    frame = flights(200)
    store = LocalStore(tmp_path / "store")

    def refused(field: str, pattern: str, **request: Any) -> None:
        with pytest.raises(RequestError, match=pattern) as caught:
            plan_build(store, {"build_id": "t", "target": "status", **request})
        assert caught.value.field == field
        assert not store.list_keys(""), "nothing is written for an invalid request"

    weighted = frame.assign(w=1.0)
    weighted.loc[17, "w"] = -1.0
    refused(
        "weight",
        "row 18 has a negative weight",
        weight="w",
        dataset=write(weighted, tmp_path / "neg.csv"),
    )
    weighted.loc[17, "w"] = np.nan
    refused(
        "weight",
        "row 18 has a missing weight",
        weight="w",
        dataset=write(weighted, tmp_path / "gap.csv"),
    )
    refused(
        "weight", "'nope' is not a column", weight="nope", dataset=write(frame, tmp_path / "f.csv")
    )
    blobs = frame.assign(raw=[b"\x00"] * len(frame))  # dates, times, durations train; bytes not
    refused(
        "dataset",
        r"column 'raw' .* has type binary; .* leave it out \(drop \['raw'\], --drop raw\)",
        dataset=write(blobs, tmp_path / "t.parquet"),
    )
    one = frame.assign(status="late")
    refused("target", "at least 2 classes", dataset=write(one, tmp_path / "one.csv"))
    nested = pa.Table.from_pandas(frame).append_column("tags", pa.array([[1]] * len(frame)))
    pq.write_table(nested, tmp_path / "nested.parquet")
    refused("dataset", "column 'tags' .* has type list", dataset=str(tmp_path / "nested.parquet"))


def test_prediction_input_problems_name_the_column_and_row(tmp_path: Path) -> None:
    frame = flights(300)
    build(tmp_path / "store", write(frame, tmp_path / "f.csv"))
    features = frame.drop(columns="status")

    def refused(pattern: str, rows: pd.DataFrame, **options: Any) -> None:
        data, out = write(rows, tmp_path / "new.csv"), str(tmp_path / "p.csv")
        with pytest.raises(RequestError, match=pattern):
            groves.predict("t", data, out, store=str(tmp_path / "store"), **options)

    changed = features.astype({"distance": object})
    changed.loc[120, "distance"] = "far"  # numbers in training, text here: the type changed
    refused(r"column 'distance' of .*: row 121 is not a number", changed)
    refused(r"column 'note' .* is not a training feature.*keep", features.assign(note="x"))
    refused(r"keep: column 'nope' is not in", features, keep=["nope"])
    assert not (tmp_path / "p.csv").exists()


def test_the_cli_trains_with_weights_and_predicts_keeping_an_id(tmp_path: Path, capsys) -> None:
    from groves import cli

    frame = flights(300).assign(w=1.0)
    store = str(tmp_path / "store")
    train = ["run", "t", "-t", "4", "-g", "2", "--dataset", write(frame, tmp_path / "f.csv")]
    assert cli.main([*train, "--target", "status", "--weight", "w", "--store", store]) == 0
    new = flights(50, seed=3).drop(columns="status").assign(id=[f"r{i}" for i in range(50)])
    data, out = write(new, tmp_path / "new.csv"), tmp_path / "p.csv"
    argv = ["predict", "t", "--data", data, "--out", str(out), "--keep", "id", "--store", store]
    assert cli.main(argv) == 0, capsys.readouterr().err
    predicted = pa_csv.read_csv(out)
    assert predicted.column_names[:2] == ["id", "prediction"]
    assert predicted.column("id").to_pylist() == new["id"].tolist()
    model = groves.load_model(store, "t")
    assert predicted.column("prediction").to_pylist() == model.predict(new).tolist()


def test_a_bad_value_deep_in_an_input_names_its_row_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are counted across pyarrow's blocks: the error names the row of the file."""
    from groves.data import rows, tables

    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 4096)  # many blocks of a small file
    monkeypatch.setattr(tables, "BATCH_ROWS", 500)
    n = 5_000
    new = pd.DataFrame({"dep_delay": np.arange(n, dtype=float), "distance": "7"})
    new.loc[n - 3, "distance"] = "far"
    data = {
        "columns": [{"name": "dep_delay", "kind": "number"}, {"name": "distance", "kind": "number"}]
    }
    for source in (write(new, tmp_path / "bad.csv"), write(new, tmp_path / "bad.parquet")):
        blocks = rows.prediction_blocks(source, data)
        with pytest.raises(RequestError, match=rf"'distance' of .*: row {n - 2} is not a"):
            list(blocks)
    good = new.drop(index=n - 3)
    blocks = list(rows.prediction_blocks(write(good, tmp_path / "good.csv"), data))
    assert len(blocks) > 5 and sum(len(X) for X, _ in blocks) == n - 1


def test_decimals_are_numbers_and_dictionary_text_is_text(tmp_path: Path) -> None:
    from decimal import Decimal

    frame = flights(120)
    table = pa.table(
        {
            "price": pa.array([Decimal(f"{i}.25") for i in range(120)], pa.decimal128(9, 2)),
            "carrier": pa.array(frame["carrier"]).dictionary_encode(),
            "status": pa.array(frame["status"]),
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    request = {"build_id": "d", "dataset": str(tmp_path / "d.parquet"), "target": "status"}
    store = LocalStore(tmp_path / "store")
    plan = plan_build(store, {**request, "test_size": 0})
    assert [c["kind"] for c in plan["data"]["columns"]] == ["number", "category"]
    np.testing.assert_array_equal(read_prepared(store, plan).X_train[:3, 0], [0.25, 1.25, 2.25])


def test_a_dataframes_stored_index_is_not_a_column(tmp_path: Path) -> None:
    """GIVEN DataFrames written to Parquet after a shuffle (pandas stores their index as
    ``__index_level_0__``), WHEN a build trains on one and predicts the other, THEN the index
    is neither a feature nor an unknown column: both read as pandas.read_parquet reads them."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=200),
            "city": rng.choice(["paris", "lyon", None], 200),
            "target": rng.choice(["a", "b"], 200),
        }
    ).sample(frac=1, random_state=1)
    frame.to_parquet(tmp_path / "train.parquet")
    frame.drop(columns="target").iloc[:50].to_parquet(tmp_path / "new.parquet")
    assert "__index_level_0__" in pq.read_schema(tmp_path / "new.parquet").names
    store = str(tmp_path / "store")
    groves.train("i", store=store, dataset=str(tmp_path / "train.parquet"), n_trees=4)
    plan_names = groves.load_model(store, "i")[:-1].feature_names_in_.tolist()
    assert plan_names == ["size", "city"]
    out = tmp_path / "p.csv"
    groves.predict("i", str(tmp_path / "new.parquet"), str(out), store=store)
    assert len(pd.read_csv(out)) == 50


def test_the_exported_model_reads_the_table_it_was_trained_on(tmp_path: Path) -> None:
    """GIVEN a build with text columns, WHEN it is exported and read back by joblib.load,
    THEN it is what load_model returns (the encoding, then the forest): it predicts a
    DataFrame with text and missing values alike and names its columns."""
    import joblib

    store = tmp_path / "store"
    build(store, write(flights(300), tmp_path / "f.parquet"))
    path = groves.export_model(str(store), "t", tmp_path / "model.joblib")
    exported, loaded = joblib.load(path), groves.load_model(str(store), "t")
    new = flights(120, seed=4).drop(columns="status")
    assert isinstance(exported, Pipeline)
    assert list(exported.feature_names_in_) == list(new.columns)
    assert exported.predict(new).tolist() == loaded.predict(new).tolist()
    np.testing.assert_array_equal(exported.predict_proba(new), loaded.predict_proba(new))
    assert len(exported[-1].estimators_) == 12
