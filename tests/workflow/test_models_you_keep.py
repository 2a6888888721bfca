"""A committed build is always usable and reads only what its manifest covers: every model that
commits loads, predicts and exports; an edited plan is refused, never used; and one rule (the
manifest exists) decides what a committed run is, for every command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

import groves
from groves.cli.listing import list_runs
from groves.engine.local import run_local
from groves.errors import BuildError, RequestError
from groves.forest import loading
from groves.steps.score import score_build
from groves.store.artifacts import plan_key
from groves.store.local import LocalStore

FAST = {"n_trees": 4, "grove_size": 2, "seed": 1}


def train(store: Path, build_id: str, dataset: str, **request: Any) -> dict[str, Any]:
    result = run_local({"build_id": build_id, "dataset": dataset, **FAST, **request}, str(store))
    assert result.status == "SUCCEEDED", result.cause
    return result.output


@pytest.mark.parametrize("shape", ["1-D", "2-D"])
def test_a_boolean_target_commits_a_model_that_loads_and_predicts(tmp_path: Path, shape) -> None:
    X, y = load_iris(return_X_y=True)
    labels = (y == 1) if shape == "1-D" else np.c_[y == 1, y == 2]
    np.savez(tmp_path / "b.npz", X=X, y=labels)
    train(tmp_path / "s", "b", str(tmp_path / "b.npz"), predict=True)
    model = groves.load_model(str(tmp_path / "s"), "b")
    classes = model.classes_ if shape == "1-D" else model.classes_[0]
    assert classes.dtype == bool and classes.tolist() == [False, True]
    assert model.predict(X).dtype == bool
    assert (model.predict(X) == labels).mean() > 0.9
    path = groves.export_model(str(tmp_path / "s"), "b", tmp_path / "b.joblib")
    assert path.stat().st_size > 0


def test_an_edited_plan_is_refused_by_every_reader(tmp_path: Path) -> None:
    """Swapping the classes in plan.json flipped every label of groves predict while
    load_model answered right; now prediction reads the manifest and scoring and the report
    verify the plan against it."""
    store = tmp_path / "s"
    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=list("abcd")).assign(
        target=np.array(["setosa", "versicolor", "virginica"])[y]
    )
    frame.to_csv(tmp_path / "iris.csv", index=False)
    out = train(store, "e", str(tmp_path / "iris.csv"))
    run_id = out["run_id"]
    key = store / plan_key("e", run_id)
    plan = json.loads(key.read_text())
    plan["data"]["classes"] = plan["data"]["classes"][::-1]
    key.write_text(json.dumps(plan))
    frame.drop(columns="target").to_csv(tmp_path / "new.csv", index=False)
    groves.predict("e", str(tmp_path / "new.csv"), str(tmp_path / "p.csv"), store=str(store))
    labels = pd.read_csv(tmp_path / "p.csv")["prediction"]
    expected = groves.load_model(str(store), "e").predict(frame.drop(columns="target"))
    assert labels.tolist() == expected.tolist()
    with pytest.raises(BuildError, match="not the one it was committed with"):
        score_build(LocalStore(store), "e", run_id)


def test_a_committed_run_without_its_plan_is_still_listed(tmp_path: Path) -> None:
    store = tmp_path / "s"
    out = train(store, "d", "iris")
    (store / plan_key("d", out["run_id"])).unlink()
    rows = list_runs(LocalStore(store))
    assert [(r["build_id"], r["run_id"], r["status"], r["trees"]) for r in rows] == [
        ("d", out["run_id"], "latest", 4)
    ]
    assert len(groves.load_model(str(store), "d").estimators_) == 4


def predict(build_id: str, folder: Path, data: str) -> dict[str, Any]:
    """groves predict of ``folder/data`` into ``folder/p.csv`` from the store ``folder/s``."""
    return groves.predict(
        build_id, str(folder / data), str(folder / "p.csv"), store=str(folder / "s")
    )


def _edit(path: Path, change: Any) -> None:
    record = json.loads(path.read_text())
    path.write_text(json.dumps(change(record)))


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("manifest.json", lambda m: {**m, "groves": []}, "groves must be a list of 1"),
        ("manifest.json", lambda m: [m], "the record must be an object"),
        ("manifest.json", lambda m: "text", "the record must be an object"),
        ("manifest.json", lambda m: {**m, "n_trees": "4"}, "n_trees must be a whole number"),
        (
            "manifest.json",
            lambda m: {**m, "groves": [{**m["groves"][0], "sha256": None}, *m["groves"][1:]]},
            r"groves\[0\].sha256 must be text",
        ),
        (
            "manifest.json",
            lambda m: {**m, "groves": [{**m["groves"][0], "grove_id": "0"}, *m["groves"][1:]]},
            r"groves\[0\].grove_id must be a whole number",
        ),
        (
            "manifest.json",
            lambda m: {**m, "groves": [m["groves"][0], m["groves"][0]]},
            "groves are not 0..n-1 once each",
        ),
        ("manifest.json", lambda m: {**m, "n_trees": 9}, "do not add up to its trees"),
        ("latest.json", lambda m: [], "latest record"),
        ("latest.json", lambda m: {**m, "build_id": "other"}, "names another build"),
    ],
)
def test_a_damaged_record_is_one_line_naming_the_file_and_field(
    tmp_path: Path, file: str, change: Any, message: str
) -> None:
    store = tmp_path / "s"
    out = train(store, "r", "iris")
    path = (
        store / "r" / file if file == "latest.json" else store / "r" / "runs" / out["run_id"] / file
    )
    _edit(path, change)
    with pytest.raises(BuildError, match=message) as raised:
        groves.load_model(str(store), "r")
    assert "\n" not in str(raised.value) and file in str(raised.value)


def test_a_record_nested_past_the_recursion_limit_is_one_line(tmp_path: Path) -> None:
    store = tmp_path / "s"
    out = train(store, "n", "iris")
    path = store / "n" / "runs" / out["run_id"] / "manifest.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(BuildError, match="is not valid JSON"):
        groves.load_model(str(store), "n")


def test_booleans_in_a_csv_keep_their_kind_as_feature_and_as_target(tmp_path: Path) -> None:
    """A true/false feature with no text column beside it was recorded as a number, so
    predicting the same rows failed; a True/False target came back as classes 0 and 1."""
    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame({"a": X[:, 2], "flag": np.where(X[:, 3] > 1, "true", "false")})
    frame.assign(target=np.where(y == 1, "True", "False")).to_csv(tmp_path / "f.csv", index=False)
    frame.to_csv(tmp_path / "new.csv", index=False)
    train(tmp_path / "s", "f", str(tmp_path / "f.csv"))
    model = groves.load_model(str(tmp_path / "s"), "f")
    assert model.classes_.tolist() == [False, True]
    groves.predict(
        "f", str(tmp_path / "new.csv"), str(tmp_path / "p.csv"), store=str(tmp_path / "s")
    )
    predicted = pd.read_csv(tmp_path / "p.csv")["prediction"]
    parsed = frame.assign(flag=frame["flag"] == "true")
    assert predicted.tolist() == model.predict(parsed).tolist()


def test_an_all_missing_text_column_loads_and_predicts_as_groves_predict_does(
    tmp_path: Path,
) -> None:
    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame({"a": X[:, 2], "t": pd.Series([None] * 150, dtype="string"), "u": "k"})
    frame.assign(target=y).to_parquet(tmp_path / "n.parquet")
    train(tmp_path / "s", "n", str(tmp_path / "n.parquet"))
    model = groves.load_model(str(tmp_path / "s"), "n")
    frame.to_csv(tmp_path / "new.csv", index=False)
    read_back = pd.read_csv(tmp_path / "new.csv")  # pandas reads the empty column as numbers
    assert read_back["t"].dtype.kind == "f"
    groves.predict(
        "n", str(tmp_path / "new.csv"), str(tmp_path / "p.csv"), store=str(tmp_path / "s")
    )
    expected = pd.read_csv(tmp_path / "p.csv")["prediction"].tolist()
    assert model.predict(read_back).tolist() == expected
    assert model.predict(frame.assign(t="never seen")).tolist() == expected


def test_ids_past_two_to_the_53_train_and_bad_input_files_are_one_line(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    ids = (np.arange(150) + 2**60).astype(np.int64)
    frame = pd.DataFrame({"id": ids, "a": X[:, 2], "t": np.where(y == 0, "x", "y")})
    frame.assign(target=y).to_csv(tmp_path / "big.csv", index=False)
    train(tmp_path / "s", "b", str(tmp_path / "big.csv"))
    latin = frame.assign(t=np.where(y == 0, "caf\xe9", "y")).to_csv(index=False)
    (tmp_path / "latin.csv").write_bytes(latin.encode("latin-1"))
    with pytest.raises(RequestError, match=r"latin.csv' is not UTF-8 text"):
        groves.predict(
            "b", str(tmp_path / "latin.csv"), str(tmp_path / "p.csv"), store=str(tmp_path / "s")
        )
    lists = frame.assign(t=[["x"]] * 150)
    lists.to_parquet(tmp_path / "lists.parquet")
    with pytest.raises(RequestError, match=r"column 't' .* has type list<"):
        groves.predict(
            "b", str(tmp_path / "lists.parquet"), str(tmp_path / "p.csv"), store=str(tmp_path / "s")
        )


def test_an_export_that_fails_leaves_the_file_that_was_there(tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "s"
    train(store, "x", "iris")
    path = groves.export_model(str(store), "x", tmp_path / "model.joblib")
    before = path.read_bytes()
    real = loading.committed_groves

    def full_disk(*args: Any, **kwargs: Any) -> Any:
        yield next(real(*args, **kwargs))  # the first grove is written, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loading, "committed_groves", full_disk)
    with pytest.raises(OSError, match="No space left"):
        groves.export_model(str(store), "x", path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []


@pytest.mark.parametrize("store", ["/dev/null/store", "s3://no-such-bucket-groves/p"])
def test_the_plan_step_names_a_store_that_cannot_exist(s3, store: str) -> None:
    """Deployed or local, the plan handler refuses such a store in one line (it raised
    botocore's NoSuchBucket and a raw NotADirectoryError)."""
    from groves.steps import handlers

    request = {"build_id": "t", "n_trees": 2, "grove_size": 1, "dataset": "iris"}
    with pytest.raises(RequestError, match=r"^store: .*(cannot be written|does not exist)"):
        handlers.plan({"store": store, "request": request})


def test_a_kept_column_may_not_take_a_name_the_output_gives_its_own(tmp_path: Path) -> None:
    """A multi-output model writes prediction_0, prediction_1: keeping an input column so
    named wrote two columns of one name (and a Parquet file pandas cannot read)."""
    from groves.steps.batch import check_keep

    for name in ("prediction", "prediction_0", "proba_1_0"):
        with pytest.raises(RequestError, match=f"^keep: '{name}' is a name the output gives"):
            check_keep([name], "new.csv")
    check_keep(["predictions", "id"], "new.csv")


def test_a_run_stopped_while_scoring_resumes_and_is_scored(tmp_path: Path) -> None:
    """kill -9 during the scoring of `groves run -p` left a committed run without
    metrics.json, and --resume said there was nothing to resume: the score was lost."""
    store = tmp_path / "s"
    out = train(store, "k", "iris", predict=True)
    metrics = store / "k" / "runs" / out["run_id"] / "metrics.json"
    scored = json.loads(metrics.read_text())
    metrics.unlink()  # the state a kill -9 during scoring leaves
    model = (store / "k" / "runs" / out["run_id"] / "manifest.json").read_bytes()
    resumed = run_local({"build_id": "k", "resume": True}, str(store))
    assert resumed.status == "SUCCEEDED", resumed.cause
    assert json.loads(metrics.read_text())["score"] == scored["score"]
    assert (store / "k" / "runs" / out["run_id"] / "manifest.json").read_bytes() == model
    again = run_local({"build_id": "k", "resume": True}, str(store))
    assert again.status == "FAILED" and "no uncommitted run" in (again.cause or "")


@pytest.mark.parametrize("file", ["manifest.json", "plan.json", "latest.json"])
def test_a_record_of_a_newer_format_is_refused_saying_to_upgrade(tmp_path: Path, file: str) -> None:
    """Every record carries its format and version; a reader never misreads a newer one."""
    store = tmp_path / "s"
    out = train(store, "v", "iris", predict=True)
    run = store / "v" / "runs" / out["run_id"]
    path = store / "v" / file if file == "latest.json" else run / file
    kind = file.removesuffix(".json")
    record = json.loads(path.read_text())
    assert record["format"] == f"groves-{kind}/1"
    path.write_text(json.dumps({**record, "format": f"groves-{kind}/2"}))
    with pytest.raises(BuildError, match=rf"is groves-{kind}/2, newer than this groves reads"):
        groves.load_model(str(store), "v") if kind != "plan" else score_build(
            LocalStore(store), "v", out["run_id"]
        )
