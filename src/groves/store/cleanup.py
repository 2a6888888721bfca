"""``groves rm`` and ``groves gc``: delete a build's runs (or the whole build) from its store,
client-side (the deployed functions may not delete: ``template.yaml``).

Never deleted: the run ``latest.json`` names (``rm --run`` refuses it; promote another run
first), and any run that work in progress uses:

- a batch prediction (``predictions/<batch_id>/``) uses the run its ``batch.json`` names;
- a search (``searches/<search_id>/``, in any build) uses every candidate's run;
- a build being trained uses its own run.

Work has *ended* once it has a recorded end: a local execution's stored history (written when
it ends, however it ends), a search's ``result.json``, a run's manifest. Deployed executions
store no history, so work without a recorded end counts as in progress for ``STALE_HOURS``
after it was created, then as abandoned.

A run's ``data/`` folder stays while a kept run shares its prepared rows (a search's
candidates share the first candidate's: ``plan.data.prepared_run``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from groves.errors import RequestError
from groves.store.artifacts import (
    RUN_ID,
    batch_key,
    data_prefix,
    is_committed,
    latest_run,
    manifest_key,
    plan_key,
    run_ids,
    run_prefix,
    search_key,
)
from groves.store.codec import get_json
from groves.store.protocol import ArtifactNotFound, Store

STALE_HOURS = 48  # work with no recorded end is taken as abandoned after this long


@dataclass
class Removed:
    """What a removal deleted: runs, files and bytes, and the runs whose rows stayed."""

    build_id: str
    runs: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    rows_kept: list[str] = field(default_factory=list)


def _recent(created_at: Any, now: datetime) -> bool:
    try:
        created = datetime.fromisoformat(str(created_at))
    except ValueError:
        return True  # unreadable: err on the side of keeping
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return now - created < timedelta(hours=STALE_HOURS)


def _record(store: Store, key: str) -> dict[str, Any] | None:
    try:
        found = get_json(store, key)
    except (ArtifactNotFound, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _has_history(store: Store, folder: str) -> bool:
    return any(n.endswith(".json") for n in store.list_children(f"{folder}/history"))


def in_use(store: Store, build_id: str, now: datetime | None = None) -> dict[str, str]:
    """Every run of ``build_id`` that work in progress uses, and what uses it."""
    now = now or datetime.now(UTC)
    used: dict[str, str] = {}
    for batch_id in store.list_children(f"{build_id}/predictions"):
        record = _record(store, batch_key(build_id, batch_id, "batch.json"))
        folder = f"{build_id}/predictions/{batch_id}"
        if record and not _has_history(store, folder) and _recent(record.get("created_at"), now):
            used.setdefault(str(record.get("run_id")), f"batch prediction {batch_id} in progress")
    for owner in store.list_children(""):
        for search_id in store.list_children(f"{owner}/searches"):
            record = _record(store, search_key(owner, search_id, "search.json"))
            if not record or record.get("runs_build", owner) != build_id:
                continue
            ended = store.exists(search_key(owner, search_id, "result.json"))
            ended = ended or _has_history(store, f"{owner}/searches/{search_id}")
            if not ended and _recent(record.get("created_at"), now):
                for candidate in record.get("candidates", []):
                    used.setdefault(str(candidate.get("run_id")), f"search {search_id} in progress")
    for run_id in run_ids(store, build_id):
        plan = _record(store, plan_key(build_id, run_id))
        if not plan or "search_id" in plan or is_committed(store, build_id, run_id):
            continue
        ended = _has_history(store, run_prefix(build_id, run_id))
        if not ended and _recent(plan.get("created_at"), now):
            used.setdefault(run_id, "being trained (no recorded end yet)")
    return used


def _shared_rows(store: Store, build_id: str, kept: set[str]) -> set[str]:
    """Runs whose ``data/`` a kept run reads (``prepared_run``)."""
    shared = set()
    for run_id in kept:
        plan = _record(store, plan_key(build_id, run_id)) or {}
        prepared = (plan.get("data") or {}).get("prepared_run")
        if isinstance(prepared, str) and prepared != run_id:
            shared.add(prepared)
    return shared


def _delete_runs(store: Store, build_id: str, doomed: list[str], kept: set[str]) -> Removed:
    removed = Removed(build_id)
    shared = _shared_rows(store, build_id, kept)
    for run_id in doomed:
        sizes = store.list_sizes(f"{run_prefix(build_id, run_id)}/")
        if run_id in shared:  # its rows stay for the runs that share them
            rows = data_prefix(build_id, run_id)
            sizes = {k: v for k, v in sizes.items() if not k.startswith(rows)}
            removed.rows_kept.append(run_id)
        if not sizes:
            continue
        # the manifest (the commit mark) goes first, so a half-removed run reads as uncommitted
        keys = sorted(sizes, key=lambda k: k != manifest_key(build_id, run_id))
        removed.files += store.delete(keys)
        removed.bytes += sum(sizes.values())
        removed.runs.append(run_id)
    return removed


def remove_run(store: Store, build_id: str, run_id: str) -> Removed:
    """Delete one run; a ``RequestError`` naming ``--run`` for the latest, a run in use, or no
    such run."""
    if not RUN_ID.fullmatch(run_id) or run_id not in run_ids(store, build_id):
        raise RequestError("--run", f"build {build_id!r} has no run {run_id} in {store.uri}")
    if run_id == latest_run(store, build_id):
        raise RequestError(
            "--run",
            f"run {run_id} is build {build_id!r}'s latest: promote another run first "
            f"(groves promote {build_id} --run RUN), or remove the build (groves rm {build_id})",
        )
    used = in_use(store, build_id)
    if run_id in used:
        raise RequestError("--run", f"run {run_id} is in use: {used[run_id]}")
    kept = set(run_ids(store, build_id)) - {run_id}
    return _delete_runs(store, build_id, [run_id], kept)


def remove_build(store: Store, build_id: str) -> Removed:
    """Delete every file of a build (runs, batches, searches, promotions, ``latest.json``);
    a ``RequestError`` naming ``NAME`` while work in progress uses any of its runs."""
    if "runs" not in store.list_children(build_id):  # not a build (map-runs/, outputs/, ...)
        raise RequestError("NAME", f"there is no build {build_id!r} in {store.uri}")
    sizes = store.list_sizes(f"{build_id}/")
    used = in_use(store, build_id)
    if used:
        run_id, why = sorted(used.items())[0]
        raise RequestError("NAME", f"run {run_id} of build {build_id!r} is in use: {why}")
    removed = Removed(build_id, runs=run_ids(store, build_id), bytes=sum(sizes.values()))
    latest = f"{build_id}/latest.json"  # first: the build stops naming a model at once
    removed.files = store.delete(sorted(sizes, key=lambda k: k != latest))
    return removed


def collect(store: Store, build_id: str, keep: int) -> Removed:
    """Delete every run of a build but the latest, the ``keep`` newest committed runs and the
    runs work in progress uses (uncommitted runs, a search's losing candidates, stopped builds
    go too)."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise RequestError("--keep", f"{keep!r} must be a whole number >= 0")
    runs = run_ids(store, build_id)
    if not runs:
        raise RequestError("NAME", f"build {build_id!r} has no runs in {store.uri}")
    committed = [r for r in runs if is_committed(store, build_id, r)]
    kept = set(committed[len(committed) - keep :] if keep else [])
    kept |= {r for r in [latest_run(store, build_id)] if r} | set(in_use(store, build_id))
    doomed = [r for r in runs if r not in kept]
    return _delete_runs(store, build_id, doomed, kept)
