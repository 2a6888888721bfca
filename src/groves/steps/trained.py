"""The groves a run trained, as train_grove stored them: each one's metadata read and checked
against the run's plan (merge commits from it; a search scores its candidates from it), and each
one's summed votes on the held-out rows, every file verified before it is read (scoring, and a
search's validation scores)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from groves.errors import BuildError, CorruptFile
from groves.steps.planned import n_groves, planned_groves
from groves.store.artifacts import VOTES_SUFFIX, grove_key, read_verified
from groves.store.codec import get_json, load_npy_lz4
from groves.store.protocol import READ_THREADS, ArtifactNotFound, Store
from groves.store.records import checked

CONSISTENT_FIELDS = ("split_fingerprint", "n_features", "classes", "sklearn_version")


def check_groves(plan: dict[str, Any], metas: list[dict[str, Any]]) -> None:
    """Every grove is this run's, as planned, and trained on the same data and classes."""
    first = metas[0]
    for planned, meta in zip(planned_groves(plan["spec"]), metas, strict=True):
        gid = planned["grove_id"]
        if (meta.get("build_id"), meta.get("run_id")) != (plan["build_id"], plan["run_id"]):
            raise BuildError(
                f"grove {gid} belongs to run {meta.get('run_id')}, not {plan['run_id']}"
            )
        if (meta["grove_id"], meta["seed"], meta["n_trees"]) != (
            gid,
            planned["seed"],
            planned["n_trees"],
        ):
            raise BuildError(
                f"grove {gid} has seed/trees {meta['seed']}/{meta['n_trees']}, "
                f"planned {planned['seed']}/{planned['n_trees']}"
            )
        for field in CONSISTENT_FIELDS:
            if meta[field] != first[field]:
                raise BuildError(
                    f"grove {gid} has {field} {meta[field]!r} but grove "
                    f"{first['grove_id']} has {first[field]!r}"
                )
    if first["split_fingerprint"] != plan["data"]["split_fingerprint"]:
        raise BuildError("the groves were trained on another split than the plan's")


def read_grove_metas(store: Store, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Each planned grove's metadata, read in parallel threads (S3 reads wait on the network);
    a missing grove fails the whole merge."""
    build_id, run_id = plan["build_id"], plan["run_id"]
    count = n_groves(plan["spec"])

    def read(gid: int) -> dict[str, Any] | None:
        key = grove_key(build_id, run_id, gid, "json")
        try:
            meta = get_json(store, key)
        except ArtifactNotFound:
            return None
        except ValueError as exc:
            raise BuildError(f"grove {gid}: {key} is not JSON") from exc
        try:
            return checked(meta, "grove", key)
        except CorruptFile as exc:
            raise BuildError(f"grove {gid}: {exc}") from exc

    with ThreadPoolExecutor(READ_THREADS) as pool:
        found = list(pool.map(read, range(count)))
    missing = [gid for gid, meta in enumerate(found) if meta is None]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise BuildError(
            f"{len(missing)} of {count} planned groves of run {run_id} of build "
            f"{build_id!r} are missing: {shown}; no model was written"
        )
    return [meta for meta in found if meta is not None]


def stored_votes(
    store: Store, build_id: str, run_id: str, records: list[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Each grove's record with its summed votes on the run's held-out rows, in the records'
    order; every votes file is checked against its record (size, sha256) before it is read,
    and the files are read in threads (S3 reads wait on the network)."""

    def read(record: dict[str, Any]) -> bytes:
        key = grove_key(build_id, run_id, record["grove_id"], VOTES_SUFFIX)
        return read_verified(store, key, record["votes"], f"grove {record['grove_id']}")

    with ThreadPoolExecutor(READ_THREADS) as pool:
        blobs = list(pool.map(read, records))
    for record, blob in zip(records, blobs, strict=True):
        yield record, load_npy_lz4(blob)
