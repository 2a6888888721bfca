"""Dates and timestamps as features: each becomes seconds since 1970 and its calendar parts,
recorded in the plan; a time zone is converted to UTC, a naive time taken as written, neither
guessed; groves predict, the loaded Pipeline and the exported file encode them alike."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.pipeline import Pipeline
from test_real_tables import build, flights, predict, write

import groves
from groves.data.encoding import encode_table
from groves.errors import RequestError
from groves.store.artifacts import read_plan
from groves.store.local import LocalStore

PARTS = ["seconds", "year", "month", "day", "weekday", "hour"]


def timed(n: int, seed: int = 0) -> pd.DataFrame:
    """Flights with a departure time in Paris (a time zone), a local arrival time (none) and a
    date, each with gaps; lateness depends on the hour and the weekday."""
    rng = np.random.default_rng(seed)
    frame = flights(n, seed).drop(columns="status")
    start = pd.Timestamp("2026-01-01", tz="Europe/Paris")
    departs = start + pd.to_timedelta(rng.integers(0, 24 * 3600 * 90, n), "s")
    frame["departs"] = departs
    frame["arrives"] = (departs + pd.Timedelta(hours=2)).tz_localize(None)
    frame["booked"] = (departs - pd.Timedelta(days=20)).date
    late = (departs.hour >= 17) | (departs.day_of_week == 4)
    frame["status"] = np.where(late, "late", "on time")
    gaps = rng.random((3, n)) < 0.05
    frame.loc[gaps[0], "departs"] = pd.NaT
    frame.loc[gaps[1], "arrives"] = pd.NaT
    frame.loc[gaps[2], "booked"] = None
    return frame


def as_file(frame: pd.DataFrame, path: Path) -> str:
    """Parquet keeps the types; CSV writes ISO 8601 text (with the offset where there is a
    time zone), which pyarrow reads back as timestamps and dates."""
    if path.suffix == ".parquet":
        return write(frame, path)
    text = frame.assign(
        departs=frame["departs"].map(lambda t: t.isoformat() if pd.notna(t) else ""),
        arrives=frame["arrives"].map(lambda t: t.isoformat() if pd.notna(t) else ""),
    )
    path.write_text(text.to_csv(index=False, na_rep=""))
    return str(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_dates_train_and_predict_alike_everywhere(tmp_path: Path, suffix: str) -> None:
    store = tmp_path / "store"
    built = build(store, as_file(timed(800), tmp_path / f"t{suffix}"))
    assert built["metrics"]["score"] > 0.8  # the hour and the weekday are learned
    plan = read_plan(LocalStore(store), "t", built["run_id"])
    columns = {c["name"]: c for c in plan["data"]["columns"]}
    assert [columns[f"departs.{p}"]["part"] for p in PARTS] == PARTS
    assert columns["departs.hour"] == {
        "name": "departs.hour", "kind": "datetime", "column": "departs", "part": "hour",
        "utc": True,
    }  # fmt: skip
    assert columns["arrives.hour"]["utc"] is False
    assert "booked.hour" not in columns and columns["booked.weekday"]["utc"] is False
    assert plan["data"]["n_features"] == 5 + 6 + 6 + 5

    new = timed(200, seed=5).drop(columns="status")
    out = predict(store, as_file(new, tmp_path / f"new{suffix}"), tmp_path / "p.parquet")
    model = groves.load_model(str(store), "t")
    assert isinstance(model, Pipeline)
    read_back = pd.read_csv(tmp_path / f"new{suffix}") if suffix == ".csv" else new  # text
    assert out.column("prediction").to_pylist() == model.predict(read_back).tolist()
    np.testing.assert_array_equal(
        out.column("proba_late").to_numpy(), model.predict_proba(new)[:, 0]
    )
    exported = joblib.load(groves.export_model(str(store), "t", tmp_path / "m.joblib"))
    np.testing.assert_array_equal(exported.predict_proba(new), model.predict_proba(new))
    assert list(model[:-1].transform(new)[0, 5:11]) == pytest.approx(
        _parts(new["departs"].iloc[0].tz_convert("UTC"))
    )


def _parts(t: pd.Timestamp) -> list[float]:
    return [t.timestamp(), t.year, t.month, t.day, t.day_of_week, t.hour]


def test_a_time_zone_is_converted_to_utc_and_a_naive_time_taken_as_written() -> None:
    columns = [
        {"name": f"t.{p}", "kind": "datetime", "column": "t", "part": p, "utc": True} for p in PARTS
    ]
    paris = pa.array([pd.Timestamp("2026-03-02 00:30", tz="Europe/Paris"), None])
    X = encode_table(pa.table({"t": paris}), columns, "rows")
    # 00:30 in Paris on Monday 2 March is 23:30 UTC on Sunday 1 March
    assert X[0].tolist() == pytest.approx([1772407800.0, 2026, 3, 1, 6, 23])
    assert np.isnan(X[1]).all()
    naive = pa.array([pd.Timestamp("2026-03-02 00:30")])
    with pytest.raises(RequestError, match="column 't' of rows has no time zone; the model"):
        encode_table(pa.table({"t": naive}), columns, "rows")
    as_written = [{**c, "utc": False} for c in columns]
    X = encode_table(pa.table({"t": naive}), as_written, "rows")
    assert X[0].tolist() == pytest.approx([1772411400.0, 2026, 3, 2, 0, 0])
    with pytest.raises(RequestError, match="has time zone Europe/Paris; the model was trained"):
        encode_table(pa.table({"t": paris}), as_written, "rows")


def test_a_csv_without_time_zones_for_a_model_with_them_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build(store, as_file(timed(300), tmp_path / "t.parquet"))
    new = timed(50, seed=2).drop(columns="status")
    new["departs"] = new["departs"].dt.tz_localize(None)  # the zone lost
    with pytest.raises(RequestError, match=r"column 'departs' .*: row 1 is not a timestamp with a"):
        groves.predict("t", as_file(new, tmp_path / "n.csv"), str(tmp_path / "p.csv"),
                       store=str(store))  # fmt: skip


def test_the_exported_model_loads_and_predicts_without_groves(tmp_path: Path) -> None:
    """The Pipeline holds scikit-learn and pandas objects only: a Python where ``groves``
    cannot be imported loads the exported file and predicts a DataFrame with dates and text."""
    import subprocess
    import sys

    store = tmp_path / "store"
    build(store, as_file(timed(300), tmp_path / "t.parquet"))
    path = groves.export_model(str(store), "t", tmp_path / "m.joblib")
    new = timed(40, seed=8).drop(columns="status")
    new.to_parquet(tmp_path / "new.parquet")
    script = (
        "import sys, importlib.abc\n"
        "class NoGroves(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'groves': raise ImportError('no groves here')\n"
        "sys.meta_path.insert(0, NoGroves())\n"
        "import joblib, pandas\n"
        f"model = joblib.load({str(path)!r})\n"
        f"print(list(model.predict(pandas.read_parquet({str(tmp_path / 'new.parquet')!r}))))\n"
        "assert not any(m.split('.')[0] == 'groves' for m in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    model = groves.load_model(str(store), "t")
    assert ran.stdout.strip() == str(list(model.predict(new)))
