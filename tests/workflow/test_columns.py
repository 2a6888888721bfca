"""Choosing the columns a build trains on: ``features`` (only these) and ``drop`` (not these),
from the request, the CLI and the API; ids found and warned of at plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_real_tables import flights, write

import groves
from groves import cli
from groves.errors import RequestError
from groves.steps.plan import plan_build
from groves.store.artifacts import read_plan
from groves.store.local import LocalStore


def with_ids(n: int) -> pd.DataFrame:
    """Flights with an id of each kind: text (``flight_id``) and integer (``row``)."""
    frame = flights(n)
    frame.insert(0, "flight_id", [f"F{i:05d}" for i in range(n)])
    frame.insert(1, "row", np.random.default_rng(1).permutation(n) + 10_000)
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_plan_warns_of_ids_and_drop_leaves_them_out(tmp_path: Path, suffix: str, capsys) -> None:
    """GIVEN a table with an id column of text and one of integers, WHEN it is trained as it
    is, THEN plan.json and the summary warn of both by name and option (and of nothing else);
    WHEN it is trained with --drop, THEN neither is a feature, and prediction takes the same
    file, ids included, and ignores them."""
    data, store = write(with_ids(1_200), tmp_path / f"f{suffix}"), str(tmp_path / "store")
    argv = ["run", "t", "-t", "4", "-g", "2", "--dataset", data, "--target", "status"]
    assert cli.main([*argv, "--store", store]) == 0
    out = capsys.readouterr().out
    warned = [line for line in out.splitlines() if line.startswith("warning   ")]
    assert len(warned) == 2, out
    assert "column 'flight_id' has a distinct value in 100% of the 1,200 rows" in warned[0]
    assert "--drop flight_id" in warned[0] and "--drop row" in warned[1]
    plan = read_plan(LocalStore(tmp_path / "store"), "t", _latest_run(tmp_path / "store", "t"))
    assert [w.split("'")[1] for w in plan["data"]["warnings"]] == ["flight_id", "row"]

    assert cli.main([*argv, "--drop", "flight_id", "--drop", "row", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out
    model = groves.load_model(store, "t")
    assert list(model.feature_names_in_) == [
        "carrier",
        "origin",
        "dep_delay",
        "distance",
        "weekend",
    ]
    new = with_ids(50).drop(columns="status")
    predicted = tmp_path / "p.csv"
    groves.predict("t", write(new, tmp_path / f"new{suffix}"), str(predicted), store=store)
    assert pd.read_csv(predicted)["prediction"].tolist() == model.predict(new).tolist()


def _latest_run(store: Path, build_id: str) -> str:
    return sorted(p.name for p in (store / build_id / "runs").iterdir())[-1]


def test_features_trains_on_only_those_columns(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    data = write(with_ids(300), tmp_path / "f.parquet")
    groves.train(
        "t", store=store, dataset=data, target="status", n_trees=4,
        features=["dep_delay", "carrier"],
    )  # fmt: skip
    model = groves.load_model(store, "t")
    assert list(model.feature_names_in_) == ["carrier", "dep_delay"]  # the table's order
    plan = read_plan(LocalStore(tmp_path / "store"), "t", _latest_run(tmp_path / "store", "t"))
    assert plan["data"]["dropped"] == ["flight_id", "row", "origin", "distance", "weekend"]


def test_features_and_drop_name_unknown_columns_before_any_work(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    data = write(with_ids(100), tmp_path / "f.csv")

    def refused(field: str, pattern: str, **request: Any) -> None:
        with pytest.raises(RequestError, match=pattern) as caught:
            plan_build(store, {"build_id": "t", "target": "status", "dataset": data, **request})
        assert caught.value.field == field
        assert not store.list_keys(""), "nothing is written for an invalid request"

    columns = (
        "'flight_id', 'row', 'carrier', 'origin', 'dep_delay', 'distance', 'weekend', 'status'"
    )
    refused("drop", f"column 'id' is not in .*f.csv'.*; its 8 columns: {columns}", drop=["id"])
    mistyped = r"'Carrier' is not in .* \(did you mean 'carrier'\?\)"
    refused("features", mistyped, features=["Carrier"])
    refused("drop", "column 'status' is the target, never a feature", drop=["status"])
    refused("drop", "'row' is in features too", features=["row", "carrier"], drop=["row"])
    refused("drop", "must be a list of distinct column names", drop="row")
    refused("features", "names no column", features=[])
    every = ["flight_id", "row", "carrier", "origin", "dep_delay", "distance", "weekend"]
    refused("drop", "leaves .* no feature column", drop=every)
    refused("features", "applies to the named columns of a CSV or Parquet", dataset="iris",
            target=None, features=["sepal length (cm)"])  # fmt: skip
    with pytest.raises(RequestError, match="drop: column 'nope' is not in"):
        groves.train("t", store=str(tmp_path / "s"), dataset=data, target="status", drop=["nope"])


def test_the_estimator_warns_of_an_id_column_as_plan_does(tmp_path: Path) -> None:
    """GrovesClassifier.fit on a DataFrame with an id column raises plan's warning, naming the
    column and the option (it was only in plan.json); without the column, no warning."""
    import warnings

    from groves.estimators import GrovesClassifier

    frame = with_ids(1_200)
    X, y = frame.drop(columns=["status", "flight_id"]), frame["status"]
    forest = GrovesClassifier(n_estimators=4, grove_size=2, store=str(tmp_path / "s"))
    with pytest.warns(UserWarning, match=r"column 'row' has a distinct value in 100% .*--drop row"):
        forest.fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        forest.fit(X.drop(columns="row"), y)
