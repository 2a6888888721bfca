"""``groves rm`` and ``groves gc``: delete a build's runs (or the whole build) from its store,
client-side (the deployed functions may not delete: ``template.yaml``), with the folders of its
batch predictions and searches that have ended.

Never deleted: the run ``latest.json`` names (``rm --run`` refuses it; promote another run
first: a promote's pin is on that run), and any run or folder that work in progress uses:

- a batch prediction (``predictions/<batch_id>/``) uses its folder and the run its
  ``batch.json`` names;
- a search (``searches/<search_id>/``, in any build) uses its folder and every candidate's run;
- a build being trained uses its own run.

Work has *ended* once it has a recorded end: a local execution's stored history (written when
it ends, however it ends), a search's ``result.json``, a run's manifest. Deployed executions
store no history, so work without a recorded end counts as in progress for ``STALE_HOURS``
after it was created (its record's ``created_at``, else the time its id starts with), then as
abandoned.

``gc`` deletes every ended batch prediction's folder (its input rows and votes: the output file
is elsewhere) and every ended search's folder once none of its candidates' runs is left (the
report and ``groves ls`` of a kept best read its search's folder); ``rm --run`` deletes those
that served only that run. A run's ``data/`` folder stays while a kept run shares its prepared
rows (a search's candidates share the first candidate's: ``plan.data.prepared_run``). With
``dry_run`` nothing is deleted: the answer says what would be, and its bytes.
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
KINDS = {"run": "runs", "batch prediction": "predictions", "search": "searches"}  # its folder


@dataclass(frozen=True)
class Work:
    """A batch prediction's or a search's folder, the runs it uses, and whether it ended."""

    kind: str  # "batch prediction" or "search"
    work_id: str
    folder: str
    runs_build: str  # the build whose runs it uses
    runs: tuple[str, ...]
    ended: bool


@dataclass
class Removed:
    """What a removal deleted (with ``dry_run``: would delete): each run's, ended batch
    prediction's and search's bytes, files and bytes in all, and the runs whose rows
    stayed."""

    build_id: str
    dry_run: bool = False
    items: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, id, bytes)
    files: int = 0
    bytes: int = 0
    rows_kept: list[str] = field(default_factory=list)

    def ids(self, kind: str) -> list[str]:
        """The ids of the items of ``kind`` (``run``, ``batch prediction``, ``search``)."""
        return [item_id for found, item_id, _ in self.items if found == kind]

    @property
    def runs(self) -> list[str]:
        return self.ids("run")


def _recent(created_at: Any, now: datetime) -> bool:
    try:
        created = datetime.fromisoformat(str(created_at))
    except ValueError:
        return True  # unreadable: err on the side of keeping
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return now - created < timedelta(hours=STALE_HOURS)


def _id_time(work_id: str) -> str:
    """When a run, batch or search id was made (ids start with their UTC time)."""
    try:
        return datetime.strptime(work_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return ""  # unreadable: recent


def _record(store: Store, key: str) -> dict[str, Any]:
    """A JSON record, or ``{}`` when it is missing or not an object."""
    try:
        found = get_json(store, key)
    except (ArtifactNotFound, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _has_history(store: Store, folder: str) -> bool:
    return any(n.endswith(".json") for n in store.list_children(f"{folder}/history"))


def _ended(store: Store, folder: str, record: dict[str, Any], work_id: str, now: datetime) -> bool:
    created = record.get("created_at", _id_time(work_id))
    return _has_history(store, folder) or not _recent(created, now)


def batches(store: Store, build_id: str, now: datetime) -> list[Work]:
    """A build's batch predictions; one without ``batch.json`` yet is being planned (until it
    is stale) and uses no run yet."""
    found = []
    for batch_id in store.list_children(f"{build_id}/{KINDS['batch prediction']}"):
        if not RUN_ID.fullmatch(batch_id):
            continue
        folder = f"{build_id}/{KINDS['batch prediction']}/{batch_id}"
        record = _record(store, batch_key(build_id, batch_id, "batch.json"))
        ended = _ended(store, folder, record, batch_id, now)
        runs = (str(record["run_id"]),) if "run_id" in record else ()
        found.append(Work("batch prediction", batch_id, folder, build_id, runs, ended))
    return found


def searches(store: Store, owner: str, now: datetime) -> list[Work]:
    """The searches in a build's folder (their candidates' runs are ``runs_build``'s)."""
    found = []
    for search_id in store.list_children(f"{owner}/{KINDS['search']}"):
        if not RUN_ID.fullmatch(search_id):
            continue
        folder = f"{owner}/{KINDS['search']}/{search_id}"
        record = _record(store, search_key(owner, search_id, "search.json"))
        ended = store.exists(search_key(owner, search_id, "result.json"))
        ended = ended or _ended(store, folder, record, search_id, now)
        candidates = record.get("candidates")
        runs = tuple(
            str(c.get("run_id"))
            for c in (candidates if isinstance(candidates, list) else [])
            if isinstance(c, dict)
        )
        runs_build = str(record.get("runs_build", owner))
        found.append(Work("search", search_id, folder, runs_build, runs, ended))
    return found


def in_use(store: Store, build_id: str, now: datetime | None = None) -> dict[str, str]:
    """Every run of ``build_id`` that work in progress uses, and what uses it."""
    now = now or datetime.now(UTC)
    used: dict[str, str] = {}
    work = batches(store, build_id, now)
    for owner in store.list_children(""):
        work += [s for s in searches(store, owner, now) if s.runs_build == build_id]
    for item in work:
        for run_id in item.runs if not item.ended else ():
            used.setdefault(run_id, f"{item.kind} {item.work_id} in progress")
    for run_id in run_ids(store, build_id):
        plan = _record(store, plan_key(build_id, run_id))
        if not plan or "search_id" in plan or is_committed(store, build_id, run_id):
            continue
        ended = _has_history(store, run_prefix(build_id, run_id))
        if not ended and _recent(plan.get("created_at"), now):
            used.setdefault(run_id, "being trained (no recorded end yet)")
    return used


def ended_work(
    store: Store, build_id: str, remaining: set[str], now: datetime, run_id: str | None = None
) -> list[Work]:
    """The build's ended batch predictions and searches whose folders may go when only the
    runs ``remaining`` of it stay: every batch (with ``run_id``: those of that run), and every
    search none of whose candidates' runs is left (with ``run_id``: of which it was one)."""
    found = []
    for item in batches(store, build_id, now) + searches(store, build_id, now):
        if not item.ended or (run_id is not None and run_id not in item.runs):
            continue
        if item.kind == "search":
            own = item.runs_build == build_id
            left = remaining if own else set(run_ids(store, item.runs_build))
            if left.intersection(item.runs):
                continue
        found.append(item)
    return found


def _shared_rows(store: Store, build_id: str, kept: set[str]) -> set[str]:
    """Runs whose ``data/`` a kept run reads (``prepared_run``)."""
    shared = set()
    for run_id in kept:
        prepared = (_record(store, plan_key(build_id, run_id)).get("data") or {}).get(
            "prepared_run"
        )
        if isinstance(prepared, str) and prepared != run_id:
            shared.add(prepared)
    return shared


def _first(keys: dict[str, int], first: str) -> list[str]:
    """The keys, ``first`` first: a run's manifest (its commit mark), so that a half-removed
    run reads as uncommitted; a batch's or search's record, so that a half-removed folder
    reads as abandoned."""
    return sorted(keys, key=lambda k: k != first)


def _remove(
    store: Store,
    build_id: str,
    doomed: list[str],
    kept: set[str],
    work: list[Work],
    dry_run: bool,
) -> Removed:
    """Delete the runs ``doomed`` (the rows of those ``kept`` runs share stay) and the folders
    of ``work``; with ``dry_run``, count them only."""
    removed = Removed(build_id, dry_run)
    shared = _shared_rows(store, build_id, kept)
    for run_id in doomed:
        sizes = store.list_sizes(f"{run_prefix(build_id, run_id)}/")
        if run_id in shared:  # its rows stay for the runs that share them
            rows = data_prefix(build_id, run_id)
            sizes = {k: v for k, v in sizes.items() if not k.startswith(rows)}
            removed.rows_kept.append(run_id)
        _delete(store, removed, "run", run_id, _first(sizes, manifest_key(build_id, run_id)), sizes)
    for item in work:
        sizes = store.list_sizes(f"{item.folder}/")
        record = f"{item.folder}/{'batch' if item.kind == 'batch prediction' else 'search'}.json"
        _delete(store, removed, item.kind, item.work_id, _first(sizes, record), sizes)
    return removed


def _delete(
    store: Store, removed: Removed, kind: str, item_id: str, keys: list[str], sizes: dict[str, int]
) -> None:
    if not keys:
        return
    removed.files += len(keys) if removed.dry_run else store.delete(keys)
    size = sum(sizes[k] for k in keys)
    removed.bytes += size
    removed.items.append((kind, item_id, size))


def remove_run(store: Store, build_id: str, run_id: str, dry_run: bool = False) -> Removed:
    """Delete one run, and the ended batch predictions and searches of it it leaves with no
    run; a ``RequestError`` naming ``--run`` for the latest, a run in use, or no such run."""
    if not RUN_ID.fullmatch(run_id) or run_id not in run_ids(store, build_id):
        raise RequestError("--run", f"build {build_id!r} has no run {run_id} in {store.uri}")
    if run_id == latest_run(store, build_id):
        raise RequestError(
            "--run",
            f"run {run_id} is build {build_id!r}'s latest: promote another run first "
            f"(groves promote {build_id} --run RUN), or remove the build (groves rm {build_id})",
        )
    now = datetime.now(UTC)
    used = in_use(store, build_id, now)
    if run_id in used:
        raise RequestError("--run", f"run {run_id} is in use: {used[run_id]}")
    kept = set(run_ids(store, build_id)) - {run_id}
    work = ended_work(store, build_id, kept, now, run_id)
    return _remove(store, build_id, [run_id], kept, work, dry_run)


def remove_build(store: Store, build_id: str, dry_run: bool = False) -> Removed:
    """Delete every file of a build (runs, batches, searches, promotions, ``latest.json``);
    a ``RequestError`` naming ``NAME`` while work in progress uses any of its runs or is a
    batch prediction or search of it."""
    if "runs" not in store.list_children(build_id):  # not a build (map-runs/, outputs/, ...)
        raise RequestError("NAME", f"there is no build {build_id!r} in {store.uri}")
    now = datetime.now(UTC)
    used = in_use(store, build_id, now)
    if used:
        run_id, why = sorted(used.items())[0]
        raise RequestError("NAME", f"run {run_id} of build {build_id!r} is in use: {why}")
    busy = [
        w for w in batches(store, build_id, now) + searches(store, build_id, now) if not w.ended
    ]
    if busy:
        raise RequestError(
            "NAME", f"{busy[0].kind} {busy[0].work_id} of build {build_id!r} is in progress"
        )
    sizes = store.list_sizes(f"{build_id}/")
    removed = Removed(build_id, dry_run, files=len(sizes), bytes=sum(sizes.values()))
    for kind, folder in KINDS.items():
        for item_id in filter(RUN_ID.fullmatch, store.list_children(f"{build_id}/{folder}")):
            inside = f"{build_id}/{folder}/{item_id}/"
            size = sum(v for k, v in sizes.items() if k.startswith(inside))
            removed.items.append((kind, item_id, size))
    if not dry_run:
        latest = f"{build_id}/latest.json"  # first: the build stops naming a model at once
        removed.files = store.delete(sorted(sizes, key=lambda k: k != latest))
    return removed


def collect(store: Store, build_id: str, keep: int, dry_run: bool = False) -> Removed:
    """Delete every run of a build but the latest, the ``keep`` newest committed runs and the
    runs work in progress uses (uncommitted runs, a search's losing candidates, stopped builds
    go too), and the folders of its ended batch predictions and searches (a search's while
    none of its candidates' runs stays)."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise RequestError("--keep", f"{keep!r} must be a whole number >= 0")
    runs = run_ids(store, build_id)
    if not runs:
        raise RequestError("NAME", f"build {build_id!r} has no runs in {store.uri}")
    now = datetime.now(UTC)
    committed = [r for r in runs if is_committed(store, build_id, r)]
    kept = set(committed[len(committed) - keep :] if keep else [])
    kept |= {r for r in [latest_run(store, build_id)] if r} | set(in_use(store, build_id, now))
    doomed = [r for r in runs if r not in kept]
    work = ended_work(store, build_id, kept & set(runs), now)
    return _remove(store, build_id, doomed, kept, work, dry_run)
