"""Array datasets for training (``.npz`` files and scikit-learn's bundled datasets): loaded once
per process, checked against the estimator, split by scikit-learn into the training and
held-out rows every grove and the scoring share. Tables (CSV, Parquet, folders of them) are
never loaded whole: ``groves.data.stream`` plans them in bounded memory."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import type_of_target

from groves.data.tables import (
    BUILTIN_NAMES,
    builtin,
    check_source,
    checked_features,
    checked_labels,
    npz_arrays,
    read_source,
    row_weights,
    suffix,
)
from groves.errors import RequestError

MIN_ROWS = 4  # enough for a held-out split


@dataclass(frozen=True)
class Dataset:
    """Features as float32 (what scikit-learn's trees use), labels as loaded, optional row
    weights. ``columns`` records each feature as a number column (``groves.data.encoding``).
    ``named``: whether the feature names came from the data (a built-in dataset)."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    fingerprint: str
    columns: tuple[dict[str, Any], ...] = ()
    weights: np.ndarray | None = None
    named: bool = True


@dataclass(frozen=True)
class Split:
    """The training and held-out rows; ``columns`` the features' encoding (numbers)."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    fingerprint: str
    w_train: np.ndarray | None = None
    columns: tuple[dict[str, Any], ...] = ()


@functools.lru_cache(maxsize=2)
def load_dataset(source: str, target: str | None = None, weight: str | None = None) -> Dataset:
    """Load an array dataset once per process (warm Lambdas and local workers reuse it).
    Whatever is wrong with the file is a ``RequestError`` naming ``dataset``, ``target`` or
    ``weight``, and no message quotes the file's contents (the caller may not be allowed to
    read them)."""
    check_source(source, target)
    w = None
    if source in BUILTIN_NAMES:
        bunch = builtin(source)
        names = tuple(str(n) for n in getattr(bunch, "feature_names", ()))
        X, y = bunch.data, bunch.target
        if weight is not None:
            raise RequestError("weight", f"applies only to files, not {source!r}")
    elif suffix(source) == "npz":
        arrays = npz_arrays(read_source(source), source, "dataset", ("X", "y"))
        X, y, names = arrays["X"], arrays["y"], ()
        if weight is not None:
            if weight not in arrays:
                raise RequestError("weight", f"{source!r} holds no array named {weight!r}")
            w = arrays[weight]
    else:
        raise RequestError(
            "dataset",
            f"{source!r} is a table, planned in bounded memory (groves.data.stream), not loaded",
        )
    X, y = checked_features(np.asarray(X), source), checked_labels(np.asarray(y), source)
    if len(X) != len(y):
        raise RequestError("dataset", f"{source!r} has {len(X)} feature rows but {len(y)} labels")
    if len(X) < MIN_ROWS:
        raise RequestError(
            "dataset", f"{source!r} has {len(X)} rows; at least {MIN_ROWS} are needed"
        )
    if w is not None:
        w = row_weights(w, source)
        if len(w) != len(y):
            raise RequestError("weight", f"{source!r} has {len(w)} weights for {len(y)} rows")
        w.setflags(write=False)
    X.setflags(write=False)
    y.setflags(write=False)
    named = bool(names)
    names = names or tuple(f"x{i}" for i in range(X.shape[1]))
    columns = tuple({"name": n, "kind": "number"} for n in names)
    arrays = (X, y) if w is None else (X, y, w)
    return Dataset(X, y, names, _fingerprint(*arrays), columns, w, named)


def check_target(
    dataset: Dataset, estimator: str, source: str, held_out: bool = True
) -> list[Any] | None:
    """The sorted classes for a classifier (a list per output when there are several);
    ``None`` for a regressor. Rejects a mismatch, without quoting label values; ``held_out``:
    rows are held out, stratified, so each class needs two."""
    if estimator == "classifier":
        if dataset.y.ndim == 2:  # several outputs: not stratified, any classes each
            return [_classes(column, source)[0].tolist() for column in dataset.y.T]
        classes, counts = _classes(dataset.y, source)
        if len(classes) < 2:
            raise RequestError(
                "target", f"a classifier needs at least 2 classes; {source!r} has {len(classes)}"
            )
        lonely = int(np.count_nonzero(counts < 2))
        if lonely and held_out:
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


def _classes(y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One output's sorted classes and their row counts; refused if it is not class labels."""
    classes, counts = np.unique(y, return_counts=True)
    kind = type_of_target(y)
    if kind not in ("binary", "multiclass"):
        raise RequestError(
            "estimator",
            f"'classifier' needs class labels but {source!r} has a {kind} "
            "target; use estimator 'regressor'",
        )
    return classes, counts


def n_outputs(y: np.ndarray) -> int:
    """How many targets each row has: labels in one column, or one column per output."""
    return 1 if y.ndim == 1 else y.shape[1]


def data_record(
    dataset: Dataset,
    split: Split,
    classes: list[Any] | None,
    prepared: dict[str, Any],
) -> dict[str, Any]:
    """What a plan records of an array dataset and its split."""
    return {
        "n_rows": len(dataset.y),
        "n_features": dataset.X.shape[1],
        "n_train": len(split.y_train),
        "n_test": len(split.y_test),
        "classes": classes,
        "n_outputs": n_outputs(dataset.y),
        "split_fingerprint": split.fingerprint,
        "feature_names": list(dataset.feature_names),
        "named": dataset.named,
        "columns": list(split.columns),
        "dropped": [],
        "weighted": split.w_train is not None,
        "prepared": prepared,
    }


def every_class_trains(y_train: np.ndarray, classes: list[Any] | None) -> bool:
    """Whether every class (of every output) has training rows: each grove must learn the
    classes the plan records."""
    if classes is None:
        return True
    if y_train.ndim == 1:
        return len(np.unique(y_train)) == len(classes)
    return all(
        len(np.unique(column)) == len(c) for column, c in zip(y_train.T, classes, strict=True)
    )


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
    parts = _split_rows(
        dataset.X,
        dataset.y,
        dataset.weights,
        dataset.fingerprint,
        test_size,
        seed,
        stratify,
        "test_size",
    )
    return replace(parts, columns=dataset.columns)


def carve(outer: Split, validation_size: float, seed: int, stratify: bool) -> Split:
    """A validation split carved from ``outer``'s training rows (its held-out rows are left
    out): ``X_train`` the rows candidates fit on, ``X_test`` the rows they are compared on."""
    inner = _split_rows(
        outer.X_train,
        outer.y_train,
        outer.w_train,
        outer.fingerprint,
        validation_size,
        seed,
        stratify,
        "validation_size",
    )
    return replace(inner, columns=outer.columns)


def _split_rows(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    fingerprint: str,
    size: float,
    seed: int,
    stratify: bool,
    field: str,
) -> Split:
    """Rows split into a first part and a held part of ``size`` (stratified by the labels, one
    output's only); a failure names ``field``. ``size`` 0 holds out no row."""
    indices = np.arange(len(y))
    stratify = stratify and y.ndim == 1  # several outputs are not stratified
    try:
        first, held = (
            (indices, indices[:0])
            if size == 0
            else train_test_split(
                indices, test_size=size, random_state=seed, stratify=y if stratify else None
            )
        )
    except ValueError as exc:
        raise RequestError(field, f"cannot split these rows with it: {exc}") from exc
    return Split(
        X[first],
        X[held],
        y[first],
        y[held],
        _fingerprint(np.frombuffer(fingerprint.encode(), dtype=np.uint8), first),
        None if w is None else w[first],
    )
