"""Validate a build request and plan its groves, before any training is spent."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from groves.data import datasets, stream
from groves.data.prepared import write_held_out, write_prepared
from groves.data.shards import Layout, RowWriter
from groves.data.tables import DEFAULT_TARGET, check_source, is_folder
from groves.errors import RequestError
from groves.steps.cost import TEMPLATE_MEMORY_MB, TRAIN_MEMORY_ENV, Invocation
from groves.steps.planned import n_groves, planned_groves
from groves.steps.request import (
    FOREST_PARAMS,
    MAX_GROVES,
    TRAIN,
    check_fields,
    checked,
    field,
    names,
)
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
from groves.store.records import record_format
from groves.store.storage import ArtifactNotFound, Store, check_store, put_json

ESTIMATORS = {"classifier": RandomForestClassifier, "regressor": RandomForestRegressor}
CLASS_WEIGHTS = ("balanced", "balanced_subsample", None)


def validate_request(request: Any) -> dict[str, Any]:
    """The request with defaults filled in; a ``RequestError`` names the first bad field."""
    check_fields(request, names(TRAIN))
    check_build_id(request)
    if "resume" in request:
        raise RequestError("resume", "a request that resumes a run has only build_id and resume")
    spec = checked(request, TRAIN)
    if spec["predict"] and spec["test_size"] == 0:
        raise RequestError("predict", "scores the held-out rows, and test_size 0 holds out none")
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
    """``features`` and ``drop`` name columns, which only a table (CSV or Parquet) has; the
    names are checked against its header when it is read."""
    for name in ("features", "drop"):
        columns = spec[name]
        if name == "features" and columns == []:
            raise RequestError(name, "names no column; leave it out to train on every column")
        if columns and not is_table(spec["dataset"]):
            raise RequestError(
                name,
                f"applies to the named columns of a CSV or Parquet table; {spec['dataset']!r} "
                "holds arrays",
            )


def validate_params(params: Any, estimator: str) -> dict[str, Any]:
    """Forest parameters checked by scikit-learn's own constraints, before any fit."""
    field(TRAIN, "params").check(params)
    allowed = FOREST_PARAMS[estimator]
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


def run_plan(
    spec: dict[str, Any], run_id: str, data: dict[str, Any], prepared_run: str | None = None
) -> dict[str, Any]:
    """A run's ``plan.json``. ``prepared_run`` names another run of the build whose prepared
    data this run shares (a search's candidates share one copy)."""
    plan = {
        "format": record_format("plan"),
        "build_id": spec["build_id"],
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec,
        "n_groves": n_groves(spec),
        "data": data,
    }
    prepared = data["prepared"]
    held = sum(prepared[name]["bytes"] for name in ("X_test", "y_test"))
    plan["sample"] = grove_sample(spec, prepared["train"], held)
    if prepared_run is not None:
        plan["data"]["prepared_run"] = prepared_run
    return plan


def data_record(
    dataset: datasets.Dataset,
    split: datasets.Split,
    classes: list[Any] | None,
    prepared: dict[str, Any],
) -> dict[str, Any]:
    """What a plan records of an array dataset and its split."""
    return {
        "n_rows": len(dataset.y),
        "n_features": dataset.X.shape[1],
        "n_train": len(split.y_train),
        "n_test": len(split.y_test),
        "classes": classes,
        "n_outputs": datasets.n_outputs(dataset.y),
        "split_fingerprint": split.fingerprint,
        "feature_names": list(dataset.feature_names),
        "named": dataset.named,
        "columns": list(split.columns),
        "dropped": list(dataset.dropped),
        "weighted": split.w_train is not None,
        "prepared": prepared,
    }


# A grove's memory while it fits, measured on a wide messy table (57 features, 20% label noise,
# fully grown trees, two threads): ~200 MB of runtime and imports, its held-out rows, and about
# its rows' bytes plus 190 bytes a row (sample weights, the splitter's buffers, two trees being
# grown); 1.0M rows peaked at 613 MB. A grove may use 60% of its memory, so none comes near it.
FIT_BYTES_PER_ROW = 256
RUNTIME_MB = 256
MEMORY_SHARE = 0.6


def grove_sample(
    spec: dict[str, Any], train: dict[str, Any], held_bytes: int = 0
) -> dict[str, Any]:
    """How many training rows each grove reads: ``rows_per_grove`` if given, else every row
    while they fit train_grove's memory (``GROVES_TRAIN_MEMORY_MB``, else the template's) beside
    the held-out rows (``held_bytes``) it also reads, else as many as fit; and why, for the
    run's summary. ``rows`` is ``None`` when every grove reads every row."""
    n_train = train["n_rows"]
    memory_mb = int(os.environ.get(TRAIN_MEMORY_ENV) or TEMPLATE_MEMORY_MB["train_grove"])
    usable = min((memory_mb - RUNTIME_MB) * 2**20 - held_bytes, MEMORY_SHARE * memory_mb * 2**20)
    fits = max(1, int(usable) // (Layout.of(train).row_bytes + FIT_BYTES_PER_ROW))
    asked = spec.get("rows_per_grove")
    rows = asked if asked is not None else fits
    return {
        "rows": None if rows >= n_train else rows,
        "of": n_train,
        "fits": fits,
        "asked": asked is not None,
        "memory_mb": memory_mb,
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
