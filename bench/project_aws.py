"""Projection of the deployed wall time of a build, from times measured here at one core.

Runs a small build locally with one worker and one thread (what one 1,769 MB Lambda gets: one
vCPU), reads what each phase took (plan, each grove, merge, scoring) from the execution's
history and the groves' metadata, and projects a deployed build of 1,000 and 10,000 trees.
Step Functions and Lambda overheads are not measured here: they are the ASSUMPTIONS below,
printed with the result. Not a test: it prints numbers.

    python bench/project_aws.py                         # 327,000 x 13 generated rows
    python bench/project_aws.py --rows 56000 --features 784 --grove 10
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_process import large_dataset

# What a deployed build adds that a local run does not measure (stated, not measured):
ASSUMPTIONS = {
    "lambda_cold_start_s": 3.0,  # Python + a scikit-learn layer, first invocation per container
    "lambda_invoke_s": 0.05,  # a warm invocation's overhead, each child's Task
    "child_start_per_s": 100.0,  # child executions a Distributed Map starts per second
    "state_transition_s": 0.1,  # each state of the parent execution (Plan -> ... -> Done)
    "concurrency": 1000.0,  # Lambda's default concurrent executions per region
}


def phase_seconds(history: list[dict[str, Any]], state: str) -> float:
    """How long a top-level state ran, from its entered and exited events."""
    from groves.asl.history import state_name

    times = [
        datetime.fromisoformat(e["timestamp"])
        for e in history
        if state_name(e) == state and e["type"].endswith(("StateEntered", "StateExited"))
    ]
    return (times[-1] - times[0]).total_seconds()


def measure(source: str, trees: int, grove: int) -> dict[str, float]:
    """One-core times: plan, a grove (median), merge per tree, scoring per grove."""
    from groves.local import run_local
    from groves.storage import get_json, open_store

    # one core for this process and the workers it starts: each invocation gets one thread
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory(prefix="groves-project-") as store:
        request = {"build_id": "p", "dataset": source, "n_trees": trees, "grove_size": grove}
        run = run_local({**request, "predict": True, "max_concurrency": 1}, store, workers=1)
        assert run.status == "SUCCEEDED", run.cause
        opened = open_store(store)
        run_id = run.output["run_id"]
        metas = [
            get_json(opened, key)
            for key in opened.list_keys(f"p/runs/{run_id}/groves/")
            if key.endswith(".json")
        ]
    n_groves = len(metas)
    return {
        "plan_s": phase_seconds(run.history, "Plan"),
        "grove_s": statistics.median(m["seconds"] for m in metas),
        "grove_peak_mib": max(m["peak_rss_mb"] for m in metas),
        "merge_per_tree_s": phase_seconds(run.history, "Merge") / trees,
        "score_per_grove_s": phase_seconds(run.history, "Predict") / n_groves,
    }


def project(measured: dict[str, float], trees: int, grove: int, per_batch: int) -> dict[str, float]:
    """Deployed seconds of each phase for ``trees`` trees in groves of ``grove``."""
    a = ASSUMPTIONS
    n_groves = math.ceil(trees / grove)
    children = math.ceil(n_groves / per_batch)
    waves = math.ceil(children / min(a["concurrency"], 10_000))
    child_s = a["lambda_invoke_s"] + per_batch * measured["grove_s"]
    train = (
        a["lambda_cold_start_s"]
        + children / a["child_start_per_s"]  # the last child starts this late
        + waves * child_s
    )
    phases = {
        "plan": measured["plan_s"] + a["lambda_cold_start_s"],
        "train (Distributed Map)": train,
        "merge": a["lambda_cold_start_s"] + measured["merge_per_tree_s"] * trees,
        "score": a["lambda_cold_start_s"] + measured["score_per_grove_s"] * n_groves,
        "transitions": 6 * a["state_transition_s"],
    }
    phases["total"] = sum(phases.values())
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=327_000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--trees", type=int, default=40, help="trees of the measured build")
    parser.add_argument("--grove", type=int, default=10)
    parser.add_argument("--groves-per-invocation", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="groves-project-data-") as tmp:
        source = large_dataset(Path(tmp) / "data.npz", args.rows, args.features)
        measured = measure(source, args.trees, args.grove)
    print(f"measured at one core on {args.rows:,} x {args.features} rows, groves of {args.grove}:")
    for name, value in measured.items():
        print(f"  {name:22} {value:10.4f}")
    print("assumed (not measured here):")
    for name, value in ASSUMPTIONS.items():
        print(f"  {name:22} {value:10.4g}")
    projections = {
        t: project(measured, t, args.grove, args.groves_per_invocation) for t in (1000, 10_000)
    }
    per = args.groves_per_invocation
    print(f"projected deployed seconds, groves of {args.grove}, {per} per invocation:")
    print(f"  {'phase':26} {'1,000 trees':>12} {'10,000 trees':>13}")
    for phase in projections[1000]:
        row = [projections[t][phase] for t in (1000, 10_000)]
        print(f"  {phase:26} {row[0]:12.1f} {row[1]:13.1f}")
    for t, p in projections.items():
        share = (p["merge"] + p["score"]) / p["total"]
        print(f"  merge + score share of {t:,} trees: {share:.0%}")


if __name__ == "__main__":
    main()
