"""Hyper-parameter search: every candidate is a run of the build trained grove-parallel on rows
carved from the training split, compared on a validation split; only the best candidate is then
merged, committed and scored once on the held-out test rows, which nothing reads before.

Files (beside the build's runs; each candidate's groves live in its own run folder)::

    <build_id>/searches/<search_id>/search.json        the validated request and the candidates
    <build_id>/searches/<search_id>/candidates.json    one item per candidate: its run and its
                                                       grove batches (the Map's ItemReader input)
    <build_id>/searches/<search_id>/data/X_test.npy, y_test.npy   the held-out rows
    <build_id>/searches/<search_id>/leaderboard.json   every candidate's validation score
    <build_id>/searches/<search_id>/result.json        the best candidate's held-out score
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from groves.data import datasets, stream
from groves.data.prepared import read_prepared, write_prepared
from groves.errors import BuildError, CorruptFile, RequestError
from groves.forest.loading import WARM, committed_votes
from groves.forest.measures import measures
from groves.forest.votes import Target
from groves.steps.checks import validate_params, validate_request
from groves.steps.cost import Invocation, search_transitions, step_cost, summarize
from groves.steps.planned import n_groves, planned_groves, run_plan
from groves.steps.prepare import (
    TrainingLabels,
    check_params_against_data,
    is_table,
    open_table,
    plan_rows,
    prepared_record,
    split_of,
)
from groves.steps.request import (
    CLASSIFIER_METRICS,
    LOWER_IS_BETTER,
    REGRESSOR_METRICS,
    SEARCH,
    SEARCH_ONLY,
    check_fields,
    checked,
    field,
    names,
)
from groves.steps.trained import check_groves, read_grove_metas, stored_votes
from groves.store.artifacts import (
    digest,
    latest_run,
    new_run_id,
    plan_key,
    read_manifest,
    read_plan,
    read_record,
    read_verified,
    search_key,
)
from groves.store.codec import dump_npy, get_json, load_npy, put_json
from groves.store.protocol import ArtifactNotFound, Store
from groves.store.records import record_format

MAX_CANDIDATES = 1_000
USAGE = "usage.json"  # the candidates' training and score_candidates, for the search's cost
# A child execution carries its candidate's grove batches (~100 bytes a grove): 1,000 groves
# stay far below Step Functions' 256 KB payload limit.
MAX_GROVES_PER_CANDIDATE = 1_000
SEARCH_FIELDS = names(SEARCH_ONLY)  # beside the training fields


def validate_search(request: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The base training spec and every candidate's parameters, each checked by scikit-learn's
    constraints before any training; an error names the candidate and the field."""
    check_fields(request, names(SEARCH))
    base = validate_request({k: v for k, v in request.items() if k not in SEARCH_FIELDS})
    if n_groves(base) > MAX_GROVES_PER_CANDIDATE:
        raise RequestError(
            "grove_size",
            f"a search trains at most {MAX_GROVES_PER_CANDIDATE} groves per candidate; use a "
            f"grove_size of at least {-(-base['n_trees'] // MAX_GROVES_PER_CANDIDATE)}",
        )
    if base["test_size"] == 0:
        raise RequestError("test_size", "a search scores its best on held-out rows: above 0")
    spec = checked({k: v for k, v in request.items() if k in SEARCH_FIELDS}, SEARCH_ONLY)
    metrics = CLASSIFIER_METRICS if base["estimator"] == "classifier" else REGRESSOR_METRICS
    if spec["metric"] is not None and spec["metric"] not in metrics:
        raise RequestError(
            "metric",
            f"{spec['metric']!r} is not a {base['estimator']}'s; one of {', '.join(metrics)}",
        )
    space = spec["search"]
    if len(space) != 1 or not {"grid", "random"} >= set(space):
        raise field(SEARCH_ONLY, "search").refused(space)
    if "grid" in space:
        candidates = grid_candidates(space["grid"])
    else:
        candidates = random_candidates(space["random"], base["seed"])
    if not 1 <= len(candidates) <= MAX_CANDIDATES:
        raise RequestError("search", f"{len(candidates)} candidates; 1 to {MAX_CANDIDATES}")
    for index, candidate in enumerate(candidates):
        try:
            validate_params({**base["params"], **candidate}, base["estimator"])
        except RequestError as exc:
            name = exc.field.removeprefix("params.")
            message = str(exc).split(": ", 1)[1]
            raise RequestError(f"search.candidates[{index}].{name}", message) from exc
    return {**base, **spec}, candidates


def grid_candidates(grid: Any) -> list[dict[str, Any]]:
    if not isinstance(grid, dict) or not grid:
        raise RequestError("search.grid", "must map parameter names to lists of values")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise RequestError(f"search.grid.{name}", "must be a non-empty list of values")
    count = math.prod(len(values) for values in grid.values())
    if count > MAX_CANDIDATES:  # counted, before any candidate is built
        raise RequestError("search", f"{count:,} candidates; 1 to {MAX_CANDIDATES}")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def random_candidates(spec: Any, seed: int) -> list[dict[str, Any]]:
    """``n_candidates`` draws, seeded by the run seed: integers uniform in an int range, floats
    uniform in a float range, and one of each ``choices`` list."""
    if not isinstance(spec, dict) or set(spec) - {"n_candidates", "ranges", "choices"}:
        raise RequestError("search.random", "takes n_candidates, ranges and choices")
    count = spec.get("n_candidates")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CANDIDATES:
        raise RequestError(
            "search.random.n_candidates", f"{count!r} must be an integer from 1 to {MAX_CANDIDATES}"
        )
    ranges, choices = spec.get("ranges", {}), spec.get("choices", {})
    if not isinstance(ranges, dict) or not isinstance(choices, dict) or not (ranges or choices):
        raise RequestError("search.random", "needs ranges and/or choices to draw from")
    for name, bounds in ranges.items():
        ok = isinstance(bounds, list) and len(bounds) == 2
        ok = ok and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        ok = ok and all(math.isfinite(b) for b in bounds)
        if not ok or bounds[0] > bounds[1]:
            raise RequestError(
                f"search.random.ranges.{name}",
                "must be [low, high]: finite numbers (not NaN or infinite), low <= high",
            )
    for name, values in choices.items():
        if not isinstance(values, list) or not values:
            raise RequestError(f"search.random.choices.{name}", "must be a non-empty list")
    rng = np.random.default_rng(seed)
    candidates = []
    for _ in range(count):
        candidate: dict[str, Any] = {}
        for name, (low, high) in ranges.items():
            if isinstance(low, int) and isinstance(high, int):
                candidate[name] = int(rng.integers(low, high + 1))
            else:
                candidate[name] = float(rng.uniform(low, high))
        for name, values in choices.items():
            candidate[name] = values[int(rng.integers(len(values)))]
        candidates.append(candidate)
    return candidates


def plan_search(store: Store, request: Any, invocation: Invocation | None = None) -> dict[str, Any]:
    """Validate, split (train/test, then validation from train), and plan one run per candidate
    sharing one copy of the fit/validation rows; the held-out rows go to the search's folder,
    where only ``score_best`` reads them. A table is planned in bounded memory, row by row
    (``groves.steps.prepare``), arrays split by scikit-learn."""
    spec, candidates = validate_search(request)
    build_id = spec["build_id"]
    search_id = new_run_id()
    runs_build = spec["winner_build"] or build_id  # where the candidates' runs and the best go
    runs = [new_run_id() for _ in candidates]
    rows = (search_table if is_table(spec["dataset"]) else search_arrays)(
        store, spec, candidates, runs_build, runs[0]
    )
    test = {}
    for name, array in (("X_test", rows.X_test), ("y_test", rows.y_test)):
        blob = dump_npy(np.ascontiguousarray(array))
        store.put_bytes(search_key(build_id, search_id, f"data/{name}.npy"), blob)
        test[name] = digest(blob)
    items, records = [], []
    base = {k: v for k, v in spec.items() if k not in SEARCH_FIELDS}
    for index, (run_id, candidate) in enumerate(zip(runs, candidates, strict=True)):
        params = {**spec["params"], **candidate}
        run_spec = {**base, "build_id": runs_build, "params": params, "predict": False}
        plan = run_plan(run_spec, run_id, {**rows.data}, runs[0])
        plan["search_id"], plan["search_build"] = search_id, build_id
        put_json(store, plan_key(runs_build, run_id), plan)
        groves = planned_groves(run_spec)
        per = spec["groves_per_invocation"]
        batch_input = {"store": store.uri, "build_id": runs_build, "run_id": run_id}
        batches = [
            {"Items": groves[i : i + per], "BatchInput": batch_input}
            for i in range(0, len(groves), per)
        ]
        items.append({"candidate": index, "run_id": run_id, "batches": batches})
        records.append({"candidate": index, "run_id": run_id, "params": candidate})
    put_json(store, search_key(build_id, search_id, "candidates.json"), items)
    record = {
        "format": record_format("search"),
        "build_id": build_id,
        "search_id": search_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec,
        "candidates": records,
        "n_fit": rows.data["n_train"],
        "n_validation": rows.data["n_test"],
        "n_test": len(rows.y_test),
        "test": test,
        "classes": rows.data["classes"],
        "n_outputs": rows.data["n_outputs"],
        "runs_build": runs_build,
        "replaces": committed_before(store, runs_build) if spec["commit"] else None,
        "usage": (invocation or Invocation.begin("plan_search")).usage(),
    }
    put_json(store, search_key(build_id, search_id, "search.json"), record)
    return record


@dataclass(frozen=True)
class SearchRows:
    """A search's rows: the candidates' data record (their prepared rows: the rows they fit
    on, as shards, and the validation rows they are compared on, as their held-out rows), and
    the held-out test rows, which only ``score_best`` reads."""

    data: dict[str, Any]
    X_test: np.ndarray
    y_test: np.ndarray


def check_candidates(
    spec: dict[str, Any],
    candidates: list[dict[str, Any]],
    y_fit: np.ndarray | TrainingLabels,
    classes: list[Any] | None,
) -> None:
    """Every candidate's parameters against the rows it fits on; an error names the
    candidate."""
    for index, candidate in enumerate(candidates):
        try:
            check_params_against_data({**spec["params"], **candidate}, y_fit, classes)
        except RequestError as exc:
            raise RequestError(f"search.candidates[{index}].{exc.field}", str(exc)) from exc


def search_arrays(
    store: Store,
    spec: dict[str, Any],
    candidates: list[dict[str, Any]],
    runs_build: str,
    prepared_run: str,
) -> SearchRows:
    """Arrays loaded whole and split by scikit-learn: the held-out rows, then the validation
    rows carved from the training rows, both stratified."""
    dataset = datasets.load_dataset(spec["dataset"], spec["target"], spec["weight"])
    classes = datasets.check_target(dataset, spec["estimator"], spec["dataset"])
    outer = datasets.split(dataset, spec["test_size"], spec["seed"], classes is not None)
    inner = datasets.carve(outer, spec["validation_size"], spec["seed"], classes is not None)
    if not datasets.every_class_trains(inner.y_train, classes):
        raise RequestError("validation_size", "leaves some class without rows to fit; lower it")
    check_candidates(spec, candidates, inner.y_train, classes)
    prepared = write_prepared(store, runs_build, prepared_run, inner)
    data = datasets.data_record(dataset, inner, classes, prepared)
    return SearchRows(data, outer.X_test, outer.y_test)


def search_table(
    store: Store,
    spec: dict[str, Any],
    candidates: list[dict[str, Any]],
    runs_build: str,
    prepared_run: str,
) -> SearchRows:
    """A table (a file or a folder of them) planned in this invocation in bounded memory, a
    file at a time, by a build's plan's steps (``prepare.plan_rows``): a row is held out, or
    else a validation row, by a seeded hash of its place (``stream.Split``), each kind capped
    by ``max_test_rows``; the rest are the rows the candidates fit on."""
    table = open_table(spec)

    def check(labels: TrainingLabels, classes: list[Any] | None) -> None:
        check_candidates(spec, candidates, labels, classes)

    decided, parts = plan_rows(store, spec, table, runs_build, prepared_run, check)
    done = stream.finish(decided, parts, split_of(spec))
    held = (done.X_validation, done.y_validation)
    data = prepared_record(store, runs_build, prepared_run, decided, done, held)
    return SearchRows(data, done.X_test, done.y_test)


def search_cost(
    store: Store, record: dict[str, Any], best: dict[str, Any], usage: dict[str, Any]
) -> dict[str, Any]:
    """The search's cost: plan_search, every candidate's groves, score_candidates, the best's
    merge, score_best, and the search execution's transitions (``groves.steps.cost``)."""
    so_far = get_json(store, search_key(record["build_id"], record["search_id"], USAGE))
    steps = {
        "plan_search": step_cost([record["usage"]]),
        "train_grove": so_far["train_grove"],
        "score_candidates": step_cost([so_far["score_candidates"]]),
        "merge": best["cost"]["steps"]["merge"],
        "score_best": step_cost([usage]),
    }
    return summarize(steps, search_transitions(so_far["batches"]))


def committed_before(store: Store, build_id: str) -> dict[str, Any] | None:
    """The build's latest committed run when a search that commits starts (its best will
    replace it as ``latest``; the run itself stays), or ``None``."""
    run_id = latest_run(store, build_id)
    if run_id is None:
        return None
    manifest = read_manifest(store, build_id, run_id)
    return {"run_id": run_id, "n_trees": manifest["n_trees"]}


def latest_after(
    latest: bool, build_id: str, run_id: str, replaces: dict[str, Any] | None
) -> dict[str, Any]:
    """Whether the committed best is its build's ``latest`` now (MergeBest's answer); if so
    the run it replaced, else the command that makes it so (a search moves ``latest`` only
    with ``commit``)."""
    if latest:
        return {"latest": True, "replaces": replaces}
    return {
        "latest": False,
        "replaces": None,
        "promote": f"groves promote {build_id} --run {run_id}",
    }


def state_output(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    build_id, search_id = record["build_id"], record["search_id"]
    return {
        "store": store.uri,
        "build_id": build_id,
        "search_id": search_id,
        "runs_build_id": record.get("runs_build", build_id),
        "n_candidates": len(record["candidates"]),
        "max_concurrency": record["spec"]["max_concurrency"],
        "commit": bool(record["spec"].get("commit", False)),  # MergeBest: move latest or not
        "items": store.location(search_key(build_id, search_id, "candidates.json")),
    }


def runs_build(record: dict[str, Any]) -> str:
    """The build a search's candidates' runs and its committed best are in."""
    return str(record.get("runs_build", record["build_id"]))


def read_search(store: Store, build_id: str, search_id: str) -> dict[str, Any]:
    key = search_key(build_id, search_id, "search.json")
    return read_record(store, key, build_id, "search", search_id)


def validation_score(
    store: Store, build_id: str, run_id: str, metric: str | None = None
) -> dict[str, Any]:
    """A candidate's score on the validation rows from its verified groves' summed votes (the
    forest's score, or ``metric``; ROC AUC of rows lacking a class is ``None``), its trees
    and training seconds; and, for the search's cost, its groves' usage and how many
    invocations (batches) trained them."""
    plan = read_plan(store, build_id, run_id)
    metas = read_grove_metas(store, plan)
    check_groves(plan, metas)
    y_val = read_prepared(store, plan, ("y_test",)).y_test
    target = Target.of(plan["data"])
    total, n_trees, seconds = None, 0, 0.0
    for meta, votes in stored_votes(store, build_id, run_id, metas):
        total = votes if total is None else total + votes
        n_trees += meta["n_trees"]
        seconds += meta["seconds"]
    assert total is not None
    per = plan["spec"].get("groves_per_invocation", 1)
    if metric is None:
        score = target.score(y_val, target.decide(total, n_trees))
    else:
        score = measures(target, y_val, total, n_trees)["scores"][metric]
    return {
        "validation_score": score,
        "n_trees": n_trees,
        "seconds": round(seconds, 3),
        "usages": [meta["usage"] for meta in metas],
        "batches": math.ceil(plan["n_groves"] / per),
    }


def score_candidates(
    store: Store, build_id: str, search_id: str, invocation: Invocation | None = None
) -> dict[str, Any]:
    """Write ``leaderboard.json`` (best first; a tie goes to the earlier candidate) and, for the
    search's cost, ``usage.json`` (the candidates' training and this step); return the best
    candidate. The held-out rows are not read here."""
    record = read_search(store, build_id, search_id)
    board, usages, batches = [], [], []
    metric = record["spec"].get("metric")
    if metric is not None and metric not in (*CLASSIFIER_METRICS, *REGRESSOR_METRICS):
        raise CorruptFile(f"search {search_id}'s search.json names no metric: {metric!r}")
    for candidate in record["candidates"]:
        scored = validation_score(store, runs_build(record), candidate["run_id"], metric)
        usages += scored.pop("usages")
        batches.append(scored.pop("batches"))
        board.append({**candidate, **scored, **({"metric": metric} if metric else {})})
    sign = 1 if metric in LOWER_IS_BETTER else -1
    board.sort(
        key=lambda c: (
            c["validation_score"] is None,
            sign * (c["validation_score"] or 0),
            c["candidate"],
        )
    )
    put_json(store, search_key(build_id, search_id, "leaderboard.json"), board)
    so_far = {
        "train_grove": step_cost(usages),
        "batches": batches,
        "score_candidates": (invocation or Invocation.begin("score_candidates")).usage(),
    }
    put_json(store, search_key(build_id, search_id, USAGE), so_far)
    return board[0]


def score_best(
    store: Store,
    build_id: str,
    search_id: str,
    invocation: Invocation | None = None,
    latest: bool | None = None,
) -> dict[str, Any]:
    """Score the committed best candidate once on the held-out rows; write ``result.json``
    with the search's whole cost and whether the best is its build's ``latest`` (``latest``:
    what MergeBest answered; by default, whether the search asked to ``commit``)."""
    started = time.perf_counter()
    invocation = invocation or Invocation.begin("score_best")
    record = read_search(store, build_id, search_id)
    try:
        best = get_json(store, search_key(build_id, search_id, "leaderboard.json"))[0]
    except ArtifactNotFound as exc:
        raise BuildError(f"search {search_id} has no leaderboard: no candidate was chosen") from exc
    manifest = read_manifest(store, runs_build(record), best["run_id"])
    arrays = {}
    for name in ("X_test", "y_test"):
        key = search_key(build_id, search_id, f"data/{name}.npy")
        arrays[name] = load_npy(read_verified(store, key, record["test"][name], name))
    target = Target.of(record)
    votes = committed_votes(
        store, manifest, arrays["X_test"], target.classes is not None, cache=WARM
    )
    result = {
        "build_id": build_id,
        "search_id": search_id,
        "best": best,
        "metric": target.metric,
        "test_score": target.score(arrays["y_test"], target.decide(votes, manifest["n_trees"])),
        "n_test": len(arrays["y_test"]),
        "model": manifest["model"],
        "run_id": best["run_id"],
        **latest_after(
            bool(record["spec"].get("commit")) if latest is None else latest,
            runs_build(record),
            best["run_id"],
            record.get("replaces"),
        ),
        "seconds": round(time.perf_counter() - started, 3),
    }
    result["cost"] = search_cost(store, record, manifest, invocation.usage())
    put_json(store, search_key(build_id, search_id, "result.json"), result)
    return result
