"""A model's life after training: ``groves promote`` (a rollback is a promote, pinned against
commits of runs that started before it, also when they race), ``groves rm`` and ``groves gc``
(never the latest, never a run that a batch, search or build in progress uses), the store's
``delete`` (a directory, and S3 in batches of 1,000), and ``groves score`` for a run built
without ``-p``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import BUCKET, small_request, train_batch

import groves
from groves import cli
from groves.errors import BuildError
from groves.steps import handlers
from groves.store.artifacts import (
    advance_latest,
    is_finished,
    latest_key,
    latest_uncommitted,
    new_run_id,
    read_latest,
    run_prefix,
)
from groves.store.codec import get_json
from groves.store.local import LocalStore
from groves.store.promotions import promote, promotions
from groves.store.s3 import S3Store
from groves.store.uris import open_store


def planned(store: str, **request: Any) -> dict[str, Any]:
    plan = handlers.plan({"store": store, "request": small_request(**request)})
    train_batch(plan)
    return plan


def merged(plan: dict[str, Any]) -> dict[str, Any]:
    return handlers.merge({key: plan[key] for key in ("store", "build_id", "run_id")})


def built(store: str, **request: Any) -> str:
    plan = planned(store, **request)
    merged(plan)
    return plan["run_id"]


def test_promote_rolls_back_and_is_recorded_and_used_by_every_reader(tmp_path, capsys) -> None:
    """GIVEN two committed runs, WHEN the older is promoted, THEN load_model and groves ls use
    it, latest.json records the promote and the build's history lists it."""
    store = str(tmp_path)
    older, newer = built(store, n_trees=3), built(store, n_trees=6)
    assert cli.main(["promote", "t", "--run", older, "--store", store]) == 0
    assert f"run {older} (was {newer})" in capsys.readouterr().out
    assert len(groves.load_model(store, "t").estimators_) == 3
    latest = get_json(LocalStore(store), latest_key("t"))
    assert latest["run_id"] == older and latest["promoted"]["from"] == newer
    assert [(p["run_id"], p["from"]) for p in promotions(LocalStore(store), "t")] == [
        (older, newer)
    ]
    assert cli.main(["history", "t", "--promotions", "--store", store]) == 0
    assert f"{older}   {newer}" in capsys.readouterr().out
    assert cli.main(["ls", "--store", store]) == 0
    assert any(
        older in line and "latest (promoted)" in line
        for line in capsys.readouterr().out.splitlines()
    )


def test_promote_refuses_what_is_not_a_committed_run(tmp_path, capsys) -> None:
    store = str(tmp_path)
    built(store)
    stopped = handlers.plan({"store": store, "request": small_request()})["run_id"]
    assert cli.main(["promote", "t", "--run", stopped, "--store", store]) == 1
    assert "is not committed (no manifest)" in capsys.readouterr().err
    assert cli.main(["promote", "t", "--run", "latest", "--store", store]) == 2
    assert capsys.readouterr().err.startswith("invalid request: --run: 'latest' is not a run id")


@pytest.mark.parametrize("order", ["commit first", "promote first"])
def test_a_commit_of_a_run_started_before_a_promote_never_undoes_it(tmp_path, order) -> None:
    """GIVEN run A committed and run B started (planned) but not yet committed, WHEN A is
    promoted and B commits, in either order, THEN latest stays A; B is committed and finished
    (nothing to resume); a run started after the promote moves latest on as usual."""
    store = str(tmp_path)
    a = built(store)
    b = planned(store, seed=5)
    if order == "commit first":
        assert merged(b)["latest"] is True
        promote(LocalStore(store), "t", a)
    else:
        promote(LocalStore(store), "t", a)
        assert merged(b)["latest"] is False
    assert read_latest(LocalStore(store), "t") == a
    assert is_finished(LocalStore(store), "t", b["run_id"])
    assert latest_uncommitted(LocalStore(store), "t") is None
    c = built(store, seed=6)
    assert read_latest(LocalStore(store), "t") == c


@pytest.mark.parametrize("where", ["local", "s3"])
def test_racing_commits_and_a_promote_leave_the_promoted_run_latest(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """Commits of runs that started before a promote race it (a compare-and-swap each, on a
    directory and on S3): whatever the order, the promoted run is latest at the end."""
    if where == "s3":
        request.getfixturevalue("s3")
    uri = f"s3://{BUCKET}" if where == "s3" else str(tmp_path)
    store = open_store(uri)
    first = built(uri)
    runs = sorted({new_run_id() for _ in range(12)})  # started before the promote
    start = threading.Barrier(len(runs) + 1)

    def commit(run_id: str) -> None:
        start.wait()
        advance_latest(store, "t", run_id, "2026-12-02T00:00:00+00:00")

    def promoted() -> None:
        start.wait()
        promote(store, "t", first)

    threads = [threading.Thread(target=commit, args=(r,)) for r in runs]
    threads.append(threading.Thread(target=promoted))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert read_latest(store, "t") == first


def test_rm_refuses_the_latest_and_removes_a_run(tmp_path, capsys) -> None:
    store = str(tmp_path)
    older, newer = built(store), built(store, seed=5)
    assert cli.main(["rm", "t", "--run", newer, "--store", store]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"invalid request: --run: run {newer} is build 't''s latest: promote")
    assert cli.main(["rm", "t", "--run", older, "--store", store]) == 0
    assert "removed   run" in capsys.readouterr().out
    assert not (tmp_path / run_prefix("t", older)).exists()
    assert len(groves.load_model(store, "t").estimators_) == 7
    assert cli.main(["rm", "t", "--run", older, "--store", store]) == 2  # gone
    assert "has no run" in capsys.readouterr().err
    assert cli.main(["rm", "t", "--store", store]) == 0
    assert not (tmp_path / "t").exists()


def test_gc_keeps_the_latest_the_newest_and_what_work_in_progress_uses(tmp_path, capsys) -> None:
    """GIVEN five committed runs (the oldest promoted), a stopped run, and a batch prediction
    in progress on the second, WHEN gc --keep 1, THEN the latest, the newest committed run and
    the batch's run stay and the rest is deleted, sizes reported."""
    store = str(tmp_path)
    runs = [built(store, seed=s) for s in range(5)]
    promote(LocalStore(store), "t", runs[0])
    stale = handlers.plan({"store": store, "request": small_request()})["run_id"]
    plan_file = tmp_path / run_prefix("t", stale) / "plan.json"  # planned long ago: abandoned
    plan_file.write_text(
        json.dumps({**json.loads(plan_file.read_text()), "created_at": "2020-01-01T00:00:00+00:00"})
    )
    handlers.plan_batch(
        {
            "store": store,
            "request": {
                "build_id": "t",
                "run_id": runs[1],
                "data": "iris",
                "output": str(tmp_path / "p.csv"),
            },
        }
    )
    assert cli.main(["gc", "t", "--keep", "1", "--store", store]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "removed   build 't' (the latest and the 1 newest committed runs kept): 3 runs"
    )
    left = sorted(p.name for p in (tmp_path / "t" / "runs").iterdir())
    assert left == sorted([runs[0], runs[1], runs[4]])
    assert cli.main(["rm", "t", "--store", store]) == 2  # the batch is in progress
    assert "is in use: batch prediction" in capsys.readouterr().err
    assert cli.main(["gc", "t", "--keep", "-1", "--store", store]) == 2
    assert "--keep: -1 must be a whole number >= 0" in capsys.readouterr().err


def test_gc_after_a_search_keeps_the_rows_its_best_shares(tmp_path: Path, capsys) -> None:
    """A search's candidates share the first candidate's prepared rows: gc deletes the losers
    but keeps those rows while the (promoted) best uses them, and the best still scores."""
    store = ["--store", str(tmp_path)]
    argv = ["search", "s", "-t", "4", "-g", "2", "--dataset", "iris", "--grid", "max_depth=1,3,5"]
    assert cli.main([*argv, "--commit", *store]) == 0
    best = read_latest(LocalStore(tmp_path), "s")
    capsys.readouterr()
    assert cli.main(["gc", "s", "--keep", "0", *store]) == 0
    out = capsys.readouterr().out
    assert ": 2 runs" in out
    for folder in (tmp_path / "s" / "runs").iterdir():
        if folder.name != best:
            assert [p.name for p in folder.iterdir()] == ["data"], "only the shared rows stay"
    assert len(groves.load_model(str(tmp_path), "s").estimators_) == 4


def test_the_store_deletes_files_and_empty_folders(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for key in ("b/runs/r/a.json", "b/runs/r/data/x.npy", "b/keep.json"):
        store.put_bytes(key, b"{}")
    store.update_json("b/runs/r/latest.json", lambda _: {"x": 1})
    assert (
        store.delete(["b/runs/r/a.json", "b/runs/r/data/x.npy", "b/runs/r/latest.json", "b/none"])
        == 3
    )
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "b",
        "b/keep.json",
    ]


def test_s3_deletes_in_batches_of_delete_objects(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = S3Store(BUCKET, "p")
    keys = [f"b/runs/r/{i}.json" for i in range(5)]
    for key in keys:
        store.put_bytes(key, b"{}")
    calls = []
    real = store.client.delete_objects
    monkeypatch.setattr("groves.store.s3.DELETE_BATCH", 2)
    monkeypatch.setattr(store.client, "delete_objects", lambda **kw: calls.append(kw) or real(**kw))
    assert store.delete(keys) == 5
    assert [len(c["Delete"]["Objects"]) for c in calls] == [2, 2, 1]
    assert store.list_keys("b/") == []


def test_a_run_built_without_p_says_how_to_score_it_and_groves_score_does(tmp_path, capsys) -> None:
    store = ["--store", str(tmp_path)]
    assert cli.main(["run", "u", "-t", "4", "-g", "2", "--dataset", "iris", *store]) == 0
    out = capsys.readouterr().out
    run_id = read_latest(open_store(str(tmp_path)), "u")
    assert (
        f"score     not scored (-p scores a build at its end): groves score u --run {run_id}" in out
    )
    assert cli.main(["score", "u", "--run", run_id, *store]) == 0
    assert "score     accuracy " in capsys.readouterr().out
    assert get_json(open_store(str(tmp_path)), f"u/runs/{run_id}/metrics.json")["n_test"] == 38
    with pytest.raises(BuildError):
        promote(open_store(str(tmp_path)), "u", new_run_id())


def test_lifecycle_commands_refuse_a_name_that_is_not_a_build(tmp_path, capsys) -> None:
    store = ["--store", str(tmp_path)]
    assert cli.main(["run", "t", "-t", "2", "-g", "2", "--dataset", "iris", *store]) == 0
    capsys.readouterr()
    for argv in (["rm", "map-runs"], ["rm", "../t"], ["gc", "../t", "--keep", "1"]):
        assert cli.main([*argv, *store]) == 2, argv
        assert capsys.readouterr().err.startswith("invalid request: "), argv
    assert (tmp_path / "map-runs").is_dir(), "the Map Runs' results are not a build"


def test_gc_keeps_the_candidates_of_a_search_in_progress(tmp_path, capsys) -> None:
    """GIVEN a search planned but not finished, WHEN gc runs, THEN its candidates' runs stay;
    once the search has its result, they go."""
    store = str(tmp_path)
    latest = built(store)
    request = {**small_request(), "search": {"grid": {"max_depth": [1, 2]}}}
    search = handlers.plan_search({"store": store, "request": request})
    assert cli.main(["gc", "t", "--keep", "0", "--store", store]) == 0
    assert ": 0 runs" in capsys.readouterr().out
    assert len(list((tmp_path / "t" / "runs").iterdir())) == 3
    (tmp_path / "t" / "searches" / search["search_id"] / "result.json").write_text("{}")
    assert cli.main(["gc", "t", "--keep", "0", "--store", store]) == 0
    assert ": 2 runs" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "t" / "runs").iterdir()] == [latest]


def _tree(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()
    }


def test_gc_removes_ended_batches_and_searches_and_dry_run_removes_nothing(
    tmp_path: Path, capsys
) -> None:
    """GIVEN a build with a batch prediction that ended, one in progress, a search that ended
    whose best stays (promoted) and one whose candidates are all gone, WHEN gc --dry-run, THEN
    nothing is removed and each item is printed with its bytes; WHEN gc, THEN exactly those
    items go, the in-progress batch and the kept best's search stay."""
    root, store = tmp_path / "store", ["--store", str(tmp_path / "store")]
    search = ["search", "t", "-t", "4", "-g", "2", "--dataset", "iris", *store]
    assert cli.main([*search, "--grid", "max_depth=1,3", "--commit"]) == 0
    kept_search = next((root / "t" / "searches").iterdir()).name
    best = read_latest(LocalStore(root), "t")
    assert cli.main([*search, "--grid", "max_depth=2,4"]) == 0  # not committed: its best goes
    gone_search = max(p.name for p in (root / "t" / "searches").iterdir())
    out = str(tmp_path / "p.csv")
    assert cli.main(["predict", "t", "--data", "iris", "--out", out, *store]) == 0
    ended_batch = next((root / "t" / "predictions").iterdir()).name
    request = {"build_id": "t", "data": "iris", "output": str(tmp_path / "q.csv")}
    running = handlers.plan_batch({"store": str(root), "request": request})["batch_id"]
    capsys.readouterr()
    before = _tree(root)

    assert cli.main(["gc", "t", "--keep", "0", "--dry-run", *store]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert _tree(root) == before, "a dry run removes nothing"

    def size(folder: str) -> int:
        return sum(v for k, v in before.items() if k.startswith(f"t/{folder}/"))

    assert (
        f"would remove batch prediction {ended_batch}: {size('predictions/' + ended_batch):,} bytes"
        in lines
    )
    assert f"would remove search {gone_search}: {size('searches/' + gone_search):,} bytes" in lines
    assert not any(running in line or kept_search in line for line in lines)
    total = lines[-2]
    assert total.startswith(
        "would remove build 't' (the latest and the 0 newest committed runs kept): 3 runs, "
        "1 batch prediction, 1 search, "
    )
    assert lines[-1] == "dry run   nothing was removed"

    assert cli.main(["gc", "t", "--keep", "0", *store]) == 0
    assert capsys.readouterr().out.startswith(
        "removed   build 't' (the latest and the 0 newest committed runs kept): 3 runs, "
        "1 batch prediction, 1 search, "
    )
    assert sorted(p.name for p in (root / "t" / "predictions").iterdir()) == [running]
    assert sorted(p.name for p in (root / "t" / "searches").iterdir()) == [kept_search]
    assert [p.name for p in (root / "t" / "runs").iterdir() if (p / "manifest.json").exists()] == [
        best
    ]
    removed_bytes = sum(before.values()) - sum(_tree(root).values())
    assert f"({removed_bytes:,} bytes)" in total, "the dry run's bytes are what gc removes"
    assert cli.main(["report", "t", "--out", str(tmp_path / "r.html"), *store]) == 0


def test_rm_refuses_a_batch_in_progress_and_dry_run_and_rm_run_take_its_batches(
    tmp_path: Path, capsys
) -> None:
    """rm NAME refuses while a batch prediction is being planned (no batch.json yet); rm
    --run RUN takes the ended batches of that run, not the others; --dry-run removes
    nothing."""
    store = str(tmp_path)
    older, newer = built(store), built(store, seed=5)
    for run_id in (older, newer):
        out = str(tmp_path / f"{run_id}.csv")
        argv = ["predict", "t", "--run", run_id, "--data", "iris", "--out", out, "--store", store]
        assert cli.main(argv) == 0
    by_run = {
        get_json(LocalStore(store), f"t/predictions/{b.name}/batch.json")["run_id"]: b.name
        for b in (tmp_path / "t" / "predictions").iterdir()
    }
    capsys.readouterr()
    before = _tree(tmp_path)
    assert cli.main(["rm", "t", "--run", older, "--dry-run", "--store", store]) == 0
    out = capsys.readouterr().out
    assert f"would remove run {older}: " in out and f"batch prediction {by_run[older]}: " in out
    assert by_run[newer] not in out and _tree(tmp_path) == before
    assert cli.main(["rm", "t", "--run", older, "--store", store]) == 0
    assert ": 1 run, 1 batch prediction, 0 searches, " in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "t" / "predictions").iterdir()] == [by_run[newer]]

    planning = new_run_id()  # plan_batch has written the rows, not yet batch.json
    (tmp_path / "t" / "predictions" / planning).mkdir()
    (tmp_path / "t" / "predictions" / planning / "X.npy").write_bytes(b"rows")
    assert cli.main(["rm", "t", "--store", store]) == 2
    assert f"batch prediction {planning} of build 't' is in progress" in capsys.readouterr().err
    assert cli.main(["gc", "t", "--keep", "0", "--store", store]) == 0
    assert (tmp_path / "t" / "predictions" / planning).is_dir()
    (tmp_path / "t" / "predictions" / planning / "history").mkdir()  # it failed: it ended
    (tmp_path / "t" / "predictions" / planning / "history" / "x.json").write_text("{}")
    assert cli.main(["rm", "t", "--dry-run", "--store", store]) == 0
    out = capsys.readouterr().out
    assert f"would remove run {newer}: " in out and (tmp_path / "t").is_dir()
    assert cli.main(["rm", "t", "--store", store]) == 0
    assert not (tmp_path / "t").exists()
