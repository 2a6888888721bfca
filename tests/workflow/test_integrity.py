"""Run-scoped artifacts and integrity: a rerun leaves earlier runs untouched, no swapped,
truncated or corrupt file is ever read, and no file in a store, even forged together with its
records, can run code in a reader (nothing is unpickled)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from conftest import small_request, train_batch

import groves
from groves.engine.local import run_local
from groves.errors import BuildError
from groves.forest.format import FORMAT, write_grove
from groves.forest.trees import read_grove
from groves.steps import handlers
from groves.store.artifacts import (
    GROVE_SUFFIX,
    VOTES_SUFFIX,
    digest,
    grove_key,
    manifest_key,
)
from groves.store.codec import get_json, put_json
from groves.store.local import LocalStore
from groves.store.uris import open_store


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
    assert {"plan.json", "groves/grove_00000.trees", "manifest.json", "metrics.json"} <= set(before)
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


def test_manifest_records_every_grove_and_the_model(local_store, trained, tmp_path) -> None:
    merged = merge(local_store, trained)
    run = trained["run_id"]
    manifest = get_json(local_store, f"t/runs/{run}/manifest.json")
    blobs = []
    for record in manifest["groves"]:
        blobs.append(local_store.get_bytes(grove_key("t", run, record["grove_id"], GROVE_SUFFIX)))
        assert {"sha256": record["sha256"], "bytes": record["bytes"]} == digest(blobs[-1])
    combined = hashlib.sha256("".join(digest(b)["sha256"] for b in blobs).encode()).hexdigest()
    assert manifest["model"] == {
        "format": FORMAT,
        "sha256": combined,
        "bytes": merged["model_bytes"],
    }
    assert merged["model_bytes"] == sum(map(len, blobs))
    assert not list((tmp_path / "store").rglob("*.joblib")), "no step writes a pickle"
    exported = groves.export_model(local_store, "t", tmp_path / "model.joblib")
    loaded = joblib.load(exported)  # a user's explicit export
    assert type(loaded).__name__ == "RandomForestClassifier" and loaded.n_estimators == 7


def swap_in_grove_0(store: LocalStore, run: str, tmp_path: Path) -> bytes:
    return store.get_bytes(grove_key("t", run, 0, GROVE_SUFFIX))


def truncate(store: LocalStore, run: str, tmp_path: Path) -> bytes:
    return store.get_bytes(grove_key("t", run, 1, GROVE_SUFFIX))[:-100]


def flip_a_byte(store: LocalStore, run: str, tmp_path: Path) -> bytes:
    blob = bytearray(store.get_bytes(grove_key("t", run, 1, GROVE_SUFFIX)))
    blob[len(blob) // 2] ^= 0xFF
    return bytes(blob)


def plant(store: LocalStore, run: str, tmp_path: Path) -> bytes:
    return planted_bytes(tmp_path / "pwned", tmp_path)


@pytest.mark.parametrize(
    ("damage", "refused_by", "message"),
    [
        (swap_in_grove_0, "merge", "is \\d+ bytes, not"),
        (truncate, "merge", "is \\d+ bytes, not"),
        (flip_a_byte, "readers", "does not match its recorded sha256"),
        (plant, "merge", "is \\d+ bytes, not"),
    ],
)
def test_a_damaged_grove_is_refused_before_it_is_read(
    local_store, trained, tmp_path, damage, refused_by, message
) -> None:
    """Commit checks every grove file's size from one listing; every reader checks the sha256
    of each grove before it reads it (scoring reads votes only, so it is not one of them)."""
    run = trained["run_id"]
    key = grove_key("t", run, 1, GROVE_SUFFIX)
    local_store.put_bytes(key, damage(local_store, run, tmp_path))
    if refused_by == "merge":
        with pytest.raises(BuildError, match=f"^grove 1: .*{message}"):
            merge(local_store, trained)
        assert not local_store.exists(manifest_key("t", run))
        assert not local_store.exists("t/latest.json")
    else:
        merge(local_store, trained)
        with pytest.raises(BuildError, match=f"^grove 1: .*{message}"):
            groves.load_model(local_store, "t")
        with pytest.raises(BuildError, match=f"^grove 1: .*{message}"):
            groves.export_model(local_store, "t", tmp_path / "model.joblib")
    assert not (tmp_path / "pwned").exists(), "the planted pickle's code ran"


def forge(store: LocalStore, run: str, grove_id: int, blob: bytes) -> None:
    """What a writer with every key can do: replace a grove and its records, manifest too."""
    store.put_bytes(grove_key("t", run, grove_id, GROVE_SUFFIX), blob)
    meta_key = grove_key("t", run, grove_id, "json")
    put_json(store, meta_key, {**get_json(store, meta_key), **digest(blob)})
    manifest = get_json(store, manifest_key("t", run))
    for record in manifest["groves"]:
        if record["grove_id"] == grove_id:
            record.update(digest(blob))
    store.put_bytes(manifest_key("t", run), json.dumps(manifest).encode())


def test_a_forged_grove_with_forged_records_runs_no_code(local_store, trained, tmp_path) -> None:
    """A pickle planted as a grove, its metadata and the manifest rewritten to match: loading,
    batch prediction and export refuse it, and its code never runs."""
    merge(local_store, trained)
    run = trained["run_id"]
    forge(local_store, run, 1, planted_bytes(tmp_path / "pwned", tmp_path))
    with pytest.raises(BuildError, match=r"^grove 1: not an lz4 frame|^grove 1: not a groves"):
        groves.load_model(local_store, "t")
    data = tmp_path / "new.npz"
    np.savez(data, X=np.ones((5, 4), dtype=np.float32))
    with pytest.raises(BuildError, match="grove 1: not"):
        groves.predict("t", str(data), str(tmp_path / "out.csv"), store=local_store.uri)
    assert not (tmp_path / "pwned").exists(), "the planted pickle's code ran"


def test_a_forged_tree_that_points_outside_itself_is_refused(local_store, trained) -> None:
    """A grove file in the format whose tree sends a split to a node past its end (prediction
    would read outside the tree): refused before any tree is built."""
    merge(local_store, trained)
    run = trained["run_id"]
    forest = read_grove(local_store.get_bytes(grove_key("t", run, 1, GROVE_SUFFIX)))
    nodes = forest.estimators_[0].tree_.__getstate__()
    bad = nodes["nodes"].copy()
    split = int(np.argmax(bad["left_child"] >= 0))
    bad["left_child"][split] = len(bad) + 7
    state = {**nodes, "nodes": bad}
    forest.estimators_[0].tree_.__setstate__(state)
    forge(local_store, run, 1, write_grove(forest))
    with pytest.raises(BuildError, match="grove 1: a tree's nodes point outside the tree"):
        groves.load_model(local_store, "t")


def test_a_corrupt_grove_whose_record_matches_gets_a_clear_error(local_store, trained) -> None:
    run = trained["run_id"]
    junk = b"not a grove file at all" * 10
    local_store.put_bytes(grove_key("t", run, 2, GROVE_SUFFIX), junk)
    meta_key = grove_key("t", run, 2, "json")
    put_json(local_store, meta_key, {**get_json(local_store, meta_key), **digest(junk)})
    merge(local_store, trained)  # sizes match the records: committed, read by nobody yet
    with pytest.raises(BuildError, match=r"^grove 2: not an lz4 frame"):
        groves.load_model(local_store, "t")
    scored = handlers.predict({"store": local_store.uri, "build_id": "t", "run_id": run})
    assert scored["n_trees"] == 7, "scoring sums the groves' votes, never their trees"


def test_a_tampered_votes_file_is_refused_by_scoring(local_store, trained) -> None:
    merge(local_store, trained)
    run = trained["run_id"]
    key = grove_key("t", run, 1, VOTES_SUFFIX)
    own = local_store.get_bytes(key)
    flipped = own[:-1] + bytes([own[-1] ^ 1])  # same size: only the sha256 tells
    for forged in (local_store.get_bytes(grove_key("t", run, 0, VOTES_SUFFIX)), flipped):
        local_store.put_bytes(key, forged)
        with pytest.raises(BuildError, match=r"^grove 1: .*votes\.npy\.lz4 .*not loaded"):
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
    zeros_in_place(Path(local_store.uri) / f"t/runs/{plan['run_id']}/data/rows_00000.bin")
    with pytest.raises(BuildError, match=r"shard 0: stripe \d+ does not match its recorded sha256"):
        train_batch(plan)
    assert not list((Path(local_store.uri) / f"t/runs/{plan['run_id']}").glob("groves/*"))


def test_a_tampered_download_cache_is_fetched_again_and_a_tampered_object_refused(s3) -> None:
    from groves.data.prepared import read_prepared
    from groves.store.artifacts import read_plan

    store_uri = "s3://groves-test/cache"
    plan = handlers.plan({"store": store_uri, "request": small_request()})
    store = open_store(store_uri)
    stored = read_plan(store, "t", plan["run_id"])
    good = np.array(read_prepared(store, stored).X_test)
    key = f"t/runs/{plan['run_id']}/data/X_test.npy"
    zeros_in_place(store.local_path(key))  # someone else's process rewrote /tmp
    np.testing.assert_array_equal(read_prepared(store, stored).X_test, good)
    blob = s3.get_object(Bucket="groves-test", Key=f"cache/{key}")["Body"].read()
    s3.put_object(
        Bucket="groves-test", Key=f"cache/{key}", Body=blob[:128] + bytes(len(blob) - 128)
    )
    store.evict(key)
    with pytest.raises(BuildError, match="does not match its recorded sha256"):
        read_prepared(store, stored)
