"""Datasets: scikit-learn's bundled ones by name, or CSV, NPZ, Parquet from a path or s3://."""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import datasets as skdatasets
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import type_of_target

from groves.errors import RequestError
from groves.storage import read_uri

BUILTIN: dict[str, Callable[..., Any]] = {
    "digits": skdatasets.load_digits,
    "breast_cancer": skdatasets.load_breast_cancer,
    "iris": skdatasets.load_iris,
    "wine": skdatasets.load_wine,
    "diabetes": skdatasets.load_diabetes,
}
FILE_SUFFIXES = (".csv", ".npz", ".parquet")
DEFAULT_TARGET = "target"


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
    if not source.lower().endswith(FILE_SUFFIXES):
        raise RequestError(
            "dataset",
            f"{source!r} is neither a built-in dataset ({', '.join(BUILTIN)}) nor a file "
            f"ending in {', '.join(FILE_SUFFIXES)} (local path or s3://bucket/key)",
        )
    if source.lower().endswith(".npz") and target is not None:
        raise RequestError("target", "does not apply to .npz files, which hold arrays X and y")


@functools.lru_cache(maxsize=2)
def load_dataset(source: str, target: str | None = None) -> Dataset:
    """Load a dataset once per process (warm Lambdas and local workers reuse it)."""
    check_source(source, target)
    if source in BUILTIN:
        bunch = BUILTIN[source]()
        names = tuple(str(n) for n in getattr(bunch, "feature_names", ()))
        X, y = bunch.data, bunch.target
    else:
        raw = read_uri(source)
        suffix = source.lower().rsplit(".", 1)[-1]
        if suffix == "npz":
            X, y, names = _from_npz(raw, source)
        else:
            reader = _from_csv if suffix == "csv" else _from_parquet
            X, y, names = reader(raw, source, target or DEFAULT_TARGET)
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise RequestError(
            "dataset",
            f"{source!r}: need 2-D features and 1-D labels of equal length, "
            f"got X {X.shape} and y {y.shape}",
        )
    if len(X) < 4:
        raise RequestError("dataset", f"{source!r} has {len(X)} rows; at least 4 are needed")
    X.setflags(write=False)
    y.setflags(write=False)
    names = names or tuple(f"x{i}" for i in range(X.shape[1]))
    return Dataset(X, y, names, _fingerprint(X, y))


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(str((array.shape, array.dtype.str)).encode())
        if array.dtype.kind in "OUS":
            digest.update("\x00".join(map(str, array.tolist())).encode())
        else:
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _from_npz(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
        missing = {"X", "y"} - set(archive.files)
        if missing:
            raise RequestError(
                "dataset", f"{source!r} must hold arrays 'X' and 'y'; it holds {archive.files}"
            )
        return archive["X"], archive["y"], ()


def _from_csv(
    raw: bytes, source: str, target: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    rows = [row for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) if row]
    if len(rows) < 2:
        raise RequestError("dataset", f"{source!r} needs a header row and data rows")
    header, body = rows[0], rows[1:]
    widths = {len(row) for row in body}
    if widths != {len(header)}:
        raise RequestError(
            "dataset",
            f"{source!r}: rows have {sorted(widths)} fields, the header has {len(header)}",
        )
    columns = dict(zip(header, np.array(body, dtype=str).T, strict=True))
    return _split_columns(columns, source, target)


def _from_parquet(
    raw: bytes, source: str, target: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise RequestError(
            "dataset", "Parquet needs pyarrow: pip install 'groves[parquet]'"
        ) from exc
    table = pq.read_table(io.BytesIO(raw))
    columns = {name: table.column(name).to_numpy() for name in table.column_names}
    return _split_columns(columns, source, target)


def _split_columns(
    columns: dict[str, np.ndarray],
    source: str,
    target: str,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if target not in columns:
        raise RequestError(
            "target", f"column {target!r} is not in {source!r}; its columns are {list(columns)}"
        )
    features = [name for name in columns if name != target]
    if not features:
        raise RequestError("dataset", f"{source!r} has no feature columns besides {target!r}")
    X = np.column_stack([_numeric_column(columns[name], name, source) for name in features])
    y = columns[target]
    if y.dtype.kind in "US":
        with contextlib.suppress(ValueError):  # string class labels stay strings
            y = y.astype(np.float64)
    return X, y, tuple(features)


def _numeric_column(values: np.ndarray, name: str, source: str) -> np.ndarray:
    if values.dtype.kind in "biuf":
        return values.astype(np.float32)
    try:
        return np.where(values == "", "nan", values).astype(np.float32)
    except (ValueError, TypeError) as exc:
        raise RequestError(
            "dataset",
            f"column {name!r} of {source!r} is not numeric; features must be numbers "
            "(missing values may be empty)",
        ) from exc


def check_target(dataset: Dataset, estimator: str, source: str) -> list[Any] | None:
    """The sorted classes for a classifier; ``None`` for a regressor. Rejects a mismatch."""
    kind = type_of_target(dataset.y)
    if estimator == "classifier":
        if kind not in ("binary", "multiclass"):
            raise RequestError(
                "estimator",
                f"'classifier' needs class labels but {source!r} has a {kind} "
                "target; use estimator 'regressor'",
            )
        classes, counts = np.unique(dataset.y, return_counts=True)
        lonely = classes[counts < 2]
        if len(lonely):
            raise RequestError(
                "estimator",
                f"'classifier' needs at least 2 rows per class, but {len(lonely)} "
                f"of the {len(classes)} classes of {source!r} have one (e.g. "
                f"{', '.join(map(str, lonely[:5].tolist()))}); if the target is a quantity, "
                "use estimator 'regressor'",
            )
        return classes.tolist()
    if dataset.y.dtype.kind not in "biuf":
        raise RequestError(
            "estimator",
            f"'regressor' needs a numeric target but {source!r} has labels "
            f"like {dataset.y[0]!r}; use estimator 'classifier'",
        )
    return None


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
