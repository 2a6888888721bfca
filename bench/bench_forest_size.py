"""Forests of any size: commit seconds by forest size, the grove file against the lz4 pickle,
and a batch's 8-chunk / 1-chunk ratio. Not a test: it prints numbers.

Runs against whichever groves is importable, so the same script measures two checkouts side by
side (``PYTHONPATH=<other checkout>/src python bench/bench_forest_size.py ...``). It uses only
the handlers and the CLI, which both keep.

- commit: a build of ``--trees`` trees is planned on a flights-sized generated table (327,000 x
  13, fully grown trees) and ``--trained`` groves of ``--grove`` trees are really trained; the
  other planned groves are copies of those files with their own metadata (merge checks ids,
  seeds and files, and the copies pass: it reads no tree now, and before it read each grove's
  trees, whatever they are). Then merge is timed at 100, 400 and 1,000 trees, one core.
- file: bytes per tree of a grove's file against ``joblib``'s lz4 pickle of the same forest,
  and the seconds to load the whole model, taken in turn: ``groves.load_model`` against
  ``joblib.load`` of the model file (the merged one before; ``groves export``'s now).
- batch: ``groves predict`` of ``--batch-rows`` rows at concurrency 1, in 8 chunks and in 1.

    python bench/bench_forest_size.py --json after.json
    PYTHONPATH=/tmp/before/src python bench/bench_forest_size.py --json before.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_process import large_dataset


def median_seconds(run: Any, repeat: int) -> float:
    return median_pair(run, None, repeat)[0]


def median_pair(first: Any, second: Any, repeat: int) -> tuple[float, float]:
    """Medians of ``repeat`` timings of each, taken in turn (the machine's noise hits both)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for run, found in zip((first, second), times, strict=True):
            if run is not None:
                started = time.perf_counter()
                run()
                found.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1] or [0.0])


def trained_groves(store: str, source: str, grove: int, trained: int) -> Path:
    """The folder of ``trained`` really trained groves of ``grove`` trees (a run of build ``f``)."""
    from groves.steps import handlers
    from groves.steps.planned import planned_groves
    from groves.store.artifacts import read_plan
    from groves.store.uris import open_store

    request = {"build_id": "f", "dataset": source, "n_trees": trained * grove, "grove_size": grove}
    plan = handlers.plan({"store": store, "request": request})
    spec = read_plan(open_store(store), "f", plan["run_id"])["spec"]
    batch = {"store": store, "build_id": "f", "run_id": plan["run_id"]}
    handlers.train_grove({"Items": planned_groves(spec), "BatchInput": batch})
    return Path(store) / "f" / "runs" / plan["run_id"] / "groves"


def planned_with_copies(store: str, source: str, trees: int, grove: int, trained: Path) -> str:
    """A run of ``trees`` trees (the same split: the same data and seed) whose groves are copies
    of the trained ones, each with its own metadata; its run id."""
    from groves.steps import handlers
    from groves.steps.planned import planned_groves
    from groves.store.artifacts import read_plan
    from groves.store.uris import open_store

    request = {"build_id": "f", "dataset": source, "n_trees": trees, "grove_size": grove}
    plan = handlers.plan({"store": store, "request": request})
    run_id = plan["run_id"]
    spec = read_plan(open_store(store), "f", run_id)["spec"]
    folder = Path(store) / "f" / "runs" / run_id / "groves"
    folder.mkdir(parents=True, exist_ok=True)
    n_trained = len(list(trained.glob("*.json")))
    for item in planned_groves(spec):
        source_id = item["grove_id"] % n_trained
        for path in trained.glob(f"grove_{source_id:05d}.*"):
            suffix = path.name.split(".", 1)[1]
            target = folder / f"grove_{item['grove_id']:05d}.{suffix}"
            if suffix == "json":
                meta = json.loads(path.read_text())
                target.write_text(json.dumps({**meta, **item, "run_id": run_id}))
            else:
                shutil.copyfile(path, target)
    return run_id


def commit_seconds(source: str, grove: int, trained: int, sizes: list[int]) -> dict[int, float]:
    """Merge's seconds at each forest size, one core (one Lambda vCPU)."""
    from groves.steps import handlers

    found = {}
    with tempfile.TemporaryDirectory(prefix="groves-commit-") as store:
        groves_folder = trained_groves(store, source, grove, trained)
        for trees in sizes:
            run_id = planned_with_copies(store, source, trees, grove, groves_folder)
            cores = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {min(cores)})
            started = time.perf_counter()
            handlers.merge({"store": store, "build_id": "f", "run_id": run_id})
            found[trees] = time.perf_counter() - started
            os.sched_setaffinity(0, cores)
    return found


def file_and_load(source: str, trees: int, grove: int, repeat: int, tmp: Path) -> dict[str, Any]:
    """A build's grove files and model against the lz4 pickle, and load seconds."""
    import joblib

    import groves

    store = str(tmp / "store")
    run = [sys.executable, "-m", "groves.cli", "run", "m", "-t", str(trees), "-g", str(grove)]
    subprocess.run([*run, "--dataset", source, "--store", store], check=True, capture_output=True)
    run_id = json.loads((tmp / "store" / "m" / "latest.json").read_text())["run_id"]
    folder = tmp / "store" / "m" / "runs" / run_id
    grove_files = sorted(
        p for p in (folder / "groves").iterdir() if not p.name.endswith(("json", "npy", "lz4"))
    )
    model_file = folder / "model.joblib"
    if not model_file.exists():  # no step writes a model file now: the user's export
        model_file = groves.export_model(store, "m", tmp / "model.joblib")
    model = joblib.load(model_file)
    pickle_bytes = tmp / "pickle.joblib"
    joblib.dump(model, pickle_bytes, compress=("lz4", 1))
    n_nodes = sum(t.tree_.node_count for t in model.estimators_)
    ours, theirs = median_pair(
        lambda: groves.load_model(store, "m"), lambda: joblib.load(model_file), repeat
    )
    return {
        "trees": trees,
        "nodes_per_tree": n_nodes / trees,
        "grove_file_bytes_per_tree": sum(p.stat().st_size for p in grove_files) / trees,
        "lz4_pickle_bytes_per_tree": pickle_bytes.stat().st_size / trees,
        "load_model_s": ours,
        "joblib_load_s": theirs,
        "load_ratio": ours / theirs,
    }


def batch_ratio(store: str, rows: int, repeat: int, tmp: Path) -> dict[str, float]:
    """``groves predict`` wall seconds at concurrency 1: 8 chunks against 1."""
    X = np.random.default_rng(1).normal(size=(rows, 13)).astype(np.float32)
    np.savez(tmp / "new.npz", X=X)
    seconds = {}
    for chunks in (1, 8):
        command = [sys.executable, "-m", "groves.cli", "predict", "m", "--data"]
        command += [str(tmp / "new.npz"), "--out", str(tmp / f"p{chunks}.csv"), "--store", store]
        command += ["--rows-per-chunk", str(-(-rows // chunks)), "--max-concurrency", "1"]
        seconds[chunks] = median_seconds(
            lambda c=command: subprocess.run(c, check=True, capture_output=True), repeat
        )
    return {
        "one_chunk_s": seconds[1],
        "eight_chunks_s": seconds[8],
        "ratio": seconds[8] / seconds[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=327_000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--grove", type=int, default=10)
    parser.add_argument("--trained", type=int, default=4, help="groves really trained")
    parser.add_argument("--sizes", default="100,400,1000")
    parser.add_argument("--model-trees", type=int, default=40)
    parser.add_argument("--batch-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    import groves

    results: dict[str, Any] = {"groves": str(Path(groves.__file__).parent)}
    with tempfile.TemporaryDirectory(prefix="groves-size-") as folder:
        tmp = Path(folder)
        source = large_dataset(tmp / "flights.npz", args.rows, args.features)
        sizes = [int(s) for s in args.sizes.split(",")]
        results["commit_s"] = commit_seconds(source, args.grove, args.trained, sizes)
        results["file"] = file_and_load(source, args.model_trees, args.grove, args.repeat, tmp)
        results["batch"] = batch_ratio(str(tmp / "store"), args.batch_rows, args.repeat, tmp)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
