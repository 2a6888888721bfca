"""A training request checked before any work: its fields by their one definition
(``request``), what needs the dataset's name (a source that can exist, ``features`` and ``drop``
only for a table), the grove count, and the forest's parameters by scikit-learn's own
constraints. Shared by the workflows that train: a build's plan and a search's."""

from __future__ import annotations

import math
from typing import Any

from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from groves.data.tables import check_source
from groves.errors import RequestError
from groves.steps.planned import n_groves
from groves.steps.prepare import is_table
from groves.steps.request import (
    FOREST_PARAMS,
    MAX_GROVES,
    TRAIN,
    check_fields,
    checked,
    field,
    names,
)
from groves.store.artifacts import check_build_id

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
