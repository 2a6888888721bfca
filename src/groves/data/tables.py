"""Tables from files and scikit-learn's bundled datasets: CSV, NPZ and Parquet from a local path
or ``s3://``, checked into float32 features and labels. Whatever is wrong with a file is a
``RequestError`` naming the request field, and no message quotes the file's contents."""

from __future__ import annotations

import contextlib
import csv
import io
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from sklearn import datasets as skdatasets

from groves.errors import RequestError
from groves.storage import ArtifactNotFound, read_uri, split_s3_uri

BUILTIN: dict[str, Callable[..., Any]] = {
    "digits": skdatasets.load_digits,
    "breast_cancer": skdatasets.load_breast_cancer,
    "iris": skdatasets.load_iris,
    "wine": skdatasets.load_wine,
    "diabetes": skdatasets.load_diabetes,
}
FILE_SUFFIXES = (".csv", ".npz", ".parquet")
DEFAULT_TARGET = "target"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_source(source: str, target: str | None, field: str = "dataset") -> None:
    """Reject a dataset name or path by its form alone, naming the allowed values."""
    if source in BUILTIN:
        if target is not None:
            raise RequestError("target", f"applies only to CSV/Parquet files, not {source!r}")
        return
    if "\x00" in source:
        raise RequestError(field, "a path cannot contain a NUL character")
    if not source.lower().endswith(FILE_SUFFIXES):
        raise RequestError(
            field,
            f"{source!r} is neither a built-in dataset ({', '.join(BUILTIN)}) nor a file "
            f"ending in {', '.join(FILE_SUFFIXES)} (local path or s3://bucket/key)",
        )
    if source.startswith("s3://"):
        try:
            key = split_s3_uri(source)[1]
        except ValueError:
            key = ""
        if not key:
            raise RequestError(field, f"{source!r} is not s3://BUCKET/KEY with a valid bucket name")
    if source.lower().endswith(".npz") and target is not None:
        raise RequestError("target", "does not apply to .npz files, which hold arrays X and y")


def load_features(source: str, feature_names: list[str], field: str = "data") -> np.ndarray:
    """Rows to predict, as the float32 table the model was trained on: a CSV's or Parquet's
    columns matched to the training features by name (any order; a missing or an extra column
    is an error naming it), or the ``X`` of an ``.npz`` or a built-in dataset, as wide as the
    training features."""
    check_source(source, None, field)
    if source in BUILTIN:
        X = BUILTIN[source]().data
    else:
        raw = read_source(source, field)
        suffix = source.lower().rsplit(".", 1)[-1]
        if suffix == "npz":
            X = _npz_features(raw, source, field)
        else:
            reader = _csv_columns if suffix == "csv" else _parquet_columns
            header, columns = reader(raw, source, field)
            X = _named_features(header, columns, feature_names, source, field)
    X = checked_features(np.asarray(X), source, field)
    if X.shape[1] != len(feature_names):
        raise RequestError(
            field,
            f"{source!r} has {X.shape[1]} feature columns; the model uses {len(feature_names)}",
        )
    return X


def _npz_features(raw: bytes, source: str, field: str) -> np.ndarray:
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise RequestError(field, f"{source!r} is not an .npz archive")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            if "X" not in archive.files:
                raise RequestError(field, f"{source!r} must hold an array named X")
            return archive["X"]
    except RequestError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RequestError(field, f"{source!r}: X must be a plain numeric array") from exc


def _and_more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


def _named_features(
    header: list[str], columns: list[np.ndarray], names: list[str], source: str, field: str
) -> np.ndarray:
    """The training features by name, in training order."""
    if len(set(header)) != len(header):
        raise RequestError(field, f"{source!r} has columns with the same name")
    missing = [name for name in names if name not in header]
    if missing:
        raise RequestError(
            field,
            f"column {missing[0]!r}{_and_more(missing)} is missing from {source!r}; it needs "
            "every training feature column",
        )
    extra = [name for name in header if name not in names]
    if extra:
        raise RequestError(
            field,
            f"column {extra[0]!r}{_and_more(extra)} of {source!r} is not a training feature; "
            f"the model uses exactly {len(names)} columns, such as {names[0]!r}",
        )
    return np.column_stack(
        [_numeric_column(columns[header.index(n)], header.index(n), source, field) for n in names]
    )


def read_source(source: str, field: str = "dataset") -> bytes:
    """The file's bytes; any way it cannot be read is an error of ``field``."""
    try:
        return read_uri(source)
    except ArtifactNotFound as exc:
        raise RequestError(field, f"{source!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise RequestError(field, f"{source!r} is a directory, not a file") from exc
    except OSError as exc:
        raise RequestError(field, f"{source!r} cannot be read: {exc.strerror}") from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reason = S3_REASONS.get(code, f"S3 answered {code or 'an error'}")
        raise RequestError(field, f"{source!r} cannot be read: {reason}") from exc
    except BotoCoreError as exc:
        raise RequestError(field, f"{source!r} cannot be read: {type(exc).__name__}") from exc


S3_REASONS = {
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "the key does not exist",
    "AccessDenied": "access is denied",
    "403": "access is denied",
    "InvalidBucketName": "the bucket name is invalid",
}


def checked_features(X: np.ndarray, source: str, field: str = "dataset") -> np.ndarray:
    """Features as float32: real numbers within float32's range; NaN marks a missing value."""
    if X.ndim != 2:
        raise RequestError(field, f"{source!r}: features must be a 2-D table")
    if X.shape[1] == 0:
        raise RequestError(field, f"{source!r} has no feature columns")
    if X.dtype.kind not in "biuf":
        kind = "complex" if X.dtype.kind == "c" else "non-numeric"
        raise RequestError(field, f"{source!r} has {kind} features; they must be real numbers")
    wide = X.astype(np.float64, copy=False)
    bad = int(np.count_nonzero(np.abs(wide[~np.isnan(wide)]) > FLOAT32_MAX))
    if bad:
        raise RequestError(
            field,
            f"{source!r} has {bad} feature values that are infinite or beyond float32's range "
            f"(+-{FLOAT32_MAX:.3g}); NaN is allowed for a missing value",
        )
    return np.ascontiguousarray(X, dtype=np.float32)


def checked_labels(y: np.ndarray, source: str) -> np.ndarray:
    """Labels: one per row, none missing (NaN, infinite or empty)."""
    if y.ndim != 1:
        raise RequestError("target", f"{source!r}: labels must be one column")
    if y.dtype.kind == "f":
        missing = int(np.count_nonzero(~np.isfinite(y)))
    elif y.dtype.kind in "US":
        missing = int(np.count_nonzero(np.char.strip(y.astype(str)) == ""))
    elif y.dtype.kind in "biu":
        missing = 0
    else:
        raise RequestError("target", f"{source!r}: labels must be numbers or text")
    if missing:
        raise RequestError(
            "target", f"{source!r} has {missing} rows with a missing or non-finite label"
        )
    return y


def from_npz(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise RequestError("dataset", f"{source!r} is not an .npz archive")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            if not {"X", "y"} <= set(archive.files):
                raise RequestError("dataset", f"{source!r} must hold arrays named X and y")
            return archive["X"], archive["y"], ()
    except RequestError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise RequestError(
            "dataset",
            f"{source!r}: X and y must be plain numeric arrays (no pickled or object data)",
        ) from exc


def from_csv(
    raw: bytes, source: str, target: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    return _split_columns(*_csv_columns(raw, source), source, target)


def from_parquet(
    raw: bytes, source: str, target: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    return _split_columns(*_parquet_columns(raw, source), source, target)


def _csv_columns(
    raw: bytes, source: str, field: str = "dataset"
) -> tuple[list[str], list[np.ndarray]]:
    """A CSV file's header and its columns, as text."""
    try:
        rows = [row for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) if row]
    except UnicodeDecodeError as exc:
        raise RequestError(field, f"{source!r} is not UTF-8 text") from exc
    except csv.Error as exc:
        raise RequestError(field, f"{source!r} is not a readable CSV file") from exc
    if len(rows) < 2:
        raise RequestError(field, f"{source!r} needs a header row and data rows")
    header, body = rows[0], rows[1:]
    widths = {len(row) for row in body}
    if widths != {len(header)}:
        raise RequestError(
            field, f"{source!r}: rows have {sorted(widths)} fields, the header has {len(header)}"
        )
    return header, list(np.array(body, dtype=str).T)


def _parquet_columns(
    raw: bytes, source: str, field: str = "dataset"
) -> tuple[list[str], list[np.ndarray]]:
    """A Parquet file's column names and columns."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise RequestError(field, "Parquet needs pyarrow: pip install 'groves[parquet]'") from exc
    try:
        table = pq.read_table(io.BytesIO(raw))
        columns = [table.column(i).to_numpy() for i in range(table.num_columns)]
    except Exception as exc:  # pyarrow raises its own ArrowException family
        raise RequestError(field, f"{source!r} is not a readable Parquet file") from exc
    return list(table.column_names), columns


def _split_columns(
    header: list[str], columns: list[np.ndarray], source: str, target: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Features and labels from named columns; names are checked, never quoted back."""
    if header.count(target) > 1:
        raise RequestError("target", f"column {target!r} appears {header.count(target)} times")
    if len(set(header)) != len(header):
        raise RequestError("dataset", f"{source!r} has columns with the same name")
    if target not in header:
        raise RequestError(
            "target", f"column {target!r} is not in {source!r} ({len(header)} columns)"
        )
    features = [i for i, name in enumerate(header) if name != target]
    if not features:
        raise RequestError("dataset", f"{source!r} has no feature columns besides {target!r}")
    X = np.column_stack([_numeric_column(columns[i], i, source) for i in features])
    y = columns[header.index(target)]
    if y.dtype.kind in "US":
        with contextlib.suppress(ValueError):  # string class labels stay strings
            y = y.astype(np.float64)
    elif y.dtype.kind == "O":
        raise RequestError("target", f"{source!r}: labels must be numbers or text")
    return X, y, tuple(header[i] for i in features)


def _numeric_column(
    values: np.ndarray, index: int, source: str, field: str = "dataset"
) -> np.ndarray:
    """One feature column as float64 (range checks come later); an empty cell is missing."""
    if values.dtype.kind in "biufc":
        return values if values.dtype.kind == "c" else values.astype(np.float64)
    try:
        return np.where(values == "", "nan", values).astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise RequestError(
            field,
            f"column {index + 1} of {source!r} is not numeric; features must be numbers "
            "(missing values may be empty)",
        ) from exc
