"""Each Lambda handler on its own, with S3 mocked by moto, driven by the events/ samples."""

from __future__ import annotations

import json
from typing import Any

import joblib
import numpy as np
import pytest
from conftest import BUCKET, ROOT, grove_items, named, small_request, train_batch
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

import groves
from groves.data.prepared import read_prepared
from groves.errors import BuildError, RequestError
from groves.forest.trees import read_grove
from groves.steps import handlers
from groves.store.artifacts import GROVE_SUFFIX, digest, grove_key, manifest_key, read_plan
from groves.store.codec import get_json, put_json
from groves.store.uris import open_store

STORE = f"s3://{BUCKET}/builds"


def event(name: str, **changes: Any) -> dict[str, Any]:
    payload = json.loads((ROOT / "events" / f"{name}.json").read_text())
    return {**payload, "store": STORE, **changes}


def stored_split(plan: dict[str, Any]) -> Any:
    """The run's prepared split, as groves and scoring read it."""
    store = open_store(STORE)
    return read_prepared(store, read_plan(store, plan["build_id"], plan["run_id"]))


def test_sample_events_run_in_order(s3) -> None:
    request = {**event("plan")["request"], "n_trees": 20}
    plan = handlers.plan(event("plan", request=request))
    assert plan["store"] == STORE and plan["n_groves"] == 2
    assert plan["groves_per_invocation"] == 2
    ids = {"build_id": plan["build_id"], "run_id": plan["run_id"]}
    batch = json.loads((ROOT / "events" / "train_grove.json").read_text())
    assert batch["Items"] == grove_items(plan), "events/train_grove.json matches events/plan.json"
    trained = handlers.train_grove(
        {**batch, "BatchInput": {**batch["BatchInput"], "store": STORE, **ids}}
    )["groves"]
    assert [m["grove_id"] for m in trained] == [0, 1]
    assert all(m["n_trees"] == 10 and not m["reused"] and len(m["sha256"]) == 64 for m in trained)
    assert len(json.dumps(trained)) < 2000, "only small metadata goes through Step Functions"
    merged = handlers.merge(event("merge", **ids))
    run_folder = f"{STORE}/digits-100/runs/{plan['run_id']}"
    assert merged["n_trees"] == 20 and merged["model"] == f"{run_folder}/manifest.json"
    scored = handlers.predict(event("predict", **ids))
    assert scored["metric"] == "accuracy" and scored["score"] > 0.9
    key = f"builds/digits-100/runs/{plan['run_id']}/metrics.json"
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert stored["score"] == scored["score"] and len(stored["grove_scores"]) == 2


def test_missing_event_fields_are_named(s3) -> None:
    with pytest.raises(RequestError, match="run_id: missing from the event"):
        handlers.merge({"store": STORE, "build_id": "x"})


def test_merged_model_is_a_plain_forest_equal_to_its_groves(s3) -> None:
    plan = handlers.plan({"store": STORE, "request": small_request(n_trees=8)})
    train_batch(plan)
    handlers.merge({"store": STORE, "build_id": "t", "run_id": plan["run_id"]})
    store = open_store(STORE)
    model = groves.load_model(store, "t", plan["run_id"])
    assert type(model) is RandomForestClassifier
    assert model.n_estimators == len(model.estimators_) == 8
    assert model.feature_importances_.shape == (4,)
    X = read_prepared(
        open_store(STORE), read_plan(open_store(STORE), plan["build_id"], plan["run_id"])
    ).X_test
    grove_forests = [
        read_grove(store.get_bytes(grove_key("t", plan["run_id"], g["grove_id"], GROVE_SUFFIX)))
        for g in grove_items(plan)
    ]
    trees = [tree for grove in grove_forests for tree in grove.estimators_]
    by_hand = np.mean([tree.predict_proba(X) for tree in trees], axis=0)
    rows = named(model, X)  # the model names its columns; its groves' trees do not
    np.testing.assert_allclose(model.predict_proba(rows), by_hand, rtol=1e-12)
    weighted = sum(g.predict_proba(X) * g.n_estimators for g in grove_forests) / 8
    np.testing.assert_allclose(model.predict_proba(rows), weighted, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(rows), model.classes_[by_hand.argmax(axis=1)])
    # each grove is exactly the forest scikit-learn builds from the grove's seed
    alone = RandomForestClassifier(n_estimators=3, random_state=grove_items(plan)[0]["seed"])
    split = read_prepared(
        open_store(STORE), read_plan(open_store(STORE), plan["build_id"], plan["run_id"])
    )
    alone.fit(split.X_train, split.y_train)
    np.testing.assert_array_equal(alone.predict_proba(X), grove_forests[0].predict_proba(X))


def test_missing_grove_fails_merge_and_commits_nothing(s3) -> None:
    plan = handlers.plan({"store": STORE, "request": small_request()})
    train_batch(plan, grove_items(plan)[:-1])
    with pytest.raises(BuildError, match=r"1 of 3 planned groves .* missing: 2; no model"):
        handlers.merge({"store": STORE, "build_id": "t", "run_id": plan["run_id"]})
    assert not open_store(STORE).exists(manifest_key("t", plan["run_id"]))


def test_merge_refuses_groves_of_another_run_or_data(s3) -> None:
    store = open_store(STORE)
    plan = handlers.plan({"store": STORE, "request": small_request()})
    train_batch(plan)
    run = plan["run_id"]
    key = grove_key("t", run, 1, "json")
    meta = get_json(store, key)
    stale = "20200101T000000000Z-00000000"  # another run's id
    put_json(store, key, {**meta, "run_id": stale})
    with pytest.raises(BuildError, match=f"grove 1 belongs to run {stale}"):
        handlers.merge({"store": STORE, "build_id": "t", "run_id": run})
    put_json(store, key, {**meta, "split_fingerprint": "other"})
    with pytest.raises(BuildError, match="grove 1 has split_fingerprint 'other'"):
        handlers.merge({"store": STORE, "build_id": "t", "run_id": run})
    assert not store.exists(manifest_key("t", run))
    # a grove file rewritten together with its metadata (a writer with both keys): the
    # sha256 matches, so the commit (which reads no tree) takes it, but the trees inside are
    # not what the plan gave grove 2: every reader refuses them before using any
    three_trees = store.get_bytes(grove_key("t", run, 0, GROVE_SUFFIX))
    store.put_bytes(grove_key("t", run, 2, GROVE_SUFFIX), three_trees)
    grove_2 = get_json(store, grove_key("t", run, 2, "json"))
    put_json(store, grove_key("t", run, 2, "json"), {**grove_2, **digest(three_trees)})
    put_json(store, key, meta)
    handlers.merge({"store": STORE, "build_id": "t", "run_id": run})
    with pytest.raises(BuildError, match="grove 2: its trees do not match the run's record"):
        groves.load_model(store, "t", run)


def test_two_runs_of_one_build_never_mix(s3) -> None:
    """Two executions of one build_id plan, train and merge interleaved: each run keeps to
    its own folder, and latest.json names the newer run, though the older one committed last
    (latest never moves back)."""
    store = open_store(STORE)
    first = handlers.plan({"store": STORE, "request": small_request()})
    second = handlers.plan({"store": STORE, "request": small_request(n_trees=4, seed=9)})
    assert first["run_id"] != second["run_id"]
    for a, b in zip(grove_items(first), grove_items(second), strict=False):
        for plan, grove in ((first, a), (second, b)):
            train_batch(plan, [grove])
    train_batch(first)  # the groves the zip left out
    second_merged = handlers.merge({"store": STORE, "build_id": "t", "run_id": second["run_id"]})
    first_merged = handlers.merge({"store": STORE, "build_id": "t", "run_id": first["run_id"]})
    assert (first_merged["n_trees"], second_merged["n_trees"]) == (7, 4)
    assert get_json(store, "t/latest.json")["run_id"] == second["run_id"]
    for plan in (first, second):
        manifest = get_json(store, f"t/runs/{plan['run_id']}/manifest.json")
        assert [g["seed"] for g in manifest["groves"]] == [g["seed"] for g in grove_items(plan)]
        model = groves.load_model(STORE, "t", plan["run_id"])
        assert len(model.estimators_) == manifest["n_trees"]
    assert len(groves.load_model(STORE, "t").estimators_) == 4


def test_a_grove_that_is_not_in_the_plan_is_refused(s3) -> None:
    plan = handlers.plan({"store": STORE, "request": small_request()})
    forged = {**grove_items(plan)[0], "seed": 1}
    with pytest.raises(BuildError, match="not part of the plan"):
        train_batch(plan, [forged])
    with pytest.raises(BuildError, match="not part of the plan"):
        train_batch(plan, [{"grove_id": 3, "seed": 0, "n_trees": 1}])  # past the last grove


def test_regressor_build_scores_r2(s3, tmp_path) -> None:
    request = small_request(
        dataset="diabetes",
        estimator="regressor",
        n_trees=12,
        grove_size=4,
        params={"min_samples_leaf": 3},
    )
    plan = handlers.plan({"store": STORE, "request": request})
    train_batch(plan)
    handlers.merge({"store": STORE, "build_id": "t", "run_id": plan["run_id"]})
    scored = handlers.predict({"store": STORE, "build_id": "t", "run_id": plan["run_id"]})
    assert scored["metric"] == "r2" and 0.2 < scored["score"] < 0.7
    path = groves.export_model(STORE, "t", tmp_path / "model.joblib", plan["run_id"])
    model = joblib.load(path)  # what a scikit-learn user does with the exported file
    assert type(model) is RandomForestRegressor and model.min_samples_leaf == 3
    split = read_prepared(
        open_store(STORE), read_plan(open_store(STORE), plan["build_id"], plan["run_id"])
    )
    from sklearn.metrics import r2_score

    predicted = model.predict(named(model, split.X_test))
    assert r2_score(split.y_test, predicted) == pytest.approx(scored["score"])
