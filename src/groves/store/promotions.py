"""``groves promote``: point a build's ``latest.json`` at any committed run (a rollback is a
promote of an older run), and the build's record of every promote.

Semantics, against the rule that ``latest`` only moves forward (``artifacts.advance_latest``):

- A promote is a compare-and-swap on ``latest.json`` like a commit's, and always wins: the
  promoted run becomes ``latest``, and ``latest.json`` records ``promoted: {at, from}``, where
  ``at`` is a run-id-like time drawn inside the swap and ``from`` the run it replaced.
- The promoted ``latest`` is **pinned** against every run that started before the promote: a
  build (or a search's ``commit``) that was already running and commits afterwards is
  committed (its manifest is written, ``--run`` and ``groves promote`` reach it) but does not
  move ``latest``, so a rollback is never silently undone.
- The pin ends with the next promote, or with the commit of a run that started after the
  promote (a new build is a new intent): ``latest`` then moves forward as usual.

Each promote also appends ``<build_id>/promotions/<promotion_id>.json`` (written once, after
the swap; the swap's ``promoted`` keeps the newest promote even if that write never happens):
the build's history, oldest first by id, for ``groves history NAME --promotions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from groves.errors import CorruptFile
from groves.store.artifacts import (
    RUN_ID,
    latest_key,
    latest_record,
    new_run_id,
    promotion_key,
    read_manifest,
)
from groves.store.codec import get_json, json_bytes
from groves.store.protocol import Store
from groves.store.records import checked, stamped


def promote(store: Store, build_id: str, run_id: str) -> dict[str, Any]:
    """Make committed run ``run_id`` the build's ``latest``, pinned until the next promote or
    the commit of a run started after it; the promote's record (``from``: the run it replaced)."""
    manifest = read_manifest(store, build_id, run_id)  # committed, and its manifest is sound
    swapped: dict[str, Any] = {}

    def pin(current: Any) -> dict[str, Any]:
        before = current.get("run_id") if isinstance(current, dict) else None
        swapped.update(at=new_run_id(), before=before if RUN_ID.fullmatch(str(before)) else None)
        record = latest_record(build_id, run_id, manifest["created_at"])
        return {**record, "promoted": {"at": swapped["at"], "from": swapped["before"]}}

    store.update_json(latest_key(build_id), pin)
    record = {
        "build_id": build_id,
        "promotion_id": swapped["at"],
        "run_id": run_id,
        "from": swapped["before"],
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    stored = json_bytes(stamped(record, "promotion"))
    store.create_bytes(promotion_key(build_id, swapped["at"]), stored)
    return record


def promotions(store: Store, build_id: str) -> list[dict[str, Any]]:
    """Every promote of a build, oldest first (each record checked)."""
    found = []
    for name in store.list_children(f"{build_id}/promotions"):
        if not (name.endswith(".json") and RUN_ID.fullmatch(name.removesuffix(".json"))):
            continue
        key = promotion_key(build_id, name.removesuffix(".json"))
        record = checked(get_json(store, key), "promotion", f"{store.uri}/{key}")
        if record["build_id"] != build_id:
            raise CorruptFile(f"{store.uri}/{key} names another build")
        found.append(record)
    return found
