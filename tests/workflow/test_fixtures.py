"""Models you can keep: builds committed by the oldest scikit-learn groves supports (1.6.x,
``tests/fixtures/make_fixtures.py``) load and predict with the installed one, through
``groves.load_model`` and ``groves predict``, exactly as they predicted when written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import groves
from groves.forest.format import FORMAT, decode_grove

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
STORE = FIXTURES / "store"
BUILDS = ["classifier", "regressor", "multi-output"]
WRITER = "1.6."  # the oldest scikit-learn pyproject.toml allows


def expected(build_id: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "expected" / f"{build_id}.json").read_text())


def rows(expect: dict[str, Any]) -> Any:
    """The rows to predict as make_fixtures.py gave them to the old scikit-learn's model."""
    path = FIXTURES / expect["rows"]
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            return arrays["X"]
    return pd.read_csv(path)


def stored_files() -> list[Path]:
    return sorted(p for p in STORE.rglob("*") if p.is_file())


@pytest.mark.parametrize("build_id", BUILDS)
def test_the_fixture_was_written_by_the_oldest_scikit_learn(build_id: str) -> None:
    expect = expected(build_id)
    assert expect["sklearn_version"].startswith(WRITER)
    run = STORE / build_id / "runs" / expect["run_id"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["versions"]["sklearn"] == expect["sklearn_version"]
    assert manifest["model"]["format"] == FORMAT
    files = sorted((run / "groves").glob("grove_*.trees"))
    assert len(files) == manifest["n_groves"] == 2
    for path in files:
        header = decode_grove(path.read_bytes(), str(path)).header
        assert header["format"] == FORMAT
        assert header["sklearn_version"] == expect["sklearn_version"]
        assert header["node_layout"]


@pytest.mark.parametrize("build_id", BUILDS)
def test_load_model_predicts_what_the_oldest_scikit_learn_predicted(build_id: str) -> None:
    expect = expected(build_id)
    before = stored_files()
    model = groves.load_model(str(STORE), build_id)
    assert stored_files() == before  # loading writes nothing into the checked-in store
    X = rows(expect)
    assert np.asarray(model.predict(X)).tolist() == expect["predictions"]
    if "probabilities" not in expect:
        assert not hasattr(model, "predict_proba")
        return
    proba = model.predict_proba(X)
    if isinstance(proba, list):  # multi-output: one array per output
        assert [c.tolist() for c in model.classes_] == expect["classes"]
        assert len(proba) == len(expect["probabilities"])
        for got, want in zip(proba, expect["probabilities"], strict=True):
            np.testing.assert_allclose(got, np.array(want), rtol=0, atol=1e-12)
    else:
        assert model.classes_.tolist() == expect["classes"]
        np.testing.assert_allclose(proba, np.array(expect["probabilities"]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("build_id", BUILDS)
def test_groves_predict_predicts_what_the_oldest_scikit_learn_predicted(
    tmp_path: Path, build_id: str
) -> None:
    """Batch prediction writes its batch into the store, so it runs on a copy."""
    expect = expected(build_id)
    store = tmp_path / "store"
    shutil.copytree(STORE / build_id, store / build_id)
    out = tmp_path / "out.parquet"
    done = groves.predict(build_id, str(FIXTURES / expect["rows"]), str(out), store=str(store))
    assert done["run_id"] == expect["run_id"]
    table = pq.read_table(out).to_pydict()
    predictions = expect["predictions"]
    if build_id == "multi-output":
        outputs = range(len(expect["classes"]))
        got = [list(row) for row in zip(*(table[f"prediction_{j}"] for j in outputs), strict=True)]
        assert got == predictions
        for j in outputs:
            columns = [table[f"proba_{j}_{c}"] for c in expect["classes"][j]]
            want = np.array(expect["probabilities"][j])
            np.testing.assert_allclose(np.column_stack(columns), want, rtol=0, atol=1e-12)
        return
    assert table["prediction"] == predictions
    if "probabilities" in expect:
        columns = [table[f"proba_{c}"] for c in expect["classes"]]
        want = np.array(expect["probabilities"])
        np.testing.assert_allclose(np.column_stack(columns), want, rtol=0, atol=1e-12)
    else:
        assert not [name for name in table if name.startswith("proba")]
