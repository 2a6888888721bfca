"""Targets of several outputs (a ``.npz`` whose ``y`` has a column per output), as scikit-learn's
forests take them: trained, scored, predicted in batches and searched through the same state
machines as one output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_multilabel_classification, make_regression
from sklearn.metrics import r2_score

import groves
from groves.errors import RequestError
from groves.store.artifacts import read_plan
from groves.store.uris import open_store


def multilabel(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    X, y = make_multilabel_classification(n_samples=300, n_classes=4, random_state=0)
    y = y * np.array([1, 2, 3, 5])  # outputs of other labels than 0/1
    path = tmp_path / "multi.npz"
    np.savez(path, X=X.astype(np.float32), y=y)
    return path, X.astype(np.float32), y


def heldout(store: str, build_id: str, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    from groves.data.prepared import read_prepared

    opened = open_store(store)
    split = read_prepared(opened, read_plan(opened, build_id, run_id), ("X_test", "y_test"))
    return np.asarray(split.X_test), np.asarray(split.y_test)


@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
def test_a_build_of_several_outputs_scores_as_its_model(tmp_path: Path, estimator: str) -> None:
    # GIVEN rows whose target has several columns
    if estimator == "classifier":
        path, X, y = multilabel(tmp_path)
    else:
        X, y = make_regression(n_samples=300, n_features=6, n_targets=3, random_state=0)
        path = tmp_path / "multi.npz"
        np.savez(path, X=X.astype(np.float32), y=y)
    store = str(tmp_path / "store")
    # WHEN a build trains on them
    out = groves.train(
        "m",
        store=store,
        dataset=str(path),
        estimator=estimator,
        n_trees=9,
        grove_size=4,
        predict=True,
    )
    # THEN one forest of several outputs is committed, and its stored score is the model's
    model = groves.load_model(store, "m")
    assert model.n_outputs_ == y.shape[1] and len(model.estimators_) == 9
    X_test, y_test = heldout(store, "m", out["run_id"])
    predicted = model.predict(X_test)
    assert predicted.shape == y_test.shape
    if estimator == "classifier":
        assert [list(c) for c in model.classes_] == [[0, k] for k in (1, 2, 3, 5)]
        # every output of a row right (what accuracy_score means for 0/1 outputs; it refuses
        # other labels of several outputs, as RandomForestClassifier.score does)
        expected = np.mean(np.all(predicted == y_test, axis=1))
    else:
        expected = r2_score(y_test, predicted)
    assert out["metrics"]["score"] == pytest.approx(expected, abs=1e-12)
    assert read_plan(open_store(store), "m", out["run_id"])["data"]["n_outputs"] == y.shape[1]

    # AND a batch prediction writes each output's columns, equal to the model's
    new = tmp_path / "new.npz"
    np.savez(new, X=X[:50])
    written = tmp_path / "out.parquet"
    groves.predict("m", str(new), str(written), store=store, rows_per_chunk=20)
    table = pq.read_table(written).to_pydict()
    expected_rows = model.predict(X[:50])
    for j in range(y.shape[1]):
        assert np.array_equal(np.asarray(table[f"prediction_{j}"]), expected_rows[:, j])
    if estimator == "classifier":
        proba = model.predict_proba(X[:50])
        for j, classes in enumerate(model.classes_):
            for i, c in enumerate(classes):
                assert np.allclose(table[f"proba_{j}_{c}"], proba[j][:, i], atol=1e-12)


def test_estimator_of_several_outputs_returns_labels_per_output(tmp_path: Path) -> None:
    _, X, y = multilabel(tmp_path)
    y = np.where(y > 0, "yes", "no")  # text labels per output
    model = groves.GrovesClassifier(8, 4, random_state=0, store=str(tmp_path / "s")).fit(X, y)
    assert [list(c) for c in model.classes_] == [["no", "yes"]] * 4
    predicted = model.predict(X)
    assert predicted.shape == y.shape and set(np.unique(predicted)) <= {"no", "yes"}
    assert [p.shape for p in model.predict_proba(X)] == [(300, 2)] * 4
    assert np.mean(predicted == y) > 0.8  # its own training rows, mostly


def test_a_search_of_several_outputs_scores_its_candidates(tmp_path: Path) -> None:
    path, _, _ = multilabel(tmp_path)
    store = str(tmp_path / "store")
    from groves.engine.local import run_local

    request = {
        "build_id": "s",
        "dataset": str(path),
        "n_trees": 4,
        "grove_size": 2,
        "search": {"grid": {"max_depth": [2, 8]}},
    }
    run = run_local(request, store, workers=2, machine="search")
    assert run.status == "SUCCEEDED", run.cause
    assert 0 < run.output["result"]["test_score"] <= 1


def test_class_weights_by_label_need_one_output(tmp_path: Path) -> None:
    path, _, _ = multilabel(tmp_path)
    with pytest.raises(RequestError) as caught:
        groves.train(
            "w", store=str(tmp_path / "s"), dataset=str(path), params={"class_weight": {"0": 2}}
        )
    assert caught.value.field == "params.class_weight"


def test_a_column_vector_is_one_output(tmp_path: Path) -> None:
    _, X, y = multilabel(tmp_path)
    path = tmp_path / "column.npz"
    np.savez(path, X=X, y=y[:, :1])
    out: dict[str, Any] = groves.train("c", store=str(tmp_path / "s"), dataset=str(path))
    plan = read_plan(open_store(str(tmp_path / "s")), "c", out["run_id"])
    assert plan["data"]["n_outputs"] == 1 and plan["data"]["classes"] == [0, 1]


def test_a_dataframe_with_several_outputs_is_refused_saying_why(tmp_path: Path) -> None:
    import pandas as pd

    X = pd.DataFrame({"a": np.arange(20.0), "kind": ["x", "y"] * 10})
    y = np.c_[np.arange(20) % 2, np.arange(20) % 3]
    with pytest.raises(ValueError, match="several outputs are trained from an array X"):
        groves.GrovesClassifier(2, 1, store=str(tmp_path)).fit(X, y)
