"""Datasets for training: loaded once per process, checked against the estimator, split into
the training and held-out rows every grove and the scoring share."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import type_of_target

from groves.data.tables import (
    BUILTIN,
    DEFAULT_TARGET,
    check_source,
    checked_features,
    checked_labels,
    from_csv,
    from_npz,
    from_parquet,
    read_source,
)
from groves.errors import RequestError


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
        raw = read_source(source)
        suffix = source.lower().rsplit(".", 1)[-1]
        if suffix == "npz":
            X, y, names = from_npz(raw, source)
        else:
            reader = from_csv if suffix == "csv" else from_parquet
            X, y, names = reader(raw, source, target or DEFAULT_TARGET)
    X, y = checked_features(np.asarray(X), source), checked_labels(np.asarray(y), source)
    if len(X) != len(y):
        raise RequestError("dataset", f"{source!r} has {len(X)} feature rows but {len(y)} labels")
    if len(X) < 4:
        raise RequestError("dataset", f"{source!r} has {len(X)} rows; at least 4 are needed")
    X.setflags(write=False)
    y.setflags(write=False)
    names = names or tuple(f"x{i}" for i in range(X.shape[1]))
    return Dataset(X, y, names, _fingerprint(X, y))


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
    return _split_rows(
        dataset.X, dataset.y, dataset.fingerprint, test_size, seed, stratify, "test_size"
    )


def carve(outer: Split, validation_size: float, seed: int, stratify: bool) -> Split:
    """A validation split carved from ``outer``'s training rows (its held-out rows are left
    out): ``X_train`` the rows candidates fit on, ``X_test`` the rows they are compared on."""
    return _split_rows(
        outer.X_train,
        outer.y_train,
        outer.fingerprint,
        validation_size,
        seed,
        stratify,
        "validation_size",
    )


def _split_rows(
    X: np.ndarray,
    y: np.ndarray,
    fingerprint: str,
    size: float,
    seed: int,
    stratify: bool,
    field: str,
) -> Split:
    """Rows split into a first part and a held part of ``size``; a failure names ``field``."""
    indices = np.arange(len(y))
    try:
        first, held = train_test_split(
            indices, test_size=size, random_state=seed, stratify=y if stratify else None
        )
    except ValueError as exc:
        raise RequestError(field, f"cannot split these rows with it: {exc}") from exc
    return Split(
        X[first],
        X[held],
        y[first],
        y[held],
        _fingerprint(np.frombuffer(fingerprint.encode(), dtype=np.uint8), first),
    )
