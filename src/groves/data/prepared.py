"""The run's prepared split: plan converts the dataset once into ``.npy`` arrays in the run's
folder (``data/X_train.npy``, ``y_train.npy``, ``X_test.npy``, ``y_test.npy``, and
``w_train.npy`` when rows are weighted); groves and scoring read only those, memory-mapped (a
local store maps the files in place; an S3 store downloads them once per process with boto3's
transfer manager, in parallel ranged reads).

No grove parses CSV or Parquet or splits the data again, and every grove of a run sees the very
same rows: the files belong to the run and are never rewritten.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from groves.artifacts import data_key, digest
from groves.data.datasets import Split
from groves.errors import BuildError
from groves.storage import Store, dump_npy

ARRAYS = ("X_train", "y_train", "X_test", "y_test", "w_train")


def write_prepared(store: Store, build_id: str, run_id: str, split: Split) -> dict[str, Any]:
    """Write the split's arrays; return what plan records of each (sha256, size, shape)."""
    records = {}
    for name in ARRAYS:
        array = getattr(split, name)
        if array is None:
            continue
        blob = dump_npy(np.ascontiguousarray(array))
        store.put_bytes(data_key(build_id, run_id, name), blob)
        records[name] = {**digest(blob), "shape": list(array.shape), "dtype": array.dtype.str}
    return records


def read_prepared(store: Store, plan: dict[str, Any], names: tuple[str, ...] = ARRAYS) -> Split:
    """The run's split, memory-mapped copy-on-write (the files stay untouched); arrays not in
    ``names`` are left out (empty), and ``w_train`` is ``None`` for unweighted rows."""
    build_id, run_id = plan["build_id"], plan["run_id"]
    data_run = plan["data"].get("prepared_run", run_id)  # a search's candidates share one copy
    records = plan["data"]["prepared"]
    arrays: dict[str, Any] = {}
    for name in ARRAYS:
        if name not in names or name not in records:
            arrays[name] = None if name == "w_train" else np.empty(0)
            continue
        path = store.local_path(data_key(build_id, data_run, name))
        if path.stat().st_size != records[name]["bytes"]:
            raise BuildError(f"the prepared {name} of run {run_id} does not have its recorded size")
        # copy-on-write: scikit-learn's missing-value path needs writable rows, and a private
        # mapping gives them without copying a page unless it is written (it never is)
        arrays[name] = np.load(path, mmap_mode="c", allow_pickle=False)
    return Split(
        arrays["X_train"],
        arrays["X_test"],
        arrays["y_train"],
        arrays["y_test"],
        plan["data"]["split_fingerprint"],
        arrays["w_train"],
        tuple(plan["data"].get("columns", ())),
    )
