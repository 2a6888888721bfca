"""The requests' fields and their defaults: what ``plan`` and ``plan_batch`` validate and the CLI
offers (kept apart from them so that reading them imports no scikit-learn)."""

from __future__ import annotations

from typing import Any

from groves.errors import RequestError

DEFAULTS: dict[str, Any] = {
    "n_trees": 100,
    "grove_size": 10,
    "dataset": "digits",
    "target": None,
    "weight": None,
    "features": None,  # null: every column but the target and the weights; or only these
    "drop": [],  # columns left out (an id, say)
    "estimator": "classifier",
    "test_size": 0.25,
    "seed": 0,
    "params": {},
    "max_concurrency": 10,
    "groves_per_invocation": 1,
    "predict": False,
    "rows_per_grove": None,  # null: every training row while they fit train_grove's memory
    "max_test_rows": 200_000,  # held-out rows of a table kept for scoring, at most
}
FIELDS = ("build_id", *DEFAULTS, "resume")

# A batch prediction request (``statemachine/batch_predict.asl.json``).
BATCH_DEFAULTS: dict[str, Any] = {
    "run_id": None,
    "rows_per_chunk": 50_000,
    "groves_per_shard": None,  # chosen by plan_batch from the groves' sizes
    "max_concurrency": 10,
    "keep": [],
}
BATCH_FIELDS = ("build_id", "data", "output", *BATCH_DEFAULTS)

# A hyper-parameter search request (``statemachine/search.asl.json``): the training fields, and
# ``winner_build``: the build the candidates' runs and the committed best go to (default:
# ``build_id``, where the search's own record is); ``commit``: whether the best becomes that
# build's ``latest`` (by default it does not: ``groves promote`` makes it so).
SEARCH_DEFAULTS: dict[str, Any] = {
    "search": None,
    "validation_size": 0.2,
    "winner_build": None,
    "commit": False,
}


def check_fields(request: Any, fields: tuple[str, ...]) -> None:
    """``request`` is a JSON object of no fields but ``fields``; else a ``RequestError``."""
    if not isinstance(request, dict):
        raise RequestError("request", f"must be a JSON object, got {type(request).__name__}")
    unknown = sorted(str(name) for name in set(request) - set(fields))
    if unknown:
        raise RequestError(
            unknown[0] or "request",
            f"unknown field {unknown[0]!r}; allowed fields are {', '.join(fields)}",
        )


# The serve function (``groves.steps.serve``, ``groves serve``): how often it reads the build's
# latest.json for a newer run, in seconds.
REFRESH_SECONDS = 5.0
