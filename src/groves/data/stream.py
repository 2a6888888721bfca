"""Tables planned in bounded memory, whatever their size: a CSV or Parquet file, or a folder
(a directory, or an ``s3://`` prefix ending in ``/``) of them, read block by block, in parts
(a part is one file), twice. Each pass over a part needs nothing of the other parts, so the
plan's Map runs them in parallel, one Lambda a file; a one-file table runs them in the plan step.

- ``open_table``: the first file's header (and a CSV's column types, from its first block)
  decides the feature columns (``features`` and ``drop``: ``groves.data.selection``) and each
  one's kind; every part is read with those types.
- ``scan_part``: the first pass over a part learns, without keeping rows, the text columns'
  categories (in the training rows), the labels and their training rows, the row counts, and
  the integer columns' distinct counts; ``merge`` adds the parts' scans up and checks them
  (the typo check, the classes, the id warnings).
- ``decide`` fixes what the second pass writes: the columns, the stripes, the shares of
  held-out (and validation) rows kept, and each part's first shard (so parts write apart,
  shards numbered in order).
- ``prepare_part``: the second pass encodes a part's blocks, writes its training rows as
  shards (``groves.data.shards``), and keeps its share of the held-out (and validation) rows;
  ``finish`` joins the parts' shards and kept rows, in order.

Which rows are held out is decided row by row: row ``i`` of part ``p`` is held out when a hash
of the seed, ``p`` and ``i`` falls below ``test_size``, so the split is seeded, reproducible,
needs no shuffle of the table and no other part, and is stratified in expectation (every class
loses the same share). Held-out rows beyond ``max_test_rows`` are dropped by a second hash
(they neither train nor score), so scoring costs what ``max_test_rows`` costs, not what the
table does. A search also compares its candidates on validation rows: of the rows not held
out, row ``i`` of part ``p`` is a validation row when a third hash falls below
``validation_size`` (that share of the training rows, as carved from them), and at most
``max_test_rows`` of them are kept the same way; the training rows are the rest. Memory holds a
block, a stripe, the categories and the part's kept held-out (and validation) rows; local disk
(Lambda's ``/tmp``) one input file (an S3 object is downloaded, then read) and one shard.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from groves.data import encoding, selection
from groves.data.shards import Layout, RowWriter, joined, shard_count, stripe_rows
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
from groves.errors import CorruptFile, RequestError, missing_column
from groves.store.uris import list_uri, opened_uri

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


def header(uri: str, kind: str) -> pa.Schema:
    """A file's columns and their types (a CSV's inferred from its first block, as its reader
    infers them), read where the file is: an S3 object's footer or first block by ranged
    reads, not the whole object."""
    with readable(uri, "dataset"), opened_uri(uri) as handle:
        if kind == "parquet":
            try:
                schema = pq.read_schema(handle)
            except (pa.ArrowException, OSError) as exc:
                raise RequestError("dataset", f"{uri!r} is not a readable Parquet file") from exc
            return pa.schema([schema.field(name) for name in frame_columns(schema)])
        read, convert = csv_options()
        # the first block decides the types: its whole lines (the reader, which takes no
        # newline inside a value, cuts its blocks at a line's end too)
        block = handle.read(read.block_size)
        if len(block) == read.block_size:  # else the whole file
            block = block[: block.rfind(b"\n") + 1] or block
        first = io.BytesIO(block)
        try:
            schema = pa_csv.open_csv(first, read_options=read, convert_options=convert).schema
            schema.names  # noqa: B018 (decodes the header: it must be UTF-8)
            return schema
        except UnicodeDecodeError as exc:
            raise RequestError("dataset", f"{uri!r} is not UTF-8 text") from exc
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise RequestError("dataset", csv_problem(exc, uri)) from exc


def unit_hash(seed: int, salt: int, start: int, n: int, part: int = 0) -> np.ndarray:
    """A number in [0, 1) for each row ``start .. start + n - 1`` of part ``part`` from the
    seed (splitmix64)."""
    mix = seed * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9 + part * 0xD6E8FEB86659FD93
    with np.errstate(over="ignore"):
        x = np.arange(start, start + n, dtype=np.uint64)
        x ^= np.uint64(mix % 2**64)
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclass(frozen=True)
class Split:
    """How rows are held out, and a search's validation rows (see the module's docstring)."""

    test_size: float
    seed: int
    max_test_rows: int
    validation_size: float = 0.0  # a search's; training has no validation rows

    def held_out(self, part: int, start: int, n: int) -> np.ndarray:
        return unit_hash(self.seed, 0, start, n, part) < self.test_size

    def rows(self, part: int, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Which of the rows are held out, and which are validation rows (none held out)."""
        test = self.held_out(part, start, n)
        if not self.validation_size:
            return test, np.zeros(n, bool)
        return test, ~test & (unit_hash(self.seed, 2, start, n, part) < self.validation_size)

    def kept(self, part: int, start: int, n: int, share: float) -> np.ndarray:
        return unit_hash(self.seed, 1, start, n, part) < share


@dataclass
class Table:
    """What the plan knows of a table before it reads a row: its files, and the columns the
    first one's header decides (every file is read with its types)."""

    source: str
    files: list[str]
    kind: str
    target: str
    weight: str | None
    names: list[str]  # the feature columns
    types: dict[str, pa.DataType]  # every column's, in the files' order
    kinds: list[str]  # each feature column's

    def dropped(self) -> list[str]:
        """The columns ``features`` and ``drop`` left out."""
        return selection.left_out(list(self.types), self.names, self.target, self.weight)

    def record(self) -> dict[str, Any]:
        schema = pa.schema(list(self.types.items())).serialize().to_pybytes()
        return {
            "source": self.source,
            "files": self.files,
            "kind": self.kind,
            "target": self.target,
            "weight": self.weight,
            "names": self.names,
            "schema": base64.b64encode(schema).decode(),
        }

    @classmethod
    def of(cls, record: dict[str, Any]) -> Table:
        """The table's record read back: its columns' kinds derived again from their types,
        as ``open_table`` derived them; one that does not fit together is ``CorruptFile``."""
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(record["schema"])))
            types = {f.name: f.type for f in schema}
            files, names, weight = record["files"], record["names"], record["weight"]
            fits = (
                isinstance(files, list)
                and files
                and all(isinstance(f, str) for f in files)
                and record["kind"] in ("csv", "parquet")
                and isinstance(names, list)
                and set(names) <= set(types)
                and record["target"] in types
                and (weight is None or weight in types)
            )
        except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            raise CorruptFile("the table record of the plan is damaged") from exc
        if not fits:
            raise CorruptFile("the table record of the plan is damaged (its columns or files)")
        where = repr(record["source"])
        kinds = [encoding.column_kind(n, types[n], where) for n in names]
        return cls(
            str(record["source"]), files, record["kind"], record["target"], weight, names, types,
            kinds,
        )  # fmt: skip


def open_table(
    source: str,
    target: str,
    weight: str | None,
    features: list[str] | None = None,
    drop: list[str] | None = None,
) -> Table:
    """The table's files and columns, from the first file's header (see the module's
    docstring)."""
    files, kind = table_files(source)
    schema = header(files[0], kind)
    found = Table(source, files, kind, target, weight, [], {}, [])
    _schema(found, schema, features, list(drop or ()))
    return found


def _schema(found: Table, schema: pa.Schema, features: list[str] | None, drop: list[str]) -> None:
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
    found.names = selection.feature_names(header, found.target, found.weight, features, drop, where)
    found.types = {n: schema.field(n).type for n in header}
    found.kinds = [encoding.column_kind(n, found.types[n], where) for n in found.names]
    selection.check_part_names(found.names, found.kinds, where)


def part_batches(table: Table, part: int) -> Iterator[pa.Table]:
    """Part ``part``'s blocks, read with the table's types; a file with other columns than the
    first is refused."""
    uri = table.files[part]
    for batch in file_batches(uri, table.kind, table.types):
        if batch.schema.names != list(table.types):
            raise RequestError(
                "dataset",
                f"{uri!r} has other columns than {table.files[0]!r}; a folder's files must "
                "have the same columns",
            )
        yield batch


@dataclass
class PartScan:
    """What the first pass learned of one part (a file). Rows are the part's own, from 0."""

    part: int
    n_rows: int = 0
    n_test: int = 0
    n_validation: int = 0
    words: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # [train count, row]
    labels: dict[Any, list[int]] = field(default_factory=dict)  # [rows, training rows]
    label_kind: str = ""
    label_width: int = 1
    train_min: float = math.inf  # a regressor's least training label, and their sum
    train_sum: float = 0.0
    missing_labels: int = 0
    first_missing: int | None = None
    distinct: dict[str, int] = field(default_factory=dict)  # integer columns: over the blocks

    def record(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in vars(self).items() if k not in ("labels", "train_min")},
            "labels": [[label, *counts] for label, counts in self.labels.items()],
            "train_min": None if math.isinf(self.train_min) else self.train_min,
        }

    @classmethod
    def of(cls, record: dict[str, Any], part: int) -> PartScan:
        """A part's scan read back from the store: checked field by field."""
        try:
            found = cls(
                int(record["part"]),
                _count(record["n_rows"]),
                _count(record["n_test"]),
                _count(record["n_validation"]),
                {
                    str(name): {str(w): [_count(n), _count(r)] for w, (n, r) in words.items()}
                    for name, words in record["words"].items()
                },
                {_label(label): [_count(n), _count(t)] for label, n, t in record["labels"]},
                str(record["label_kind"]),
                _count(record["label_width"]),
                math.inf if record["train_min"] is None else float(record["train_min"]),
                float(record["train_sum"]),
                _count(record["missing_labels"]),
                None if record["first_missing"] is None else _count(record["first_missing"]),
                {str(n): _count(c) for n, c in record["distinct"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptFile(f"the scan of part {part} is damaged ({exc})") from exc
        if found.part != part or found.n_test + found.n_validation > found.n_rows:
            raise CorruptFile(f"the scan of part {part} is damaged (not that part's)")
        return found


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise ValueError(f"{value!r} is not a count")
    return value


def _label(value: Any) -> Any:
    if not isinstance(value, str | bool | int | float):
        raise ValueError(f"{value!r} is not a label")
    return value


def scan_part(table: Table, part: int, classify: bool, split: Split) -> PartScan:
    """The first pass over part ``part`` (see the module's docstring)."""
    found = PartScan(part)
    found.words = {n: {} for n, k in zip(table.names, table.kinds, strict=True) if k == "category"}
    for batch in part_batches(table, part):
        _scan_batch(table, found, batch, classify, split)
    return found


def _scan_batch(
    table: Table, found: PartScan, batch: pa.Table, classify: bool, split: Split
) -> None:
    n, start = batch.num_rows, found.n_rows
    test, validation = split.rows(found.part, start, n)
    held = test | validation  # the rows that do not train
    where = repr(table.files[found.part])
    for name, words in found.words.items():
        values = encoding.decoded(batch.column(name))
        text = pc.cast(values, pa.string()).combine_chunks()
        encoded = pc.dictionary_encode(text)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        present = ~np.isnan(indices) if indices.dtype.kind == "f" else np.ones(n, bool)
        codes = indices[present].astype(np.int64)
        dictionary = encoded.dictionary.to_pylist()
        in_train = np.bincount(codes[~held[present]], minlength=len(dictionary))
        seen, first = first_rows(codes, len(dictionary))
        rows = np.flatnonzero(present)[first] + start
        for code, row in zip(seen.tolist(), rows.tolist(), strict=True):
            entry = words.setdefault(dictionary[code], [0, row])
            entry[0] += int(in_train[code])
        if len(words) > encoding.MAX_CATEGORIES * 2:
            raise _too_many(name, where)
    for name, kind in zip(table.names, table.kinds, strict=True):
        if table.types[name] != pa.null() and kind in ("number", "bool"):
            encoding.to_numbers(name, batch.column(name), where, "dataset", start)
        if pa.types.is_integer(table.types[name]):
            count = pc.count_distinct(batch.column(name)).as_py()
            found.distinct[name] = found.distinct.get(name, 0) + count
    _scan_labels(where, found, batch.column(table.target), held, classify, start)
    if table.weight is not None:
        _check_weights(where, table.weight, batch.column(table.weight), start)
    found.n_rows += n
    found.n_test += int(test.sum())
    found.n_validation += int(validation.sum())


def first_rows(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """The codes present in ``codes`` and the position of each one's first occurrence. Arrow's
    dictionary encoding numbers values in the order they first occur, so a first occurrence
    is where the running maximum rises (linear, where sorting for ``np.unique`` dominated the
    scan); any other numbering falls back to ``np.unique``."""
    if len(codes):
        rises = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
        if len(rises) == n_codes and np.array_equal(codes[rises], np.arange(n_codes)):
            return np.arange(n_codes), rises
    return np.unique(codes, return_index=True)


def _too_many(name: str, where: str, among: str = "") -> RequestError:
    return RequestError(
        "dataset",
        f"column {name!r} of {where} has over {encoding.MAX_CATEGORIES:,} distinct values"
        f"{among}; bin it, or if it is an id, leave it out: drop [{name!r}] (--drop {name})",
    )


def _scan_labels(
    where: str,
    found: PartScan,
    column: pa.ChunkedArray,
    held: np.ndarray,
    classify: bool,
    start: int,
) -> None:
    """The labels' checks and counts; ``held``: the rows that do not train."""
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
        raise RequestError("target", f"{where}: labels must be numbers or text, not {kind}")
    _same_kind(where, found.label_kind, label_kind)
    found.label_kind = label_kind
    if not classify:
        if label_kind == "text":
            raise RequestError(
                "estimator",
                f"'regressor' needs a numeric target but {where} has text labels; "
                "use estimator 'classifier'",
            )
        floats = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)[~held]
        if len(floats):
            found.train_min = min(found.train_min, float(floats.min()))
            found.train_sum += float(floats.sum())
        return
    if pa.types.is_decimal(kind):
        values = pc.cast(values, pa.float64())
    encoded = pc.dictionary_encode(values.combine_chunks())  # no missing label is left here
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    unique = encoded.dictionary.to_pylist()
    rows = np.bincount(codes, minlength=len(unique))
    trains = np.bincount(codes[~held], minlength=len(unique))
    for label, n, t in zip(unique, rows.tolist(), trains.tolist(), strict=True):
        entry = found.labels.setdefault(label, [0, 0])
        entry[0] += n
        entry[1] += t
    _few_classes(where, len(found.labels))


def _same_kind(where: str, before: str, now: str) -> None:
    if before and before != now:
        raise RequestError(
            "target", f"{where}: labels are {before} in one part and {now} in another"
        )


def _few_classes(where: str, n: int) -> None:
    if n > MAX_CLASSES:
        raise RequestError(
            "estimator",
            f"'classifier' has over {MAX_CLASSES:,} classes in {where}; if the target is a "
            "quantity, use estimator 'regressor'",
        )


def _check_weights(where: str, name: str, values: pa.ChunkedArray, start: int) -> None:
    if values.null_count:
        first = encoding.first_false(values.is_valid())
        raise RequestError("weight", f"{where}: row {start + first + 1} has a missing weight")
    w = encoding.to_numbers(name, values, where, "weight", start)
    if (w < 0).any():
        row = start + int(np.argmax(w < 0)) + 1
        raise RequestError("weight", f"{where}: row {row} has a negative weight")
    bad = ~np.isfinite(w)
    if bad.any():
        raise RequestError(
            "weight",
            f"{where}: row {start + int(np.argmax(bad)) + 1} has a missing or infinite weight",
        )


@dataclass
class Scan:
    """The parts' scans added up: what the first pass learned of the whole table. A text
    value's and the first missing label's rows are (part, row)."""

    table: Table
    parts: list[PartScan]
    words: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # [train, part, row]
    labels: dict[Any, list[int]] = field(default_factory=dict)  # [rows, training rows]
    label_kind: str = ""
    label_width: int = 1
    train_min: float = math.inf
    train_sum: float = 0.0
    missing_labels: int = 0
    first_missing: tuple[int, int] | None = None
    distinct: dict[str, int] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.parts)

    @property
    def n_test(self) -> int:
        return sum(p.n_test for p in self.parts)

    @property
    def n_validation(self) -> int:
        return sum(p.n_validation for p in self.parts)

    @property
    def n_train(self) -> int:
        return self.n_rows - self.n_test - self.n_validation

    def where(self, part: int, row: int) -> str:
        return f"row {row + 1} of {self.table.files[part]!r}"

    def columns(self) -> list[dict[str, Any]]:
        """The feature columns as the plan records them: text with its categories, a date
        column as its parts."""
        out = []
        for name, kind in zip(self.table.names, self.table.kinds, strict=True):
            if kind == "category":
                words = sorted(str(w) for w, (n, *_) in self.words[name].items() if n)
                out.append({"name": name, "kind": kind, "categories": words})
            else:
                out.extend(encoding.expanded(name, kind, self.table.types[name]))
        return out

    def warnings(self) -> list[str]:
        """What plan warns of: integer and text columns that look like ids. An integer
        column's distinct values are counted block by block (memory holds a block), which
        counts a value repeated in another block again."""
        counts = {**self.distinct, **{name: len(words) for name, words in self.words.items()}}
        ordered = {n: counts[n] for n in self.table.names if n in counts}
        return selection.id_warnings(ordered, self.n_rows)


def merge(table: Table, parts: list[PartScan], classify: bool, held_out: bool) -> Scan:
    """The parts' scans (in order) added up and checked (see the module's docstring)."""
    found = Scan(table, parts)
    where = repr(table.source)
    found.words = {name: {} for name in parts[0].words} if parts else {}
    for scan in parts:
        for name, words in scan.words.items():
            merged = found.words.setdefault(name, {})
            for word, (n, row) in words.items():
                entry = merged.setdefault(word, [0, scan.part, row])
                entry[0] += n
            if len(merged) > encoding.MAX_CATEGORIES * 2:
                raise _too_many(name, where)
        for label, (n, t) in scan.labels.items():
            entry = found.labels.setdefault(label, [0, 0])
            entry[0] += n
            entry[1] += t
        _few_classes(where, len(found.labels))
        if scan.label_kind:
            _same_kind(where, found.label_kind, scan.label_kind)
            found.label_kind = scan.label_kind
        found.label_width = max(found.label_width, scan.label_width)
        found.train_min = min(found.train_min, scan.train_min)
        found.train_sum += scan.train_sum
        found.missing_labels += scan.missing_labels
        if found.first_missing is None and scan.first_missing is not None:
            found.first_missing = (scan.part, scan.first_missing)
        for name, count in scan.distinct.items():
            found.distinct[name] = found.distinct.get(name, 0) + count
    _check(found, classify, held_out)
    return found


def _check(found: Scan, classify: bool, held_out: bool) -> None:
    where = repr(found.table.source)
    if found.missing_labels:
        part, row = found.first_missing or (0, 0)
        raise RequestError(
            "target",
            f"{where} has {found.missing_labels} rows with a missing or non-finite label "
            f"(the first: {found.where(part, row)})",
        )
    if found.n_rows < MIN_ROWS:
        raise RequestError(
            "dataset", f"{where} has {found.n_rows} rows; at least {MIN_ROWS} are needed"
        )
    for name, words in found.words.items():
        _refuse_typo(found, name, words, where)
        if sum(1 for n, *_ in words.values() if n) > encoding.MAX_CATEGORIES:
            raise _too_many(name, where, " in the training rows")
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
                "validation_size" if found.n_validation else "test_size",
                f"leaves {untrained} of the {len(found.labels)} classes without training rows; "
                "lower it",
            )


def _refuse_typo(found: Scan, name: str, words: dict[str, list[int]], where: str) -> None:
    """A text column that is numbers but for a rare value is a numeric column with a typo."""
    if not words:
        return
    texts = list(words)
    numeric = pc.match_substring_regex(pa.array([str(t) for t in texts]), encoding.NUMBER)
    numeric_flags = numeric.to_numpy(zero_copy_only=False)
    counts = np.array([words[t][0] for t in texts])
    total, numbers = int(counts.sum()), int(counts[numeric_flags].sum())
    if total and 0 < total - numbers <= encoding.TYPO_SHARE * total:
        part, row = min(
            tuple(words[t][1:]) for t, ok in zip(texts, numeric_flags, strict=True) if not ok
        )
        raise RequestError(
            "dataset",
            f"column {name!r} of {where}: {found.where(part, row)} is not a number, though "
            f"{numbers:,} of its {total:,} values are; correct it or leave it empty (a missing "
            "value)",
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


def decide(found: Scan, split: Split) -> dict[str, Any]:
    """What the second pass writes (see the module's docstring): JSON, so that the plan's
    Map hands it to each part."""
    columns = found.columns()
    layout = Layout(len(columns), label_dtype(found), (), found.table.weight is not None)
    step = stripe_rows(found.n_train, layout.row_bytes)
    parts, first = [], 0
    for scan in found.parts:
        trains = scan.n_rows - scan.n_test - scan.n_validation
        parts.append({"n_rows": scan.n_rows, "n_train": trains, "first_shard": first})
        first += shard_count(trains, step, layout.row_bytes)
    return {
        "columns": columns,
        "layout": layout.record(),
        "stripe_rows": step,
        "keep_share": _share(split.max_test_rows, found.n_test),
        "validation_share": _share(split.max_test_rows, found.n_validation),
        "parts": parts,
    }


def _share(cap: int, n: int) -> float:
    """The share of ``n`` rows kept so that about ``cap`` are."""
    return min(1.0, cap / n) if n else 0.0


@dataclass
class PartRows:
    """What the second pass wrote of one part: its shards, its kept held-out rows and (a
    search's) its kept validation rows."""

    shards: list[dict[str, Any]]
    X_test: np.ndarray
    y_test: np.ndarray
    X_validation: np.ndarray | None = None
    y_validation: np.ndarray | None = None


def prepare_part(
    table: Table,
    decided: dict[str, Any],
    part: int,
    split: Split,
    writer_for: Callable[[Layout, int, int], RowWriter],
) -> PartRows:
    """The second pass over part ``part`` (see the module's docstring);
    ``writer_for(layout, stripe_rows, first_shard)`` gives the writer its training rows go
    to."""
    columns, layout = decided["columns"], Layout.of(decided["layout"])
    planned = decided["parts"][part]
    writer = writer_for(layout, decided["stripe_rows"], planned["first_shard"])
    uri = table.files[part]
    where = repr(uri)
    tests_X, tests_y, checks_X, checks_y, row = [], [], [], [], 0
    kept = [n for n in (table.target, table.weight, *table.dropped()) if n is not None]
    for batch in part_batches(table, part):
        X = encoding.encode_table(batch, columns, where, "dataset", kept, row)
        y = _labels(batch.column(table.target), layout.y_dtype)
        w = None
        if table.weight is not None:
            w = encoding.to_numbers(table.weight, batch.column(table.weight), where, "weight", row)
        test, validation = split.rows(part, row, len(y))
        keep = test & split.kept(part, row, len(y), decided["keep_share"])
        check = validation & split.kept(part, row, len(y), decided["validation_share"])
        train = ~(test | validation)
        writer.add(X[train], y[train], None if w is None else w[train])
        tests_X.append(X[keep])
        tests_y.append(y[keep])
        checks_X.append(X[check])
        checks_y.append(y[check])
        row += len(y)
    shards = writer.finish()
    if row != planned["n_rows"] or sum(s["rows"] for s in shards) != planned["n_train"]:
        raise RequestError(
            "dataset", f"{where} changed while it was planned ({planned['n_rows']} rows, now {row})"
        )
    found = PartRows(shards, *_joined(layout, tests_X, tests_y))
    if split.validation_size:
        found.X_validation, found.y_validation = _joined(layout, checks_X, checks_y)
    return found


def _joined(
    layout: Layout, Xs: list[np.ndarray], ys: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    if not ys:
        return np.empty((0, layout.n_features), np.float32), np.empty(0, layout.y_dtype)
    return np.concatenate(Xs), np.concatenate(ys)


@dataclass
class Prepared:
    train: dict[str, Any]
    X_test: np.ndarray
    y_test: np.ndarray
    n_train: int
    fingerprint: str
    X_validation: np.ndarray  # a search's (none for training)
    y_validation: np.ndarray


def finish(decided: dict[str, Any], parts: list[PartRows], split: Split) -> Prepared:
    """The parts' rows joined, in order: the training shards' record, the held-out rows (and a
    search's validation rows), and the split's identity (its rows: every training stripe's
    sha256, through the shards' indexes, and the held-out and validation rows kept), however
    the table was cut into files and blocks."""
    layout = Layout.of(decided["layout"])
    train = joined(layout, decided["stripe_rows"], [p.shards for p in parts])
    X_test, y_test = _joined(layout, [p.X_test for p in parts], [p.y_test for p in parts])
    checks = [p for p in parts if p.X_validation is not None and p.y_validation is not None]
    X_check, y_check = _joined(
        layout, [p.X_validation for p in checks], [p.y_validation for p in checks]
    )
    n_rows = sum(p["n_rows"] for p in decided["parts"])
    identity: tuple[Any, ...] = (n_rows, split.seed, split.test_size, split.max_test_rows)
    if split.validation_size:
        identity += (split.validation_size,)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(identity).encode())
    for shard in train["shards"]:
        digest.update(shard["index"]["sha256"].encode())
    for array in (X_test, y_test, X_check, y_check):
        digest.update(np.ascontiguousarray(array).data)
    return Prepared(train, X_test, y_test, train["n_rows"], digest.hexdigest(), X_check, y_check)


def _labels(values: pa.ChunkedArray, dtype: np.dtype) -> np.ndarray:
    values = encoding.decoded(values)
    return np.asarray(values.to_numpy(zero_copy_only=False)).astype(dtype)
