"""Datasets: scikit-learn's bundled ones by name, or CSV, NPZ, Parquet from a path or s3://."""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from sklearn import datasets as skdatasets
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import type_of_target

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


@dataclass(frozen=True)
class Dataset:
    """Features as float32 (what scikit-learn's trees use), labels as loaded."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    fingerprint: str


@dataclass(frozen=True)
class Split:
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    fingerprint: str


def check_source(source: str, target: str | None) -> None:
    """Reject a dataset name or path by its form alone, naming the allowed values."""
    if source in BUILTIN:
        if target is not None:
            raise RequestError("target", f"applies only to CSV/Parquet files, not {source!r}")
        return
    if "\x00" in source:
        raise RequestError("dataset", "a path cannot contain a NUL character")
    if not source.lower().endswith(FILE_SUFFIXES):
        raise RequestError(
            "dataset",
            f"{source!r} is neither a built-in dataset ({', '.join(BUILTIN)}) nor a file "
            f"ending in {', '.join(FILE_SUFFIXES)} (local path or s3://bucket/key)",
        )
    if source.startswith("s3://"):
        try:
            key = split_s3_uri(source)[1]
        except ValueError:
            key = ""
        if not key:
            raise RequestError(
                "dataset", f"{source!r} is not s3://BUCKET/KEY with a valid bucket name"
            )
    if source.lower().endswith(".npz") and target is not None:
        raise RequestError("target", "does not apply to .npz files, which hold arrays X and y")


@functools.lru_cache(maxsize=2)
def load_dataset(source: str, target: str | None = None) -> Dataset:
    """Load a dataset once per process (warm Lambdas and local workers reuse it). Whatever is
    wrong with the file is a ``RequestError`` naming ``dataset`` or ``target``, and no message
    quotes the file's contents (the caller may not be allowed to read them)."""
    check_source(source, target)
    if source in BUILTIN:
        bunch = BUILTIN[source]()
        names = tuple(str(n) for n in getattr(bunch, "feature_names", ()))
        X, y = bunch.data, bunch.target
    else:
        raw = _read(source)
        suffix = source.lower().rsplit(".", 1)[-1]
        if suffix == "npz":
            X, y, names = _from_npz(raw, source)
        else:
            reader = _from_csv if suffix == "csv" else _from_parquet
            X, y, names = reader(raw, source, target or DEFAULT_TARGET)
    X, y = _checked_features(np.asarray(X), source), _checked_labels(np.asarray(y), source)
    if len(X) != len(y):
        raise RequestError("dataset", f"{source!r} has {len(X)} feature rows but {len(y)} labels")
    if len(X) < 4:
        raise RequestError("dataset", f"{source!r} has {len(X)} rows; at least 4 are needed")
    X.setflags(write=False)
    y.setflags(write=False)
    names = names or tuple(f"x{i}" for i in range(X.shape[1]))
    return Dataset(X, y, names, _fingerprint(X, y))


def _read(source: str) -> bytes:
    """The file's bytes; any way it cannot be read is a ``dataset`` error."""
    try:
        return read_uri(source)
    except ArtifactNotFound as exc:
        raise RequestError("dataset", f"{source!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise RequestError("dataset", f"{source!r} is a directory, not a file") from exc
    except OSError as exc:
        raise RequestError("dataset", f"{source!r} cannot be read: {exc.strerror}") from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reason = S3_REASONS.get(code, f"S3 answered {code or 'an error'}")
        raise RequestError("dataset", f"{source!r} cannot be read: {reason}") from exc
    except BotoCoreError as exc:
        raise RequestError("dataset", f"{source!r} cannot be read: {type(exc).__name__}") from exc


S3_REASONS = {
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "the key does not exist",
    "AccessDenied": "access is denied",
    "403": "access is denied",
    "InvalidBucketName": "the bucket name is invalid",
}


def _checked_features(X: np.ndarray, source: str) -> np.ndarray:
    """Features as float32: real numbers within float32's range; NaN marks a missing value."""
    if X.ndim != 2:
        raise RequestError("dataset", f"{source!r}: features must be a 2-D table")
    if X.shape[1] == 0:
        raise RequestError("dataset", f"{source!r} has no feature columns")
    if X.dtype.kind not in "biuf":
        kind = "complex" if X.dtype.kind == "c" else "non-numeric"
        raise RequestError("dataset", f"{source!r} has {kind} features; they must be real numbers")
    wide = X.astype(np.float64, copy=False)
    bad = int(np.count_nonzero(np.abs(wide[~np.isnan(wide)]) > FLOAT32_MAX))
    if bad:
        raise RequestError(
            "dataset",
            f"{source!r} has {bad} feature values that are infinite or beyond float32's range "
            f"(+-{FLOAT32_MAX:.3g}); NaN is allowed for a missing value",
        )
    return np.ascontiguousarray(X, dtype=np.float32)


def _checked_labels(y: np.ndarray, source: str) -> np.ndarray:
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


def _from_npz(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
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


def _from_csv(
    raw: bytes, source: str, target: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        rows = [row for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) if row]
    except UnicodeDecodeError as exc:
        raise RequestError("dataset", f"{source!r} is not UTF-8 text") from exc
    except csv.Error as exc:
        raise RequestError("dataset", f"{source!r} is not a readable CSV file") from exc
    if len(rows) < 2:
        raise RequestError("dataset", f"{source!r} needs a header row and data rows")
    header, body = rows[0], rows[1:]
    widths = {len(row) for row in body}
    if widths != {len(header)}:
        raise RequestError(
            "dataset",
            f"{source!r}: rows have {sorted(widths)} fields, the header has {len(header)}",
        )
    return _split_columns(header, list(np.array(body, dtype=str).T), source, target)


def _from_parquet(
    raw: bytes, source: str, target: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise RequestError(
            "dataset", "Parquet needs pyarrow: pip install 'groves[parquet]'"
        ) from exc
    try:
        table = pq.read_table(io.BytesIO(raw))
        columns = [table.column(i).to_numpy() for i in range(table.num_columns)]
    except Exception as exc:  # pyarrow raises its own ArrowException family
        raise RequestError("dataset", f"{source!r} is not a readable Parquet file") from exc
    return _split_columns(list(table.column_names), columns, source, target)


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


def _numeric_column(values: np.ndarray, index: int, source: str) -> np.ndarray:
    """One feature column as float64 (range checks come later); an empty cell is missing."""
    if values.dtype.kind in "biufc":
        return values if values.dtype.kind == "c" else values.astype(np.float64)
    try:
        return np.where(values == "", "nan", values).astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise RequestError(
            "dataset",
            f"column {index + 1} of {source!r} is not numeric; features must be numbers "
            "(missing values may be empty)",
        ) from exc


def check_target(dataset: Dataset, estimator: str, source: str) -> list[Any] | None:
    """The sorted classes for a classifier; ``None`` for a regressor. Rejects a mismatch,
    without quoting label values."""
    kind = type_of_target(dataset.y)
    if estimator == "classifier":
        classes, counts = np.unique(dataset.y, return_counts=True)
        if len(classes) < 2:
            raise RequestError(
                "target", f"a classifier needs at least 2 classes; {source!r} has {len(classes)}"
            )
        if kind not in ("binary", "multiclass"):
            raise RequestError(
                "estimator",
                f"'classifier' needs class labels but {source!r} has a {kind} "
                "target; use estimator 'regressor'",
            )
        lonely = int(np.count_nonzero(counts < 2))
        if lonely:
            raise RequestError(
                "estimator",
                f"'classifier' needs at least 2 rows per class, but {lonely} of the "
                f"{len(classes)} classes of {source!r} have one; if the target is a quantity, "
                "use estimator 'regressor'",
            )
        return classes.tolist()
    if dataset.y.dtype.kind not in "biuf":
        raise RequestError(
            "estimator",
            f"'regressor' needs a numeric target but {source!r} has text labels; "
            "use estimator 'classifier'",
        )
    return None


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(str((array.shape, array.dtype.str)).encode())
        if array.dtype.kind in "OUS":
            digest.update("\x00".join(map(str, array.tolist())).encode())
        else:
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def split(dataset: Dataset, test_size: float, seed: int, stratify: bool) -> Split:
    """The held-out split every grove and predict share: it depends on the run seed only."""
    indices = np.arange(len(dataset.y))
    try:
        train, test = train_test_split(
            indices,
            test_size=test_size,
            random_state=seed,
            stratify=dataset.y if stratify else None,
        )
    except ValueError as exc:
        raise RequestError("test_size", f"cannot split this dataset with it: {exc}") from exc
    return Split(
        dataset.X[train],
        dataset.X[test],
        dataset.y[train],
        dataset.y[test],
        _fingerprint(np.frombuffer(dataset.fingerprint.encode(), dtype=np.uint8), train),
    )
