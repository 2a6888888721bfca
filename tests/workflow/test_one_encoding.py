"""One encoding wherever a model predicts: a table with text, a timestamp with a time zone, a
date, a time of day, a duration, a dropped id column and gaps in each trains once; ``groves
predict``, ``load_model``'s Pipeline, the exported file and the serve function (JSON rows)
then give the same answers for the same rows, bit for bit, and refuse the same mistakes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from test_real_tables import predict

import groves
from groves.engine.local import run_local
from groves.errors import RequestError
from groves.steps.serve import Service
from groves.store.artifacts import read_plan
from groves.store.local import LocalStore


def every_kind(n: int, seed: int) -> pd.DataFrame:
    """Departures (Paris time, across the change to summer time), booking dates, the time of
    day a gate opens, a wait, a carrier and a distance, each with gaps; an id to leave out.
    Lateness depends on the hour in UTC, the wait and the carrier."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-03-01", tz="Europe/Paris")
    departs = start + pd.to_timedelta(rng.integers(0, 24 * 3600 * 60, n), "s")
    wait = pd.to_timedelta(rng.integers(0, 3 * 3600, n), "s")
    carrier = pd.Series(np.array(["AA", "DL", "EV", "UA"])[rng.integers(0, 4, n)], dtype=object)
    gate = [
        dt.time(int(h), int(m))
        for h, m in zip(rng.integers(0, 24, n), rng.integers(0, 60, n), strict=True)
    ]
    late = (departs.tz_convert("UTC").hour >= 16) | (wait > pd.Timedelta(hours=2))
    frame = pd.DataFrame(
        {
            "id": np.arange(seed * 100_000, seed * 100_000 + n),
            "carrier": carrier,
            "distance": rng.normal(1000, 300, n).round(1),
            "departs": departs,
            "booked": (departs - pd.Timedelta(days=20)).date,
            "gate_opens": pd.Series(gate, dtype=object),
            "wait": wait,
            "status": np.where(late | (carrier == "EV"), "late", "on time"),
        }
    )
    for j, name in enumerate(["carrier", "distance", "departs", "booked", "gate_opens", "wait"]):
        gaps = np.random.default_rng(seed + j).random(n) < 0.07
        frame.loc[gaps, name] = None
    return frame


def as_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: ISO 8601 text for dates and times (with the offset where
    there is a time zone), a duration's seconds, null for gaps."""

    def cell(value: Any) -> Any:
        if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, pd.Timedelta):
            return value.total_seconds()
        if isinstance(value, pd.Timestamp | dt.date | dt.time):
            return value.isoformat()
        return value.item() if hasattr(value, "item") else value

    return [{k: cell(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def train(folder: Path, drop: list[str], at_least: float) -> Path:
    data = folder / "train.parquet"
    pq.write_table(pa.Table.from_pandas(every_kind(900, 0), preserve_index=False), data)
    request = {"build_id": "k", "n_trees": 12, "grove_size": 4, "dataset": str(data)}
    run = run_local(
        {**request, "target": "status", "drop": drop, "seed": 1, "predict": True},
        str(folder / "store"),
        workers=2,
    )
    assert run.status == "SUCCEEDED", run.cause
    assert run.output["metrics"]["score"] > at_least  # the hour in UTC (and the wait) learned
    return folder / "store"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every kind of column but the id."""
    return train(tmp_path_factory.mktemp("kinds"), ["id"], 0.8)


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Text, numbers, a timestamp with a time zone and a date, with gaps (the time of day and
    the wait left out, with the id: prediction ignores all three)."""
    return train(tmp_path_factory.mktemp("dated"), ["id", "gate_opens", "wait"], 0.7)


def test_times_of_day_and_durations_train_as_seconds(trained: Path) -> None:
    plan = read_plan(
        LocalStore(trained), "k", json.loads((trained / "k/latest.json").read_text())["run_id"]
    )
    columns = {c["name"]: c for c in plan["data"]["columns"]}
    assert columns["gate_opens"] == {"name": "gate_opens", "kind": "time"}
    assert columns["wait"] == {"name": "wait", "kind": "duration"}
    assert plan["data"]["dropped"] == ["id"]
    model = groves.load_model(str(trained), "k")
    rows = pd.DataFrame(
        {
            "id": [1, 2],
            "carrier": ["AA", None],
            "distance": [1.0, 2.0],
            "departs": pd.Series([pd.Timestamp("2026-03-02 00:30", tz="Europe/Paris"), pd.NaT]),
            "booked": [dt.date(2026, 2, 1), None],
            "gate_opens": [dt.time(10, 30, 15), None],
            "wait": pd.to_timedelta([5400.5, None], unit="s"),
        }
    )
    encoded = model[:-1].transform(rows)
    names = list(columns)
    assert encoded[0, names.index("gate_opens")] == 10 * 3600 + 30 * 60 + 15
    assert encoded[0, names.index("wait")] == 5400.5
    assert np.isnan(encoded[1, [names.index("gate_opens"), names.index("wait")]]).all()


@pytest.mark.parametrize("build", ["dated", "trained"])
def test_groves_predict_the_pipeline_the_export_and_the_endpoint_agree(
    build: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The same 150 new rows, with the columns the build left out, as a Parquet file to groves
    predict, as a DataFrame to the Pipeline and its export, and as JSON rows to the serve
    function."""
    trained = request.getfixturevalue(build)
    new = every_kind(150, 7).drop(columns="status")
    file = tmp_path / "new.parquet"
    pq.write_table(pa.Table.from_pandas(new, preserve_index=False), file)
    out = predict(trained, str(file), tmp_path / "p.parquet", build_id="k")
    model = groves.load_model(str(trained), "k")
    proba = model.predict_proba(new)
    np.testing.assert_array_equal(
        np.c_[out.column("proba_late").to_numpy(), out.column("proba_on time").to_numpy()], proba
    )
    exported = joblib.load(groves.export_model(str(trained), "k", tmp_path / "m.joblib"))
    np.testing.assert_array_equal(exported.predict_proba(new), proba)

    body = json.dumps({"rows": as_json(new)}).encode()
    status, answer = Service(LocalStore(trained), "k").respond("POST", "/", body)
    assert status == 200, answer
    np.testing.assert_array_equal(answer["probabilities"], proba)
    assert answer["predictions"] == model.predict(new).tolist()
    assert answer["predictions"] == out.column("prediction").to_pylist()


def test_a_csv_gives_times_of_day_as_text_and_durations_as_seconds(
    trained: Path, tmp_path: Path
) -> None:
    new = every_kind(60, 3).drop(columns="status")
    text = new.assign(
        departs=new["departs"].map(lambda t: t.isoformat() if pd.notna(t) else ""),
        wait=new["wait"].dt.total_seconds(),
    )
    file = tmp_path / "new.csv"
    text.to_csv(file, index=False, na_rep="")
    out = predict(trained, str(file), tmp_path / "p.csv", build_id="k")
    proba = groves.load_model(str(trained), "k").predict_proba(pd.read_csv(file))
    np.testing.assert_array_equal(out.column("proba_late").to_numpy(), proba[:, 0])


def test_the_endpoint_describes_input_columns_and_refuses_as_predict_does(trained: Path) -> None:
    service = Service(LocalStore(trained), "k")
    _, described = service.respond("GET", "/", b"")
    kinds = {c["name"]: c for c in described["columns"]}
    assert list(kinds) == ["carrier", "distance", "departs", "booked", "gate_opens", "wait"]
    assert kinds["departs"] == {
        "name": "departs", "kind": "datetime", "utc": True,
        "parts": ["seconds", "year", "month", "day", "weekday", "hour"],
    }  # fmt: skip
    assert kinds["booked"]["utc"] is False and "hour" not in kinds["booked"]["parts"]
    row = as_json(every_kind(1, 2).drop(columns="status"))[0]
    assert service.predict({"rows": [row]})["predictions"]
    for change, field, message in [
        ({"departs": "2026-03-02T10:30:00"}, "rows[0].departs", "has no time zone; the model"),
        ({"booked": "2026-03-02T10:30:00Z"}, "rows[0].booked", "has time zone UTC; the model"),
        ({"departs": 1772407800}, "rows[0].departs", "give ISO 8601 text"),
        ({"departs": "yesterday"}, "rows[0].departs", "is not an ISO 8601 date or timestamp"),
        ({"gate_opens": "25:00"}, "rows[0].gate_opens", "is a time-of-day column"),
        ({"wait": "an hour"}, "rows[0].wait", "must be a number of seconds or null"),
        ({"departs.hour": 3}, "rows[0].departs.hour", "is not a column of the model"),
    ]:
        with pytest.raises(RequestError) as caught:
            service.predict({"rows": [{**row, **change}]})
        assert caught.value.field == field and message in str(caught.value), change


def test_naive_times_for_a_model_trained_with_time_zones_are_refused_everywhere(
    dated: Path, tmp_path: Path
) -> None:
    """groves predict refuses naive timestamps in a column trained with time zones (a
    Parquet's type, a CSV's text); so do the Pipeline (a naive dtype, naive text, one naive
    value among offsets) and the endpoint: none takes them for UTC."""
    trained = dated
    new = every_kind(20, 4).drop(columns="status")
    naive = new.assign(departs=new["departs"].dt.tz_localize(None))
    file = tmp_path / "naive.parquet"
    pq.write_table(pa.Table.from_pandas(naive, preserve_index=False), file)
    with pytest.raises(RequestError, match=r"column 'departs' .* has no time zone"):
        groves.predict("k", str(file), str(tmp_path / "p.csv"), store=str(trained))
    model = groves.load_model(str(trained), "k")
    with pytest.raises(TypeError, match="timezone-naive"):
        model.predict(naive)
    as_text = naive.assign(
        departs=naive["departs"].map(lambda t: t.isoformat() if pd.notna(t) else None)
    )
    with pytest.raises(ValueError, match="a time without a time zone"):
        model.predict(as_text)
    one_naive = new.assign(
        departs=new["departs"].map(lambda t: t.isoformat() if pd.notna(t) else None)
    )
    one_naive.loc[3, "departs"] = "2026-03-02T10:30:00"
    with pytest.raises(ValueError, match="a time without a time zone"):
        model.predict(one_naive)
    with_zone = one_naive.drop(index=3)  # text with offsets, summer time or not: taken
    np.testing.assert_array_equal(
        model.predict_proba(with_zone), model.predict_proba(new.drop(index=3))
    )
    naive_csv = tmp_path / "naive.csv"
    pa_csv.write_csv(pa.Table.from_pandas(as_text, preserve_index=False), naive_csv)
    with pytest.raises(RequestError, match="not a timestamp with a time zone"):
        groves.predict("k", str(naive_csv), str(tmp_path / "q.csv"), store=str(trained))
    rows = as_json(as_text)
    with pytest.raises(RequestError, match="has no time zone; the model was trained with time"):
        Service(LocalStore(trained), "k").predict({"rows": rows})


def test_a_csv_with_times_of_day_trains_and_a_search_too(tmp_path: Path) -> None:
    """pyarrow reads a CSV's HH:MM:SS text as times of day (refused until they were encoded);
    the table path of a search (groves.data.datasets) encodes them as plan's does."""
    frame = every_kind(300, 5).drop(columns=["departs", "booked", "wait"])
    file = tmp_path / "t.csv"
    frame.to_csv(file, index=False, na_rep="")
    assert pa_csv.read_csv(file).schema.field("gate_opens").type == pa.time32("s")
    base = {"n_trees": 4, "grove_size": 2, "dataset": str(file), "target": "status"}
    run = run_local({"build_id": "c", **base, "drop": ["id"]}, str(tmp_path / "s"), workers=1)
    assert run.status == "SUCCEEDED", run.cause
    search = {
        "build_id": "d",
        **base,
        "drop": ["id"],
        "search": {"grid": {"max_depth": [2, 4]}},
        "commit": True,
    }
    ran = run_local(search, str(tmp_path / "s"), workers=1, machine="search")
    assert ran.status == "SUCCEEDED", ran.cause
    for build in ("c", "d"):
        model = groves.load_model(str(tmp_path / "s"), build)
        seconds = model[:-1].transform(frame.drop(columns="status"))[:, 2]  # carrier, distance
        opens = frame["gate_opens"].map(lambda t: t.hour * 3600 + t.minute * 60 if t else None)
        np.testing.assert_array_equal(seconds, opens.to_numpy(dtype=float))
