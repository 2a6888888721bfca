"""Assemble every planned grove into one plain scikit-learn forest and commit the run, or refuse."""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from groves import __version__
from groves.artifacts import (
    advance_latest,
    commit,
    file_digest,
    grove_key,
    is_committed,
    load_verified,
    manifest_key,
    model_key,
    read_verified,
    run_prefix,
)
from groves.cost import Invocation, training_cost
from groves.data.encoding import has_categories
from groves.errors import BuildError
from groves.forest.votes import forest_classes
from groves.plan import n_groves, planned_groves, read_plan
from groves.storage import ArtifactNotFound, Store, dump_streamed, get_json

READ_THREADS = 16  # grove metadata reads at once
CONSISTENT_FIELDS = ("split_fingerprint", "n_features", "classes", "sklearn_version")
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
META_FIELDS = {*GROVE_RECORD, *CONSISTENT_FIELDS, "build_id", "run_id"}


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
        if not isinstance(meta, dict) or not set(meta) >= META_FIELDS:
            raise BuildError(f"grove {gid}: {key} lacks the fields merge checks")
        return meta

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


def load_grove(store: Store, plan: dict[str, Any], meta: dict[str, Any]) -> Any:
    """One grove's forest: found by its own key, checked against its metadata's size and sha256
    before it is unpickled, and holding what its metadata says."""
    gid = meta["grove_id"]
    key = grove_key(plan["build_id"], plan["run_id"], gid, "joblib")
    forest = load_verified(store, key, meta, f"grove {gid}")
    found = (len(forest.estimators_), forest.n_features_in_, forest_classes(forest))
    if found != (meta["n_trees"], meta["n_features"], meta["classes"]):
        raise BuildError(f"grove {gid}'s model does not match its metadata")
    return forest


def write_merged(
    store: Store, plan: dict[str, Any], metas: list[dict[str, Any]], path: Path
) -> None:
    """Write one plain forest of every grove's trees, in grove order, to ``path``, loading one
    grove at a time while the file is written: memory holds one grove, not the forest."""
    merged = load_grove(store, plan, metas[0])
    first_trees = merged.estimators_

    def trees() -> Iterator[Any]:
        yield from first_trees
        for meta in metas[1:]:
            yield from load_grove(store, plan, meta).estimators_

    merged.set_params(
        n_estimators=sum(m["n_trees"] for m in metas),
        random_state=plan["spec"]["seed"],
        n_jobs=None,
    )
    data = plan["data"]
    if data.get("named") and not has_categories(data.get("columns", ())):
        # the columns it was trained on, checked by scikit-learn on a DataFrame's names (a
        # model with text columns checks them in its encoding step instead)
        merged.feature_names_in_ = np.asarray(data["feature_names"], dtype=object)
    dump_streamed(merged, "estimators_", trees(), path)


def merge_build(
    store: Store, build_id: str, run_id: str, invocation: Invocation | None = None
) -> dict[str, Any]:
    """Write the run's ``model.joblib``, then commit it: ``manifest.json`` (with the run's
    ``cost`` so far), then ``latest.json``."""
    invocation = invocation or Invocation.begin("merge")
    started = time.perf_counter()
    plan = read_plan(store, build_id, run_id)
    if is_committed(store, build_id, run_id):  # merged before: never rewritten, only finished
        manifest = get_json(store, manifest_key(build_id, run_id))
        advance_latest(store, build_id, run_id, manifest["created_at"])
        return merge_output(store, manifest)
    metas = read_grove_metas(store, plan)
    check_groves(plan, metas)
    check_grove_files(store, plan, metas)
    with tempfile.TemporaryDirectory(prefix="groves-merge-") as folder:
        path = Path(folder) / "model.joblib"
        write_merged(store, plan, metas, path)
        model_record = {"key": model_key(build_id, run_id), **file_digest(path)}
        store.put_file(model_key(build_id, run_id), path)
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
        "model": model_record,
        "versions": {
            "groves": __version__,
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "timings": {
            "fit_seconds_total": round(sum(m["fit_seconds"] for m in metas), 3),
            "fit_seconds_max": max(m["fit_seconds"] for m in metas),
            "merge_seconds": round(time.perf_counter() - started, 3),
        },
    }
    manifest["cost"] = training_cost(plan, [m["usage"] for m in metas], invocation.usage())
    commit(store, build_id, run_id, manifest)
    return merge_output(store, get_json(store, manifest_key(build_id, run_id)))


def merge_output(store: Store, manifest: dict[str, Any]) -> dict[str, Any]:
    """What merge passes on: where the committed run's files are, its size and cost."""
    build_id, run_id = manifest["build_id"], manifest["run_id"]
    return {
        "run": f"{store.uri}/{run_prefix(build_id, run_id)}",
        "model": f"{store.uri}/{model_key(build_id, run_id)}",
        "manifest": f"{store.uri}/{manifest_key(build_id, run_id)}",
        "n_trees": manifest["n_trees"],
        "n_groves": manifest["n_groves"],
        "model_bytes": manifest["model"]["bytes"],
        "cost": manifest["cost"],
    }


def check_grove_files(store: Store, plan: dict[str, Any], metas: list[dict[str, Any]]) -> None:
    """Every grove's votes file is there as recorded (size and sha256) before anything is
    written: scoring reads them after the commit. (Each grove's model is checked the same way
    as it is read into the merged model, which is also before the commit.)"""
    build_id, run_id = plan["build_id"], plan["run_id"]

    def check(meta: dict[str, Any]) -> None:
        key = grove_key(build_id, run_id, meta["grove_id"], "votes.npy")
        read_verified(store, key, meta["votes"], f"grove {meta['grove_id']}")

    with ThreadPoolExecutor(READ_THREADS) as pool:
        list(pool.map(check, metas))
