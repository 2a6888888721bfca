"""The serve function's engine against the alternatives, side by side in one run. Not a test:
it prints numbers (and ``--json`` keeps them).

A classifier of fully grown trees is built with groves (``run_local``) on 50,000 x 20 generated
rows (``make_classification``), at 100 and 1,000 trees (kept in ``--store`` for the next run).
For each size, warm, in this process:

- one row, predict_proba or its equivalent, p50 and p99 of ``--calls`` calls (each engine in
  turn, so the machine's noise hits all): scikit-learn's forest (``groves.load_model``,
  ``n_jobs=1``), a Python loop over its trees' ``predict_proba``, treelite's GTIL (if
  installed), ONNX Runtime on ``groves export --format onnx``'s model (one thread), and the
  kernel (``groves.forest.kernel``) walking with numpy and with its compiled walk;
- rows per second for batches of 1, 10, 100 and 1,000 rows (scikit-learn, ONNX Runtime, kernel);
- the model's load: ``groves.load_model`` against ``forest.served.load_served`` (seconds), and
  bytes per node: scikit-learn's node record and value row against the kernel's;
- the ONNX export's seconds.

Then, at 100 trees: the HTTP round trip of one row through a real ``groves serve`` process
(persistent connections): p50 and p99 with one client, and under 8 concurrent clients; and the
serve function's imports in a fresh interpreter pinned to one core (``taskset -c 0``).

    python bench/bench_serve.py [--store /tmp/bench-serve] [--calls 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import groves
from groves.engine.local import run_local
from groves.forest import native
from groves.forest.served import load_served
from groves.store.local import LocalStore

ROWS, FEATURES = 50_000, 20


def build(store: Path, n_trees: int) -> str:
    """The build ``f<n_trees>`` in ``store`` (trained once, then reused)."""
    name = f"f{n_trees}"
    if (store / name / "latest.json").is_file():
        return name
    from sklearn.datasets import make_classification

    X, y = make_classification(ROWS, FEATURES, n_informative=10, random_state=0)
    data = store.parent / "bench-serve.npz"
    if not data.is_file():
        np.savez(data, X=X, y=y)
    request = {
        "build_id": name,
        "n_trees": n_trees,
        "grove_size": max(1, n_trees // 10),
        "dataset": str(data),
        "seed": 0,
    }
    run = run_local(request, str(store), workers=2)
    assert run.status == "SUCCEEDED", run.cause
    return name


def percentiles(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def interleaved(engines: dict[str, Any], calls: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 seconds of each engine's call, the engines taken in turn."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    for run in engines.values():  # warm: first calls are not counted
        for _ in range(3):
            run()
    for _ in range(calls):
        for name, run in engines.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: percentiles(found) for name, found in times.items()}


def engines_for(store: Path, name: str, X: np.ndarray, onnx_path: Path) -> dict[str, Any]:
    """Each engine's predict_proba of ``X`` (a function of the rows)."""
    forest = groves.load_model(str(store), name)
    forest.set_params(n_jobs=1)
    trees = forest.estimators_
    kernel = load_served(LocalStore(store), name).kernel

    def loop(rows: np.ndarray) -> np.ndarray:
        rows = rows.astype(np.float32)
        total = trees[0].predict_proba(rows, check_input=False)
        for tree in trees[1:]:
            total = total + tree.predict_proba(rows, check_input=False)
        return total / len(trees)

    found: dict[str, Any] = {
        "scikit-learn": forest.predict_proba,
        "python loop": loop,
    }
    try:
        import treelite

        model = treelite.sklearn.import_model(forest)
        found["treelite GTIL"] = lambda rows: treelite.gtil.predict(
            model, rows.astype(np.float32), nthread=1
        )
    except Exception as exc:  # not installed, or its importer refused
        print(f"(treelite not measured: {type(exc).__name__}: {exc})", file=sys.stderr)
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        found["ONNX Runtime"] = lambda rows: session.run(
            ["probabilities"], {"X": rows.astype(np.float32)}
        )[0]
    except ImportError:
        print("(onnxruntime not installed: not measured)", file=sys.stderr)
    compiled = native.walker()

    def walked_by(walk: Any) -> Any:
        def run(rows: np.ndarray) -> Any:
            native.use(walk)
            return kernel.predict_proba(rows)

        return run

    found["groves kernel, numpy"] = walked_by(None)
    if compiled is not None:
        found["groves kernel, compiled"] = walked_by(compiled)
    for name, run in found.items():  # every engine answers the same
        if name != "treelite GTIL":
            np.testing.assert_allclose(run(X[:50]), forest.predict_proba(X[:50]), atol=1e-5)
    return found


def one_row_calls(engines: dict[str, Any], X: np.ndarray) -> dict[str, Any]:
    """Each engine called on one row at a time, a different row each call."""

    def calls(run: Any) -> Any:
        rows = iter(range(10**9))
        return lambda: run(X[next(rows) % len(X)][None])

    return {name: calls(run) for name, run in engines.items()}


def sizes(store: Path, name: str, repeat: int) -> dict[str, Any]:
    """Load seconds and bytes per node, scikit-learn's forest against the kernel."""
    loads, served_loads = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        forest = groves.load_model(str(store), name)
        loads.append(time.perf_counter() - started)
        started = time.perf_counter()
        served = load_served(LocalStore(store), name)
        served_loads.append(time.perf_counter() - started)
    n_nodes = sum(t.tree_.node_count for t in forest.estimators_)
    sklearn_bytes = sum(
        t.tree_.node_count * (64 + t.tree_.value.strides[0]) for t in forest.estimators_
    )
    kernel = served.kernel
    return {
        "nodes": n_nodes,
        "load_model_s": statistics.median(loads),
        "load_served_s": statistics.median(served_loads),
        "sklearn_bytes_per_node": sklearn_bytes / n_nodes,
        "kernel_bytes_per_node": kernel.nbytes / n_nodes,
        "kernel_node_bytes": kernel.nodes.itemsize,
        "distinct_leaf_rows": len(kernel.table),
        "lambda_memory_mb": served.lambda_memory_mb(),
    }


def export_seconds(store: Path, name: str, path: Path) -> float:
    from groves.forest.onnx_export import export_onnx

    started = time.perf_counter()
    export_onnx(LocalStore(store), name, path)
    return time.perf_counter() - started


def http_round_trips(store: Path, name: str, X: np.ndarray, calls: int) -> dict[str, Any]:
    """One row POSTed to a real ``groves serve`` process: one client, then 8 at once."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    server = subprocess.Popen(
        [sys.executable, "-m", "groves.cli", "serve", name, "--store", str(store), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = next(line for line in server.stdout if line.startswith("listening")).split()[1]
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        bodies = [json.dumps({"rows": [row.tolist()]}).encode() for row in X[:64]]  # no names

        def client(n: int, out: list[float]) -> None:
            conn = http.client.HTTPConnection(host, int(port))
            for i in range(n):
                started = time.perf_counter()
                conn.request(
                    "POST", "/", bodies[i % len(bodies)], {"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                response.read()
                out.append(time.perf_counter() - started)
                assert response.status == 200
            conn.close()

        client(20, [])  # warm
        one: list[float] = []
        client(calls, one)
        many: list[list[float]] = [[] for _ in range(8)]
        threads = [threading.Thread(target=client, args=(calls, m)) for m in many]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        together = [t for m in many for t in m]
        return {
            "one_client": percentiles(one),
            "eight_clients": percentiles(together),
            "eight_clients_rps": len(together) / elapsed,
        }
    finally:
        server.terminate()
        server.wait(10)


def cold_imports() -> dict[str, float]:
    """The serve function's imports in a fresh interpreter at one core: groves' serving code
    (numpy, lz4 with it), and boto3 (in Lambda's runtime, imported when the store is S3)."""
    code = (
        "import time, sys; t = time.perf_counter(); sys.path.insert(0, 'functions/serve'); "
        "import app; a = time.perf_counter() - t; t = time.perf_counter(); import boto3; "
        "b = time.perf_counter() - t; print(a, b)"
    )
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROVES_")}
    env["PYTHONPATH"] = str(root / "src")
    runs = []
    for _ in range(5):
        out = subprocess.run(
            ["taskset", "-c", "0", sys.executable, "-c", code],
            cwd=root,
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        runs.append([float(v) for v in out.stdout.split()])
    serve_s, boto_s = (statistics.median(r[i] for r in runs) for i in (0, 1))
    return {"serve_imports_s": serve_s, "boto3_s": boto_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(Path(tempfile.gettempdir()) / "bench-serve"))
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--trees", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    X = np.empty((0, FEATURES))
    for n_trees in args.trees:
        name = build(store, n_trees)
        X = np.load(store.parent / "bench-serve.npz")["X"][-2000:]
        onnx_path = store.parent / f"{name}.onnx"
        found: dict[str, Any] = {"export_onnx_s": export_seconds(store, name, onnx_path)}
        found |= sizes(store, name, 3)
        engines = engines_for(store, name, X, onnx_path)
        one = interleaved(
            one_row_calls(engines, X), args.calls if n_trees <= 100 else max(30, args.calls // 5)
        )
        found["one_row"] = one
        batches: dict[str, dict[int, float]] = {}
        for k in (
            "scikit-learn",
            "ONNX Runtime",
            "groves kernel, numpy",
            "groves kernel, compiled",
        ):
            if k not in engines:
                continue
            batches[k] = {}
            for size in (1, 10, 100, 1000):
                repeat = max(3, 200 // size) if n_trees <= 100 else max(3, 40 // size)
                times = []
                for i in range(repeat):  # other rows each time: none is served from cache
                    first = (i * size) % (len(X) - size)
                    started = time.perf_counter()
                    engines[k](X[first : first + size])
                    times.append(time.perf_counter() - started)
                batches[k][size] = size / statistics.median(times)
        found["rows_per_second"] = batches
        results[str(n_trees)] = found
        report_size(n_trees, found)
    if "100" in results:
        results["http"] = http_round_trips(store, "f100", X, args.calls)
        http = results["http"]
        print(
            f"\nHTTP, one row, 100 trees (groves serve, persistent connections): one client "
            f"p50 {http['one_client'][0] * 1e3:.2f} ms, p99 {http['one_client'][1] * 1e3:.2f} ms;"
            f" 8 clients p50 {http['eight_clients'][0] * 1e3:.2f} ms, p99 "
            f"{http['eight_clients'][1] * 1e3:.2f} ms ({http['eight_clients_rps']:.0f} requests/s)"
        )
    results["cold"] = cold_imports()
    cold = results["cold"]
    print(
        f"cold start at one core: the serve function's imports {cold['serve_imports_s']:.3f} s "
        f"(+ boto3 {cold['boto3_s']:.3f} s, in Lambda's runtime, for an S3 store)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report_size(n_trees: int, found: dict[str, Any]) -> None:
    print(f"\n== {n_trees} trees ({found['nodes']:,} nodes, fully grown, {ROWS:,} x {FEATURES}) ==")
    print("one row, warm, predict_proba      p50 ms     p99 ms    vs scikit-learn (p50)")
    base = found["one_row"]["scikit-learn"][0]
    for name, (p50, p99) in found["one_row"].items():
        print(f"  {name:<30} {p50 * 1e3:9.3f}  {p99 * 1e3:9.3f}    {base / p50:8.1f}x")
    print("rows per second, batch of         1          10         100        1000")
    for name, by_size in found["rows_per_second"].items():
        cells = "".join(f"{by_size[s]:>11,.0f}" for s in (1, 10, 100, 1000))
        print(f"  {name:<28}{cells}")
    print(
        f"load: groves.load_model {found['load_model_s']:.3f} s, kernel (load_served) "
        f"{found['load_served_s']:.3f} s; bytes per node: scikit-learn "
        f"{found['sklearn_bytes_per_node']:.1f}, kernel {found['kernel_bytes_per_node']:.2f} "
        f"({found['kernel_node_bytes']} a node + {found['distinct_leaf_rows']} distinct leaf "
        f"value rows); ServeMemorySize {found['lambda_memory_mb']} MB; ONNX export "
        f"{found['export_onnx_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
