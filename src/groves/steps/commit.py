"""Commit a run from its groves' metadata, or refuse: every planned grove is this run's, as
planned, trained on the same data, and its files are in the store with the sizes it recorded.

Committing reads each grove's small metadata and one listing of the groves' folder, never a
tree: its cost does not grow with the forest's bytes. The committed run is its manifest and its
groves; ``groves.forest.loading`` puts them together as one plain scikit-learn forest (readers
check every grove's sha256 against the manifest before they read it)."""

from __future__ import annotations

import hashlib
import platform
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from groves import __version__
from groves.errors import BuildError
from groves.forest.format import FORMAT
from groves.steps.cost import Invocation, training_cost
from groves.steps.trained import check_groves, read_grove_metas
from groves.store.artifacts import (
    GROVE_SUFFIX,
    VOTES_SUFFIX,
    advance_latest,
    commit,
    grove_key,
    groves_prefix,
    is_committed,
    manifest_key,
    plan_and_digest,
    run_prefix,
)
from groves.store.codec import get_json
from groves.store.protocol import Store

GROVE_RECORD = (
    "grove_id",
    "seed",
    "n_trees",
    "sha256",
    "bytes",
    "fit_seconds",
    "seconds",
    "peak_rss_mb",
    "votes",
    "usage",
)


def merge_build(
    store: Store,
    build_id: str,
    run_id: str,
    invocation: Invocation | None = None,
    latest: bool = True,
) -> dict[str, Any]:
    """Commit the run: ``manifest.json`` (every grove's record, the model's identity and the
    run's ``cost`` so far), then, if ``latest``, ``latest.json`` (``artifacts.commit``)."""
    invocation = invocation or Invocation.begin("merge")
    started = time.perf_counter()
    plan, plan_digest = plan_and_digest(store, build_id, run_id)
    if is_committed(store, build_id, run_id):  # committed before: never rewritten, only finished
        manifest = get_json(store, manifest_key(build_id, run_id))
        moved = latest and advance_latest(store, build_id, run_id, manifest["created_at"])
        return merge_output(store, manifest, moved)
    metas = read_grove_metas(store, plan)
    check_groves(plan, metas)
    check_grove_files(store, plan, metas)
    n_trees = sum(m["n_trees"] for m in metas)
    manifest = {
        "build_id": build_id,
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "estimator": plan["spec"]["estimator"],
        "spec": plan["spec"],
        "n_trees": n_trees,
        "n_groves": len(metas),
        "groves": [{k: m[k] for k in GROVE_RECORD} for m in metas],
        "data": plan["data"],
        "plan": plan_digest,  # readers of a committed run verify its plan.json by it
        "model": model_record(metas),
        "versions": {
            "groves": __version__,
            "python": platform.python_version(),
            "sklearn": metas[0]["sklearn_version"],  # what the trees were fitted with
            "numpy": np.__version__,
        },
        "timings": {
            "fit_seconds_total": round(sum(m["fit_seconds"] for m in metas), 3),
            "fit_seconds_max": max(m["fit_seconds"] for m in metas),
            "merge_seconds": round(time.perf_counter() - started, 3),
        },
    }
    manifest["cost"] = training_cost(plan, [m["usage"] for m in metas], invocation.usage())
    moved = commit(store, build_id, run_id, manifest, latest)
    return merge_output(store, get_json(store, manifest_key(build_id, run_id)), moved)


def merge_output(store: Store, manifest: dict[str, Any], latest: bool) -> dict[str, Any]:
    """What merge passes on: where the committed run's files are, its size and cost, and
    whether it is the build's ``latest`` now."""
    build_id, run_id = manifest["build_id"], manifest["run_id"]
    return {
        "run": f"{store.uri}/{run_prefix(build_id, run_id)}",
        "model": f"{store.uri}/{manifest_key(build_id, run_id)}",
        "manifest": f"{store.uri}/{manifest_key(build_id, run_id)}",
        "n_trees": manifest["n_trees"],
        "n_groves": manifest["n_groves"],
        "model_bytes": manifest["model"]["bytes"],
        "cost": manifest["cost"],
        "latest": latest,
    }


def check_grove_files(store: Store, plan: dict[str, Any], metas: list[dict[str, Any]]) -> None:
    """Every grove's trees and votes file is in the store with the size its metadata
    records, from one listing of the groves' folder, before anything is written. (Their
    sha256 is checked by every reader before it reads them: scoring, prediction, loading.)"""
    build_id, run_id = plan["build_id"], plan["run_id"]
    sizes = store.list_sizes(groves_prefix(build_id, run_id))
    for meta in metas:
        gid = meta["grove_id"]
        for suffix, record in ((GROVE_SUFFIX, meta), (VOTES_SUFFIX, meta["votes"])):
            key = grove_key(build_id, run_id, gid, suffix)
            found = sizes.get(key)
            if found != record["bytes"]:
                state = "missing" if found is None else f"{found} bytes, not {record['bytes']}"
                raise BuildError(f"grove {gid}: {key} is {state}; nothing was committed")


def model_record(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """The committed model's identity: its format, and a sha256 over its groves' sha256s in
    grove order (a batch prediction names the model it used by it), with their total size."""
    combined = hashlib.sha256("".join(m["sha256"] for m in metas).encode()).hexdigest()
    return {"format": FORMAT, "sha256": combined, "bytes": sum(m["bytes"] for m in metas)}
