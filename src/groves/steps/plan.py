"""Validate a build request and plan its groves, before any training is spent."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from groves.data import datasets, stream
from groves.data.datasets import data_record
from groves.data.prepared import write_held_out, write_prepared
from groves.data.shards import RowWriter
from groves.data.tables import DEFAULT_TARGET, check_source, is_folder
from groves.errors import RequestError
from groves.steps.cost import Invocation
from groves.steps.planned import MAX_GROVES, n_groves, planned_groves, run_plan
from groves.steps.request import DEFAULTS, FIELDS, check_fields
from groves.store.artifacts import (
    RUN_ID_FORM,
    check_build_id,
    check_run_id,
    data_prefix,
    is_finished,
    items_key,
    latest_uncommitted,
    new_run_id,
    plan_key,
    read_plan,
)
from groves.store.codec import put_json
from groves.store.protocol import ArtifactNotFound, Store
from groves.store.uris import check_store

MAX_TREES = 1_000_000
MAX_CONCURRENCY = 10_000  # a Distributed Map's child executions at once
MAX_GROVES_PER_INVOCATION = 1_000
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
    check_fields(request, FIELDS)
    check_build_id(request)
    if "resume" in request:
        raise RequestError("resume", "a request that resumes a run has only build_id and resume")
    spec = {**DEFAULTS, **request}
    _check_int(spec, "n_trees", 1, MAX_TREES)
    _check_int(spec, "grove_size", 1, MAX_TREES)
    _check_int(spec, "seed", 0, 2**32 - 1)
    _check_int(spec, "max_concurrency", 1, MAX_CONCURRENCY)
    _check_int(spec, "groves_per_invocation", 1, MAX_GROVES_PER_INVOCATION)
    if not isinstance(spec["estimator"], str) or spec["estimator"] not in ESTIMATORS:
        raise RequestError(
            "estimator", f"{spec['estimator']!r} is not one of {', '.join(ESTIMATORS)}"
        )
    test_size = spec["test_size"]
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, int | float)
        or not (0 <= test_size < 1)
    ):
        raise RequestError(
            "test_size", f"{test_size!r} must be a number from 0 (hold out no row) to below 1"
        )
    if spec["rows_per_grove"] is not None:
        _check_int(spec, "rows_per_grove", 1, 2**62)
    _check_int(spec, "max_test_rows", 1, 2**62)
    if not isinstance(spec["predict"], bool):
        raise RequestError("predict", f"{spec['predict']!r} must be true or false")
    if spec["predict"] and test_size == 0:
        raise RequestError("predict", "scores the held-out rows, and test_size 0 holds out none")
    if not isinstance(spec["dataset"], str) or not spec["dataset"]:
        raise RequestError("dataset", "must be a dataset name, a path or an s3:// URI")
    for field in ("target", "weight"):
        if spec[field] is not None and (not isinstance(spec[field], str) or not spec[field]):
            raise RequestError(field, f"{spec[field]!r} must be a column name")
    check_source(spec["dataset"], spec["target"])
    _check_columns(spec)
    if n_groves(spec) > MAX_GROVES:
        raise RequestError(
            "grove_size",
            f"{spec['n_trees']} trees in groves of {spec['grove_size']} make "
            f"{n_groves(spec)} groves; at most {MAX_GROVES} are allowed, so use a grove_size of at "
            f"least {math.ceil(spec['n_trees'] / MAX_GROVES)}",
        )
    spec["params"] = validate_params(spec["params"], spec["estimator"])
    return spec


def _check_columns(spec: dict[str, Any]) -> None:
    """``features`` (null, or a list) and ``drop`` (a list) of distinct column names, which
    only a table (CSV or Parquet: named columns) has; their names are checked against its
    header when it is read."""
    for field in ("features", "drop"):
        names = spec[field]
        if names is None and field == "features":
            continue
        if (
            not isinstance(names, list)
            or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)
        ):
            raise RequestError(field, f"{names!r} must be a list of distinct column names")
        if field == "features" and not names:
            raise RequestError(field, "names no column; leave it out to train on every column")
        if names and not is_table(spec["dataset"]):
            raise RequestError(
                field,
                f"applies to the named columns of a CSV or Parquet table; {spec['dataset']!r} "
                "holds arrays",
            )


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
    weights = params.get("class_weight")
    if isinstance(weights, dict):
        if not weights or any(
            isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < math.inf
            for w in weights.values()
        ):
            raise RequestError(
                "params.class_weight",
                "an object of class labels to weights must map each to a number >= 0",
            )
    elif "class_weight" in params and weights not in CLASS_WEIGHTS:
        raise RequestError(
            "params.class_weight",
            f"{weights!r} is not one of 'balanced', 'balanced_subsample', null or an object "
            "of class labels to weights",
        )
    for name, value in params.items():
        if isinstance(value, bool) and name != "bootstrap":  # JSON true is no integer here
            raise RequestError(f"params.{name}", f"{value!r} is a boolean; it takes a number")
    if params.get("bootstrap") is False and params.get("max_samples") is not None:
        raise RequestError("params.max_samples", "needs bootstrap true")
    forest = ESTIMATORS[estimator](**{k: v for k, v in params.items() if k != "class_weight"})
    try:
        forest._validate_params()  # scikit-learn's declared constraints, with readable messages
    except (ValueError, TypeError) as exc:
        bad = next((name for name in params if f"'{name}'" in str(exc)), "")
        raise RequestError(f"params.{bad}" if bad else "params", str(exc)) from exc
    return dict(params)


def write_items(store: Store, spec: dict[str, Any], run_id: str) -> None:
    """The run's grove items as one JSON array: the Distributed Map's ItemReader input."""
    items = json.dumps(planned_groves(spec), separators=(",", ":")).encode()
    store.put_bytes(items_key(spec["build_id"], run_id), items)


def plan_build(store: Store, request: Any, invocation: Invocation | None = None) -> dict[str, Any]:
    """Validate the request and its data, write a new run's ``plan.json`` (with the plan step's
    ``usage``, given its ``invocation``), and return the plan; a request with ``resume`` returns
    the stored plan of the run it continues instead."""
    if isinstance(request, dict) and "resume" in request:
        return resume_plan(store, request)
    spec = validate_request(request)
    check_store(store)  # a store that cannot exist is one line naming it, as on the CLI
    run_id = new_run_id()
    if is_table(spec["dataset"]):
        data = plan_table(store, spec, run_id)
    else:
        data = plan_arrays(store, spec, run_id)
    write_items(store, spec, run_id)
    plan = run_plan(spec, run_id, data)
    plan["usage"] = (invocation or Invocation.begin("plan")).usage()
    put_json(store, plan_key(spec["build_id"], run_id), plan)
    return plan


def is_table(source: str) -> bool:
    """CSV and Parquet files and folders of them are planned in bounded memory (``stream``);
    arrays (``.npz``, scikit-learn's datasets) are loaded whole, as numpy reads them."""
    return source.lower().endswith((".csv", ".parquet")) or is_folder(source)


def plan_arrays(store: Store, spec: dict[str, Any], run_id: str) -> dict[str, Any]:
    """An array dataset's split (stratified by scikit-learn) written, and its data record."""
    dataset = datasets.load_dataset(spec["dataset"], spec["target"], spec["weight"])
    held_out = spec["test_size"] > 0
    classes = datasets.check_target(dataset, spec["estimator"], spec["dataset"], held_out)
    split = datasets.split(dataset, spec["test_size"], spec["seed"], classes is not None)
    if not datasets.every_class_trains(split.y_train, classes):
        raise RequestError("test_size", "leaves some class without training rows; lower it")
    check_params_against_data(spec["params"], split.y_train, classes)
    prepared = write_prepared(store, spec["build_id"], run_id, split)
    return data_record(dataset, split, classes, prepared)


def plan_table(store: Store, spec: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A table streamed twice (``groves.data.stream``): scanned, then its rows written as the
    training shards and the (capped) held-out rows; its data record."""
    classify = spec["estimator"] == "classifier"
    target = spec["target"] or DEFAULT_TARGET
    found = stream.scan(
        spec["dataset"],
        target,
        spec["weight"],
        classify,
        spec["test_size"],
        spec["seed"],
        spec["features"],
        spec["drop"],
    )
    classes = stream.classes(found) if classify else None
    n_train = found.n_rows - found.n_test
    labels = TrainingLabels(n_train, 1, found.train_min, found.train_sum)
    check_params_against_data(spec["params"], labels, classes)
    prefix = data_prefix(spec["build_id"], run_id)
    done = stream.prepare(
        lambda layout, rows: RowWriter(store, prefix, layout, rows),
        found,
        spec["test_size"],
        spec["seed"],
        spec["max_test_rows"],
    )
    held = write_held_out(store, spec["build_id"], run_id, done.X_test, done.y_test)
    columns = found.columns()
    return {
        "n_rows": found.n_rows,
        "n_features": len(columns),
        "n_train": done.n_train,
        "n_test": len(done.y_test),
        "n_held_out": found.n_test,
        "classes": classes,
        "n_outputs": 1,
        "split_fingerprint": done.fingerprint,
        "feature_names": [c["name"] for c in columns],
        "named": True,
        "columns": columns,
        "dropped": found.dropped(),
        "weighted": found.weight is not None,
        "warnings": found.warnings(),
        "prepared": {"train": done.train, **held},
    }


@dataclass(frozen=True)
class TrainingLabels:
    """What the parameters' checks need of the training labels: their count, outputs, and
    (a regressor's) least value and sum: from an array, or from a table's scan."""

    n: int
    n_outputs: int = 1
    minimum: float = 0.0
    total: float = 1.0

    @classmethod
    def of(cls, y: np.ndarray) -> TrainingLabels:
        numeric = y.dtype.kind in "biuf" and len(y) > 0
        return cls(
            len(y),
            1 if y.ndim == 1 else y.shape[1],
            float(np.min(y)) if numeric else 0.0,
            float(np.sum(y)) if numeric else 1.0,
        )


def check_params_against_data(
    params: dict[str, Any],
    y_train: np.ndarray | TrainingLabels,
    classes: list[Any] | None = None,
) -> None:
    """Bound the parameters that scale a tree's memory by the data: a tree cannot use more
    samples, leaves or levels than there are training rows, and scikit-learn allocates for
    what is allowed (``max_leaf_nodes: 10**9`` asks for ~128 GB before the first split)."""
    labels = y_train if isinstance(y_train, TrainingLabels) else TrainingLabels.of(y_train)
    n_train = labels.n
    for name in ("max_samples", "max_leaf_nodes", "max_depth"):
        value = params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > n_train:
            raise RequestError(
                f"params.{name}",
                f"{value} is more than the {n_train} training rows; at most {n_train}"
                + (" (or a fraction in (0, 1])" if name == "max_samples" else ""),
            )
    weights = params.get("class_weight")
    if isinstance(weights, dict) and labels.n_outputs > 1:
        raise RequestError(
            "params.class_weight",
            "an object of class weights applies to one output; with several outputs use "
            "'balanced', 'balanced_subsample' or null",
        )
    if isinstance(weights, dict):
        names = {str(c) for c in classes or ()}
        unknown = sorted(set(map(str, weights)) - names)
        if unknown:
            raise RequestError(
                "params.class_weight",
                f"{unknown[0]!r} is not a class of the training rows ({len(names)} classes)",
            )
    if params.get("criterion") == "poisson" and (labels.minimum < 0 or labels.total <= 0):
        raise RequestError(
            "params.criterion", "'poisson' needs non-negative targets with a positive sum"
        )


def state_output(store: Store, plan: dict[str, Any]) -> dict[str, Any]:
    """What the plan step passes on through Step Functions: ids, counts, the Map's settings and
    where its ItemReader reads the grove items (its ResultWriter writes to the same bucket,
    under ``map-runs/``). The same few hundred bytes for 1 or 100,000 groves; the rest stays
    in ``plan.json``."""
    build_id, run_id, spec = plan["build_id"], plan["run_id"], plan["spec"]
    counts = ("n_rows", "n_features", "n_train", "n_test")
    output = {
        "store": store.uri,
        "build_id": build_id,
        "run_id": run_id,
        "created_at": plan["created_at"],
        "n_groves": n_groves(spec),
        "max_concurrency": spec["max_concurrency"],
        "groves_per_invocation": spec.get("groves_per_invocation", 1),
        "predict": spec["predict"],
        "items": store.location(items_key(build_id, run_id)),
        "data": {key: plan["data"][key] for key in counts},
        "sample": plan.get("sample"),
        "warnings": shown_warnings(plan["data"].get("warnings", [])),
    }
    if plan.get("resumed"):
        output["resumed"] = True
    return output


SHOWN_WARNINGS = 10  # the execution's output stays small however many columns look like ids


def shown_warnings(warnings: list[str]) -> list[str]:
    """The plan's first warnings, and how many more ``plan.json`` has."""
    more = len(warnings) - SHOWN_WARNINGS
    tail = [f"and {more:,} more warnings in plan.json (data.warnings)"] if more > 0 else []
    return warnings[:SHOWN_WARNINGS] + tail


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
    if is_finished(store, build_id, run_id):
        raise RequestError("resume", f"run {run_id} of build {build_id!r} is already committed")
    try:
        plan = read_plan(store, build_id, run_id)
    except ArtifactNotFound as exc:
        raise RequestError("resume", f"build {build_id!r} has no run {run_id}") from exc
    if not store.exists(items_key(build_id, run_id)):  # stopped before plan wrote them
        write_items(store, plan["spec"], run_id)
    return {**plan, "resumed": True}
