"""The run's prepared split: plan converts the dataset once into files in the run's folder: the
training rows (features, labels, weights) as shards of stripes (``groves.data.shards``), of
which each grove reads its sample, and the held-out rows as ``.npy`` arrays (``data/X_test.npy``,
``y_test.npy``), which groves and scoring read memory-mapped (a local store maps the files in
place; an S3 store downloads them once per process with boto3's transfer manager).

No grove parses CSV or Parquet or splits the data again: the files belong to the run and are
never rewritten.
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
from groves.data.shards import read_rows, sample_stripes, write_rows
from groves.errors import BuildError
from groves.store.artifacts import data_key, data_prefix, digest
from groves.store.codec import dump_npy
from groves.store.protocol import Store

ARRAYS = ("X_train", "y_train", "X_test", "y_test", "w_train")
TRAIN = ("X_train", "y_train", "w_train")  # written as shards of stripes
HELD_OUT = ("X_test", "y_test")
HEADER_BYTES = 65_546  # the longest .npy header (version 1.0: 10 + 65,535 bytes; 2.0's start)


def write_prepared(store: Store, build_id: str, run_id: str, split: Split) -> dict[str, Any]:
    """Write the split's arrays; return what plan records of them: the training rows' shards,
    and each held-out array's sha256, size and shape."""
    prefix = data_prefix(build_id, run_id)
    train = write_rows(store, prefix, split.X_train, split.y_train, split.w_train)
    return {"train": train, **write_held_out(store, build_id, run_id, split.X_test, split.y_test)}


def write_held_out(
    store: Store, build_id: str, run_id: str, X_test: np.ndarray, y_test: np.ndarray
) -> dict[str, Any]:
    """Write the held-out rows as ``.npy`` arrays; what plan records of each."""
    records = {}
    for name, array in zip(HELD_OUT, (X_test, y_test), strict=True):
        blob = dump_npy(np.ascontiguousarray(array))
        store.put_bytes(data_key(build_id, run_id, name), blob)
        records[name] = {**digest(blob), "shape": list(array.shape), "dtype": array.dtype.str}
    return records


def read_prepared(
    store: Store,
    plan: dict[str, Any],
    names: tuple[str, ...] = ARRAYS,
    sample: tuple[int | None, int] = (None, 0),
) -> Split:
    """The run's split. The training rows are those of ``sample``, ``(rows, seed)``: every
    row for ``None`` (in the split's order), else a seeded sample of about ``rows`` of them
    (``shards.sample_stripes``), each stripe verified as it is read. The held-out arrays are
    memory-mapped copy-on-write (the files stay untouched) and checked against the sha256 plan
    recorded while mapped: a swapped or corrupt file (in the store, or in the S3 download
    cache, which is then fetched again once) is refused. Arrays not in ``names`` are left out
    (empty); ``w_train`` is ``None`` when unweighted."""
    build_id, run_id = plan["build_id"], plan["run_id"]
    data_run = plan["data"].get("prepared_run", run_id)  # a search's candidates share one copy
    records = plan["data"]["prepared"]
    arrays: dict[str, Any] = {"w_train": None}
    if set(names) & set(TRAIN):
        train = records["train"]
        stripes = sample_stripes(train, *sample)
        X, y, w = read_rows(store, data_prefix(build_id, data_run), train, stripes)
        arrays.update(X_train=X, y_train=y, w_train=w)
    for name in ARRAYS:
        if name in arrays:
            continue
        if name not in names or name not in records:
            arrays[name] = np.empty(0)
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
