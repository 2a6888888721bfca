"""Validate a build request and plan its groves, before any training is spent."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from groves import data
from groves.artifacts import (
    RUN_ID_FORM,
    check_run_id,
    is_committed,
    latest_uncommitted,
    new_run_id,
    plan_key,
)
from groves.errors import BuildError, RequestError
from groves.prepared import write_prepared
from groves.request import DEFAULTS, FIELDS
from groves.storage import ArtifactNotFound, Store, get_json, put_json

MAX_GROVES = 1000  # keeps the Map's item list far below Step Functions' 256 KB payload limit
MAX_TREES = 100_000
BUILD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
ESTIMATORS = {"classifier": RandomForestClassifier, "regressor": RandomForestRegressor}


# Forest parameters a request may set; groves sets n_estimators, random_state and n_jobs itself.
TREE_PARAMS = (
    "criterion",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "min_weight_fraction_leaf",
    "max_features",
    "max_leaf_nodes",
    "min_impurity_decrease",
    "bootstrap",
    "max_samples",
    "ccp_alpha",
)
PARAMS = {"classifier": (*TREE_PARAMS, "class_weight"), "regressor": TREE_PARAMS}
CLASS_WEIGHTS = ("balanced", "balanced_subsample", None)


def validate_request(request: Any) -> dict[str, Any]:
    """The request with defaults filled in; a ``RequestError`` names the first bad field."""
    if not isinstance(request, dict):
        raise RequestError("request", f"must be a JSON object, got {type(request).__name__}")
    unknown = sorted(str(name) for name in set(request) - set(FIELDS))
    if unknown:
        raise RequestError(
            unknown[0] or "request",
            f"unknown field {unknown[0]!r}; allowed fields are {', '.join(FIELDS)}",
        )
    check_build_id(request)
    if "resume" in request:
        raise RequestError("resume", "a request that resumes a run has only build_id and resume")
    spec = {**DEFAULTS, **request}
    _check_int(spec, "n_trees", 1, MAX_TREES)
    _check_int(spec, "grove_size", 1, MAX_TREES)
    _check_int(spec, "seed", 0, 2**32 - 1)
    _check_int(spec, "max_concurrency", 1, MAX_GROVES)
    if not isinstance(spec["estimator"], str) or spec["estimator"] not in ESTIMATORS:
        raise RequestError(
            "estimator", f"{spec['estimator']!r} is not one of {', '.join(ESTIMATORS)}"
        )
    test_size = spec["test_size"]
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, int | float)
        or not (0 < test_size < 1)
    ):
        raise RequestError("test_size", f"{test_size!r} must be a number between 0 and 1")
    if not isinstance(spec["predict"], bool):
        raise RequestError("predict", f"{spec['predict']!r} must be true or false")
    if not isinstance(spec["dataset"], str) or not spec["dataset"]:
        raise RequestError("dataset", "must be a dataset name, a path or an s3:// URI")
    if spec["target"] is not None and not isinstance(spec["target"], str):
        raise RequestError("target", f"{spec['target']!r} must be a column name")
    data.check_source(spec["dataset"], spec["target"])
    n_groves = math.ceil(spec["n_trees"] / spec["grove_size"])
    if n_groves > MAX_GROVES:
        raise RequestError(
            "grove_size",
            f"{spec['n_trees']} trees in groves of {spec['grove_size']} make "
            f"{n_groves} groves; at most {MAX_GROVES} are allowed, so use a grove_size of at "
            f"least {math.ceil(spec['n_trees'] / MAX_GROVES)}",
        )
    spec["params"] = validate_params(spec["params"], spec["estimator"])
    return spec


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


def _check_int(spec: dict[str, Any], field: str, low: int, high: int) -> None:
    value = spec[field]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(field, f"{value!r} must be an integer from {low} to {high}")


def validate_params(params: Any, estimator: str) -> dict[str, Any]:
    """Forest parameters checked by scikit-learn's own constraints, before any fit."""
    if not isinstance(params, dict):
        raise RequestError("params", f"must be an object of forest parameters, got {params!r}")
    allowed = PARAMS[estimator]
    for name in params:
        if name not in allowed:
            raise RequestError(
                f"params.{name}",
                f"not a parameter groves lets a {estimator} set; allowed: {', '.join(allowed)}",
            )
    if "class_weight" in params and params["class_weight"] not in CLASS_WEIGHTS:
        raise RequestError(
            "params.class_weight",
            f"{params['class_weight']!r} is not one of 'balanced', 'balanced_subsample' or null",
        )
    if params.get("bootstrap") is False and params.get("max_samples") is not None:
        raise RequestError("params.max_samples", "needs bootstrap true")
    forest = ESTIMATORS[estimator](**params)
    try:
        forest._validate_params()  # scikit-learn's declared constraints, with readable messages
    except (ValueError, TypeError) as exc:
        bad = next((name for name in params if f"'{name}'" in str(exc)), "")
        raise RequestError(f"params.{bad}" if bad else "params", str(exc)) from exc
    return dict(params)


def grove_seeds(seed: int, n_groves: int) -> list[int]:
    """Independent 32-bit seeds, one per grove, derived from the run seed and the grove index."""
    children = np.random.SeedSequence(seed).spawn(n_groves)
    return [int(child.generate_state(1)[0]) for child in children]


def plan_groves(n_trees: int, grove_size: int, seed: int) -> list[dict[str, int]]:
    """Groves of ``grove_size`` trees; the last takes the remainder."""
    sizes = [grove_size] * (n_trees // grove_size)
    if n_trees % grove_size:
        sizes.append(n_trees % grove_size)
    seeds = grove_seeds(seed, len(sizes))
    return [
        {"grove_id": i, "seed": s, "n_trees": n}
        for i, (s, n) in enumerate(zip(seeds, sizes, strict=True))
    ]


def plan_build(store: Store, request: Any) -> dict[str, Any]:
    """Validate the request and its data, write a new run's ``plan.json``, and return the plan;
    a request with ``resume`` returns the stored plan of the run it continues instead."""
    if isinstance(request, dict) and "resume" in request:
        return resume_plan(store, request)
    spec = validate_request(request)
    dataset = data.load_dataset(spec["dataset"], spec["target"])
    classes = data.check_target(dataset, spec["estimator"], spec["dataset"])
    split = data.split(dataset, spec["test_size"], spec["seed"], classes is not None)
    if classes is not None and len(np.unique(split.y_train)) != len(classes):
        raise RequestError("test_size", "leaves some class without training rows; lower it")
    check_params_against_data(spec["params"], split.y_train)
    run_id = new_run_id()
    prepared = write_prepared(store, spec["build_id"], run_id, split)
    plan = {
        "build_id": spec["build_id"],
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec,
        "groves": plan_groves(spec["n_trees"], spec["grove_size"], spec["seed"]),
        "max_concurrency": spec["max_concurrency"],
        "predict": spec["predict"],
        "data": {
            "n_rows": len(dataset.y),
            "n_features": dataset.X.shape[1],
            "n_train": len(split.y_train),
            "n_test": len(split.y_test),
            "classes": classes,
            "split_fingerprint": split.fingerprint,
            "feature_names": list(dataset.feature_names),
            "prepared": prepared,
        },
    }
    put_json(store, plan_key(spec["build_id"], run_id), plan)
    return plan


def check_params_against_data(params: dict[str, Any], y_train: np.ndarray) -> None:
    """Bound the parameters that scale a tree's memory by the data: a tree cannot use more
    samples, leaves or levels than there are training rows, and scikit-learn allocates for
    what is allowed (``max_leaf_nodes: 10**9`` asks for ~128 GB before the first split)."""
    n_train = len(y_train)
    for name in ("max_samples", "max_leaf_nodes", "max_depth"):
        value = params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > n_train:
            raise RequestError(
                f"params.{name}",
                f"{value} is more than the {n_train} training rows; at most {n_train}"
                + (" (or a fraction in (0, 1])" if name == "max_samples" else ""),
            )
    if params.get("criterion") == "poisson" and (np.any(y_train < 0) or np.sum(y_train) <= 0):
        raise RequestError(
            "params.criterion", "'poisson' needs non-negative targets with a positive sum"
        )


def state_output(plan: dict[str, Any]) -> dict[str, Any]:
    """What the plan step passes on through Step Functions: ids, grove items and counts.
    Bulky data (feature names, classes, the request's params) stays in ``plan.json``."""
    kept = ("build_id", "run_id", "created_at", "groves", "max_concurrency", "predict")
    counts = ("n_rows", "n_features", "n_train", "n_test")
    output = {key: plan[key] for key in kept}
    output["data"] = {key: plan["data"][key] for key in counts}
    if plan.get("resumed"):
        output["resumed"] = True
    return output


def resume_plan(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    """The plan of the run to continue: ``resume: true`` takes the newest uncommitted run of
    the build, ``resume: RUN_ID`` that run. Its groves that are done are not trained again."""
    build_id = check_build_id(request)
    extra = sorted(set(request) - {"build_id", "resume"})
    if extra:
        raise RequestError(
            extra[0], "cannot be changed when resuming: the run continues with its stored plan"
        )
    resume = request["resume"]
    if resume is True:
        run_id = latest_uncommitted(store, build_id)
        if run_id is None:
            raise RequestError("resume", f"build {build_id!r} has no uncommitted run to resume")
    elif isinstance(resume, str):
        run_id = check_run_id(resume, "resume")
    else:
        raise RequestError("resume", f"{resume!r} must be true or {RUN_ID_FORM}")
    if is_committed(store, build_id, run_id):
        raise RequestError("resume", f"run {run_id} of build {build_id!r} is already committed")
    try:
        plan = read_plan(store, build_id, run_id)
    except ArtifactNotFound as exc:
        raise RequestError("resume", f"build {build_id!r} has no run {run_id}") from exc
    return {**plan, "resumed": True}


def read_plan(store: Store, build_id: str, run_id: str) -> dict[str, Any]:
    """The stored plan of a run."""
    plan = get_json(store, plan_key(build_id, check_run_id(run_id)))
    if (plan["build_id"], plan["run_id"]) != (build_id, run_id):
        raise BuildError(f"the plan of run {run_id} of build {build_id!r} names another run")
    return plan
