"""What a store holds: its builds and their runs, newest first, for ``groves ls``.

Times: ``wall s`` is how long the run took end to end as its steps recorded it (plan, the
groves from the first one's start to the last one's end, merge, scoring); ``cpu s`` is its
groves' fit seconds summed (what one core would have spent fitting them)."""

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
    search_key,
)
from groves.store.codec import get_json
from groves.store.protocol import ArtifactNotFound, Store
from groves.store.records import check_manifest, checked


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
            record = _json(store, latest_key(build_id), "latest") or {}
            latest = record.get("run_id")
            promoted = latest if "promoted" in record else None
        except (CorruptFile, AttributeError) as exc:
            latest = promoted = None
            rows.append(damaged(build_id, "-", exc))
        for run_id in reversed(run_ids(store, build_id)):
            try:
                row = run_row(store, build_id, run_id, latest, promoted)
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


def run_row(
    store: Store,
    build_id: str,
    run_id: str,
    latest: str | None,
    promoted: str | None = None,
) -> dict[str, Any] | None:
    """One run's row, or ``None`` for a folder with neither a manifest nor a plan. A run is
    committed when its manifest exists (as for every reader: ``artifacts.is_committed``),
    whether or not its plan is still there. A search's committed best shows what the search
    measured: the held-out score it read once and the whole search's cost."""
    manifest = _json(store, manifest_key(build_id, run_id), "manifest")
    plan = _json(store, plan_key(build_id, run_id), "plan")
    if plan is None and manifest is None:
        return None
    metrics = _metrics(store, build_id, run_id)
    cost = run_cost(manifest, metrics) if manifest else None
    searched = plan is not None and "search_id" in plan
    score, metric = metrics.get("score"), metrics.get("metric")
    if manifest is not None:
        status = "latest" if run_id == latest else "committed"
        status += " (promoted)" if run_id == promoted else ""
        status += " (search)" if searched else ""  # a search's committed best says so
        result = search_result(store, plan, run_id) if searched and not metrics else None
        if result is not None:
            score, metric, cost = result["test_score"], result["metric"], result["cost"]
    else:
        status = "candidate" if searched else "uncommitted"
    return {
        "build_id": build_id,
        "run_id": run_id,
        "status": status,
        "trees": (manifest or plan)["spec"]["n_trees"],
        "score": score,
        "metric": metric,
        "wall_seconds": wall_seconds(manifest, metrics) if manifest else None,
        "cpu_seconds": (manifest or {}).get("timings", {}).get("fit_seconds_total"),
        "usd": cost["usd"]["total"] if cost else None,
        "created_at": (plan or manifest)["created_at"],
    }


def search_result(store: Store, plan: Any, run_id: str) -> dict[str, Any] | None:
    """The ``result.json`` of the search whose best ``run_id`` is (``None`` while it has none)."""
    key = search_key(
        str(plan.get("search_build", plan["build_id"])), plan["search_id"], "result.json"
    )
    try:
        result = get_json(store, key)
    except ArtifactNotFound:
        return None
    ok = isinstance(result, dict) and result.get("run_id") == run_id
    if ok and isinstance(result.get("test_score"), int | float) and "cost" in result:
        return result
    raise CorruptFile(f"{store.uri}/{key} is not a valid search result for run {run_id}")


def wall_seconds(manifest: dict[str, Any], metrics: dict[str, Any]) -> float | None:
    """The run's steps end to end: plan's and merge's billed time, the groves from the first
    one's start to the last one's end, and scoring's; ``None`` for a run whose groves did not
    record when they ran."""
    usages = [g.get("usage") or {} for g in manifest["groves"]]
    starts = [u.get("started_at") for u in usages]
    ends = [u.get("ended_at") for u in usages]
    if not all(isinstance(t, int | float) for t in [*starts, *ends]):
        return None
    steps = (manifest.get("cost") or {}).get("steps", {})
    serial = sum(steps.get(s, {}).get("billed_seconds", 0) for s in ("plan", "merge"))
    scoring = (metrics.get("usage") or {}).get("billed_ms", 0) / 1000
    return round(max(ends) - min(starts) + serial + scoring, 3)


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
        "wall_seconds": None,
        "cpu_seconds": None,
        "usd": None,
        "created_at": problem,
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as aligned text lines."""
    lines = [
        f"{'build':<20} {'run':<30} {'status':<18} {'trees':>6} {'score':>14} {'wall s':>7} "
        f"{'cpu s':>7} {'cost $':>10}  when"
    ]
    for row in rows:
        score = f"{row['metric']} {row['score']:.4f}" if row["score"] is not None else "-"
        wall, cpu = (
            f"{row[k]:.1f}" if row[k] is not None else "-" for k in ("wall_seconds", "cpu_seconds")
        )
        usd = f"{row['usd']:.6f}" if row["usd"] is not None else "-"
        lines.append(
            f"{row['build_id']:<20} {row['run_id']:<30} {row['status']:<18} {row['trees']:>6} "
            f"{score:>14} {wall:>7} {cpu:>7} {usd:>10}  {row['created_at']}"
        )
    return lines
