"""Rows given as JSON records (the serve function's requests), encoded as the training rows
were, without pyarrow: the same float32 features ``encoding.encode_table`` makes of a table
(``groves.data.times`` holds the arithmetic of dates and times both use).

A row is an object of column name to value, in any order, every training input column present
and no other but the columns the build left out (``dropped``: ignored, as ``groves predict``
ignores them); a model trained without column names (an ``.npz``, a built-in dataset) also
takes a plain list of values in training order. By column kind (``groves.data.encoding``):

- ``number``: a JSON number, a numeric string (``"1.5"``, as a CSV cell) or a boolean (0/1);
  ``null`` (or NaN) is missing. Infinite values and values beyond float32's range are refused.
- ``bool``: ``true``/``false`` (1/0; also as text, any case), or a number; ``null`` is
  missing.
- ``category``: a string, coded by the training categories; ``null`` and a category never
  seen in training are missing. Numbers and booleans are refused (``3`` is not ``"3"``).
- ``datetime`` (a date or timestamp column, given by its own name, not its parts'): ISO 8601
  text (``"2026-03-02"``, ``"2026-03-02T10:30:00+01:00"``), with a time zone (``Z``, an
  offset) if and only if the column was trained with them: converted to UTC, or taken as
  written, as ``groves predict`` does; a time zone is never guessed.
- ``time``: a time of day as ISO 8601 text (``"10:30"``, ``"10:30:00.5"``), no time zone.
- ``duration``: a number of seconds (as a CSV gives ``groves predict`` a duration).

Every problem is a ``RequestError`` naming the row and the column (``rows[2].color``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import numpy as np

from groves.data.times import date_part, seconds
from groves.errors import RequestError

FLOAT32_MAX = float(np.finfo(np.float32).max)
TRUTH = {"true": 1.0, "false": 0.0}  # a boolean column's values as text, as a CSV cell reads
NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")  # as encoding.NUMBER


def feature_columns(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan's feature columns with their encoding (plans older than encodings: numbers)."""
    return data.get("columns") or [{"name": n, "kind": "number"} for n in data["feature_names"]]


def input_name(column: dict[str, Any]) -> str:
    """The input column a feature column is read from (a date part's, its date column)."""
    return column.get("column", column["name"])


def input_names(columns: Sequence[dict[str, Any]]) -> list[str]:
    """The input columns of ``columns``, each once, in order."""
    return list(dict.fromkeys(input_name(c) for c in columns))


EPOCHS = {True: datetime(1970, 1, 1, tzinfo=UTC), False: datetime(1970, 1, 1)}  # by "utc"
MICROSECOND = timedelta(microseconds=1)


class RowEncoder:
    """Encodes JSON rows by a model's recorded feature ``columns``; ``named`` is whether the
    training data had column names (else plain lists are taken too); ``ignore``: the input
    columns the build left out, which a row may have."""

    def __init__(
        self,
        columns: Sequence[dict[str, Any]],
        named: bool,
        field: str = "rows",
        ignore: Sequence[str] = (),
    ):
        self.columns = list(columns)
        self.names = input_names(self.columns)  # what a row holds
        self.position = {name: k for k, name in enumerate(self.names)}
        self.features = {name: [] for name in self.names}  # each input's feature columns
        for j, column in enumerate(self.columns):
            self.features[input_name(column)].append(j)
        self.ignore = set(ignore) - set(self.names)
        timed = {k for k, name in enumerate(self.names) if self.kind(name) in ("datetime", "time")}
        self.timed = sorted(timed)  # inputs encoded a column at a time
        self.scalar = [  # (input, its one feature column) encoded a value at a time
            (k, self.features[name][0]) for k, name in enumerate(self.names) if k not in timed
        ]
        self.named = named
        self.field = field
        self.codes = [
            {text: float(i) for i, text in enumerate(c["categories"])}
            if c["kind"] == "category"
            else None
            for c in self.columns
        ]

    def encode(self, rows: Any) -> np.ndarray:
        """``rows`` (a list of objects, or of lists for a model without names) as float32
        features ``(n_rows, n_columns)`` in training order."""
        if not isinstance(rows, list):
            raise RequestError(self.field, f"must be a list of rows, not {_kind(rows)}")
        X = np.empty((len(rows), len(self.columns)), dtype=np.float32)
        values = []
        for i, row in enumerate(rows):  # row by row: a request is often one row
            where = f"{self.field}[{i}]"
            values.append(self.row_values(row, where))
            found = [math.nan] * len(self.columns)
            for k, j in self.scalar:
                found[j] = self.value(j, values[-1][k], where)
            X[i] = found
        for k in self.timed:  # column by column: one numpy pass a part
            features = self.features[self.names[k]]
            micros, missing = self.instants(self.columns[features[0]], [v[k] for v in values])
            for j in features:
                part = self.columns[j].get("part")
                X[:, j] = date_part(micros, missing, part) if part else seconds(micros, missing)
        return X

    def kind(self, name: str) -> str:
        """An input column's kind."""
        return self.columns[self.features[name][0]]["kind"]

    def row_values(self, row: Any, where: str) -> list[Any]:
        """A row's values in the order of ``names``."""
        if isinstance(row, dict):
            extra = [name for name in row if name not in self.position and name not in self.ignore]
            if extra:
                raise RequestError(
                    f"{where}.{extra[0]}",
                    f"is not a column of the model; it takes {len(self.names)} columns, "
                    f"such as {self.names[0]!r}",
                )
            missing = [name for name in self.names if name not in row]
            if missing:
                raise RequestError(
                    f"{where}.{missing[0]}",
                    f"is missing ({len(missing)} of the model's {len(self.names)} columns are); "
                    "give every column, null for a missing value",
                )
            return [row[name] for name in self.names]
        if isinstance(row, list):
            if self.named:
                raise RequestError(
                    where,
                    "a row is an object of column name to value (the model has named columns, "
                    f"such as {self.names[0]!r})",
                )
            if len(row) != len(self.names):
                raise RequestError(
                    where, f"has {len(row)} values; the model takes {len(self.names)}"
                )
            return row
        raise RequestError(where, f"must be an object of column name to value, not {_kind(row)}")

    def instants(self, column: dict[str, Any], given: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """A date, timestamp or time-of-day column's values as whole microseconds (since
        1970, in UTC or as written; since midnight) and the mask of the missing ones."""
        micros = np.zeros(len(given), dtype=np.int64)
        missing = np.zeros(len(given), dtype=bool)
        for i, value in enumerate(given):
            if value is None:
                missing[i] = True
            elif column["kind"] == "time":
                micros[i] = self.time_of_day(value, column, f"{self.field}[{i}]")
            else:
                micros[i] = self.instant(value, column, f"{self.field}[{i}]")
        return micros, missing

    def instant(self, value: Any, column: dict[str, Any], where: str) -> int:
        name, utc = column["column"], column["utc"]
        trained = "timestamps with a time zone" if utc else "dates or timestamps without one"
        example = "2026-03-02T10:30:00+01:00" if utc else "2026-03-02T10:30:00"
        if not isinstance(value, str):
            raise RequestError(
                f"{where}.{name}",
                f"is a date or timestamp column: give ISO 8601 text such as {example!r} or "
                f"null, not {_kind(value)}",
            )
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError as exc:
            raise RequestError(
                f"{where}.{name}", f"{value!r} is not an ISO 8601 date or timestamp ({example})"
            ) from exc
        aware = stamp.utcoffset() is not None
        if aware != utc:
            found = f"time zone {stamp.tzname()}" if aware else "no time zone"
            raise RequestError(
                f"{where}.{name}",
                f"has {found}; the model was trained with {trained} in this column (groves "
                "never guesses a time zone: convert it)",
            )
        return (stamp - EPOCHS[aware]) // MICROSECOND

    def time_of_day(self, value: Any, column: dict[str, Any], where: str) -> int:
        try:
            found = time.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            found = None
        if found is None or found.utcoffset() is not None:
            raise RequestError(
                f"{where}.{column['name']}",
                "is a time-of-day column: give text such as '10:30:00' (no time zone) or null, "
                f"not {value!r}",
            )
        whole = timedelta(hours=found.hour, minutes=found.minute, seconds=found.second)
        return whole // MICROSECOND + found.microsecond

    def value(self, j: int, value: Any, where: str) -> float:
        column = self.columns[j]
        if value is None:
            return math.nan
        codes = self.codes[j]
        if codes is not None:
            if not isinstance(value, str):
                raise RequestError(
                    f"{where}.{column['name']}",
                    f"is a text column: give a string or null, not {_kind(value)}",
                )
            return codes.get(value, math.nan)
        if isinstance(value, bool) and column["kind"] != "duration":
            return float(value)
        if isinstance(value, str) and column["kind"] == "bool" and value.lower() in TRUTH:
            return TRUTH[value.lower()]
        if isinstance(value, str) and NUMBER.match(value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = {"bool": "a number, true/false", "duration": "a number of seconds"}.get(
                column["kind"], "a number"
            )
            raise RequestError(
                f"{where}.{column['name']}", f"must be {kind} or null, not {_kind(value)}"
            )
        number = float(value) if not isinstance(value, int) or abs(value) < 2**1000 else math.inf
        if math.isnan(number):
            return number
        if not abs(number) <= FLOAT32_MAX:
            raise RequestError(
                f"{where}.{column['name']}",
                f"is infinite or beyond float32's range (+-{FLOAT32_MAX:.3g}); give null for a "
                "missing value",
            )
        return number


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
