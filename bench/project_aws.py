"""Projection of the deployed wall time of a build, from times measured here at one core.

Runs a small build locally with one worker and one thread (what one 1,769 MB Lambda gets: one
vCPU), reads what each phase took (plan, each grove, merge, scoring) from the execution's
history and the groves' metadata, then predicts new rows in one tile; trains two more groves
with two threads on two cores (the speedup a grove gets from a second vCPU), and times each
function's imports in a fresh interpreter at one core (its cold start beyond the runtime's).
From these it projects a deployed build of 1,000 and 10,000 trees and a batch prediction of 1M
rows with a 10,000-tree forest, each function at the template's default memory and so its CPU
share (``groves.steps.cost.TEMPLATE_MEMORY_MB``). Step Functions, Lambda and S3 overheads are
not measured here: they are the ASSUMPTIONS below, printed with the result. Not a test: it
prints numbers.

    python bench/project_aws.py                         # 327,000 x 13 generated rows
    python bench/project_aws.py --rows 56000 --features 784 --grove 10
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_process import large_dataset

from groves.steps.cost import TEMPLATE_MEMORY_MB
from groves.store.protocol import READ_THREADS

ROOT = Path(__file__).resolve().parent.parent
STEP_MODULES = {  # each function's step module, which its handler imports when called
    "plan": "groves.steps.plan",
    "train_grove": "groves.steps.train",
    "merge": "groves.steps.commit",
    "predict": "groves.steps.score",
    "plan_batch": "groves.steps.batch",
    "predict_chunk": "groves.steps.batch",
    "assemble_predictions": "groves.steps.batch",
}

# What a deployed build adds that a local run does not measure (stated, not measured):
ASSUMPTIONS = {
    # a new execution environment before the handler's imports: runtime and layer (the 3 s
    # assumed for a whole cold start before, less the 1.45 s of imports measured then)
    "lambda_init_s": 1.5,
    "mb_per_vcpu": 1769.0,  # Lambda's CPU share grows with memory: one vCPU at 1,769 MB
    "lambda_invoke_s": 0.05,  # a warm invocation's overhead, each child's Task
    "child_start_per_s": 100.0,  # child executions a Distributed Map starts per second
    "state_transition_s": 0.1,  # each state of the parent execution (Plan -> ... -> Done)
    "concurrency": 1000.0,  # Lambda's default concurrent executions per region
    "s3_get_s": 0.03,  # one small GET (a grove's metadata) from Lambda
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


def import_seconds(function: str, repeat: int = 5) -> float:
    """Median seconds a fresh interpreter at one core takes to import ``function``'s entry
    point, its step and boto3: the function's cold start beyond the runtime's."""
    code = (
        f"import sys, time; sys.path.insert(0, 'functions/{function}'); t = time.perf_counter()\n"
        f"import app, boto3, {STEP_MODULES[function]}; print(time.perf_counter() - t)"
    )
    core = str(min(os.sched_getaffinity(0)))
    runs = [
        float(
            subprocess.run(
                ["taskset", "-c", core, sys.executable, "-c", code],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(repeat)
    ]
    return statistics.median(runs)


def two_core_grove_seconds(source: str, grove: int) -> float | None:
    """Median seconds of a grove trained with two threads on two cores (two groves, one at a
    time), or None on a one-core machine. Run in a process of its own, whose workers fork from
    a server of their own, before this one keeps to one core."""
    if len(os.sched_getaffinity(0)) < 2:
        return None
    command = [sys.executable, __file__, "--two-core-grove", source, "--grove", str(grove)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def print_two_core_grove(source: str, grove: int) -> None:
    """``--two-core-grove``: train two groves at two cores and print a grove's median seconds."""
    from groves.engine.local import run_local
    from groves.store.codec import get_json
    from groves.store.uris import open_store

    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
    with tempfile.TemporaryDirectory(prefix="groves-project-2-") as store:
        request = {"build_id": "p2", "dataset": source, "n_trees": 2 * grove, "grove_size": grove}
        run = run_local({**request, "max_concurrency": 1}, store, workers=1)
        assert run.status == "SUCCEEDED", run.cause
        opened = open_store(store)
        prefix = f"p2/runs/{run.output['run_id']}/groves/"
        metas = [get_json(opened, k) for k in opened.list_keys(prefix) if k.endswith(".json")]
    print(statistics.median(m["seconds"] for m in metas))


def measure(source: str, trees: int, grove: int, batch_rows: int) -> dict[str, float]:
    """One-core times: plan, a grove (median), merge and scoring per grove, the sizes of a
    grove's files, and one tile of batch prediction (its trees on ``batch_rows`` rows); a
    grove at two cores; each function's imports."""
    import numpy as np

    from groves.engine.local import run_local
    from groves.store.codec import get_json
    from groves.store.uris import open_store

    two_core_grove_s = two_core_grove_seconds(source, grove)
    # one core for this process and the workers it starts: each invocation gets one thread
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory(prefix="groves-project-") as store:
        request = {"build_id": "p", "dataset": source, "n_trees": trees, "grove_size": grove}
        run = run_local({**request, "predict": True, "max_concurrency": 1}, store, workers=1)
        assert run.status == "SUCCEEDED", run.cause
        opened = open_store(store)
        run_id = run.output["run_id"]
        plan_usage = get_json(opened, f"p/runs/{run_id}/plan.json")["usage"]
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
        # the plan invocation's own duration: its worker's imports are in import_plan_s
        "plan_s": plan_usage["billed_ms"] / 1000,
        "grove_s": statistics.median(m["seconds"] for m in metas),
        "grove_peak_mib": max(m["peak_rss_mb"] for m in metas),
        "grove_mib": statistics.median(m["bytes"] for m in metas) / 2**20,
        "votes_mib": statistics.median(m["votes"]["bytes"] for m in metas) / 2**20,
        "merge_per_grove_s": phase_seconds(run.history, "Merge") / n_groves,
        "score_per_grove_s": phase_seconds(run.history, "Predict") / n_groves,
        "tile_per_tree_per_krow_s": tile["seconds"] / trees / (batch_rows / 1000),
        "grove_two_core_s": two_core_grove_s or math.nan,
        **{f"import_{name}_s": import_seconds(name) for name in STEP_MODULES},
    }


def vcpus(function: str) -> float:
    """The CPU share of ``function`` at the template's default memory."""
    return TEMPLATE_MEMORY_MB[function] / ASSUMPTIONS["mb_per_vcpu"]


def cold_start(measured: dict[str, float], function: str) -> float:
    return ASSUMPTIONS["lambda_init_s"] + measured[f"import_{function}_s"]


def grove_seconds(measured: dict[str, float]) -> float:
    """A grove at train_grove's CPU share: its one-core time over the speedup its threads get,
    at most the two-core speedup measured here (past two vCPUs nothing more is assumed)."""
    speedup = measured["grove_s"] / measured["grove_two_core_s"]
    if math.isnan(speedup):
        speedup = 1.0
    return measured["grove_s"] / max(1.0, min(vcpus("train_grove"), speedup))


def project(measured: dict[str, float], trees: int, grove: int, per_batch: int) -> dict[str, float]:
    """Deployed seconds of each phase for ``trees`` trees in groves of ``grove``."""
    a = ASSUMPTIONS
    n_groves = math.ceil(trees / grove)
    children = math.ceil(n_groves / per_batch)
    waves = math.ceil(children / min(a["concurrency"], 10_000))
    child_s = a["lambda_invoke_s"] + per_batch * grove_seconds(measured)
    train = (
        cold_start(measured, "train_grove")
        + children / a["child_start_per_s"]  # the last child starts this late
        + waves * child_s
    )
    metadata_s = max(measured["merge_per_grove_s"], a["s3_get_s"] / READ_THREADS)
    votes_s = measured["votes_mib"] / a["s3_mb_per_s"] + measured["score_per_grove_s"]
    phases = {
        # plan reads and encodes in one thread: slower below one vCPU, no faster above
        "plan": cold_start(measured, "plan") + measured["plan_s"] / min(1.0, vcpus("plan")),
        "train (Distributed Map)": train,
        "merge (commit)": cold_start(measured, "merge") + metadata_s * n_groves,
        "score (optional)": cold_start(measured, "predict") + votes_s * n_groves,
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
        "total": sum(
            cold_start(measured, f) for f in ("plan_batch", "predict_chunk", "assemble_predictions")
        )
        + tiles / a["child_start_per_s"]
        + waves * tile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=327_000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--trees", type=int, default=40, help="trees of the measured build")
    parser.add_argument("--grove", type=int, default=10)
    parser.add_argument("--groves-per-invocation", type=int, default=1)
    parser.add_argument("--batch-rows", type=int, default=20_000, help="rows of the measured tile")
    parser.add_argument("--two-core-grove", metavar="SOURCE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.two_core_grove:
        return print_two_core_grove(args.two_core_grove, args.grove)
    with tempfile.TemporaryDirectory(prefix="groves-project-data-") as tmp:
        source = large_dataset(Path(tmp) / "data.npz", args.rows, args.features)
        measured = measure(source, args.trees, args.grove, args.batch_rows)
    print(f"measured at one core on {args.rows:,} x {args.features} rows, groves of {args.grove}:")
    for name, value in measured.items():
        print(f"  {name:22} {value:10.4f}")
    print(
        f"  {'grove at train_grove':22} {grove_seconds(measured):10.4f}"
        f"  ({vcpus('train_grove'):.2f} vCPU at {TEMPLATE_MEMORY_MB['train_grove']:,} MB)"
    )
    print(f"  {'S3 reads at once':22} {READ_THREADS:10d}  (groves.store.protocol.READ_THREADS)")
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
