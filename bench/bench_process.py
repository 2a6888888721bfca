"""Whole-process ratios, groves against a scikit-learn user: wall time and peak memory.

The scikit-learn user's script fits one ``RandomForestClassifier(n_jobs=-1)`` on the same
training rows, scores it on the same held-out rows and saves it with joblib. ``groves run``
trains the same number of trees in groves, merges and scores them. Peak memory is the
proportional set size (PSS) summed over the whole process tree, sampled while it runs, so pages
shared between processes (memory-mapped data, forked workers) count once. Medians of --repeat
runs, side by side. Not a test: it prints numbers.

    python bench/bench_process.py --data digits --trees 100 --grove 10
    python bench/bench_process.py --data large --rows 327000 --features 13 --trees 100
    python bench/bench_process.py --data iris --trees 2000 --grove 1 --groves-per-invocation 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

SKLEARN_USER = """
import json, sys, joblib, numpy as np
from sklearn.ensemble import RandomForestClassifier
from groves.data.datasets import load_dataset, split
source, trees, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = split(load_dataset(source), 0.25, 0, stratify=True)
forest = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=0)
forest.fit(data.X_train, data.y_train)
accuracy = float(np.mean(forest.predict(data.X_test) == data.y_test))
joblib.dump(forest, out, compress=3)
print(json.dumps({"accuracy": accuracy}))
"""


def large_dataset(path: Path, rows: int, features: int) -> str:
    """Generated tabular data (float32 features, binary labels with 10% flipped) as ``.npz``."""
    X, y = make_classification(rows, features, n_informative=8, flip_y=0.1, random_state=0)
    np.savez(path, X=X.astype(np.float32), y=y)
    return str(path)


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total / 1024


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak PSS (MiB) of the process tree, and stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, done = 0.0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, pss_mib(descendants(process.pid)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{command[:4]} failed: {err.decode()[-2000:]}")
    return wall, peak, out.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("digits", "iris", "large"), default="digits")
    parser.add_argument("--rows", type=int, default=327_000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--grove", type=int, default=10)
    parser.add_argument("--groves-per-invocation", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--src", help="PYTHONPATH for groves (e.g. another checkout's src) instead of this one"
    )
    args = parser.parse_args()
    env = {**os.environ, **({"PYTHONPATH": args.src} if args.src else {})}
    with tempfile.TemporaryDirectory(prefix="groves-bench-") as tmp:
        source = args.data
        if args.data == "large":
            source = large_dataset(Path(tmp) / "large.npz", args.rows, args.features)
        sk_runs, gr_runs = [], []
        for i in range(args.repeat):
            sk_cmd = [
                sys.executable,
                "-c",
                SKLEARN_USER,
                source,
                str(args.trees),
                f"{tmp}/sk.joblib",
            ]
            wall, peak, out = measure(sk_cmd, env)
            sk_runs.append((wall, peak, json.loads(out.strip().splitlines()[-1])["accuracy"]))
            gr_cmd = [sys.executable, "-m", "groves.cli", "run", f"b{i}", "-t", str(args.trees)]
            gr_cmd += ["-g", str(args.grove), "-p", "--dataset", source, "--store", f"{tmp}/store"]
            gr_cmd += ["--max-concurrency", "40"]
            gr_cmd += ["--groves-per-invocation", str(args.groves_per_invocation)]
            wall, peak, out = measure(gr_cmd, env)
            score = next(line for line in out.splitlines() if line.startswith("score"))
            gr_runs.append((wall, peak, float(score.split()[2])))
    rows = [
        ("wall seconds", 0),
        ("peak PSS of the process tree, MiB", 1),
        ("held-out accuracy", 2),
    ]
    print(
        f"{args.data}: {args.trees} trees, groves of {args.grove} "
        f"({args.groves_per_invocation} per invocation), medians of {args.repeat}"
    )
    print(f"{'measure':36} {'scikit-learn':>12} {'groves':>10} {'ratio':>7}")
    for name, i in rows:
        sk = statistics.median(r[i] for r in sk_runs)
        gr = statistics.median(r[i] for r in gr_runs)
        print(f"{name:36} {sk:12.4g} {gr:10.4g} {gr / sk:7.3f}")


if __name__ == "__main__":
    main()
