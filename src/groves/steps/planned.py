"""The groves a validated spec plans: how many, and each one's trees and seed. Derived, never
looked up, so plan, train_grove, merge and search agree on every grove without reading a list;
numpy only, so the steps that need no model (merge) start without scikit-learn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def n_groves(spec: dict[str, Any]) -> int:
    return math.ceil(spec["n_trees"] / spec["grove_size"])


def planned_grove(spec: dict[str, Any], grove_id: int) -> dict[str, int]:
    """Grove ``grove_id`` of a validated request: ``grove_size`` trees (the last grove takes the
    remainder) and an independent 32-bit seed, the ``grove_id``-th child of the run seed's
    ``SeedSequence``. Derived, never looked up, so any step can check a grove it is given."""
    first_tree = grove_id * spec["grove_size"]
    if not 0 <= first_tree < spec["n_trees"]:
        raise ValueError(f"grove {grove_id} is not one of the {n_groves(spec)} planned")
    child = np.random.SeedSequence(spec["seed"], spawn_key=(grove_id,))
    return {
        "grove_id": grove_id,
        "seed": int(child.generate_state(1)[0]),
        "n_trees": min(spec["grove_size"], spec["n_trees"] - first_tree),
    }


def planned_groves(spec: dict[str, Any]) -> list[dict[str, int]]:
    return [planned_grove(spec, i) for i in range(n_groves(spec))]
