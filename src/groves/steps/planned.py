"""What a validated spec plans: its groves (how many, at most ``request.MAX_GROVES``, and each one's
trees and seed), the training rows each grove reads (``grove_sample``) and the run's
``plan.json`` (``run_plan``). Derived, never looked up, so plan, train_grove, merge and search
agree on every grove without reading a list; no scikit-learn, so the steps that need no model
(merge) start without it."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from typing import Any

import numpy as np

from groves.data.shards import Layout
from groves.errors import RequestError
from groves.steps.cost import TEMPLATE_MEMORY_MB, TRAIN_MEMORY_ENV
from groves.store.records import record_format


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


# A grove's memory while it fits, measured on a wide messy table (57 features, 20% label noise,
# fully grown trees, two threads): its runtime and imports (a grove of a few rows peaks at
# 144-168 MB), its held-out rows, and about its rows' bytes plus 190 bytes a row (sample
# weights, the splitter's buffers, two trees being grown); 1.0M rows peaked at 613 MB. A grove
# may use 60% of its memory, so none comes near it (the runtime only counts below ~640 MB).
FIT_BYTES_PER_ROW = 256
RUNTIME_MB = 160
MEMORY_SHARE = 0.6
# and at most 75% of what its runtime leaves, which binds below ~640 MB (at 384 MB a grove
# would otherwise fill its memory to the last MB)
LEFT_SHARE = 0.75
# Fewer rows than this a grove would sample by default is refused as too little memory (a
# grove of a handful of rows is no forest), unless rows_per_grove asks for it.
MIN_SAMPLE_ROWS = 1_000


def grove_sample(
    spec: dict[str, Any], train: dict[str, Any], held_bytes: int = 0
) -> dict[str, Any]:
    """How many training rows each grove reads: ``rows_per_grove`` if given, else every row
    while they fit train_grove's memory (``GROVES_TRAIN_MEMORY_MB``, else the template's) beside
    the held-out rows (``held_bytes``) it also reads, else as many as fit; and why, for the
    run's summary. ``rows`` is ``None`` when every grove reads every row."""
    n_train = train["n_rows"]
    memory_mb = int(os.environ.get(TRAIN_MEMORY_ENV) or TEMPLATE_MEMORY_MB["train_grove"])
    beside = LEFT_SHARE * (memory_mb - RUNTIME_MB) * 2**20 - held_bytes
    usable = min(beside, MEMORY_SHARE * memory_mb * 2**20)
    fits = max(1, int(usable) // (Layout.of(train).row_bytes + FIT_BYTES_PER_ROW))
    asked = spec.get("rows_per_grove")
    if asked is None and fits < min(n_train, MIN_SAMPLE_ROWS):
        raise RequestError(
            "rows_per_grove",
            f"train_grove's {memory_mb:,} MB holds about {fits:,} of the {n_train:,} training "
            f"rows beside its runtime ({RUNTIME_MB} MB) and the held-out rows "
            f"({held_bytes / 2**20:,.0f} MB): give it more memory (TrainMemorySize deployed, "
            "--memory-mb locally), or set rows_per_grove",
        )
    rows = asked if asked is not None else fits
    return {
        "rows": None if rows >= n_train else rows,
        "of": n_train,
        "fits": fits,
        "asked": asked is not None,
        "memory_mb": memory_mb,
    }
