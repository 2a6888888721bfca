"""The Lambda handlers, shared by ``functions/*/app.py`` and the local runner. Each imports its
step when called, so a function loads only what its own step needs (merge starts without
scikit-learn: a shorter cold start).

Events (what the state machine passes; ``events/`` has samples):

- plan:        ``{"store": URI, "request": {...}}``; for a table of several files, then
  ``{"store": URI, "build_id": ..., "run_id": ..., "phase": "scanned"}`` and ``"prepared"``
- plan_part:   ``{"store": URI, "build_id": ..., "run_id": ..., "part": N, "phase": "scan"}``
  (or ``"prepare"``): one file of the table, an item of the plan's Maps
- train_grove: ``{"Items": [grove, ...], "BatchInput": {"store": URI, "build_id": ...,
  "run_id": ...}}``: one batch of the Distributed Map's ItemBatcher
- merge:       ``{"store": URI, "build_id": ..., "run_id": ...}``, and ``"latest": false`` to
  commit without moving the build's ``latest`` (a search's best unless asked)
- predict:     ``{"store": URI, "build_id": ..., "run_id": ...}`` (``run_id`` optional: the
  build's latest committed run)

Batch prediction (``statemachine/batch_predict.asl.json``):

- plan_batch:           ``{"store": URI, "request": {"build_id", "data", "output", ...}}``
- predict_chunk:        ``{"store": URI, "build_id": ..., "batch_id": ..., "chunk": {...}}``
- assemble_predictions: ``{"store": URI, "build_id": ..., "batch_id": ...}``

Hyper-parameter search (``statemachine/search.asl.json``; candidates train with train_grove and
the best is committed by merge):

- plan_search:      ``{"store": URI, "request": {...training fields, "search": {...}}}``
- score_candidates: ``{"store": URI, "build_id": ..., "search_id": ...}``
- score_best:       ``{"store": URI, "build_id": ..., "search_id": ..., "latest": bool}``
  (``latest``: whether MergeBest made the best its build's latest)

Every run's files live under ``<build_id>/runs/<run_id>/``, a batch's under
``<build_id>/predictions/<batch_id>/`` (see ``groves.store.artifacts``).
"""

from __future__ import annotations

import logging
from typing import Any

from groves.errors import RequestError
from groves.steps.cost import Invocation
from groves.store.artifacts import check_build_id, check_run_id
from groves.store.protocol import Store
from groves.store.uris import open_store

log = logging.getLogger("groves")
GROVE_OUTPUT = ("grove_id", "seed", "n_trees", "sha256", "bytes", "fit_seconds", "reused")


def _fields(event: Any, *names: str, what: str = "event") -> tuple[Store, list[Any]]:
    if not isinstance(event, dict):
        raise RequestError(what, f"must be a JSON object, got {type(event).__name__}")
    missing = [name for name in ("store", *names) if name not in event]
    if missing:
        raise RequestError(
            missing[0], f"missing from the event; it needs store, {', '.join(names)}"
        )
    if "build_id" in names:
        check_build_id(event)
    if event.get("run_id") is not None:
        check_run_id(event["run_id"])
    return open_store(event["store"]), [event[name] for name in names]


def plan(event: Any, context: Any = None) -> dict[str, Any]:
    """A request planned; a table of several files is planned in parts by the Map, and this
    step goes on with ``phase``: ``scanned`` (the parts' scans checked and added up), then
    ``prepared`` (their rows joined: the plan written)."""
    invocation = Invocation.begin("plan", context)
    from groves.steps import plan as step

    if isinstance(event, dict) and "phase" in event:
        store, (build_id, run_id, phase) = _fields(event, "build_id", "run_id", "phase")
        if phase == "scanned":
            return step.plan_scanned(store, build_id, run_id, invocation)
        if phase != "prepared":
            raise RequestError("phase", f"{phase!r} is not scanned or prepared")
        result = step.plan_prepared(store, build_id, run_id, invocation)
    else:
        store, (request,) = _fields(event, "request")
        result = step.plan_build(store, request, invocation)
        if "table" in result:
            log.info("planning %s in %d parts", result["build_id"], len(result["table"]["files"]))
            return step.parts_output(store, result)
    output = step.state_output(store, result)
    log.info("planned %s: %d groves", result["build_id"], output["n_groves"])
    return output


def plan_part(event: Any, context: Any = None) -> dict[str, Any]:
    """One file of a table planned in parts: its scan, or its rows written (``phase``)."""
    invocation = Invocation.begin("plan_part", context)
    from groves.steps.plan import plan_part as run_part

    store, (build_id, run_id, part, phase) = _fields(event, "build_id", "run_id", "part", "phase")
    return run_part(store, build_id, run_id, part, phase, invocation)


def train_grove(event: Any, context: Any = None) -> dict[str, Any]:
    """Train each grove of one ItemBatcher batch, in turn."""
    invocation = Invocation.begin("train_grove", context)
    from groves.steps.train import train_groves

    if not isinstance(event, dict) or not isinstance(event.get("Items"), list):
        raise RequestError("Items", "the event needs Items: a list of grove items (a batch)")
    if not event["Items"]:
        raise RequestError("Items", "the batch has no groves")
    store, (build_id, run_id) = _fields(
        event.get("BatchInput"), "build_id", "run_id", what="BatchInput"
    )
    trained = []
    for meta in train_groves(store, build_id, run_id, event["Items"], invocation):
        trained.append({key: meta[key] for key in GROVE_OUTPUT})  # the rest stays in the store
        log.info(
            "grove %s of %s: %s trees in %.2fs%s",
            meta["grove_id"],
            build_id,
            meta["n_trees"],
            meta["fit_seconds"],
            " (verified file reused)" if meta["reused"] else "",
        )
    return {"groves": trained}


def plan_batch(event: Any, context: Any = None) -> dict[str, Any]:
    invocation = Invocation.begin("plan_batch", context)
    from groves.steps import batch

    store, (request,) = _fields(event, "request")
    record = batch.plan_batch(store, request, invocation)
    log.info(
        "batch %s of %s: %d rows in %d chunks x %d shards of groves",
        record["batch_id"],
        record["build_id"],
        record["n_rows"],
        record["n_chunks"],
        record["n_shards"],
    )
    return batch.state_output(store, record)


def predict_chunk(event: Any, context: Any = None) -> dict[str, Any]:
    invocation = Invocation.begin("predict_chunk", context)
    from groves.steps import batch

    store, (build_id, batch_id, chunk) = _fields(event, "build_id", "batch_id", "chunk")
    return batch.predict_chunk(store, build_id, batch_id, chunk, invocation)


def assemble_predictions(event: Any, context: Any = None) -> dict[str, Any]:
    invocation = Invocation.begin("assemble_predictions", context)
    from groves.steps import batch

    store, (build_id, batch_id) = _fields(event, "build_id", "batch_id")
    return batch.assemble(store, build_id, batch_id, invocation)


def plan_search(event: Any, context: Any = None) -> dict[str, Any]:
    invocation = Invocation.begin("plan_search", context)
    from groves.steps import search

    store, (request,) = _fields(event, "request")
    return search.state_output(store, search.plan_search(store, request, invocation))


def score_candidates(event: Any, context: Any = None) -> dict[str, Any]:
    invocation = Invocation.begin("score_candidates", context)
    from groves.steps import search

    store, (build_id, search_id) = _fields(event, "build_id", "search_id")
    search_id = check_run_id(search_id, "search_id")
    return search.score_candidates(store, build_id, search_id, invocation)


def score_best(event: Any, context: Any = None) -> dict[str, Any]:
    invocation = Invocation.begin("score_best", context)
    from groves.steps import search

    store, (build_id, search_id) = _fields(event, "build_id", "search_id")
    latest = event.get("latest")
    if latest is not None and not isinstance(latest, bool):
        raise RequestError("latest", f"{latest!r} must be true or false")
    search_id = check_run_id(search_id, "search_id")
    return search.score_best(store, build_id, search_id, invocation, latest)


def merge(event: Any, context: Any = None) -> dict[str, Any]:
    invocation = Invocation.begin("merge", context)
    from groves.steps.commit import merge_build

    store, (build_id, run_id) = _fields(event, "build_id", "run_id")
    latest = event.get("latest", True)
    if not isinstance(latest, bool):
        raise RequestError("latest", f"{latest!r} must be true or false")
    return merge_build(store, build_id, run_id, invocation, latest=latest)


def predict(event: Any, context: Any = None) -> dict[str, Any]:
    invocation = Invocation.begin("predict", context)
    from groves.steps.score import score_build

    store, (build_id,) = _fields(event, "build_id")
    return score_build(store, build_id, event.get("run_id"), invocation)
