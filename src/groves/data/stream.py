"""Tables planned in bounded memory, whatever their size: a CSV or Parquet file, or a folder
(a directory, or an ``s3://`` prefix ending in ``/``) of them, read block by block, twice.

- ``scan``: the first pass learns, without keeping rows, the feature columns (``features`` and
  ``drop``: ``groves.data.selection``) and each one's kind, the text columns' categories (in
  the training rows, with the typo check), the label's classes and every class's training
  rows, the row counts, and which columns look like ids (a warning).
- ``prepare``: the second pass encodes each block as the scan decided, sends its training rows
  to the shards every grove samples (``groves.data.shards``), and keeps held-out rows for
  scoring up to ``max_test_rows``.

Which rows are held out is decided row by row: row ``i`` is held out when a hash of the seed and
``i`` falls below ``test_size``, so the split is seeded, reproducible, needs no shuffle of the
table, and is stratified in expectation (every class loses the same share). Held-out rows beyond
``max_test_rows`` are dropped by a second hash (they neither train nor score), so scoring costs
what ``max_test_rows`` costs, not what the table does. Memory holds a block, a stripe, the
categories and the kept held-out rows; local disk (Lambda's ``/tmp``) one input file (an S3
object is downloaded, then read) and one shard.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from groves.data import encoding, selection
from groves.data.shards import Layout, RowWriter
from groves.data.tables import (
    BATCH_ROWS,
    blocks,
    csv_options,
    csv_problem,
    frame_columns,
    is_folder,
    local_file,
    parquet_file,
    readable,
)
from groves.errors import RequestError, missing_column
from groves.store.uris import list_uri

SUFFIXES = (".csv", ".parquet")
MAX_CLASSES = 10_000
MIN_ROWS = 4


def table_files(source: str) -> tuple[list[str], str]:
    """The files of a table (one, or a folder's ``.csv`` or ``.parquet`` files, sorted) and
    their kind (``csv`` or ``parquet``)."""
    if not is_folder(source):
        return [source], source.lower().rsplit(".", 1)[-1]
    with readable(source, "dataset"):
        names = list_uri(source)
    found = sorted(n for n in names if n.lower().endswith(SUFFIXES))
    kinds = {n.lower().rsplit(".", 1)[-1] for n in found}
    if not found:
        raise RequestError("dataset", f"{source!r} holds no .csv or .parquet file")
    if len(kinds) > 1:
        raise RequestError("dataset", f"{source!r} mixes CSV and Parquet files; use one kind")
    return found, kinds.pop()


def file_batches(
    uri: str, kind: str, types: dict[str, pa.DataType] | None = None
) -> Iterator[pa.Table]:
    """One file's blocks of about ``BATCH_ROWS`` rows (a CSV's columns of ``types`` read as
    those types)."""
    with local_file(uri, "dataset") as path:
        if kind == "parquet":
            try:
                parquet = parquet_file(path)
                columns = frame_columns(parquet.schema_arrow)
                yield from blocks(parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns))
            except (pa.ArrowException, OSError) as exc:
                raise RequestError("dataset", f"{uri!r} is not a readable Parquet file") from exc
            return
        read, convert = csv_options(types)
        try:
            reader = pa_csv.open_csv(path, read_options=read, convert_options=convert)
            reader.schema.names  # noqa: B018 (decodes the header: it must be UTF-8)
            yield from blocks(reader)
        except UnicodeDecodeError as exc:
            raise RequestError("dataset", f"{uri!r} is not UTF-8 text") from exc
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problem = csv_problem(exc, uri)
            if "In CSV column" in str(exc) and "UTF8" not in str(exc):
                problem = (
                    f"{uri!r}: a value further down does not fit the type its column's first "
                    "rows have (a number column with text in it?); correct it, or leave it empty"
                )
            raise RequestError("dataset", problem) from exc


def unit_hash(seed: int, salt: int, start: int, n: int) -> np.ndarray:
    """A number in [0, 1) for each row ``start .. start + n - 1`` from the seed (splitmix64)."""
    with np.errstate(over="ignore"):
        x = np.arange(start, start + n, dtype=np.uint64)
        x ^= np.uint64((seed * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9) % 2**64)
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclass
class Scan:
    """What the first pass learned of a table."""

    source: str
    files: list[str]
    kind: str
    target: str
    weight: str | None
    features: list[str] | None = None  # the request's: only these columns
    drop: list[str] = field(default_factory=list)  # the request's: not these
    names: list[str] = field(default_factory=list)
    types: dict[str, pa.DataType] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)
    words: dict[str, dict[Any, list[int]]] = field(default_factory=dict)  # [train count, row]
    labels: dict[Any, list[int]] = field(default_factory=dict)  # [rows, training rows]
    label_kind: str = ""
    train_min: float = math.inf  # a regressor's least training label, and their sum
    train_sum: float = 0.0
    missing_labels: int = 0
    first_missing: int | None = None
    label_width: int = 1
    n_rows: int = 0
    n_test: int = 0
    distinct: dict[str, int] = field(default_factory=dict)  # integer columns: over the blocks

    def columns(self) -> list[dict[str, Any]]:
        """The feature columns as the plan records them: text with its categories, a date
        column as its parts."""
        out = []
        for name, kind in zip(self.names, self.kinds, strict=True):
            if kind == "category":
                words = sorted(str(w) for w, (n, _) in self.words[name].items() if n)
                out.append({"name": name, "kind": kind, "categories": words})
            else:
                out.extend(encoding.expanded(name, kind, self.types[name]))
        return out

    def dropped(self) -> list[str]:
        """The columns ``features`` and ``drop`` left out."""
        return selection.left_out(list(self.types), self.names, self.target, self.weight)

    def warnings(self) -> list[str]:
        """What plan warns of: integer and text columns that look like ids. An integer
        column's distinct values are counted block by block (memory holds a block), which
        counts a value repeated in another block again."""
        counts = {**self.distinct, **{name: len(words) for name, words in self.words.items()}}
        ordered = {n: counts[n] for n in self.names if n in counts}
        return selection.id_warnings(ordered, self.n_rows)


def scan(
    source: str,
    target: str,
    weight: str | None,
    classify: bool,
    test_size: float,
    seed: int,
    features: list[str] | None = None,
    drop: list[str] | None = None,
) -> Scan:
    """The first pass (see the module's docstring)."""
    files, kind = table_files(source)
    found = Scan(source, files, kind, target, weight, features, list(drop or ()))
    for uri in files:
        for batch in file_batches(uri, kind, found.types or None):
            if not found.names:
                _schema(found, batch.schema)
            elif batch.schema.names != list(found.types):
                raise RequestError(
                    "dataset",
                    f"{uri!r} has other columns than {files[0]!r}; a folder's files "
                    "must have the same columns",
                )
            _scan_batch(found, batch, classify, test_size, seed)
    _check(found, classify, test_size > 0)
    return found


def _schema(found: Scan, schema: pa.Schema) -> None:
    header = schema.names
    where = repr(found.source)
    if header.count(found.target) > 1:
        raise RequestError(
            "target", f"column {found.target!r} appears {header.count(found.target)} times"
        )
    if len(set(header)) != len(header):
        raise RequestError("dataset", f"{where} has columns with the same name")
    if found.target not in header:
        raise missing_column("target", found.target, where, header)
    if found.weight is not None and (found.weight not in header or found.weight == found.target):
        raise RequestError(
            "weight", f"column {found.weight!r} is not a column of {where} besides the target"
        )
    if len(header) == 1 + (found.weight is not None):
        raise RequestError("dataset", f"{where} has no feature columns besides {found.target!r}")
    found.names = selection.feature_names(
        header, found.target, found.weight, found.features, found.drop, where
    )
    found.types = {n: schema.field(n).type for n in header}
    found.kinds = [encoding.column_kind(n, found.types[n], where) for n in found.names]
    selection.check_part_names(found.names, found.kinds, where)
    found.words = {n: {} for n, k in zip(found.names, found.kinds, strict=True) if k == "category"}


def _scan_batch(found: Scan, batch: pa.Table, classify: bool, size: float, seed: int) -> None:
    n, start = batch.num_rows, found.n_rows
    test = unit_hash(seed, 0, start, n) < size
    where = repr(found.source)
    for name, words in found.words.items():
        values = encoding.decoded(batch.column(name))
        text = pc.cast(values, pa.string()).combine_chunks()
        encoded = pc.dictionary_encode(text)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        present = ~np.isnan(indices) if indices.dtype.kind == "f" else np.ones(n, bool)
        codes = indices[present].astype(np.int64)
        dictionary = encoded.dictionary.to_pylist()
        in_train = np.bincount(codes[~test[present]], minlength=len(dictionary))
        seen, first = np.unique(codes, return_index=True)
        rows = np.flatnonzero(present)[first] + start
        for code, row in zip(seen.tolist(), rows.tolist(), strict=True):
            entry = words.setdefault(dictionary[code], [0, row])
            entry[0] += int(in_train[code])
        if len(words) > encoding.MAX_CATEGORIES * 2:
            raise RequestError(
                "dataset",
                f"column {name!r} of {where} has over {encoding.MAX_CATEGORIES:,} distinct values; "
                f"bin it, or if it is an id, leave it out: drop [{name!r}] (--drop {name})",
            )
    for name, kind in zip(found.names, found.kinds, strict=True):
        if found.types[name] != pa.null() and kind in ("number", "bool"):
            encoding.to_numbers(name, batch.column(name), where, "dataset", start)
        if pa.types.is_integer(found.types[name]):
            count = pc.count_distinct(batch.column(name)).as_py()
            found.distinct[name] = found.distinct.get(name, 0) + count
    _scan_labels(found, batch.column(found.target), test, classify, start)
    if found.weight is not None:
        _check_weights(found, batch.column(found.weight), start)
    found.n_rows += n
    found.n_test += int(test.sum())


def _scan_labels(
    found: Scan, column: pa.ChunkedArray, test: np.ndarray, classify: bool, start: int
) -> None:
    values = encoding.decoded(column)
    kind = values.type
    missing = values.is_null()
    if encoding.is_text(kind):
        missing = pc.or_(missing, pc.equal(pc.utf8_trim_whitespace(values), ""))
    elif pa.types.is_floating(kind):
        missing = pc.or_(missing, pc.invert(pc.is_finite(values)))
    missing = np.asarray(pc.fill_null(missing, True).to_numpy(zero_copy_only=False), bool)
    if missing.any():
        found.missing_labels += int(missing.sum())
        if found.first_missing is None:
            found.first_missing = start + int(np.argmax(missing))
        return
    if encoding.is_text(kind):
        label_kind = "text"
        lengths = pc.utf8_length(values)
        found.label_width = max(found.label_width, int(pc.max(lengths).as_py() or 1))
    elif pa.types.is_boolean(kind):
        label_kind = "bool"
    elif pa.types.is_integer(kind):
        label_kind = "int"
    elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        label_kind = "float"
    else:
        raise RequestError(
            "target", f"{found.source!r}: labels must be numbers or text, not {kind}"
        )
    if found.label_kind and found.label_kind != label_kind:
        raise RequestError(
            "target",
            f"{found.source!r}: labels are {found.label_kind} in one part and {label_kind} "
            "in another",
        )
    found.label_kind = label_kind
    if not classify:
        if label_kind == "text":
            raise RequestError(
                "estimator",
                f"'regressor' needs a numeric target but {found.source!r} has text labels; "
                "use estimator 'classifier'",
            )
        floats = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)[~test]
        if len(floats):
            found.train_min = min(found.train_min, float(floats.min()))
            found.train_sum += float(floats.sum())
        return
    labels = values.to_numpy(zero_copy_only=False)
    unique, inverse = np.unique(labels, return_inverse=True)
    rows = np.bincount(inverse, minlength=len(unique))
    trains = np.bincount(inverse[~test], minlength=len(unique))
    for label, n, t in zip(unique.tolist(), rows.tolist(), trains.tolist(), strict=True):
        entry = found.labels.setdefault(label, [0, 0])
        entry[0] += n
        entry[1] += t
    if len(found.labels) > MAX_CLASSES:
        raise RequestError(
            "estimator",
            f"'classifier' has over {MAX_CLASSES:,} classes in {found.source!r}; if the target "
            "is a quantity, use estimator 'regressor'",
        )


def _check_weights(found: Scan, values: pa.ChunkedArray, start: int) -> None:
    where = repr(found.source)
    if values.null_count:
        first = encoding.first_false(values.is_valid())
        raise RequestError("weight", f"{where}: row {start + first + 1} has a missing weight")
    w = encoding.to_numbers(found.weight or "", values, where, "weight", start)
    if (w < 0).any():
        row = start + int(np.argmax(w < 0)) + 1
        raise RequestError("weight", f"{where}: row {row} has a negative weight")
    bad = ~np.isfinite(w)
    if bad.any():
        raise RequestError(
            "weight",
            f"{where}: row {start + int(np.argmax(bad)) + 1} has a missing or infinite weight",
        )


def _check(found: Scan, classify: bool, held_out: bool) -> None:
    where = repr(found.source)
    if found.missing_labels:
        raise RequestError(
            "target",
            f"{where} has {found.missing_labels} rows with a missing or non-finite label "
            f"(the first: row {(found.first_missing or 0) + 1})",
        )
    if found.n_rows < MIN_ROWS:
        raise RequestError(
            "dataset", f"{where} has {found.n_rows} rows; at least {MIN_ROWS} are needed"
        )
    for name, words in found.words.items():
        _refuse_typo(name, words, where)
        if sum(1 for n, _ in words.values() if n) > encoding.MAX_CATEGORIES:
            raise RequestError(
                "dataset",
                f"column {name!r} of {where} has over {encoding.MAX_CATEGORIES:,} distinct values "
                f"in the training rows; bin it, or if it is an id, leave it out: drop [{name!r}] "
                f"(--drop {name})",
            )
    if classify:
        if len(found.labels) < 2:
            raise RequestError(
                "target", f"a classifier needs at least 2 classes; {where} has {len(found.labels)}"
            )
        if found.label_kind == "float" and any(float(c) != int(c) for c in found.labels):
            raise RequestError(
                "estimator",
                f"'classifier' needs class labels but {where} has a continuous target; use "
                "estimator 'regressor'",
            )
        lonely = sum(1 for n, _ in found.labels.values() if n < 2)
        if lonely and held_out:
            raise RequestError(
                "estimator",
                f"'classifier' needs at least 2 rows per class, but {lonely} of the "
                f"{len(found.labels)} classes of {where} have one; if the target is a quantity, "
                "use estimator 'regressor'",
            )
        untrained = sum(1 for _, t in found.labels.values() if t == 0)
        if untrained:
            raise RequestError(
                "test_size",
                f"leaves {untrained} of the {len(found.labels)} classes without training rows; "
                "lower it",
            )


def _refuse_typo(name: str, words: dict[Any, list[int]], where: str) -> None:
    """A text column that is numbers but for a rare value is a numeric column with a typo."""
    if not words:
        return
    texts = list(words)
    numeric = pc.match_substring_regex(pa.array([str(t) for t in texts]), encoding.NUMBER)
    numeric_flags = numeric.to_numpy(zero_copy_only=False)
    counts = np.array([words[t][0] for t in texts])
    total, numbers = int(counts.sum()), int(counts[numeric_flags].sum())
    if total and 0 < total - numbers <= encoding.TYPO_SHARE * total:
        row = min(words[t][1] for t, ok in zip(texts, numeric_flags, strict=True) if not ok)
        raise RequestError(
            "dataset",
            f"column {name!r} of {where}: row {row + 1} is not a number, though {numbers:,} of "
            f"its {total:,} values are; correct it or leave it empty (a missing value)",
        )


def label_dtype(found: Scan) -> np.dtype:
    return {
        "text": np.dtype(f"<U{found.label_width}"),
        "bool": np.dtype(bool),
        "int": np.dtype("<i8"),
        "float": np.dtype("<f8"),
    }[found.label_kind]


def classes(found: Scan) -> list[Any] | None:
    return sorted(found.labels) if found.labels else None


@dataclass
class Prepared:
    train: dict[str, Any]
    X_test: np.ndarray
    y_test: np.ndarray
    n_train: int
    fingerprint: str


def prepare(
    writer_for: Any, found: Scan, test_size: float, seed: int, max_test_rows: int
) -> Prepared:
    """The second pass (see the module's docstring); ``writer_for(layout, n_train)`` gives the
    ``RowWriter`` the training rows go to."""
    columns = found.columns()
    dtype = label_dtype(found)
    n_train = found.n_rows - found.n_test
    layout = Layout(len(columns), dtype, (), found.weight is not None)
    writer: RowWriter = writer_for(layout, n_train)
    keep_share = min(1.0, max_test_rows / found.n_test) if found.n_test else 0.0
    tests_X, tests_y, digest = [], [], hashlib.blake2b(digest_size=16)
    where = repr(found.source)
    row = 0
    kept = [n for n in (found.target, found.weight, *found.dropped()) if n is not None]
    for uri in found.files:
        for table in file_batches(uri, found.kind, found.types):
            X = encoding.encode_table(table, columns, where, "dataset", kept, row)
            y = _labels(table.column(found.target), dtype)
            w = None
            if found.weight is not None:
                w = encoding.to_numbers(
                    found.weight, table.column(found.weight), where, "weight", row
                )
            test = unit_hash(seed, 0, row, len(y)) < test_size
            keep = test & (unit_hash(seed, 1, row, len(y)) < keep_share)
            train = ~test
            writer.add(X[train], y[train], None if w is None else w[train])
            tests_X.append(X[keep])
            tests_y.append(y[keep])
            row += len(y)
    record = writer.finish()
    X_test = np.concatenate(tests_X) if tests_X else np.empty((0, len(columns)), np.float32)
    y_test = np.concatenate(tests_y) if tests_y else np.empty(0, dtype)
    # the split's identity: its rows (every training stripe's sha256, through the shards'
    # indexes, and the held-out rows kept), however the table was cut into files and blocks
    digest.update(str((found.n_rows, seed, test_size, max_test_rows)).encode())
    for shard in record["shards"]:
        digest.update(shard["index"]["sha256"].encode())
    digest.update(np.ascontiguousarray(X_test).data)
    digest.update(np.ascontiguousarray(y_test).data)
    return Prepared(record, X_test, y_test, n_train, digest.hexdigest())


def _labels(values: pa.ChunkedArray, dtype: np.dtype) -> np.ndarray:
    values = encoding.decoded(values)
    return np.asarray(values.to_numpy(zero_copy_only=False)).astype(dtype)
