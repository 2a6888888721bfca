"""Score a committed run on its held-out rows from its groves' stored votes: each grove summed
its trees' votes on the test rows when it was trained, so scoring adds small arrays and never
loads the forest."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from groves.data.prepared import read_prepared
from groves.forest.measures import measures
from groves.forest.votes import Target
from groves.steps.cost import Invocation, run_cost
from groves.steps.trained import stored_votes
from groves.store.artifacts import (
    metrics_key,
    read_committed_plan,
    read_manifest,
)
from groves.store.codec import put_json
from groves.store.protocol import Store
from groves.store.records import record_format

SUMMARY_CLASSES = 10  # classes whose measures the execution's output carries (then: the file)


def score_build(
    store: Store,
    build_id: str,
    run_id: str | None = None,
    invocation: Invocation | None = None,
) -> dict[str, Any]:
    """Write the run's ``metrics.json``: the forest's held-out score, its other measures
    (``groves.forest.measures``), each grove's score, and the score as trees are added grove
    by grove. ``run_id`` defaults to the latest committed run;
    every votes file is checked against the manifest before it is read. Returns the summary
    with the run's whole ``cost``, scoring included."""
    invocation = invocation or Invocation.begin("predict")
    started = time.perf_counter()
    manifest = read_manifest(store, build_id, run_id)
    run_id = manifest["run_id"]
    plan = read_committed_plan(store, manifest)
    y_test = read_prepared(store, plan, ("y_test",)).y_test
    target = Target.of(plan["data"])
    total: np.ndarray | None = None
    n_trees, grove_scores, by_trees = 0, [], []
    for record, votes in stored_votes(store, build_id, run_id, manifest["groves"]):
        total = votes if total is None else total + votes
        n_trees += record["n_trees"]
        grove_scores.append(target.score(y_test, target.decide(votes, record["n_trees"])))
        by_trees.append(
            {"n_trees": n_trees, "score": target.score(y_test, target.decide(total, n_trees))}
        )
    metrics = {
        "format": record_format("metrics"),
        "build_id": build_id,
        "run_id": run_id,
        "metric": target.metric,
        "score": by_trees[-1]["score"],
        "n_test": len(y_test),
        "n_trees": n_trees,
        "n_groves": len(grove_scores),
        "grove_score_min": min(grove_scores),
        "grove_score_mean": float(np.mean(grove_scores)),
        "grove_score_max": max(grove_scores),
        "grove_scores": grove_scores,
        "score_by_trees": by_trees,
        **measures(target, y_test, total, n_trees),
        "seconds": round(time.perf_counter() - started, 3),
    }
    metrics["usage"] = invocation.usage()
    put_json(store, metrics_key(build_id, run_id), metrics)
    left_out = ["grove_scores", "score_by_trees", "usage"]
    if len(metrics.get("per_class", ())) > SUMMARY_CLASSES:
        left_out.append("per_class")  # the output stays small whatever the classes
    summary = {k: v for k, v in metrics.items() if k not in left_out}
    if "per_output" in metrics:  # as small: the first outputs, their classes if few
        shown = metrics["per_output"][:SUMMARY_CLASSES]
        if sum(len(o["per_class"]) for o in shown) > SUMMARY_CLASSES:
            shown = [{k: v for k, v in o.items() if k != "per_class"} for o in shown]
        summary["per_output"] = shown
        summary["n_outputs"] = target.n_outputs
    return {
        **summary,
        "metrics": f"{store.uri}/{metrics_key(build_id, run_id)}",
        "cost": run_cost(manifest, metrics),
    }
