"""Tables from files and scikit-learn's bundled datasets: CSV and Parquet read by pyarrow (the
one reader: typed columns, multi-threaded, in blocks), NPZ by numpy, from a local path or
``s3://`` (downloaded once to a temporary file by boto3's transfer manager). Whatever is wrong
with a file is a ``RequestError`` naming the request field, and no message quotes the file's
contents (the caller may not be allowed to read them).

- ``blocks``: a CSV or Parquet file's rows in blocks (training reads them so: ``stream``).
- ``iter_batches``: a CSV or Parquet file in blocks of rows with the training columns' types
  (prediction: memory follows the block, not the file).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from groves.data.encoding import FLOAT32_MAX, input_name
from groves.errors import RequestError
from groves.store.protocol import ArtifactNotFound
from groves.store.uris import download_uri, read_uri, regular_file, split_s3_uri

FILE_SUFFIXES = (".csv", ".npz", ".parquet")
DEFAULT_TARGET = "target"
BATCH_ROWS = 65_536  # rows per block when a file is read in blocks
# CSV read in 1 MiB blocks: with 16 MiB ones pyarrow's streaming reader held ~540 MB reading a
# 560 MB file (memory grew with the file); with 1 MiB, 37 MB, and faster. Blocks are gathered
# into tables of BATCH_ROWS rows for the steps (``blocks``).
CSV_BLOCK_BYTES = 1 << 20
PARQUET_BUFFER = 1 << 20


def builtin(name: str) -> Any:
    """A scikit-learn bundled dataset's Bunch (imported on use: table steps need no sklearn)."""
    from sklearn import datasets as skdatasets

    return getattr(skdatasets, f"load_{name}")()


BUILTIN_NAMES = ("digits", "breast_cancer", "iris", "wine", "diabetes")


def is_folder(source: str) -> bool:
    """Whether ``source`` names a folder of table files (a directory, or a path or ``s3://``
    prefix ending in ``/``)."""
    if source.lower().endswith(FILE_SUFFIXES):  # a directory so named is refused as a file
        return False
    if source.startswith("s3://"):
        return source.endswith("/") and len(source.removeprefix("s3://").strip("/")) > 0
    return source.endswith("/") or Path(source.removeprefix("file://")).expanduser().is_dir()


def check_source(source: str, target: str | None, field: str = "dataset") -> None:
    """Reject a dataset name or path by its form alone, naming the allowed values."""
    if source in BUILTIN_NAMES:
        if target is not None:
            raise RequestError("target", f"applies only to CSV/Parquet files, not {source!r}")
        return
    if "\x00" in source:
        raise RequestError(field, "a path cannot contain a NUL character")
    if not source.lower().endswith(FILE_SUFFIXES) and not is_folder(source):
        raise RequestError(
            field,
            f"{source!r} is neither a built-in dataset ({', '.join(BUILTIN_NAMES)}) nor a file "
            f"ending in {', '.join(FILE_SUFFIXES)} or a folder of .csv or .parquet files (local "
            "path or s3://bucket/key, a folder ending in /)",
        )
    if source.startswith("s3://"):
        try:
            bucket, key = split_s3_uri(source)
        except ValueError:
            bucket, key = "", ""
        if not (key or (bucket and is_folder(source))):
            raise RequestError(field, f"{source!r} is not s3://BUCKET/KEY with a valid bucket name")
    if source.lower().endswith(".npz") and target is not None:
        raise RequestError("target", "does not apply to .npz files, which hold arrays X and y")


def suffix(source: str) -> str:
    return source.lower().rsplit(".", 1)[-1]


S3_REASONS = {
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "the key does not exist",
    "404": "the key does not exist",
    "AccessDenied": "access is denied",
    "403": "access is denied",
    "InvalidBucketName": "the bucket name is invalid",
}


@contextlib.contextmanager
def readable(source: str, field: str) -> Iterator[None]:
    """Any way a file cannot be read becomes a ``RequestError`` of ``field``."""
    try:
        yield
    except ArtifactNotFound as exc:
        raise RequestError(field, f"{source!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise RequestError(field, f"{source!r} is a directory, not a file") from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reason = S3_REASONS.get(code, f"S3 answered {code or 'an error'}")
        raise RequestError(field, f"{source!r} cannot be read: {reason}") from exc
    except BotoCoreError as exc:
        raise RequestError(field, f"{source!r} cannot be read: {type(exc).__name__}") from exc
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise RequestError(field, f"{source!r} does not exist") from exc
        raise RequestError(field, f"{source!r} cannot be read: {exc.strerror or exc}") from exc


def read_source(source: str, field: str = "dataset") -> bytes:
    """The file's bytes; any way it cannot be read is an error of ``field``."""
    with readable(source, field):
        return read_uri(source)


@contextlib.contextmanager
def local_file(source: str, field: str) -> Iterator[Path]:
    """A local path to read ``source`` from: the file itself, or an S3 object downloaded once
    to a temporary file (parallel ranged GETs), removed afterwards."""
    if not source.startswith("s3://"):
        with readable(source, field):
            path = regular_file(source)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="groves-input-") as folder:
        path = Path(folder) / Path(source).name
        with readable(source, field):
            download_uri(source, path)
        yield path


def csv_options(
    column_types: dict[str, pa.DataType] | None = None,
) -> tuple[pa_csv.ReadOptions, pa_csv.ConvertOptions]:
    """How groves reads CSV: an empty cell, ``NA``, ``NaN``, ``null`` and the like are missing
    values in every column, text columns included."""
    return (
        pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        pa_csv.ConvertOptions(strings_can_be_null=True, column_types=column_types),
    )


def csv_problem(exc: Exception, source: str) -> str:
    """What is wrong with a CSV file, from pyarrow's error, without quoting its contents."""
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text:
        return f"{source!r} is not UTF-8 text"
    if "Empty CSV file" in text or "No columns" in text:
        return f"{source!r} needs a header row and data rows"
    found = re.search(r"Expected (\d+) columns, got (\d+)", text)
    if found:
        return f"{source!r}: a row has {found[2]} fields, the header has {found[1]}"
    return f"{source!r} is not a readable CSV file"


def parquet_file(path: Path | BinaryIO) -> pq.ParquetFile:
    """A Parquet file read column chunk by column chunk in 1 MiB reads, not a row group's
    bytes at once (pyarrow's ``pre_buffer``): a block's memory then follows the block, not the
    row groups the writer chose (a plan's peak on 20M rows: 959 MB with row groups of 1M rows
    and pre-buffering, flat without; reading is faster too)."""
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER)


def frame_columns(schema: pa.Schema) -> list[str]:
    """A Parquet file's columns as the DataFrame it was written from has them: the index
    pandas stores beside them (``__index_level_0__`` after a shuffle or a filter, or a named
    index) is the rows' labels, not a column, as ``pandas.read_parquet`` reads it."""
    index = (schema.pandas_metadata or {}).get("index_columns", [])
    stored = {name for name in index if isinstance(name, str)}
    return [name for name in schema.names if name not in stored]


# a CSV has no durations: a duration column is read as numbers, its seconds
ARROW_TYPES = {
    "number": pa.float64(),
    "bool": pa.bool_(),
    "category": pa.string(),
    "time": pa.time64("us"),
    "duration": pa.float64(),
}


def blocks(batches: Iterable[pa.RecordBatch], rows: int | None = None) -> Iterator[pa.Table]:
    """Record batches gathered into tables of at least ``rows`` (``BATCH_ROWS``) rows (the
    last may be shorter): a CSV's 1 MiB blocks are a few thousand rows each."""
    rows = rows or BATCH_ROWS
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def arrow_type(column: dict[str, Any]) -> pa.DataType:
    """The type a CSV's column is read as for prediction: its training kind's (a date column:
    timestamps with a time zone or without, as trained; pyarrow refuses the other)."""
    if column["kind"] == "datetime":
        return pa.timestamp("us", "UTC" if column["utc"] else None)
    return ARROW_TYPES[column["kind"]]


def iter_batches(
    source: str, columns: Sequence[dict[str, Any]], field: str = "data"
) -> Iterator[pa.Table]:
    """A CSV or Parquet file in tables of about ``BATCH_ROWS`` rows; a CSV's training columns
    are read with their
    training types (text as text, whatever it looks like). A value that does not fit is an
    error naming the column and row."""
    with local_file(source, field) as path:
        if suffix(source) == "csv":
            yield from _csv_batches(path, source, columns, field)
        else:
            try:
                parquet = parquet_file(path)
                batches = parquet.iter_batches(
                    batch_size=BATCH_ROWS, columns=frame_columns(parquet.schema_arrow)
                )
            except (pa.ArrowException, OSError) as exc:
                raise RequestError(field, f"{source!r} is not a readable Parquet file") from exc
            yield from blocks(batches)


def _csv_batches(
    path: Path, source: str, columns: Sequence[dict[str, Any]], field: str
) -> Iterator[pa.Table]:
    types = {input_name(c): arrow_type(c) for c in columns}
    read, convert = csv_options(types)
    try:
        reader = pa_csv.open_csv(path, read_options=read, convert_options=convert)
        yield from blocks(reader)
    except UnicodeDecodeError as exc:
        raise RequestError(field, f"{source!r} is not UTF-8 text") from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        found = re.search(r"In CSV column #(\d+)", str(exc))
        if found is None or "UTF8" in str(exc):
            raise RequestError(field, csv_problem(exc, source)) from exc
        header = pa_csv.open_csv(path, read_options=read).schema.names
        name = header[int(found[1])]
        row = _first_misfit(path, name, types[name])
        raise RequestError(
            field,
            f"column {name!r} of {source!r}: row {row} is not a {_kind_word(types[name])}; the "
            "model was trained with that type in this column",
        ) from exc


def _kind_word(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "timestamp with a time zone" if kind.tz else "date or timestamp without a time zone"
    if pa.types.is_time(kind):
        return "time of day (HH:MM:SS)"
    return "number" if kind == pa.float64() else "boolean" if kind == pa.bool_() else str(kind)


def _first_misfit(path: Path, name: str, kind: pa.DataType) -> int:
    """The 1-based data row of the first value of column ``name`` that does not convert: the
    column read as text, block by block, and the failing block bisected by casting."""
    read, convert = csv_options({name: pa.string()})
    convert.include_columns = [name]
    offset = 0
    for batch in pa_csv.open_csv(path, read_options=read, convert_options=convert):
        values = batch.column(0)
        if _casts(values, kind):
            offset += len(values)
            continue
        good, bad = 0, len(values)  # values[:good] cast; values[:bad] does not
        while bad - good > 1:
            middle = (good + bad) // 2
            good, bad = (middle, bad) if _casts(values.slice(0, middle), kind) else (good, middle)
        return offset + bad
    return offset


def _casts(values: pa.Array, kind: pa.DataType) -> bool:
    try:
        values.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def npz_arrays(raw: bytes, source: str, field: str, names: Sequence[str]) -> dict[str, Any]:
    """Named arrays of an ``.npz`` archive (numeric, no pickles); ``names`` must be present."""
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise RequestError(field, f"{source!r} is not an .npz archive")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise RequestError(
                    field, f"{source!r} must hold arrays named {' and '.join(names)}"
                )
            return {name: archive[name] for name in archive.files}
    except RequestError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise RequestError(
            field,
            f"{source!r}: its arrays must be plain numeric arrays (no pickled or object data)",
        ) from exc


def checked_features(X: np.ndarray, source: str, field: str = "dataset") -> np.ndarray:
    """Features as float32: real numbers within float32's range; NaN marks a missing value."""
    if X.ndim != 2:
        raise RequestError(field, f"{source!r}: features must be a 2-D table")
    if X.shape[1] == 0:
        raise RequestError(field, f"{source!r} has no feature columns")
    if X.dtype.kind not in "biuf":
        kind = "complex" if X.dtype.kind == "c" else "non-numeric"
        raise RequestError(field, f"{source!r} has {kind} features; they must be real numbers")
    bad = 0
    for start in range(0, len(X), BATCH_ROWS):  # in blocks: no copy of the whole table
        block = X[start : start + BATCH_ROWS]
        if block.dtype.kind == "f":
            bad += int(np.count_nonzero(np.abs(block) > FLOAT32_MAX))  # NaN compares false
    if bad:
        raise RequestError(
            field,
            f"{source!r} has {bad} feature values that are infinite or beyond float32's range "
            f"(+-{FLOAT32_MAX:.3g}); NaN is allowed for a missing value",
        )
    return np.ascontiguousarray(X, dtype=np.float32)


def checked_labels(y: np.ndarray, source: str) -> np.ndarray:
    """Labels: one per row, or one column per output, none missing (NaN, infinite or empty)."""
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] < 1):
        raise RequestError(
            "target", f"{source!r}: labels must be one column, or one column per output"
        )
    if y.ndim == 2 and y.shape[1] == 1:  # a column vector is one output, as in scikit-learn
        y = y[:, 0]
    if y.dtype.kind == "f":
        missing = ~np.isfinite(y)
    elif y.dtype.kind in "US":
        missing = np.char.strip(y.astype(str)) == ""
    elif y.dtype.kind in "biu":
        missing = np.zeros(len(y), dtype=bool)
    else:
        raise RequestError("target", f"{source!r}: labels must be numbers or text")
    if missing.ndim == 2:
        missing = missing.any(axis=1)
    if missing.any():
        raise RequestError(
            "target",
            f"{source!r} has {int(missing.sum())} rows with a missing or non-finite label "
            f"(the first: row {int(np.argmax(missing)) + 1})",
        )
    return y


def row_weights(values: np.ndarray, source: str) -> np.ndarray:
    """Row weights: finite, non-negative numbers, one per row, not all zero."""
    values = np.asarray(values)
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        raise RequestError("weight", f"{source!r}: weights must be one column of numbers")
    wide = values.astype(np.float64)
    bad = ~np.isfinite(wide) | (wide < 0)
    if bad.any():
        first = int(np.argmax(bad))
        what = "missing or infinite" if not np.isfinite(wide[first]) else "negative"
        raise RequestError(
            "weight",
            f"{source!r}: row {first + 1} has a {what} weight; weights must be numbers >= 0 "
            f"({int(bad.sum())} rows are not)",
        )
    if not wide.any():
        raise RequestError("weight", f"{source!r}: every weight is 0")
    return wide
