"""Columns of a table as the float32 features a forest trains on, and back again at prediction.

Each feature column has a *kind*, decided from its Arrow type when plan reads the training
table and recorded in ``plan.json`` (and so in the manifest) as ``{"name", "kind"}``, with
``"categories"`` for text:

- ``number``: integers, floats, decimals; a missing value (null) is NaN.
- ``bool``: false/true as 0/1.
- ``category``: text (string or dictionary columns). Ordinal codes 0..k-1 of the categories
  found in the *training rows*, sorted as ``OrdinalEncoder`` sorts them; a missing value and a
  category never seen in training are both NaN, the forest's missing value.

- ``datetime``: a timestamp or date column becomes several features, each recorded as a
  column of its own named ``COLUMN.PART`` with ``"column"`` (the input column), ``"part"`` and
  ``"utc"``: ``seconds`` since 1970-01-01 (as float32: to about 2 minutes in this century),
  ``year``, ``month``, ``day``, ``weekday`` (Monday 0) and, for timestamps, ``hour``. A
  timestamp with a time zone is converted to UTC (``"utc": true``; prediction then needs
  time zones too); one without is taken as written (``"utc": false``; prediction then needs
  none): a time zone is never guessed. A CSV's ISO 8601 text that pyarrow reads as
  timestamps or dates counts too.
- ``time``: a time of day as seconds since midnight (a CSV's ``HH:MM:SS`` text, which pyarrow
  reads as times, counts too). A time of day has no time zone in Arrow: none is involved.
- ``duration``: a duration (pandas' timedelta) as seconds; at prediction, numbers are taken as
  seconds too (a CSV has no durations: a duration column is written as its seconds).

These are numbers with a unit, and seconds is the unit the forest then splits on: converting
them is what a user would do by hand, and done here it is recorded and applied alike
wherever the model predicts. Binary and nested columns are refused, naming the column.
Prediction applies the recorded encoding by column name (``encode_table``);
``groves.data.pipeline`` builds the same encoding as scikit-learn transformers in front of the
forest, and ``groves.data.records`` for JSON rows (the serve function), so all predict the same
row for row (the arithmetic from microseconds on is shared: ``groves.data.times``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from groves.data.records import input_name, input_names
from groves.data.times import TIME_PARTS, date_part, seconds
from groves.errors import RequestError

KINDS = ("number", "bool", "category", "datetime", "time", "duration")
MAX_CATEGORIES = 100_000  # per text column: the categories are recorded in plan.json
FLOAT32_MAX = float(np.finfo(np.float32).max)
NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
# A text column whose values are numbers but for fewer than this share is taken for a numeric
# column with a typo (refused, naming the row) rather than for categories.
TYPO_SHARE = 0.01
# The one category of a text column that had no value in the training rows (all missing): an
# OrdinalEncoder needs one; every value but this one is unknown, NaN, as groves predict has it.
NO_CATEGORY = "\x00groves: no category"


def column_kind(name: str, kind: pa.DataType, where: str) -> str:
    """The kind of a training column from its Arrow type; anything else is refused by name."""
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_null(kind):
        return "number"  # every value missing
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        if pa.types.is_dictionary(kind) and not is_text(kind.value_type):
            raise RequestError(
                "dataset", f"column {name!r} of {where} is a dictionary of {kind.value_type}"
            )
        return "category"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "datetime"
    if pa.types.is_time(kind):
        return "time"
    if pa.types.is_duration(kind):
        return "duration"
    raise RequestError(
        "dataset",
        f"column {name!r} of {where} has type {kind}; groves trains on numbers, booleans, text, "
        "dates, timestamps, times of day and durations: convert it or leave it out (drop "
        f"[{name!r}], --drop {name})",
    )


def time_columns(name: str, kind: pa.DataType) -> list[dict[str, Any]]:
    """The features a date or timestamp column becomes (see the module's docstring)."""
    utc = pa.types.is_timestamp(kind) and kind.tz is not None
    parts = TIME_PARTS if pa.types.is_timestamp(kind) else TIME_PARTS[:-1]
    return [
        {"name": f"{name}.{part}", "kind": "datetime", "column": name, "part": part, "utc": utc}
        for part in parts
    ]


def expanded(name: str, kind: str, arrow: pa.DataType) -> list[dict[str, Any]]:
    """A training column as the feature columns it becomes (one, or a date's parts)."""
    return time_columns(name, arrow) if kind == "datetime" else [{"name": name, "kind": kind}]


def time_part(
    values: pa.ChunkedArray, column: dict[str, Any], where: str, field: str
) -> np.ndarray:
    """One part of a date or timestamp column as float64 (null as NaN), with the time zone
    rule the column was trained with: converted to UTC, or taken as written."""
    name, kind = column["column"], values.type
    trained = "timestamps with a time zone" if column["utc"] else "dates or timestamps without one"
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        raise RequestError(
            field,
            f"column {name!r} of {where} has type {kind}; the model was trained with {trained} "
            "in this column",
        )
    aware = pa.types.is_timestamp(kind) and kind.tz is not None
    if aware != column["utc"]:
        found = f"time zone {kind.tz}" if aware else "no time zone"
        raise RequestError(
            field,
            f"column {name!r} of {where} has {found}; the model was trained with {trained} in "
            "this column (groves never guesses a time zone: convert it)",
        )
    stamps = pc.cast(values, pa.timestamp("us", "UTC" if aware else None), safe=False)
    return date_part(*_micros(stamps), column["part"])


def _micros(values: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps, times or durations of microseconds as int64 microseconds, and the mask of
    the missing ones."""
    micros = pc.fill_null(pc.cast(values, pa.int64()), 0)
    missing = pc.is_null(values).to_numpy(zero_copy_only=False)
    return np.asarray(micros.to_numpy(zero_copy_only=False), dtype=np.int64), missing


def time_seconds(
    values: pa.ChunkedArray, column: dict[str, Any], where: str, field: str, first_row: int = 0
) -> np.ndarray:
    """A time-of-day column as seconds since midnight, or a duration column as seconds
    (numbers: seconds already), float64 with null as NaN."""
    name, kind = column["name"], values.type
    if column["kind"] == "time" and pa.types.is_time(kind):
        return seconds(*_micros(pc.cast(values, pa.time64("us"), safe=False)))
    if column["kind"] == "duration" and pa.types.is_duration(kind):
        return seconds(*_micros(pc.cast(values, pa.duration("us"), safe=False)))
    if column["kind"] == "duration" and is_scalar(kind) and not pa.types.is_boolean(kind):
        return to_numbers(name, values, where, field, first_row)
    trained = "times of day" if column["kind"] == "time" else "durations (or seconds)"
    raise RequestError(
        field,
        f"column {name!r} of {where} has type {kind}; the model was trained with {trained} in "
        "this column",
    )


def column_values(
    values: pa.ChunkedArray, column: dict[str, Any], where: str, field: str, first_row: int = 0
) -> np.ndarray:
    """A feature column of any kind but ``category`` (whose codes need its categories) as
    float64, null as NaN: the one encoding of training and prediction."""
    kind = column["kind"]
    if kind == "datetime":
        return time_part(values, column, where, field)
    if kind in ("time", "duration"):
        return time_seconds(values, column, where, field, first_row)
    if not is_scalar(values.type):
        raise RequestError(
            field,
            f"column {column['name']!r} of {where} has type {values.type}; the model was "
            f"trained with {kind} values in this column",
        )
    return to_numbers(column["name"], values, where, field, first_row)


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def decoded(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary column as its plain values (a Parquet dictionary of text is text)."""
    if pa.types.is_dictionary(values.type):
        return pc.cast(values, values.type.value_type)
    return values


def first_false(mask: pa.ChunkedArray | pa.Array) -> int:
    """The index of the first false (not null) value of a boolean array."""
    flags = np.asarray(pc.fill_null(mask, True).to_numpy(zero_copy_only=False), dtype=bool)
    return int(np.argmin(flags))


def to_numbers(
    name: str, values: pa.ChunkedArray, where: str, field: str, first_row: int = 0
) -> np.ndarray:
    """A number or bool column as float64 (null as NaN); text must parse as numbers. Rows
    are named counting from ``first_row`` (the block's place in its file)."""
    values = decoded(values)
    kind = values.type
    if is_text(kind):
        numeric = pc.match_substring_regex(values, NUMBER)
        if not pc.all(pc.fill_null(numeric, True)).as_py():
            raise RequestError(
                field,
                f"column {name!r} of {where}: row {first_row + first_false(numeric) + 1} is not a "
                "number; "
                "the model was trained with numbers in this column",
            )
        values = pc.cast(values, pa.float64())
    elif not (
        pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    ):
        raise RequestError(
            field,
            f"column {name!r} of {where} has type {kind}; the model was trained with numbers "
            "in this column",
        )
    # integers past 2**53 (ids) round, as they would to float32 anyway
    exact = not pa.types.is_integer(values.type)
    column = pc.cast(values, pa.float64(), safe=exact).to_numpy(zero_copy_only=False)
    wide = np.asarray(column, dtype=np.float64)
    bad = ~np.isnan(wide) & (np.abs(wide) > FLOAT32_MAX)
    if bad.any():
        raise RequestError(
            field,
            f"column {name!r} of {where}: row {first_row + int(np.argmax(bad)) + 1} is infinite "
            "or beyond "
            f"float32's range (+-{FLOAT32_MAX:.3g}); leave a missing value empty",
        )
    return wide


def category_codes(values: pa.ChunkedArray, categories: Sequence[str]) -> np.ndarray:
    """Any column, as text, coded by the training categories (unseen or missing: NaN)."""
    known = pa.array(categories, pa.string())
    position = pc.index_in(pc.cast(decoded(values), pa.string()), value_set=known)
    return np.asarray(position.to_numpy(zero_copy_only=False), dtype=np.float64)


def encode_table(
    table: pa.Table,
    columns: Sequence[dict[str, Any]],
    where: str,
    field: str = "data",
    keep: Sequence[str] = (),
    first_row: int = 0,
    ignore: Sequence[str] = (),
) -> np.ndarray:
    """The float32 features of ``table`` by the recorded ``columns`` (matched by name, in any
    order): a missing column, or an extra one not in ``keep`` or ``ignore`` (the columns the
    build left out), is an error naming it; a bad value names its row, counting from
    ``first_row``."""
    check_columns(table.column_names, input_names(columns), where, field, keep, ignore)
    X = np.empty((table.num_rows, len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        values = table.column(input_name(column))
        if column["kind"] != "category":
            X[:, j] = column_values(values, column, where, field, first_row)
        elif not is_scalar(values.type):
            raise RequestError(
                field,
                f"column {column['name']!r} of {where} has type {values.type}; the model was "
                "trained with category values in this column",
            )
        else:
            X[:, j] = category_codes(values, column["categories"])
    return X


def check_columns(
    header: Sequence[str],
    names: Sequence[str],
    where: str,
    field: str,
    keep: Sequence[str] = (),
    ignore: Sequence[str] = (),
) -> None:
    """The input has every training column, no duplicate, and nothing else but ``keep`` and
    ``ignore``."""
    if len(set(header)) != len(header):
        raise RequestError(field, f"{where} has columns with the same name")
    missing = [name for name in names if name not in header]
    if missing:
        raise RequestError(
            field,
            f"column {missing[0]!r}{_and_more(missing)} is missing from {where}; it needs "
            "every training feature column",
        )
    absent = [name for name in keep if name not in header]
    if absent:
        raise RequestError("keep", f"column {absent[0]!r} is not in {where}")
    extra = [name for name in header if name not in {*names, *keep, *ignore}]
    if extra:
        raise RequestError(
            field,
            f"column {extra[0]!r}{_and_more(extra)} of {where} is not a training feature; "
            f"the model uses exactly {len(names)} columns, such as {names[0]!r} (carry other "
            "columns into the output with keep)",
        )


def _and_more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


def is_scalar(kind: pa.DataType) -> bool:
    """Whether a column's values are single numbers, booleans or text (not lists, structs,
    binary or times), which prediction can encode."""
    if pa.types.is_dictionary(kind):
        return is_text(kind.value_type)
    return (
        is_text(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    )


def needs_encoding(columns: Sequence[dict[str, Any]]) -> bool:
    """Whether a model takes its rows through an encoding (``groves.data.pipeline``): it has
    text, date, time-of-day or duration columns."""
    return any(c["kind"] not in ("number", "bool") for c in columns)
