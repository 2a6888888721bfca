"""Where a build's files live, how a run is committed, and how files are verified before use.

Every execution is a *run* with a folder of its own; nothing of one run is written into another's::

    <build_id>/latest.json                              the last committed run (merge, after
                                                        the manifest)
    <build_id>/runs/<run_id>/plan.json                  validated request, grove count, data (plan)
    <build_id>/runs/<run_id>/groves.json                one item per grove (id, seed, trees):
                                                        what the Map.s ItemReader reads (plan)
    <build_id>/runs/<run_id>/data/rows_NNNNN.bin        the prepared training rows, written once
                        .../rows_NNNNN.index            by plan: shards of stripes and each
                                                        stripe's sha256 (groves.data.shards), of
                                                        which each grove reads its sample
    <build_id>/runs/<run_id>/data/X_test.npy, y_test.npy  the held-out rows (groves, scoring)
    <build_id>/runs/<run_id>/groves/grove_NNNNN.trees   a fitted grove as data, whose loading
                                                        runs no code (train_grove, first;
                                                        groves.forest.format)
    <build_id>/runs/<run_id>/groves/grove_NNNNN.votes.npy.lz4  its summed votes on the test
                                                        rows (.npy in an lz4 frame)
    <build_id>/runs/<run_id>/groves/grove_NNNNN.json    its metadata with the files' sha256 and
                                                        size (train_grove, last: the grove's commit)
    <build_id>/runs/<run_id>/manifest.json              every grove's sha256 and size (merge, from
                                                        the groves' metadata: the run is
                                                        *committed* once it exists; its groves
                                                        are the model, groves.forest.loading)
    <build_id>/runs/<run_id>/metrics.json               held-out scores (predict, after the commit)
    <build_id>/promotions/<promotion_id>.json           one record per ``groves promote``
                                                        (append-only; ``store.promotions``)

Batch predictions of new rows (``groves predict``) have folders of their own beside the runs::

    <build_id>/predictions/<batch_id>/batch.json        the validated request, the run it uses,
                                                        the input's shape and sha256 (plan_batch)
    <build_id>/predictions/<batch_id>/X.npy             the input rows as float32, in the training
                                                        columns' order (plan_batch)
    <build_id>/predictions/<batch_id>/keep.arrow        the input's columns to carry into the output
                                                        (Arrow IPC; plan_batch, with ``keep``)
    <build_id>/predictions/<batch_id>/chunks.json       one item per tile: a chunk of rows and a
                                                        shard of groves (plan_batch)
    <build_id>/predictions/<batch_id>/chunks/chunk_NNNNN.shard_MMMMM.votes.npy, .json
                                                        the tile's summed votes (its shard's
                                                        trees on its rows) and their sha256
                                                        (predict_chunk; the .json last)

The Distributed Map's ResultWriter writes each Map Run's files (``manifest.json``,
``SUCCEEDED_0.json``, ``FAILED_0.json``, ``PENDING_0.json``) to ``map-runs/<map run id>/`` at the
top of the store's bucket: its prefix is fixed in the definition, and the run's output names the
manifest (``map_run.ResultWriterDetails``).

Readers derive every key from the build and run ids themselves, never from stored metadata, and
check a file's size and sha256 against what its writer recorded **before** reading it: a
swapped, truncated or planted file is refused. No file in a store is a pickle: grove files are
arrays read as data, so even a writer who forges a file and its records cannot run code in a
reader.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from groves.errors import BuildError, CorruptFile, RequestError
from groves.store.codec import get_json, json_bytes, parse_json
from groves.store.protocol import ArtifactNotFound, Store
from groves.store.records import check_format, check_manifest, checked, stamped

BUILD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
RUN_ID = re.compile(r"\d{8}T\d{9}Z-[0-9a-f]{8}")
RUN_ID_FORM = "a run id such as 20261125T120301123Z-1a2b3c4d"
GROVE_SUFFIX = "trees"  # a grove file: grove_NNNNN.trees
VOTES_SUFFIX = "votes.npy.lz4"  # its summed votes on the held-out rows, an lz4-framed .npy


def new_run_id() -> str:
    """A run id that sorts by start time (UTC, to the millisecond) and is unique."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{secrets.token_hex(4)}"


def check_build_id(request: dict[str, Any]) -> str:
    if "build_id" not in request:
        raise RequestError("build_id", "required: a name like 'digits-100'")
    build_id = request["build_id"]
    if not isinstance(build_id, str) or not BUILD_ID.fullmatch(build_id):
        raise RequestError(
            "build_id",
            f"{build_id!r} must be 1-80 characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit",
        )
    return build_id


def check_run_id(run_id: Any, field: str = "run_id") -> str:
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise RequestError(field, f"{run_id!r} is not {RUN_ID_FORM}")
    return run_id


def runs_prefix(build_id: str) -> str:
    return f"{build_id}/runs/"


def run_prefix(build_id: str, run_id: str) -> str:
    return f"{runs_prefix(build_id)}{run_id}"


def latest_key(build_id: str) -> str:
    return f"{build_id}/latest.json"


def plan_key(build_id: str, run_id: str) -> str:
    return f"{run_prefix(build_id, run_id)}/plan.json"


def items_key(build_id: str, run_id: str) -> str:
    return f"{run_prefix(build_id, run_id)}/groves.json"


def batch_key(build_id: str, batch_id: str, name: str) -> str:
    return f"{build_id}/predictions/{batch_id}/{name}"


def chunk_key(build_id: str, batch_id: str, chunk_id: int, shard: int, suffix: str) -> str:
    """A tile's file: chunk ``chunk_id`` of the rows, shard ``shard`` of the groves."""
    return batch_key(build_id, batch_id, f"chunks/chunk_{chunk_id:05d}.shard_{shard:05d}.{suffix}")


def data_prefix(build_id: str, run_id: str) -> str:
    return f"{run_prefix(build_id, run_id)}/data/"


def data_key(build_id: str, run_id: str, name: str) -> str:
    return f"{data_prefix(build_id, run_id)}{name}.npy"


def groves_prefix(build_id: str, run_id: str) -> str:
    return f"{run_prefix(build_id, run_id)}/groves/"


def grove_key(build_id: str, run_id: str, grove_id: int, suffix: str) -> str:
    return f"{groves_prefix(build_id, run_id)}grove_{grove_id:05d}.{suffix}"


def manifest_key(build_id: str, run_id: str) -> str:
    return f"{run_prefix(build_id, run_id)}/manifest.json"


def metrics_key(build_id: str, run_id: str) -> str:
    return f"{run_prefix(build_id, run_id)}/metrics.json"


def search_key(build_id: str, search_id: str, name: str) -> str:
    """A search's file (``groves.steps.search``)."""
    return f"{build_id}/searches/{search_id}/{name}"


def promotion_key(build_id: str, promotion_id: str) -> str:
    """A promote's record (``groves.store.promotions``)."""
    return f"{build_id}/promotions/{promotion_id}.json"


# ---- integrity -----------------------------------------------------------------------------


def digest(blob: bytes) -> dict[str, Any]:
    """What a writer records of a file so that a reader can verify it: sha256 and size."""
    return {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}


def file_digest(path: Path) -> dict[str, Any]:
    """``digest`` of a file, read in chunks."""
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return {"sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def read_verified(store: Store, key: str, expected: Mapping[str, Any], what: str) -> bytes:
    """The bytes at ``key`` if their size and sha256 are the recorded ones; else a
    ``BuildError`` naming ``what`` (e.g. ``grove 3``)."""
    try:
        blob = store.get_bytes(key)
    except ArtifactNotFound as exc:
        raise BuildError(f"{what}: {key} is missing") from exc
    if len(blob) != expected.get("bytes"):
        raise BuildError(
            f"{what}: {key} has {len(blob)} bytes but {expected.get('bytes')} were recorded "
            "(truncated or replaced); it was not loaded"
        )
    if digest(blob)["sha256"] != expected.get("sha256"):
        raise BuildError(
            f"{what}: {key} does not match its recorded sha256 (corrupt or replaced); "
            "it was not loaded"
        )
    return blob


def read_record(store: Store, key: str, build_id: str, kind: str, record_id: str) -> Any:
    """The JSON record of a build's batch or search (``kind``, its id field ``<kind>_id``),
    which must name that build and that id."""
    try:
        record = get_json(store, key)
    except ArtifactNotFound as exc:
        raise BuildError(f"build {build_id!r} has no {kind} {record_id}") from exc
    check_format(record, kind, f"{store.uri}/{key}")
    if not isinstance(record, dict) or (record.get("build_id"), record.get(f"{kind}_id")) != (
        build_id,
        record_id,
    ):
        raise BuildError(f"the record of {kind} {record_id} names another {kind}")
    return record


# ---- runs ----------------------------------------------------------------------------------


def run_ids(store: Store, build_id: str) -> list[str]:
    """Every run of a build that has a folder, oldest first."""
    return sorted(n for n in store.list_children(runs_prefix(build_id)) if RUN_ID.fullmatch(n))


def is_committed(store: Store, build_id: str, run_id: str) -> bool:
    return store.exists(manifest_key(build_id, run_id))


def commit(
    store: Store, build_id: str, run_id: str, manifest: dict[str, Any], latest: bool = True
) -> bool:
    """Write the run's manifest (its commit mark) unless it exists (a committed run is never
    rewritten), then, if ``latest``, point ``latest.json`` at the run unless it names a newer
    one or a promote pinned it (``advance_latest``). Whether ``latest`` now names the run."""
    store.create_bytes(manifest_key(build_id, run_id), json_bytes(stamped(manifest, "manifest")))
    return latest and advance_latest(store, build_id, run_id, manifest["created_at"])


def latest_record(build_id: str, run_id: str, committed_at: str) -> dict[str, Any]:
    """What ``latest.json`` holds for a committed run (a promote adds ``promoted``)."""
    latest = {
        "build_id": build_id,
        "run_id": run_id,
        "committed_at": committed_at,
        "manifest": manifest_key(build_id, run_id),
    }
    return stamped(latest, "latest")


def pinned_until(latest: Any) -> str:
    """The promote mark of a ``latest.json`` (a run-id-like time, ``""`` if none): commits of
    runs that started before it do not move ``latest``."""
    promoted = latest.get("promoted") if isinstance(latest, dict) else None
    return str(promoted.get("at", "")) if isinstance(promoted, dict) else ""


def advance_latest(store: Store, build_id: str, run_id: str, committed_at: str) -> bool:
    """Point ``latest.json`` at ``run_id`` if it names no run, or an older one that no promote
    pinned after ``run_id`` started (run ids sort by start time): ``latest`` only moves forward,
    also when two builds commit at once (a compare-and-swap), and a commit never undoes a
    promote made after its run started (``groves.store.promotions``). Whether it now names
    ``run_id``."""

    def forward(current: Any) -> dict[str, Any] | None:
        if isinstance(current, dict) and (
            str(current.get("run_id", "")) >= run_id or pinned_until(current) >= run_id
        ):
            return None
        return latest_record(build_id, run_id, committed_at)

    return store.update_json(latest_key(build_id), forward)["run_id"] == run_id


def latest_run(store: Store, build_id: str) -> str | None:
    """The run ``latest.json`` names, if any."""
    try:
        return read_latest(store, build_id)
    except ArtifactNotFound:
        return None


def read_latest(store: Store, build_id: str) -> str:
    """The run a build's ``latest.json`` names (checked: it names this build and a run id)."""
    return read_latest_record(store, build_id)["run_id"]


def read_latest_record(store: Store, build_id: str) -> dict[str, Any]:
    """A build's ``latest.json``, checked: it names this build and a run id."""
    key = latest_key(build_id)
    latest = checked(get_json(store, key), "latest", f"{store.uri}/{key}")
    if latest["build_id"] != build_id:
        raise CorruptFile(f"{store.uri}/{key} names another build")
    return latest


def is_finished(store: Store, build_id: str, run_id: str) -> bool:
    """Committed, ``latest`` names it or a newer run (or a promote pinned ``latest`` after the
    run started, so its commit rightly left ``latest`` alone), and scored if its request asked
    to be (``predict``): nothing of the run is left to do (a run stopped while scoring
    resumes)."""
    try:
        latest = read_latest_record(store, build_id)
    except ArtifactNotFound:
        return False
    moved = max(latest["run_id"], pinned_until(latest)) >= run_id
    if not (is_committed(store, build_id, run_id) and moved):
        return False
    try:
        asked = bool(read_plan(store, build_id, run_id)["spec"].get("predict"))
    except ArtifactNotFound:
        return True
    return not asked or store.exists(metrics_key(build_id, run_id))


def latest_uncommitted(store: Store, build_id: str) -> str | None:
    """The newest run of a build that has a plan but is not finished (no manifest yet, or a
    manifest but ``latest`` still names an older run: its commit broke off), leaving out a
    search's candidates (a search commits its best candidate itself; resuming a loser would
    commit it)."""
    for run_id in reversed(run_ids(store, build_id)):
        key = plan_key(build_id, run_id)
        if not store.exists(key) or is_finished(store, build_id, run_id):
            continue
        if "search_id" not in get_json(store, key):
            return run_id
    return None


def committed_run(store: Store, build_id: str, run_id: str | None = None) -> str:
    """``run_id`` if that run is committed, or by default the run ``latest.json`` names."""
    if run_id is None:
        try:
            run_id = read_latest(store, build_id)
        except ArtifactNotFound as exc:
            raise BuildError(f"build {build_id!r} has no committed run in {store.uri}") from exc
    check_run_id(run_id)
    if not is_committed(store, build_id, run_id):
        raise BuildError(f"run {run_id} of build {build_id!r} is not committed (no manifest)")
    return run_id


def read_plan(store: Store, build_id: str, run_id: str) -> dict[str, Any]:
    """The stored plan of a run."""
    return plan_and_digest(store, build_id, run_id)[0]


def plan_and_digest(store: Store, build_id: str, run_id: str) -> tuple[dict[str, Any], Any]:
    """The stored plan of a run and the ``digest`` of its bytes (merge records it in the
    manifest, so a committed run's plan is verified like its groves)."""
    key = plan_key(build_id, check_run_id(run_id))
    blob = store.get_bytes(key)
    plan = checked(parse_json(blob, f"{store.uri}/{key}"), "plan", f"{store.uri}/{key}")
    if (plan["build_id"], plan["run_id"]) != (build_id, run_id):
        raise BuildError(f"the plan of run {run_id} of build {build_id!r} names another run")
    return plan, digest(blob)


def read_committed_plan(store: Store, manifest: dict[str, Any]) -> dict[str, Any]:
    """The plan of a committed run, verified against its manifest: by the sha256 the manifest
    records, or (runs committed before it did) by the data and request the manifest copied
    from it. An edited plan (swapped classes or categories) is refused, never used."""
    build_id, run_id = manifest["build_id"], manifest["run_id"]
    what = f"run {run_id} of build {build_id!r}"
    try:
        plan, found = plan_and_digest(store, build_id, run_id)
    except ArtifactNotFound as exc:
        raise BuildError(f"{what}: its plan.json is missing") from exc
    recorded = manifest.get("plan")
    if recorded is not None:
        same = found == {"sha256": recorded.get("sha256"), "bytes": recorded.get("bytes")}
    else:
        same = (plan.get("data"), plan.get("spec")) == (manifest["data"], manifest["spec"])
    if not same:
        raise BuildError(
            f"{what}: its plan.json is not the one it was committed with (edited or replaced); "
            "it was not used"
        )
    return plan


def read_manifest(store: Store, build_id: str, run_id: str | None = None) -> dict[str, Any]:
    """The manifest of a committed run (by default the latest)."""
    run_id = committed_run(store, build_id, run_id)
    key = manifest_key(build_id, run_id)
    manifest = check_manifest(get_json(store, key), f"{store.uri}/{key}")
    if (manifest["build_id"], manifest["run_id"]) != (build_id, run_id):
        raise BuildError(f"the manifest of run {run_id} of build {build_id!r} names another run")
    return manifest
