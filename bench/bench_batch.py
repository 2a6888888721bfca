"""Batch prediction against a scikit-learn user who loads the exported model and predicts.

Trains a build on generated tabular data, then predicts the same number of new rows two ways,
side by side: ``groves predict`` (the batch state machine, chunks in warm workers, every grove
loaded one at a time) and one process that ``joblib.load``s the model, calls ``predict_proba``
and writes the same CSV. Prints wall-time and peak-memory (PSS of the process tree) ratios,
rows per second, and one chunk's peak memory against the model's size. Not a test.

    python bench/bench_batch.py --rows 300000 --trees 40 --grove 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import lz4.frame
import numpy as np
from bench_process import large_dataset, measure

SKLEARN_USER = """
import csv, sys, joblib, numpy as np
model = joblib.load(sys.argv[1])
X = np.load(sys.argv[2])["X"]
proba = model.predict_proba(X)
prediction = model.classes_.take(np.argmax(proba, axis=1))
with open(sys.argv[3], "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["prediction"] + [f"proba_{c}" for c in model.classes_])
    for label, row in zip(prediction.tolist(), proba.tolist()):
        writer.writerow([label, *row])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--features", type=int, default=13)
    parser.add_argument("--trees", type=int, default=40)
    parser.add_argument("--grove", type=int, default=10)
    parser.add_argument("--rows-per-chunk", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="groves-batch-bench-") as tmp:
        root = Path(tmp)
        train = large_dataset(root / "train.npz", args.rows, args.features)
        store = str(root / "store")
        train_cmd = [sys.executable, "-m", "groves.cli", "run", "b", "-t", str(args.trees)]
        train_cmd += ["-g", str(args.grove), "--dataset", train, "--store", store]
        subprocess.run(train_cmd, check=True, capture_output=True)
        rng = np.random.default_rng(1)
        X = np.load(train)["X"][rng.permutation(args.rows)]  # "new" rows: the same shape
        np.savez(root / "new.npz", X=X)
        model = root / "model.joblib"  # the one file a scikit-learn user loads: groves export
        export = [sys.executable, "-m", "groves.cli", "export", "b", "--out", str(model)]
        subprocess.run([*export, "--store", store], check=True, capture_output=True)
        sk_runs, gr_runs = [], []
        for i in range(args.repeat):
            sk_out = root / f"sk{i}.csv"
            sk_cmd = [sys.executable, "-c", SKLEARN_USER, str(model), str(root / "new.npz")]
            sk_runs.append(measure([*sk_cmd, str(sk_out)], env))
            gr_out = root / f"gr{i}.csv"
            gr_cmd = [sys.executable, "-m", "groves.cli", "predict", "b", "--data"]
            gr_cmd += [str(root / "new.npz"), "--out", str(gr_out), "--store", store]
            gr_cmd += ["--rows-per-chunk", str(args.rows_per_chunk)]
            gr_runs.append(measure(gr_cmd, env))
            assert sk_out.read_text().splitlines()[1:] == gr_out.read_text().splitlines()[1:]
        chunks = sorted((root / "store" / "b" / "predictions").glob("*/chunks/*.json"))
        chunk_peak = max(json.loads(c.read_text())["peak_rss_mb"] for c in chunks)
        model_bytes = model.stat().st_size
        model_raw = len(lz4.frame.decompress(model.read_bytes()))
    print(
        f"{args.rows:,} rows x {args.features}, {args.trees} trees in groves of {args.grove}, "
        f"chunks of {args.rows_per_chunk:,}; medians of {args.repeat}; outputs identical"
    )
    print(f"{'measure':36} {'load+predict':>12} {'groves':>10} {'ratio':>7}")
    for name, i in (("wall seconds", 0), ("peak PSS of the process tree, MiB", 1)):
        sk = statistics.median(r[i] for r in sk_runs)
        gr = statistics.median(r[i] for r in gr_runs)
        print(f"{name:36} {sk:12.4g} {gr:10.4g} {gr / sk:7.3f}")
    wall = statistics.median(r[0] for r in gr_runs)
    print(f"groves rows per second: {args.rows / wall:,.0f}")
    print(
        f"one chunk's worker peak RSS {chunk_peak:.0f} MiB; the model file "
        f"{model_bytes / 2**20:.1f} MiB (lz4), {model_raw / 2**20:.1f} MiB as a pickle"
    )


if __name__ == "__main__":
    main()
