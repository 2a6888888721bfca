"""Assemble every planned grove into one plain scikit-learn forest, or refuse."""

from __future__ import annotations

import hashlib
import platform
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sklearn

from groves import __version__
from groves.errors import BuildError
from groves.plan import read_plan
from groves.storage import Store, dump_joblib, get_json, load_joblib, put_json
from groves.train import grove_key

CONSISTENT_FIELDS = ("split_fingerprint", "n_features", "classes", "sklearn_version")


def model_key(build_id: str) -> str:
    return f"{build_id}/model.joblib"


def manifest_key(build_id: str) -> str:
    return f"{build_id}/manifest.json"


def check_groves(plan: dict[str, Any], metas: list[dict[str, Any]]) -> None:
    """Every grove is this run's, as planned, and trained on the same data and classes."""
    first = metas[0]
    for planned, meta in zip(plan["groves"], metas, strict=True):
        gid = planned["grove_id"]
        if meta["run_id"] != plan["run_id"]:
            raise BuildError(f"grove {gid} belongs to run {meta['run_id']}, not {plan['run_id']}")
        if (meta["seed"], meta["n_trees"]) != (planned["seed"], planned["n_trees"]):
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
    """Each planned grove's metadata; a missing grove fails the whole merge."""
    build_id = plan["build_id"]
    metas, missing = [], []
    for grove in plan["groves"]:
        key = grove_key(build_id, grove["grove_id"], "json")
        if store.exists(key):
            metas.append(get_json(store, key))
        else:
            missing.append(grove["grove_id"])
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise BuildError(
            f"{len(missing)} of {len(plan['groves'])} planned groves of build {build_id!r} "
            f"are missing: {shown}; no model was written"
        )
    return metas


def combine(forests: list[Any], metas: list[dict[str, Any]]) -> Any:
    """One forest holding every grove's trees, in grove order; each grove as its metadata says."""
    for forest, meta in zip(forests, metas, strict=True):
        classes = forest.classes_.tolist() if hasattr(forest, "classes_") else None
        found = (len(forest.estimators_), forest.n_features_in_, classes)
        if found != (meta["n_trees"], meta["n_features"], meta["classes"]):
            raise BuildError(f"grove {meta['grove_id']}'s model does not match its metadata")
    merged = forests[0]
    merged.estimators_ = [tree for forest in forests for tree in forest.estimators_]
    merged.n_estimators = len(merged.estimators_)
    return merged


def merge_build(store: Store, build_id: str, run_id: str) -> dict[str, Any]:
    """Write ``model.joblib`` and then ``manifest.json``; return where they are."""
    started = time.perf_counter()
    plan = read_plan(store, build_id, run_id)
    metas = read_grove_metas(store, plan)
    check_groves(plan, metas)
    forests = [load_joblib(store.get_bytes(meta["model_key"])) for meta in metas]
    model = combine(forests, metas)
    model.set_params(random_state=plan["spec"]["seed"], n_jobs=None)
    blob = dump_joblib(model)
    store.put_bytes(model_key(build_id), blob)
    spec = plan["spec"]
    manifest = {
        "build_id": build_id,
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "estimator": spec["estimator"],
        "spec": spec,
        "n_trees": model.n_estimators,
        "n_groves": len(metas),
        "groves": [
            {
                k: m[k]
                for k in (
                    "grove_id",
                    "seed",
                    "n_trees",
                    "model_key",
                    "bytes",
                    "fit_seconds",
                    "seconds",
                    "peak_rss_mb",
                )
            }
            for m in metas
        ],
        "data": plan["data"],
        "model_key": model_key(build_id),
        "model_bytes": len(blob),
        "model_sha256": hashlib.sha256(blob).hexdigest(),
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
    put_json(store, manifest_key(build_id), manifest)
    return {
        "model": f"{store.uri}/{model_key(build_id)}",
        "manifest": f"{store.uri}/{manifest_key(build_id)}",
        "n_trees": model.n_estimators,
        "n_groves": len(metas),
        "model_bytes": len(blob),
    }
