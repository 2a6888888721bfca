"""The run's prepared split: plan converts the dataset once into ``.npy`` arrays in the run's
folder (``data/X_train.npy``, ``y_train.npy``, ``X_test.npy``, ``y_test.npy``, and
``w_train.npy`` when rows are weighted); groves and scoring read only those, memory-mapped (a
local store maps the files in place; an S3 store downloads them once per process with boto3's
transfer manager, in parallel ranged reads).

No grove parses CSV or Parquet or splits the data again, and every grove of a run sees the very
same rows: the files belong to the run and are never rewritten.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np

from groves.data.datasets import Split
from groves.errors import BuildError
from groves.store.artifacts import data_key, digest
from groves.store.storage import Store, dump_npy

ARRAYS = ("X_train", "y_train", "X_test", "y_test", "w_train")
HEADER_BYTES = 65_546  # the longest .npy header (version 1.0: 10 + 65,535 bytes; 2.0's start)


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
    """The run's split, each array memory-mapped copy-on-write (the files stay untouched) and
    checked against the sha256 plan recorded while it is mapped: a swapped or corrupt file
    (in the store, or in the S3 download cache, which is then fetched again once) is refused.
    Arrays not in ``names`` are left out (empty); ``w_train`` is ``None`` when unweighted."""
    build_id, run_id = plan["build_id"], plan["run_id"]
    data_run = plan["data"].get("prepared_run", run_id)  # a search's candidates share one copy
    records = plan["data"]["prepared"]
    arrays: dict[str, Any] = {}
    for name in ARRAYS:
        if name not in names or name not in records:
            arrays[name] = None if name == "w_train" else np.empty(0)
            continue
        key = data_key(build_id, data_run, name)
        try:
            arrays[name] = mapped_verified(store.local_path(key), records[name])
        except BuildError:
            if not store.evict(key):
                raise
            arrays[name] = mapped_verified(store.local_path(key), records[name])
    return Split(
        arrays["X_train"],
        arrays["X_test"],
        arrays["y_train"],
        arrays["y_test"],
        plan["data"]["split_fingerprint"],
        arrays["w_train"],
        tuple(plan["data"].get("columns", ())),
    )


def mapped_verified(path: Path, record: dict[str, Any]) -> np.ndarray:
    """An ``.npy`` file as an array over a private (copy-on-write) mapping, after the mapped
    bytes matched ``record``'s size and sha256: what is checked is what is used. Writable, as
    scikit-learn's missing-value path needs, without copying a page unless it is written."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size != record["bytes"]:
            raise BuildError(f"{path.name} has {size} bytes but {record['bytes']} were recorded")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    if hashlib.sha256(mapped).hexdigest() != record["sha256"]:
        raise BuildError(f"{path.name} does not match its recorded sha256 (corrupt or replaced)")
    head = io.BytesIO(mapped[:HEADER_BYTES])
    version = np.lib.format.read_magic(head)
    read = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read(head)
    if dtype.hasobject:
        raise BuildError(f"{path.name} holds objects; prepared arrays are plain numbers or text")
    return np.ndarray(
        shape, dtype=dtype, buffer=mapped, offset=head.tell(), order="F" if fortran else "C"
    )
