"""Projection of the deployed wall time of a build, from times measured here at one core.

Runs a small build locally with one worker and one thread (what one 1,769 MB Lambda gets: one
vCPU), reads what each phase took (plan, each grove, merge, scoring) from the execution's
history and the groves' metadata, then predicts new rows in one tile, and projects a deployed
build of 1,000 and 10,000 trees and a batch prediction of 1M rows with a 10,000-tree forest.
Step Functions, Lambda and S3 overheads are not measured here: they are the ASSUMPTIONS below,
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
    "s3_get_s": 0.03,  # one small GET (a grove's metadata) from Lambda
    "s3_read_threads": 16.0,  # merge reads grove metadata 16 at a time (merge.READ_THREADS)
    "s3_mb_per_s": 100.0,  # one function's S3 download throughput (votes, grove files)
}


def phase_seconds(history: list[dict[str, Any]], state: str) -> float:
    """How long a top-level state ran, from its entered and exited events."""
    from groves.engine.asl.history import state_name

    times = [
        datetime.fromisoformat(e["timestamp"])
        for e in history
        if state_name(e) == state and e["type"].endswith(("StateEntered", "StateExited"))
    ]
    return (times[-1] - times[0]).total_seconds()


def measure(source: str, trees: int, grove: int, batch_rows: int) -> dict[str, float]:
    """One-core times: plan, a grove (median), merge and scoring per grove, the sizes of a
    grove's files, and one tile of batch prediction (its trees on ``batch_rows`` rows)."""
    import numpy as np

    from groves.engine.local import run_local
    from groves.store.storage import get_json, open_store

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
        rows = Path(store) / "new.npz"
        X = np.random.default_rng(1).normal(size=(batch_rows, 13)).astype(np.float32)
        np.savez(rows, X=X)
        out = str(Path(store) / "p.csv")
        batch = {"build_id": "p", "data": str(rows), "output": out, "rows_per_chunk": batch_rows}
        predicted = run_local(
            {**batch, "max_concurrency": 1}, store, workers=1, machine="batch_predict"
        )
        assert predicted.status == "SUCCEEDED", predicted.cause
        (tile,) = [
            get_json(opened, key)
            for key in opened.list_keys("p/predictions/")
            if key.endswith(".json") and "/chunks/" in key
        ]
    n_groves = len(metas)
    return {
        "plan_s": phase_seconds(run.history, "Plan"),
        "grove_s": statistics.median(m["seconds"] for m in metas),
        "grove_peak_mib": max(m["peak_rss_mb"] for m in metas),
        "grove_mib": statistics.median(m["bytes"] for m in metas) / 2**20,
        "votes_mib": statistics.median(m["votes"]["bytes"] for m in metas) / 2**20,
        "merge_per_grove_s": phase_seconds(run.history, "Merge") / n_groves,
        "score_per_grove_s": phase_seconds(run.history, "Predict") / n_groves,
        "tile_per_tree_per_krow_s": tile["seconds"] / trees / (batch_rows / 1000),
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
    metadata_s = max(measured["merge_per_grove_s"], a["s3_get_s"] / a["s3_read_threads"])
    votes_s = measured["votes_mib"] / a["s3_mb_per_s"] + measured["score_per_grove_s"]
    phases = {
        "plan": measured["plan_s"] + a["lambda_cold_start_s"],
        "train (Distributed Map)": train,
        "merge (commit)": a["lambda_cold_start_s"] + metadata_s * n_groves,
        "score (optional)": a["lambda_cold_start_s"] + votes_s * n_groves,
        "transitions": 6 * a["state_transition_s"],
    }
    phases["total"] = sum(phases.values())
    phases["total without scoring"] = phases["total"] - phases["score (optional)"]
    return phases


def project_batch(
    measured: dict[str, float], rows: int, trees: int, grove: int, rows_per_chunk: int
) -> dict[str, float]:
    """Deployed seconds of a batch prediction: tiles of ``rows_per_chunk`` rows x shards of at
    most 512 MiB of grove files, each tile downloading its shard, decoding and predicting."""
    from groves.steps.batch import SHARD_BYTES

    a = ASSUMPTIONS
    n_groves = math.ceil(trees / grove)
    per_shard = max(1, min(n_groves, int(SHARD_BYTES / 2**20 // measured["grove_mib"])))
    shards = math.ceil(n_groves / per_shard)
    chunks = math.ceil(rows / rows_per_chunk)
    tiles = shards * chunks
    waves = math.ceil(tiles / min(a["concurrency"], 10_000))
    shard_trees = per_shard * grove
    tile_s = (
        a["lambda_invoke_s"]
        + per_shard * measured["grove_mib"] / a["s3_mb_per_s"]
        + measured["tile_per_tree_per_krow_s"] * shard_trees * rows_per_chunk / 1000
    )
    return {
        "shards": shards,
        "chunks": chunks,
        "tiles": tiles,
        "tile seconds": tile_s,
        "total": 3 * a["lambda_cold_start_s"] + tiles / a["child_start_per_s"] + waves * tile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=327_000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--trees", type=int, default=40, help="trees of the measured build")
    parser.add_argument("--grove", type=int, default=10)
    parser.add_argument("--groves-per-invocation", type=int, default=1)
    parser.add_argument("--batch-rows", type=int, default=20_000, help="rows of the measured tile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="groves-project-data-") as tmp:
        source = large_dataset(Path(tmp) / "data.npz", args.rows, args.features)
        measured = measure(source, args.trees, args.grove, args.batch_rows)
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
        share = p["train (Distributed Map)"] / p["total without scoring"]
        print(f"  the Map's share of a {t:,}-tree build without scoring: {share:.0%}")
    batch = project_batch(measured, 1_000_000, 10_000, args.grove, 10_000)
    print("projected batch prediction of 1,000,000 rows with 10,000 trees, chunks of 10,000:")
    for name, value in batch.items():
        print(f"  {name:26} {value:12.1f}")


if __name__ == "__main__":
    main()
