"""The libraries' floor for plan's data step, done with pyarrow, numpy and scikit-learn directly:
read the CSV or Parquet file, dictionary-encode the text columns, build the float32 matrix,
split it stratified, and ``np.save`` the four arrays. Prints its seconds and peak RSS as JSON.

    python bench/floor_plan_data.py TABLE.csv TARGET OUT_DIR
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split


def main(source: str, target: str, out: Path) -> None:
    started = time.perf_counter()
    table = pa_csv.read_csv(source) if source.endswith(".csv") else pq.read_table(source)
    names = [n for n in table.column_names if n != target]
    X = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        column = table.column(name)
        if pa.types.is_string(column.type):
            column = pc.dictionary_encode(column.combine_chunks()).indices
        X[:, j] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    _, y = np.unique(table.column(target).to_numpy(zero_copy_only=False), return_inverse=True)
    del table
    train, test = train_test_split(np.arange(len(y)), test_size=0.25, random_state=0, stratify=y)
    out.mkdir(parents=True, exist_ok=True)
    for name, array in (
        ("X_train", X[train]),
        ("y_train", y[train]),
        ("X_test", X[test]),
        ("y_test", y[test]),
    ):
        np.save(out / f"{name}.npy", array)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_bytes": peak}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
