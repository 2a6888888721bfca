"""A table's rows prepared for training in bounded memory (``groves.data.stream``), the same
for a build's plan and a search's candidates: the table scanned, checked (the forest's
parameters against its training rows, ``check_params_against_data``), decided, its training
rows written as shards and its held-out rows kept; and the plan's data record of it.

A build's plan runs these steps in its own invocation for a one-file table, and its Map a
file an invocation for a folder (``plan``); a search runs them in its plan_search invocation
for any table (``plan_rows``), with validation rows beside the held-out ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from groves.data import stream
from groves.data.prepared import write_held_out
from groves.data.shards import RowWriter
from groves.data.tables import DEFAULT_TARGET, is_folder
from groves.errors import RequestError
from groves.store.artifacts import data_prefix
from groves.store.protocol import Store


def is_table(source: str) -> bool:
    """CSV and Parquet files and folders of them are planned in bounded memory (``stream``);
    arrays (``.npz``, scikit-learn's datasets) are loaded whole, as numpy reads them."""
    return source.lower().endswith((".csv", ".parquet")) or is_folder(source)


def open_table(spec: dict[str, Any]) -> stream.Table:
    """The request's table: its files, and the columns its first file's header decides."""
    return stream.open_table(
        spec["dataset"],
        spec["target"] or DEFAULT_TARGET,
        spec["weight"],
        spec["features"],
        spec["drop"],
    )


def split_of(spec: dict[str, Any]) -> stream.Split:
    """The spec's split of a table's rows; a search's spec (only) has validation rows."""
    validation = spec.get("validation_size", 0.0)
    return stream.Split(spec["test_size"], spec["seed"], spec["max_test_rows"], validation)


@dataclass(frozen=True)
class TrainingLabels:
    """What the parameters' checks need of the training labels: their count, outputs, and
    (a regressor's) least value and sum: from an array, or from a table's scan."""

    n: int
    n_outputs: int = 1
    minimum: float = 0.0
    total: float = 1.0

    @classmethod
    def of(cls, y: np.ndarray) -> TrainingLabels:
        numeric = y.dtype.kind in "biuf" and len(y) > 0
        return cls(
            len(y),
            1 if y.ndim == 1 else y.shape[1],
            float(np.min(y)) if numeric else 0.0,
            float(np.sum(y)) if numeric else 1.0,
        )


# The forest's parameters checked against the training labels and the classes.
Check = Callable[[TrainingLabels, list[Any] | None], None]


def check_params_against_data(
    params: dict[str, Any],
    y_train: np.ndarray | TrainingLabels,
    classes: list[Any] | None = None,
) -> None:
    """Bound the parameters that scale a tree's memory by the data: a tree cannot use more
    samples, leaves or levels than there are training rows, and scikit-learn allocates for
    what is allowed (``max_leaf_nodes: 10**9`` asks for ~128 GB before the first split)."""
    labels = y_train if isinstance(y_train, TrainingLabels) else TrainingLabels.of(y_train)
    n_train = labels.n
    for name in ("max_samples", "max_leaf_nodes", "max_depth"):
        value = params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > n_train:
            raise RequestError(
                f"params.{name}",
                f"{value} is more than the {n_train} training rows; at most {n_train}"
                + (" (or a fraction in (0, 1])" if name == "max_samples" else ""),
            )
    weights = params.get("class_weight")
    if isinstance(weights, dict) and labels.n_outputs > 1:
        raise RequestError(
            "params.class_weight",
            "an object of class weights applies to one output; with several outputs use "
            "'balanced', 'balanced_subsample' or null",
        )
    if isinstance(weights, dict):
        names = {str(c) for c in classes or ()}
        unknown = sorted(set(map(str, weights)) - names)
        if unknown:
            raise RequestError(
                "params.class_weight",
                f"{unknown[0]!r} is not a class of the training rows ({len(names)} classes)",
            )
    if params.get("criterion") == "poisson" and (labels.minimum < 0 or labels.total <= 0):
        raise RequestError(
            "params.criterion", "'poisson' needs non-negative targets with a positive sum"
        )


def decide(found: stream.Scan, spec: dict[str, Any], check: Check | None = None) -> dict[str, Any]:
    """The scanned table's checks against the forest's parameters (``check``; by default the
    spec's ``params``), and what its second pass writes (``stream.decide``) with what the plan
    records of it."""
    classes = stream.classes(found)
    labels = TrainingLabels(found.n_train, 1, found.train_min, found.train_sum)
    if check is None:
        check_params_against_data(spec["params"], labels, classes)
    else:
        check(labels, classes)
    columns = found.columns()
    return {
        **stream.decide(found, split_of(spec)),
        "data": {
            "n_rows": found.n_rows,
            "n_features": len(columns),
            "n_held_out": found.n_test,
            "classes": classes,
            "n_outputs": 1,
            "feature_names": [c["name"] for c in columns],
            "named": True,
            "columns": columns,
            "dropped": found.table.dropped(),
            "weighted": found.table.weight is not None,
            "warnings": found.warnings(),
        },
    }


def decide_scans(
    table: stream.Table,
    scans: list[stream.PartScan],
    spec: dict[str, Any],
    check: Check | None = None,
) -> dict[str, Any]:
    """The files' scans (in order) added up and checked (``stream.merge``), then ``decide``:
    in this invocation (``plan_rows``) or after the plan's Map (``plan.plan_scanned``)."""
    classify = spec["estimator"] == "classifier"
    return decide(stream.merge(table, scans, classify, spec["test_size"] > 0), spec, check)


def writer_for(store: Store, prefix: str) -> Any:
    return lambda layout, step, first: RowWriter(store, prefix, layout, step, first)


def plan_rows(
    store: Store,
    spec: dict[str, Any],
    table: stream.Table,
    build_id: str,
    run_id: str,
    check: Check | None = None,
) -> tuple[dict[str, Any], list[stream.PartRows]]:
    """A table's files planned in this invocation, one after the other, by the steps the
    plan's Map runs a file an invocation: each scanned; the scans added up and checked
    (``check``: see ``decide``); each file's training rows written as shards of run
    ``run_id``'s prepared data and its share of the held-out (and validation) rows kept. What
    was decided, and each file's rows. Memory holds one file's kept rows at a time, and
    every file's once joined (at most ``max_test_rows`` of each kind)."""
    classify, split = spec["estimator"] == "classifier", split_of(spec)
    parts = range(len(table.files))
    scans = [stream.scan_part(table, part, classify, split) for part in parts]
    decided = decide_scans(table, scans, spec, check)
    writer = writer_for(store, data_prefix(build_id, run_id))
    return decided, [stream.prepare_part(table, decided, part, split, writer) for part in parts]


def table_record(
    store: Store,
    spec: dict[str, Any],
    run_id: str,
    decided: dict[str, Any],
    parts: list[stream.PartRows],
) -> dict[str, Any]:
    """The parts' rows joined (``stream.finish``), the held-out rows written; the plan's data
    record of the table."""
    done = stream.finish(decided, parts, split_of(spec))
    held = (done.X_test, done.y_test)
    return prepared_record(store, spec["build_id"], run_id, decided, done, held)


def prepared_record(
    store: Store,
    build_id: str,
    run_id: str,
    decided: dict[str, Any],
    done: stream.Prepared,
    held: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """The run's data record of the table's joined rows (``done``), with its held-out rows
    (``held``: those its groves vote on and its scoring reads) written: a build's held-out
    rows, a search's validation rows."""
    X, y = held
    written = write_held_out(store, build_id, run_id, X, y)
    data = decided["data"]
    return {
        **{k: data[k] for k in ("n_rows", "n_features")},
        "n_train": done.n_train,
        "n_test": len(y),
        **{k: v for k, v in data.items() if k not in ("n_rows", "n_features")},
        "split_fingerprint": done.fingerprint,
        "prepared": {"train": done.train, **written},
    }
