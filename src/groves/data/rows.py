"""Rows to predict: an input table read block by block, encoded exactly as the training rows
were (``groves.data.encoding``, by column name), and written as one float32 ``.npy`` file in the
training columns' order, with the columns to ``keep`` beside it as an Arrow IPC file. Memory
holds one block, whatever the input's size."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from groves.data.encoding import encode_table, needs_encoding
from groves.data.records import feature_columns
from groves.data.tables import (
    BUILTIN_NAMES,
    builtin,
    checked_features,
    iter_batches,
    npz_arrays,
    read_source,
    suffix,
)
from groves.errors import RequestError

__all__ = ["feature_columns", "prediction_blocks", "write_rows"]


def prediction_blocks(
    source: str, data: dict[str, Any], keep: Sequence[str] = (), field: str = "data"
) -> Iterator[tuple[np.ndarray, pa.Table | None]]:
    """Blocks of ``source``'s rows as the model's float32 features, with the ``keep`` columns
    (the columns the build left out, ``dropped``, may be there and are ignored); an ``.npz``'s
    ``X`` or a built-in dataset must be as wide as the training features."""
    columns = feature_columns(data)
    if source in BUILTIN_NAMES or suffix(source) == "npz":
        if source in BUILTIN_NAMES:
            X = builtin(source).data
        else:
            X = npz_arrays(read_source(source, field), source, field, ("X",))["X"]
        X = checked_features(np.asarray(X), source, field)
        if X.shape[1] != len(columns):
            raise RequestError(
                field,
                f"{source!r} has {X.shape[1]} feature columns; the model uses {len(columns)}",
            )
        if needs_encoding(columns):
            raise RequestError(
                field,
                f"the model has text or date columns: give {source!r}'s rows as CSV or Parquet",
            )
        yield X, None
        return
    first_row = 0
    for table in iter_batches(source, columns, field):
        X = encode_table(
            table, columns, repr(source), field, keep, first_row, data.get("dropped", ())
        )
        first_row += table.num_rows
        yield X, table.select(list(keep)) if keep else None


def write_rows(
    source: str, data: dict[str, Any], keep: Sequence[str], rows: Path, kept: Path
) -> tuple[int, int]:
    """Write ``source``'s rows to ``rows`` (``.npy``, float32) and its ``keep`` columns to
    ``kept`` (Arrow IPC), block by block; the rows' count and width."""
    body = rows.with_suffix(".body")
    n_rows, width, writer = 0, len(feature_columns(data)), None
    try:
        with body.open("wb") as out:
            for X, table in prediction_blocks(source, data, keep):
                out.write(np.ascontiguousarray(X, dtype=np.float32).data)
                n_rows += len(X)
                if table is not None:
                    writer = writer or pa.ipc.new_file(str(kept), table.schema)
                    writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if n_rows == 0:
        raise RequestError("data", f"{source!r} has no rows to predict")
    header = {"descr": "<f4", "fortran_order": False, "shape": (n_rows, width)}
    with rows.open("wb") as out, body.open("rb") as rest:
        np.lib.format.write_array_header_1_0(out, header)
        while block := rest.read(1 << 24):
            out.write(block)
    body.unlink()
    return n_rows, width
