"""What a store holds: its builds and their runs, newest first, for ``groves ls``."""

from __future__ import annotations

from typing import Any

from groves.errors import CorruptFile
from groves.steps.cost import run_cost
from groves.store.artifacts import (
    latest_key,
    manifest_key,
    metrics_key,
    plan_key,
    run_ids,
)
from groves.store.records import check_manifest, checked
from groves.store.storage import ArtifactNotFound, Store, get_json


def _json(store: Store, key: str, kind: str) -> Any:
    """The record at ``key``, checked against its kind's schema, or ``None`` if there is none:
    a damaged record (``null``, say) is a ``CorruptFile``, never taken for a missing one."""
    name = f"{store.uri}/{key}"
    try:
        found = get_json(store, key)
    except ArtifactNotFound:
        return None
    return check_manifest(found, name) if kind == "manifest" else checked(found, kind, name)


def list_runs(store: Store) -> list[dict[str, Any]]:
    """Every run of every build: status (``latest``, ``committed``, ``uncommitted``, or a
    search's ``candidate``; a search's committed best adds `` (search)``), trees, held-out
    score, training seconds, its cost on AWS in dollars (``groves.steps.cost``: as billed, or
    estimated for a local run) and when it was planned. A run (or a build's ``latest.json``)
    whose records are damaged is listed as ``damaged``, naming the file, and every other run is
    listed as usual."""
    rows = []
    for build_id in store.list_children(""):
        if "runs" not in store.list_children(build_id):
            continue  # not a build (map-runs/, outputs/, ...)
        try:
            latest = (_json(store, latest_key(build_id), "latest") or {}).get("run_id")
        except (CorruptFile, AttributeError) as exc:
            latest = None
            rows.append(damaged(build_id, "-", exc))
        for run_id in reversed(run_ids(store, build_id)):
            try:
                row = run_row(store, build_id, run_id, latest)
            except (CorruptFile, KeyError, TypeError, AttributeError) as exc:
                row = damaged(build_id, run_id, exc)
            if row is not None:
                rows.append(row)
    return rows


def _metrics(store: Store, build_id: str, run_id: str) -> dict[str, Any]:
    """A run's metrics.json, ``{}`` if it has none; a damaged one (not an object, say) is a
    ``CorruptFile``: the run is listed as damaged, never as a run without a score."""
    key = metrics_key(build_id, run_id)
    try:
        return checked(get_json(store, key), "metrics", f"{store.uri}/{key}")
    except ArtifactNotFound:
        return {}


def run_row(store: Store, build_id: str, run_id: str, latest: str | None) -> dict[str, Any] | None:
    """One run's row, or ``None`` for a folder with neither a manifest nor a plan. A run is
    committed when its manifest exists (as for every reader: ``artifacts.is_committed``),
    whether or not its plan is still there."""
    manifest = _json(store, manifest_key(build_id, run_id), "manifest")
    plan = _json(store, plan_key(build_id, run_id), "plan")
    if plan is None and manifest is None:
        return None
    metrics = _metrics(store, build_id, run_id)
    cost = run_cost(manifest, metrics) if manifest else None
    searched = plan is not None and "search_id" in plan
    if manifest is not None:  # a search's committed best says so
        status = ("latest" if run_id == latest else "committed") + (" (search)" if searched else "")
    else:
        status = "candidate" if searched else "uncommitted"
    return {
        "build_id": build_id,
        "run_id": run_id,
        "status": status,
        "trees": (manifest or plan)["spec"]["n_trees"],
        "score": metrics.get("score"),
        "metric": metrics.get("metric"),
        "seconds": (manifest or {}).get("timings", {}).get("fit_seconds_total"),
        "usd": cost["usd"]["total"] if cost else None,
        "created_at": (plan or manifest)["created_at"],
    }


def damaged(build_id: str, run_id: str, exc: Exception) -> dict[str, Any]:
    """The row of a run whose records cannot be read: what is wrong in place of when."""
    problem = str(exc) if isinstance(exc, CorruptFile) else f"a record lacks {exc}"
    return {
        "build_id": build_id,
        "run_id": run_id,
        "status": "damaged",
        "trees": "-",
        "score": None,
        "metric": None,
        "seconds": None,
        "usd": None,
        "created_at": problem,
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as aligned text lines."""
    lines = [
        f"{'build':<20} {'run':<30} {'status':<18} {'trees':>6} {'score':>14} {'fit s':>7} "
        f"{'cost $':>10}  when"
    ]
    for row in rows:
        score = f"{row['metric']} {row['score']:.4f}" if row["score"] is not None else "-"
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else "-"
        usd = f"{row['usd']:.6f}" if row["usd"] is not None else "-"
        lines.append(
            f"{row['build_id']:<20} {row['run_id']:<30} {row['status']:<18} {row['trees']:>6} "
            f"{score:>14} {seconds:>7} {usd:>10}  {row['created_at']}"
        )
    return lines
