"""Benchmark: groves' local runner against one scikit-learn forest of the same size.

Not a test: it prints ratios (groves / scikit-learn) for wall time, held-out accuracy, predict
time and model size, plus the per-grove fit time and peak memory the Lambdas would see.
The data is MNIST-shaped but generated here (no downloads): 56,000 rows x 784 features by
default, the prototype's reference size.

    python bench/bench_groves.py                  # 100 trees in groves of 10
    python bench/bench_groves.py --rows 10000 --trees 40 --grove 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from groves.data.datasets import load_dataset, split
from groves.engine.local import run_local, usable_cores
from groves.forest.loading import load_model
from groves.store.artifacts import read_manifest
from groves.store.uris import open_store


def make_data(path: Path, rows: int, features: int) -> str:
    X, y = make_classification(
        n_samples=rows,
        n_features=features,
        n_informative=30,
        n_redundant=20,
        n_classes=10,
        n_clusters_per_class=1,
        class_sep=2.0,
        random_state=0,
    )
    np.savez(path, X=X.astype(np.float32), y=y)
    return str(path)


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=56_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--grove", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        source = make_data(Path(tmp) / "data.npz", args.rows, args.features)
        seed, test_size = 0, 0.25
        shared = split(load_dataset(source), test_size, seed, stratify=True)

        forest = RandomForestClassifier(n_estimators=args.trees, n_jobs=-1, random_state=seed)
        _, sk_fit = timed(forest.fit, shared.X_train, shared.y_train)
        sk_pred, sk_predict = timed(forest.predict, shared.X_test)
        sk_accuracy = float(np.mean(sk_pred == shared.y_test))
        sk_path = Path(tmp) / "sklearn.joblib"
        joblib.dump(forest, sk_path, compress=3)

        request = {
            "build_id": "bench",
            "n_trees": args.trees,
            "grove_size": args.grove,
            "dataset": source,
            "seed": seed,
            "test_size": test_size,
            "predict": False,
            "max_concurrency": 40,
        }
        store_dir = Path(tmp) / "store"
        run = run_local(request, str(store_dir))
        if run.status != "SUCCEEDED":
            raise SystemExit(f"groves run failed: {run.error}: {run.cause}")
        store = open_store(str(store_dir))
        manifest = read_manifest(store, "bench")
        model = load_model(store, "bench")
        model.set_params(n_jobs=forest.n_jobs)  # merged models are saved with n_jobs=None
        gr_pred, gr_predict = timed(model.predict, shared.X_test)
        gr_accuracy = float(np.mean(gr_pred == shared.y_test))
        groves = manifest["groves"]

        rows = [
            ("wall seconds (fit | whole run)", sk_fit, run.seconds),
            ("held-out accuracy", sk_accuracy, gr_accuracy),
            ("predict seconds (merged model)", sk_predict, gr_predict),
            (
                "model bytes (joblib | grove files)",
                sk_path.stat().st_size,
                manifest["model"]["bytes"],
            ),
        ]
        print(
            f"data {args.rows} x {args.features}, {args.trees} trees, groves of {args.grove},"
            f" {usable_cores()} cores"
        )
        print(f"{'measure':36} {'scikit-learn':>14} {'groves':>14} {'ratio':>8}")
        for name, base, ours in rows:
            print(f"{name:36} {base:14.4g} {ours:14.4g} {ours / base:8.3f}")
        fit = [g["fit_seconds"] for g in groves]
        print(
            f"per grove of {args.grove} trees: fit {np.mean(fit):.2f} s mean, "
            f"{max(fit):.2f} s max; peak RSS {max(g['peak_rss_mb'] for g in groves):.0f} MiB; "
            f"merge {manifest['timings']['merge_seconds']:.2f} s"
        )
        print(
            json.dumps(
                {
                    "sklearn_fit_s": sk_fit,
                    "groves_run_s": run.seconds,
                    "accuracy_ratio": gr_accuracy / sk_accuracy,
                }
            )
        )


if __name__ == "__main__":
    main()
