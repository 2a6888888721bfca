"""The build request's fields and their defaults: what ``plan`` validates and the CLI offers
(kept apart from ``plan`` so that reading them imports no scikit-learn)."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    "n_trees": 100,
    "grove_size": 10,
    "dataset": "digits",
    "target": None,
    "estimator": "classifier",
    "test_size": 0.25,
    "seed": 0,
    "params": {},
    "max_concurrency": 10,
    "groves_per_invocation": 1,
    "predict": False,
}
FIELDS = ("build_id", *DEFAULTS, "resume")
