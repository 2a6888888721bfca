"""Commits that cannot move backwards, be half done, or commit what a grove did not leave:
``latest.json`` only moves to a newer run (also when commits race, on a directory and on S3),
a committed run is never rewritten, a commit that broke off is finished by ``--resume``, and
merge checks every file a grove recorded first."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import BUCKET, small_request, train_batch

from groves.engine.local import run_local
from groves.errors import BuildError
from groves.steps import handlers
from groves.steps.trained import read_grove_metas
from groves.store.artifacts import (
    VOTES_SUFFIX,
    advance_latest,
    grove_key,
    latest_key,
    manifest_key,
    new_run_id,
)
from groves.store.codec import get_json, put_json
from groves.store.local import LocalStore
from groves.store.uris import open_store


def planned_and_trained(store: str, **request: Any) -> dict[str, Any]:
    plan = handlers.plan({"store": store, "request": small_request(**request)})
    train_batch(plan)
    return plan


def merge(plan: dict[str, Any]) -> dict[str, Any]:
    return handlers.merge({key: plan[key] for key in ("store", "build_id", "run_id")})


def test_merging_an_older_run_again_rewrites_nothing_and_keeps_latest(tmp_path: Path) -> None:
    store = str(tmp_path)
    older, newer = planned_and_trained(store), planned_and_trained(store, seed=8)
    merge(older)
    merge(newer)
    manifest = (tmp_path / manifest_key("t", older["run_id"])).read_bytes()
    again = merge(older)  # a retried or replayed merge of the older run
    assert (tmp_path / manifest_key("t", older["run_id"])).read_bytes() == manifest
    assert get_json(LocalStore(tmp_path), latest_key("t"))["run_id"] == newer["run_id"]
    assert again["manifest"].endswith(manifest_key("t", older["run_id"]))


def test_racing_commits_leave_latest_naming_the_newest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    runs = sorted({new_run_id() for _ in range(24)})
    start = threading.Barrier(len(runs))

    def commit(run_id: str) -> None:
        start.wait()
        advance_latest(store, "t", run_id, "2026-12-02T00:00:00+00:00")

    threads = [threading.Thread(target=commit, args=(r,)) for r in reversed(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert get_json(store, latest_key("t"))["run_id"] == runs[-1]


@pytest.mark.parametrize("latest_before", [False, True])
def test_on_s3_a_commit_that_lost_the_race_retries_and_keeps_the_newer(
    s3, latest_before: bool
) -> None:
    """Another commit lands between this commit's read of latest.json and its write: the
    conditional write (If-Match, or If-None-Match when there was none) fails, the update is
    read again, and the newer run stays. (moto's conditional writes are not atomic across
    threads, as S3's are, so the race is staged in order here.)"""
    store = open_store(f"s3://{BUCKET}/b")
    first, older, newer = sorted({new_run_id() for _ in range(3)})
    if latest_before:
        advance_latest(store, "t", first, "then")
    calls = []

    def change(current: Any) -> dict[str, Any] | None:
        calls.append(current)
        if len(calls) == 1:  # the other commit lands now
            advance_latest(store, "t", newer, "now")
            return {"build_id": "t", "run_id": older}
        return None if current["run_id"] >= older else {"build_id": "t", "run_id": older}

    store.update_json(latest_key("t"), change)
    assert get_json(store, latest_key("t"))["run_id"] == newer
    assert [c and c["run_id"] for c in calls] == [first if latest_before else None, newer]


def test_a_commit_that_broke_off_is_finished_by_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is written, then writing latest.json fails (a full disk): the build
    fails, and ``--resume`` finishes the commit without rewriting the run."""
    plan = planned_and_trained(str(tmp_path), predict=True)

    def full_disk(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(LocalStore, "update_json", full_disk)
        with pytest.raises(OSError, match="No space left"):
            merge(plan)
    manifest = (tmp_path / manifest_key("t", plan["run_id"])).read_bytes()
    assert not (tmp_path / latest_key("t")).exists()

    resumed = run_local({"build_id": "t", "resume": True}, str(tmp_path), workers=1)
    assert resumed.status == "SUCCEEDED", resumed.cause
    assert resumed.output["run_id"] == plan["run_id"]
    assert get_json(LocalStore(tmp_path), latest_key("t"))["run_id"] == plan["run_id"]
    assert (tmp_path / manifest_key("t", plan["run_id"])).read_bytes() == manifest
    assert resumed.output["metrics"]["score"] > 0.8


def test_a_missing_votes_file_fails_merge_before_anything_is_written(tmp_path: Path) -> None:
    plan = planned_and_trained(str(tmp_path))
    (tmp_path / grove_key("t", plan["run_id"], 1, VOTES_SUFFIX)).unlink()
    with pytest.raises(BuildError, match=r"grove 1: .*grove_00001\.votes\.npy\.lz4 is missing"):
        merge(plan)
    run = tmp_path / "t" / "runs" / plan["run_id"]
    assert not (run / "manifest.json").exists()
    assert not (tmp_path / latest_key("t")).exists()


def test_resume_retrains_a_grove_whose_metadata_is_truncated(tmp_path: Path) -> None:
    plan = planned_and_trained(str(tmp_path))
    meta = tmp_path / grove_key("t", plan["run_id"], 2, "json")
    meta.write_bytes(meta.read_bytes()[:40])  # cut off mid-write
    resumed = run_local({"build_id": "t", "resume": True}, str(tmp_path), workers=1)
    assert resumed.status == "SUCCEEDED", resumed.cause
    assert (
        get_json(LocalStore(tmp_path), grove_key("t", plan["run_id"], 2, "json"))["grove_id"] == 2
    )


def test_a_truncated_manifest_is_one_line_naming_the_file(tmp_path: Path) -> None:
    import groves

    plan = planned_and_trained(str(tmp_path))
    merge(plan)
    manifest = tmp_path / manifest_key("t", plan["run_id"])
    manifest.write_bytes(manifest.read_bytes()[:50])
    with pytest.raises(BuildError, match=r"manifest\.json is not valid JSON \(truncated"):
        groves.load_model(str(tmp_path), "t")


def test_merge_reads_grove_records_on_s3_with_a_connection_per_thread(
    s3_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """GIVEN 200 grove records on S3, WHEN merge reads them in its threads, THEN each thread
    has a pooled connection: urllib3 discards none (with botocore's default pool of 10, 64
    threads discarded 54 connections in 300 reads, each a new connection to S3 next time)."""
    store, run_id = open_store(f"s3://{s3_server}"), new_run_id()
    plan = {"build_id": "t", "run_id": run_id, "spec": {"n_trees": 200, "grove_size": 1}}
    digest = {"sha256": "0" * 64, "bytes": 1}
    record = {"build_id": "t", "run_id": run_id, "seed": 1, "n_trees": 1, **digest}
    record |= {"votes": digest, "split_fingerprint": "f", "n_features": 1, "classes": [0, 1]}
    record |= {"sklearn_version": "1.9"}
    for gid in range(200):
        put_json(store, grove_key("t", run_id, gid, "json"), {**record, "grove_id": gid})
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        metas = read_grove_metas(store, plan)
    assert [meta["grove_id"] for meta in metas] == list(range(200))
    assert not [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]
