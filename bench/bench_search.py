"""A search's wall time against the sum of its candidates' training times (the grove seconds
its leaderboard records), and against scikit-learn's GridSearchCV(n_jobs=-1) on the same rows.
Not a test: it prints numbers.

    python bench/bench_search.py --trees 100 --grove 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench_process import measure

GRID = ["--grid", "max_depth=8,16,null", "--grid", "max_features=sqrt,0.5"]
SKLEARN_USER = """
import sys, numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from groves.data.datasets import carve, load_dataset, split
outer = split(load_dataset("digits"), 0.25, 0, stratify=True)
inner = carve(outer, 0.2, 0, stratify=True)
X = np.concatenate([inner.X_train, inner.X_test]); y = np.concatenate([inner.y_train, inner.y_test])
fold = np.r_[np.full(len(inner.y_train), -1), np.zeros(len(inner.y_test))]
grid = {"max_depth": [8, 16, None], "max_features": ["sqrt", 0.5]}
forest = RandomForestClassifier(n_estimators=int(sys.argv[1]), random_state=0)
GridSearchCV(forest, grid, cv=PredefinedSplit(fold), n_jobs=-1).fit(X, y)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--grove", type=int, default=10)
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="groves-search-bench-") as tmp:
        command = [sys.executable, "-m", "groves.cli", "search", "s", "-t", str(args.trees)]
        command += ["-g", str(args.grove), *GRID, "--store", tmp]
        wall, peak, out = measure(command, env)
        [search_id] = os.listdir(Path(tmp) / "s" / "searches")
        board = json.loads(
            (Path(tmp) / "s" / "searches" / search_id / "leaderboard.json").read_text()
        )
        sk_wall, sk_peak, _ = measure([sys.executable, "-c", SKLEARN_USER, str(args.trees)], env)
    training = sum(c["seconds"] for c in board)
    print(f"digits, {len(board)} candidates x {args.trees} trees in groves of {args.grove}")
    print(f"search wall {wall:.2f} s; candidates' training (grove seconds summed) {training:.2f} s")
    print(f"wall / summed training: {wall / training:.3f}")
    print(f"GridSearchCV(n_jobs=-1) on the same rows: {sk_wall:.2f} s")
    print(f"groves / GridSearchCV: {wall / sk_wall:.3f}")
    print(f"peak PSS: groves {peak:.0f} MiB, GridSearchCV {sk_peak:.0f} MiB")
    print(out.strip().splitlines()[-3])


if __name__ == "__main__":
    main()
