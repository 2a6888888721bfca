"""Hyper-parameter search: statemachine/search.asl.json on the local engine, against
scikit-learn's GridSearchCV on the same validation split; the held-out rows stay unread until
the best candidate is chosen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import named, small_request
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, PredefinedSplit

import groves
from groves import cli
from groves.data.datasets import carve, load_dataset, split
from groves.engine.asl import execute
from groves.engine.local import local_machine, run_local
from groves.errors import RequestError
from groves.steps import handlers
from groves.steps.search import search_key, validate_search
from groves.store.artifacts import manifest_key
from groves.store.codec import get_json
from groves.store.local import LocalStore

GRID = {"max_depth": [1, 3, None], "max_features": ["sqrt", 1.0]}


def digits_search(**change: Any) -> dict[str, Any]:
    request = {
        "build_id": "s",
        "dataset": "digits",
        "n_trees": 20,
        "grove_size": 10,
        "seed": 4,
        "search": {"grid": GRID},
        "validation_size": 0.25,
    }
    return {**request, **change}


def test_a_grid_search_picks_what_gridsearchcv_picks_on_the_same_validation_split(
    tmp_path: Path,
) -> None:
    run = run_local(digits_search(), str(tmp_path), workers=2, machine="search")
    assert run.status == "SUCCEEDED", run.cause
    store = LocalStore(tmp_path)
    board = get_json(store, search_key("s", run.output["search_id"], "leaderboard.json"))
    assert len(board) == 6 and board == sorted(board, key=lambda c: -c["validation_score"])
    # scikit-learn on the very same rows: fit on the carved rows, compare on the validation rows
    outer = split(load_dataset("digits"), 0.25, 4, stratify=True)
    inner = carve(outer, 0.25, 4, stratify=True)
    X = np.concatenate([inner.X_train, inner.X_test])
    y = np.concatenate([inner.y_train, inner.y_test])
    fold = np.r_[np.full(len(inner.y_train), -1), np.zeros(len(inner.y_test))]
    sklearn_search = GridSearchCV(
        RandomForestClassifier(n_estimators=20, random_state=0), GRID, cv=PredefinedSplit(fold)
    ).fit(X, y)
    assert board[0]["params"] == sklearn_search.best_params_
    # the best candidate is committed (not the build's latest unless asked: commit), a plain
    # forest with its parameters
    result = run.output["result"]
    assert not store.exists("s/latest.json") and result["latest"] is False
    assert result["promote"] == f"groves promote s --run {result['run_id']}"
    model = groves.load_model(str(tmp_path), "s", result["run_id"])
    assert type(model) is RandomForestClassifier and len(model.estimators_) == 20
    assert {k: model.get_params()[k] for k in GRID} == board[0]["params"]
    accuracy = float(np.mean(model.predict(named(model, outer.X_test)) == outer.y_test))
    assert result["test_score"] == pytest.approx(accuracy) and result["n_test"] == 450
    # the committed candidate's cost: its groves and its merge, not the forest's transitions
    cost = get_json(store, manifest_key("s", result["run_id"]))["cost"]
    assert set(cost["steps"]) == {"train_grove", "merge"} and cost["state_transitions"] == 0
    assert cost["search_id"] == run.output["search_id"]


def test_the_held_out_rows_are_not_read_before_the_best_candidate_is_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every store read and write in order, handlers run in this process."""
    events: list[tuple[str, str]] = []
    for name in ("get_bytes", "local_path", "get_range"):
        original = getattr(LocalStore, name)

        def reading(self, key, *args, _original=original, **kwargs):
            events.append(("read", key))
            return _original(self, key, *args, **kwargs)

        monkeypatch.setattr(LocalStore, name, reading)
    original_put = LocalStore.put_bytes

    def writing(self, key, data):
        events.append(("write", key))
        return original_put(self, key, data)

    monkeypatch.setattr(LocalStore, "put_bytes", writing)
    machine, interpreter = local_machine(str(tmp_path), machine="search")
    run = execute(machine, digits_search(search={"grid": {"max_depth": [2, 4]}}), interpreter)
    assert run.status == "SUCCEEDED", run.cause
    test_reads = [
        i
        for i, (kind, key) in enumerate(events)
        if kind == "read" and "/data/X_test" in key and "/searches/" in key
    ]
    chosen = events.index(("write", search_key("s", run.output["search_id"], "leaderboard.json")))
    assert test_reads and min(test_reads) > chosen


@pytest.mark.parametrize(
    ("search", "field"),
    [
        ({"grid": {"max_depth": [4, 0]}}, "search.candidates[1].max_depth"),
        ({"grid": {"colour": ["red"]}}, "search.candidates[0].colour"),
        ({"grid": {"max_depth": []}}, "search.grid.max_depth"),
        (
            {"random": {"n_candidates": 0, "ranges": {"max_depth": [2, 9]}}},
            "search.random.n_candidates",
        ),
        (
            {"random": {"n_candidates": 3, "ranges": {"max_depth": [9, 2]}}},
            "search.random.ranges.max_depth",
        ),
        ({"both": 1}, "search"),
        (None, "search"),
    ],
)
def test_every_candidate_is_checked_before_any_training(search: Any, field: str) -> None:
    with pytest.raises(RequestError) as caught:
        validate_search(small_request(search=search))
    assert caught.value.field == field


def test_random_candidates_are_drawn_from_the_run_seed(tmp_path: Path) -> None:
    space = {
        "random": {
            "n_candidates": 5,
            "ranges": {"min_samples_leaf": [1, 20], "max_features": [0.2, 1.0]},
            "choices": {"criterion": ["gini", "entropy"]},
        }
    }
    _, first = validate_search(small_request(search=space))
    _, again = validate_search(small_request(search=space))
    _, other = validate_search(small_request(search=space, seed=99))
    assert first == again != other and len(first) == 5
    assert all(
        1 <= c["min_samples_leaf"] <= 20 and isinstance(c["min_samples_leaf"], int) for c in first
    )
    assert all(
        0.2 <= c["max_features"] <= 1.0 and c["criterion"] in ("gini", "entropy") for c in first
    )


def test_cli_search_prints_the_leaderboard(tmp_path: Path, capsys) -> None:
    argv = ["search", "s", "-t", "6", "-g", "3", "--dataset", "iris", "--store", str(tmp_path)]
    assert cli.main([*argv, "--grid", "max_depth=1,null"]) == 0
    out = capsys.readouterr().out
    assert "candidate  validation" in out and "max_depth=null" in out and "max_depth=1" in out
    assert "best      candidate" in out and "held-out accuracy" in out
    assert cli.main(argv) == 2
    assert "give --grid NAME=V1,V2" in capsys.readouterr().err
    search_id = next((tmp_path / "s" / "searches").iterdir()).name
    result = handlers.score_best({"store": str(tmp_path), "build_id": "s", "search_id": search_id})
    assert result["best"]["params"]["max_depth"] in (1, None)


def test_a_search_leaves_the_latest_alone_unless_asked_and_says_how_to_promote(
    tmp_path: Path, capsys
) -> None:
    """GIVEN a build with a committed 9-tree model, WHEN a search runs without --commit, THEN
    the build's latest stays (groves predict keeps using it) and the output says how to
    promote the best; WHEN one runs with --commit, THEN the best is latest and the output
    names the run it replaced (which stays usable), and groves ls marks the search's best."""
    store = ["--store", str(tmp_path)]
    assert cli.main(["run", "s", "-t", "9", "-g", "3", "--dataset", "iris", *store]) == 0
    before = json.loads((tmp_path / "s" / "latest.json").read_text())["run_id"]
    capsys.readouterr()
    argv = ["search", "s", "-t", "4", "-g", "2", "--dataset", "iris", *store]
    assert cli.main([*argv, "--grid", "max_depth=2,3"]) == 0
    out = capsys.readouterr().out
    assert json.loads((tmp_path / "s" / "latest.json").read_text())["run_id"] == before
    [promote] = [line for line in out.splitlines() if line.startswith("promote")]
    best = promote.split()[5]
    assert (
        promote.startswith(f"promote   groves promote s --run {best} (") and "replaced" not in out
    )
    assert f"groves export s --run {best} --out model.joblib" in out
    assert len(groves.load_model(str(tmp_path), "s").estimators_) == 9
    assert cli.main([*argv, "--grid", "max_depth=2,3", "--commit"]) == 0
    out = capsys.readouterr().out
    assert f"replaced  build 's''s latest model until now, run {before} (9 trees)" in out
    assert cli.main(["ls", *store]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any("latest (search)" in line and " 4 " in line for line in listed)
    assert any(before in line and "committed " in line for line in listed)
    assert len(groves.load_model(str(tmp_path), "s", before).estimators_) == 9


def test_build_puts_the_searchs_runs_and_best_in_a_build_of_its_own(tmp_path: Path, capsys) -> None:
    """GIVEN a build with a model, WHEN a search names --build WINNER, THEN the build keeps its
    latest, WINNER's latest is the best (its candidates' runs beside it), the search's record
    stays under NAME, and the best's report finds the search."""
    store = ["--store", str(tmp_path)]
    assert cli.main(["run", "s", "-t", "9", "-g", "3", "--dataset", "iris", *store]) == 0
    before = json.loads((tmp_path / "s" / "latest.json").read_text())["run_id"]
    capsys.readouterr()
    argv = ["search", "s", "-t", "4", "-g", "2", "--dataset", "iris", "--build", "s-tuned"]
    argv.append("--commit")
    assert cli.main([*argv, "--grid", "max_depth=2,3", *store]) == 0
    out = capsys.readouterr().out
    assert "replaced" not in out and "groves export s-tuned" in out
    assert json.loads((tmp_path / "s" / "latest.json").read_text())["run_id"] == before
    best = groves.load_model(str(tmp_path), "s-tuned")
    assert len(best.estimators_) == 4 and best.max_depth in (2, 3)
    assert len(list((tmp_path / "s-tuned" / "runs").iterdir())) == 2  # both candidates
    assert len(list((tmp_path / "s" / "searches").iterdir())) == 1
    assert cli.main(["report", "s-tuned", *store, "--out", str(tmp_path / "r")]) == 0
    assert "ranked 1 of 2" in (tmp_path / "r" / "report.html").read_text()
    with pytest.raises(RequestError) as caught:
        validate_search({**digits_search(), "winner_build": "no spaces"})
    assert caught.value.field == "winner_build"
    with pytest.raises(RequestError, match=r"^commit: 'yes' must be true"):
        validate_search({**digits_search(), "commit": "yes"})


def test_resume_never_picks_a_search_candidate(tmp_path: Path) -> None:
    """A search commits its best candidate; the others stay uncommitted runs, and resuming one
    would commit a loser as the build's model."""
    run = run_local(
        digits_search(search={"grid": {"max_depth": [1, 3]}}),
        str(tmp_path),
        workers=1,
        machine="search",
    )
    assert run.status == "SUCCEEDED", run.cause
    with pytest.raises(RequestError, match="has no uncommitted run to resume"):
        handlers.plan({"store": str(tmp_path), "request": {"build_id": "s", "resume": True}})


def test_a_candidate_has_at_most_1000_groves_so_its_child_input_stays_small() -> None:
    with pytest.raises(
        RequestError, match="at most 1000 groves per candidate; use a grove_size of at least 3"
    ):
        validate_search(
            small_request(n_trees=2500, grove_size=2, search={"grid": {"max_depth": [2]}})
        )


def test_searches_are_bounded_before_they_start() -> None:
    import time

    from groves.steps.search import validate_search

    def refused(field: str, pattern: str, search: dict[str, Any]) -> None:
        request = {"build_id": "s", "dataset": "iris", "search": search}
        started = time.perf_counter()
        with pytest.raises(RequestError, match=pattern) as caught:
            validate_search(request)
        assert caught.value.field == field
        assert time.perf_counter() - started < 1.0, "refused by counting, not by building"

    huge = {f"p{i}": list(range(10)) for i in range(8)}  # 10^8 candidates
    huge = {"max_depth": list(range(1, 11)), "min_samples_leaf": list(range(1, 11)), **huge}
    refused("search", "10,000,000,000 candidates", {"grid": huge})
    for bad in ([float("nan"), 1.0], [0.1, float("inf")]):
        refused(
            "search.random.ranges.max_features",
            "finite numbers",
            {"random": {"n_candidates": 3, "ranges": {"max_features": bad}}},
        )
    refused("search.candidates[0].max_depth", "is a boolean", {"grid": {"max_depth": [True]}})


def test_a_search_ranks_by_the_metric_asked_for_a_skewed_target(tmp_path: Path) -> None:
    """On a 85/10/5 target, ranked by balanced accuracy (the best's as scikit-learn computes it
    from the committed model on the validation rows), best first; log-loss ranks
    lowest first; a metric of the other kind of forest is refused naming the field."""
    from sklearn.datasets import make_classification
    from sklearn.metrics import balanced_accuracy_score, log_loss

    X, y = make_classification(
        1500, n_informative=4, n_classes=3, weights=[0.85, 0.1, 0.05], random_state=1
    )
    np.savez(tmp_path / "skewed.npz", X=X, y=y)
    grid = {"class_weight": ["balanced", None], "max_depth": [3, None]}
    request = digits_search(dataset=str(tmp_path / "skewed.npz"), search={"grid": grid})
    outer = split(load_dataset(str(tmp_path / "skewed.npz")), 0.25, 4, stratify=True)
    inner = carve(outer, 0.25, 4, stratify=True)
    for metric, measure, best_first in (
        (
            "balanced_accuracy",
            lambda m: balanced_accuracy_score(inner.y_test, m.predict(inner.X_test)),
            -1,
        ),
        ("log_loss", lambda m: log_loss(inner.y_test, m.predict_proba(inner.X_test)), 1),
    ):
        store = str(tmp_path / metric)
        run = run_local({**request, "metric": metric}, store, workers=2, machine="search")
        assert run.status == "SUCCEEDED", run.cause
        board = get_json(
            LocalStore(store), search_key("s", run.output["search_id"], "leaderboard.json")
        )
        assert {row["metric"] for row in board} == {metric}
        scores = [row["validation_score"] for row in board]
        assert scores == sorted(scores, key=lambda s: best_first * s)
        best = groves.load_model(store, "s", board[0]["run_id"])  # only the best is committed
        assert board[0]["validation_score"] == pytest.approx(measure(best), rel=1e-9)
    with pytest.raises(RequestError, match="not a classifier's; one of accuracy") as caught:
        validate_search({**request, "metric": "rmse"})
    assert caught.value.field == "metric"
