"""Datasets for training: loaded once per process, checked against the estimator, split into
the training and held-out rows every grove and the scoring share."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import type_of_target

from groves.data import encoding, selection
from groves.data.tables import (
    BUILTIN_NAMES,
    DEFAULT_TARGET,
    arrow_labels,
    builtin,
    check_source,
    checked_features,
    checked_labels,
    npz_arrays,
    read_source,
    read_table,
    row_weights,
    suffix,
)
from groves.errors import RequestError, missing_column

MIN_ROWS = 4  # enough for a held-out split


@dataclass(frozen=True)
class Dataset:
    """Features as float32 (what scikit-learn's trees use), labels as loaded, optional row
    weights. ``columns`` records each feature's kind (``groves.data.encoding``); a text
    column's values are codes into ``words[j]``, its sorted distinct values over every row,
    until ``split`` recodes them by the training rows' categories. ``named``: whether the
    feature names came from the data (a CSV/Parquet header, a built-in dataset)."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    fingerprint: str
    columns: tuple[dict[str, Any], ...] = ()
    words: dict[int, np.ndarray] = field(default_factory=dict)
    weights: np.ndarray | None = None
    named: bool = True
    # text labels: their sorted distinct values and each row's index into them (hashed by
    # pyarrow, so that checks and stratification need no sort of the strings)
    labels: tuple[np.ndarray, np.ndarray] | None = None
    dropped: tuple[str, ...] = ()  # a table's columns the request's features and drop left out


@dataclass(frozen=True)
class Split:
    """The training and held-out rows; ``columns`` the encoding the training rows define."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    fingerprint: str
    w_train: np.ndarray | None = None
    columns: tuple[dict[str, Any], ...] = ()


@functools.lru_cache(maxsize=2)
def load_dataset(
    source: str,
    target: str | None = None,
    weight: str | None = None,
    features: tuple[str, ...] | None = None,
    drop: tuple[str, ...] = (),
) -> Dataset:
    """Load a dataset once per process (warm Lambdas and local workers reuse it), a table's
    columns chosen by ``features`` and ``drop`` (``groves.data.selection``). Whatever is
    wrong with the file is a ``RequestError`` naming ``dataset``, ``target``, ``weight``,
    ``features`` or ``drop``, and no message quotes the file's contents (the caller may not
    be allowed to read them)."""
    check_source(source, target)
    words: dict[int, np.ndarray] = {}
    w, labels, table_columns, dropped = None, None, None, ()
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
        X, y, w, names, words, table_columns, labels, dropped = table_features(
            source, target or DEFAULT_TARGET, weight, features, drop
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
    # a table's columns keep their kinds (booleans too, with or without text); arrays are numbers
    columns = tuple(table_columns or ({"name": n, "kind": "number"} for n in names))
    arrays = (X, y) if w is None else (X, y, w)
    fingerprint = _fingerprint(*arrays)
    return Dataset(X, y, names, fingerprint, columns, words, w, named, labels, dropped)


def table_features(
    source: str,
    target: str,
    weight: str | None,
    features: tuple[str, ...] | None = None,
    drop: tuple[str, ...] = (),
) -> tuple[Any, ...]:
    """A CSV's or Parquet's features (text as table-wide codes, a date column as its parts),
    labels, weights, feature names, the text columns' sorted values, every feature column as
    the plan records it, text labels' codes, and the columns ``features`` and ``drop`` left
    out."""
    table = read_table(source)
    header = table.column_names
    if header.count(target) > 1:
        raise RequestError("target", f"column {target!r} appears {header.count(target)} times")
    if len(set(header)) != len(header):
        raise RequestError("dataset", f"{source!r} has columns with the same name")
    if target not in header:
        raise missing_column("target", target, repr(source), header)
    if weight is not None and (weight not in header or weight == target):
        raise RequestError(
            "weight", f"column {weight!r} is not a column of {source!r} besides the target"
        )
    where = repr(source)
    if len(header) == 1 + (weight is not None):
        raise RequestError("dataset", f"{source!r} has no feature columns besides {target!r}")
    names = selection.feature_names(header, target, weight, features, drop, where)
    kinds = [encoding.column_kind(n, table.column(n).type, where) for n in names]
    selection.check_part_names(names, kinds, where)
    columns = [
        c for n, k in zip(names, kinds, strict=True)
        for c in encoding.expanded(n, k, table.column(n).type)
    ]  # fmt: skip
    X = np.empty((table.num_rows, len(columns)), dtype=np.float32)
    words: dict[int, np.ndarray] = {}
    for j, column in enumerate(columns):
        name, kind = column["name"], column["kind"]
        values = table.column(encoding.input_name(column))
        if kind == "category":
            X[:, j], words[j] = encoding.text_codes(values)
            encoding.refuse_typo(name, X[:, j], words[j], where)
        else:
            X[:, j] = encoding.column_values(values, column, where, "dataset")
    y = arrow_labels(table.column(target), source)
    labels = None
    if y.dtype.kind == "U":
        codes, classes = encoding.text_codes(table.column(target))
        labels = (classes.astype(str), codes.astype(np.int64))
    w = None
    if weight is not None:
        values = table.column(weight)
        if values.null_count:
            first = encoding.first_false(values.is_valid())
            raise RequestError("weight", f"{where}: row {first + 1} has a missing weight")
        w = encoding.to_numbers(weight, values, where, "weight")
    dropped = tuple(selection.left_out(header, names, target, weight))
    return X, y, w, tuple(c["name"] for c in columns), words, columns, labels, dropped


def check_target(
    dataset: Dataset, estimator: str, source: str, held_out: bool = True
) -> list[Any] | None:
    """The sorted classes for a classifier (a list per output when there are several);
    ``None`` for a regressor. Rejects a mismatch, without quoting label values; ``held_out``:
    rows are held out, stratified, so each class needs two."""
    if estimator == "classifier":
        if dataset.y.ndim == 2:  # several outputs: not stratified, any classes each
            return [_classes(column, None, source)[0].tolist() for column in dataset.y.T]
        classes, counts = _classes(dataset.y, dataset.labels, source)
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


def _classes(
    y: np.ndarray, labels: tuple[np.ndarray, np.ndarray] | None, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """One output's sorted classes and their row counts; refused if it is not class labels."""
    if labels is not None:
        classes, codes = labels
        counts = np.bincount(codes, minlength=len(classes))
        kind = "binary" if len(classes) <= 2 else "multiclass"
    else:
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
        "dropped": list(dataset.dropped),
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
    """The held-out split every grove and predict share: it depends on the run seed only. A
    text column's codes become the training rows' categories (``groves.data.encoding``): a
    held-out row whose category no training row has is missing, as at prediction."""
    strata = dataset.labels[1] if dataset.labels is not None else dataset.y
    parts = _split_rows(
        dataset.X,
        dataset.y,
        strata,
        dataset.weights,
        dataset.fingerprint,
        test_size,
        seed,
        stratify,
        "test_size",
    )
    columns = list(dataset.columns)
    for j, words in dataset.words.items():
        name = columns[j]["name"]
        lookup, categories = encoding.training_categories(
            name, parts.X_train[:, j], words, repr(name)
        )
        parts.X_train[:, j] = encoding.recode(parts.X_train[:, j], lookup)
        parts.X_test[:, j] = encoding.recode(parts.X_test[:, j], lookup)
        columns[j] = {**columns[j], "categories": categories}
    return replace(parts, columns=tuple(columns))


def carve(outer: Split, validation_size: float, seed: int, stratify: bool) -> Split:
    """A validation split carved from ``outer``'s training rows (its held-out rows are left
    out): ``X_train`` the rows candidates fit on, ``X_test`` the rows they are compared on.
    The encoding stays the outer training rows' (what the committed model is used with)."""
    inner = _split_rows(
        outer.X_train,
        outer.y_train,
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
    strata: np.ndarray,
    w: np.ndarray | None,
    fingerprint: str,
    size: float,
    seed: int,
    stratify: bool,
    field: str,
) -> Split:
    """Rows split into a first part and a held part of ``size`` (stratified by ``strata``: the
    labels, or their codes in sorted order, which split alike; one output's only); a failure
    names ``field``. ``size`` 0 holds out no row."""
    indices = np.arange(len(y))
    stratify = stratify and y.ndim == 1  # several outputs are not stratified
    try:
        first, held = (
            (indices, indices[:0])
            if size == 0
            else train_test_split(
                indices, test_size=size, random_state=seed, stratify=strata if stratify else None
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
