"""Run-scoped artifacts and integrity: a rerun leaves earlier runs untouched, and no swapped,
truncated, corrupt or planted file is ever unpickled."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from conftest import small_request, train_batch

import groves
from groves import handlers
from groves.artifacts import digest, grove_key, model_key
from groves.errors import BuildError
from groves.local import run_local
from groves.storage import LocalStore, get_json, open_store, put_json


class Planted:
    """A pickle that creates a marker file when it is loaded: proof that its code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def planted_bytes(marker: Path, tmp_path: Path) -> bytes:
    path = tmp_path / "planted.joblib"
    joblib.dump(Planted(marker), path, compress=3)
    return path.read_bytes()


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def trained(local_store: LocalStore) -> dict[str, Any]:
    """A planned run of build ``t`` whose three groves are trained but not merged."""
    store = local_store.uri
    plan = handlers.plan({"store": store, "request": small_request(predict=True)})
    train_batch(plan)
    return plan


def merge(store: LocalStore, plan: dict[str, Any]) -> dict[str, Any]:
    return handlers.merge({"store": store.uri, "build_id": "t", "run_id": plan["run_id"]})


def test_a_rerun_leaves_the_earlier_run_byte_for_byte_untouched(tmp_path: Path) -> None:
    first = run_local(small_request(predict=True), str(tmp_path), workers=1)
    assert first.status == "SUCCEEDED", first.cause
    first_folder = tmp_path / "t" / "runs" / first.output["run_id"]
    before = snapshot(first_folder)
    assert {"plan.json", "model.joblib", "manifest.json", "metrics.json"} <= set(before)
    second = run_local(small_request(n_trees=4, predict=True), str(tmp_path), workers=1)
    assert second.status == "SUCCEEDED", second.cause
    assert snapshot(first_folder) == before
    assert sorted(p.name for p in (tmp_path / "t" / "runs").iterdir()) == sorted(
        [first.output["run_id"], second.output["run_id"]]
    )
    latest = get_json(LocalStore(tmp_path), "t/latest.json")
    assert latest["run_id"] == second.output["run_id"]
    assert len(groves.load_model(str(tmp_path), "t").estimators_) == 4
    assert len(groves.load_model(str(tmp_path), "t", first.output["run_id"]).estimators_) == 7


def test_manifest_records_every_grove_and_the_model(local_store, trained) -> None:
    merged = merge(local_store, trained)
    run = trained["run_id"]
    manifest = get_json(local_store, f"t/runs/{run}/manifest.json")
    for record in manifest["groves"]:
        blob = local_store.get_bytes(grove_key("t", run, record["grove_id"], "joblib"))
        assert {"sha256": record["sha256"], "bytes": record["bytes"]} == digest(blob)
    model_blob = local_store.get_bytes(model_key("t", run))
    assert manifest["model"] == {"key": model_key("t", run), **digest(model_blob)}
    assert merged["model_bytes"] == len(model_blob)
    loaded = joblib.load(Path(local_store.uri) / model_key("t", run))
    assert type(loaded).__name__ == "RandomForestClassifier" and loaded.n_estimators == 7


def swap_in_grove_0(store: LocalStore, run: str, tmp_path: Path) -> bytes:
    return store.get_bytes(grove_key("t", run, 0, "joblib"))


def truncate(store: LocalStore, run: str, tmp_path: Path) -> bytes:
    return store.get_bytes(grove_key("t", run, 1, "joblib"))[:-100]


def flip_a_byte(store: LocalStore, run: str, tmp_path: Path) -> bytes:
    blob = bytearray(store.get_bytes(grove_key("t", run, 1, "joblib")))
    blob[len(blob) // 2] ^= 0xFF
    return bytes(blob)


def plant(store: LocalStore, run: str, tmp_path: Path) -> bytes:
    return planted_bytes(tmp_path / "pwned", tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (swap_in_grove_0, "does not match its recorded sha256|bytes but"),
        (truncate, "bytes but .* were recorded"),
        (flip_a_byte, "does not match its recorded sha256"),
        (plant, "bytes but .* were recorded|does not match its recorded sha256"),
    ],
)
def test_a_damaged_grove_is_refused_before_it_is_unpickled(
    local_store, trained, tmp_path, damage, message
) -> None:
    run = trained["run_id"]
    local_store.put_bytes(grove_key("t", run, 1, "joblib"), damage(local_store, run, tmp_path))
    with pytest.raises(BuildError, match=f"^grove 1: .*({message})"):
        merge(local_store, trained)
    assert not (tmp_path / "pwned").exists(), "the planted pickle's code ran"
    assert not local_store.exists(model_key("t", run))
    assert not local_store.exists("t/latest.json")


def test_a_corrupt_grove_whose_record_matches_gets_a_clear_error(local_store, trained) -> None:
    run = trained["run_id"]
    junk = b"not a joblib file at all" * 10
    local_store.put_bytes(grove_key("t", run, 2, "joblib"), junk)
    meta_key = grove_key("t", run, 2, "json")
    put_json(local_store, meta_key, {**get_json(local_store, meta_key), **digest(junk)})
    with pytest.raises(BuildError, match=r"^grove 2: .*grove_00002\.joblib cannot be loaded"):
        merge(local_store, trained)


def test_a_tampered_model_is_refused_and_scoring_never_loads_it(
    local_store, trained, tmp_path
) -> None:
    merge(local_store, trained)
    run = trained["run_id"]
    local_store.put_bytes(model_key("t", run), planted_bytes(tmp_path / "pwned", tmp_path))
    with pytest.raises(BuildError, match=r"the model of run .* not loaded"):
        groves.load_model(local_store, "t")
    scored = handlers.predict({"store": local_store.uri, "build_id": "t", "run_id": run})
    assert scored["n_trees"] == 7, "scoring sums the groves' votes, not the model's"
    assert not (tmp_path / "pwned").exists(), "the planted pickle's code ran"


def test_a_tampered_votes_file_is_refused_by_scoring(local_store, trained) -> None:
    merge(local_store, trained)
    run = trained["run_id"]
    key = grove_key("t", run, 1, "votes.npy")
    local_store.put_bytes(key, local_store.get_bytes(grove_key("t", run, 0, "votes.npy")))
    with pytest.raises(BuildError, match=r"^grove 1: .*votes\.npy .*not loaded"):
        handlers.predict({"store": local_store.uri, "build_id": "t", "run_id": run})
    assert not local_store.exists(f"t/runs/{run}/metrics.json")


def test_predict_defaults_to_the_latest_committed_run(local_store, trained) -> None:
    with pytest.raises(BuildError, match="build 't' has no committed run"):
        handlers.predict({"store": local_store.uri, "build_id": "t"})
    merge(local_store, trained)
    scored = handlers.predict({"store": local_store.uri, "build_id": "t"})
    assert scored["run_id"] == trained["run_id"] and scored["metric"] == "accuracy"


def zeros_in_place(path: Path) -> None:
    """Overwrite the array's data with zeros, keeping its header and size."""
    blob = path.read_bytes()
    path.write_bytes(blob[:128] + bytes(len(blob) - 128))


def test_swapped_prepared_rows_are_refused_before_training(local_store) -> None:
    plan = handlers.plan({"store": local_store.uri, "request": small_request()})
    zeros_in_place(Path(local_store.uri) / f"t/runs/{plan['run_id']}/data/X_train.npy")
    with pytest.raises(BuildError, match=r"X_train\.npy does not match its recorded sha256"):
        train_batch(plan)
    assert not list((Path(local_store.uri) / f"t/runs/{plan['run_id']}").glob("groves/*"))


def test_a_tampered_download_cache_is_fetched_again_and_a_tampered_object_refused(s3) -> None:
    from groves.data.prepared import read_prepared
    from groves.plan import read_plan

    store_uri = "s3://groves-test/cache"
    plan = handlers.plan({"store": store_uri, "request": small_request()})
    store = open_store(store_uri)
    stored = read_plan(store, "t", plan["run_id"])
    good = np.array(read_prepared(store, stored).X_train)
    key = f"t/runs/{plan['run_id']}/data/X_train.npy"
    zeros_in_place(store.local_path(key))  # someone else's process rewrote /tmp
    np.testing.assert_array_equal(read_prepared(store, stored).X_train, good)
    blob = s3.get_object(Bucket="groves-test", Key=f"cache/{key}")["Body"].read()
    s3.put_object(
        Bucket="groves-test", Key=f"cache/{key}", Body=blob[:128] + bytes(len(blob) - 128)
    )
    store.evict(key)
    with pytest.raises(BuildError, match="does not match its recorded sha256"):
        read_prepared(store, stored)
