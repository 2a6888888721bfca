"""Rows given as JSON records (the serve function's requests), encoded as the training rows
were, without pyarrow: the same float32 features ``encoding.encode_table`` makes of a table.

A row is an object of column name to value, in any order, every training column present and
no other; a model trained without column names (an ``.npz``, a built-in dataset) also takes a
plain list of values in training order. By column kind (``groves.data.encoding``):

- ``number``: a JSON number, a numeric string (``"1.5"``, as a CSV cell) or a boolean (0/1);
  ``null`` (or NaN) is missing. Infinite values and values beyond float32's range are refused.
- ``bool``: ``true``/``false`` (1/0; also as text, any case), or a number; ``null`` is
  missing.
- ``category``: a string, coded by the training categories; ``null`` and a category never
  seen in training are missing. Numbers and booleans are refused (``3`` is not ``"3"``).

Every problem is a ``RequestError`` naming the row and the column (``rows[2].color``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from groves.errors import RequestError

FLOAT32_MAX = float(np.finfo(np.float32).max)
TRUTH = {"true": 1.0, "false": 0.0}  # a boolean column's values as text, as a CSV cell reads
NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")  # as encoding.NUMBER


def feature_columns(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan's feature columns with their encoding (plans older than encodings: numbers)."""
    return data.get("columns") or [{"name": n, "kind": "number"} for n in data["feature_names"]]


class RowEncoder:
    """Encodes JSON rows by a model's recorded ``columns``; ``named`` is whether the training
    data had column names (else plain lists are taken too)."""

    def __init__(self, columns: Sequence[dict[str, Any]], named: bool, field: str = "rows"):
        self.columns = list(columns)
        self.names = [c["name"] for c in self.columns]
        self.position = {name: j for j, name in enumerate(self.names)}
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
        for i, row in enumerate(rows):
            X[i] = self.encode_row(row, f"{self.field}[{i}]")
        return X

    def encode_row(self, row: Any, where: str) -> list[float]:
        if isinstance(row, dict):
            extra = [name for name in row if name not in self.position]
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
            values = [row[name] for name in self.names]
        elif isinstance(row, list):
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
            values = row
        else:
            raise RequestError(
                where, f"must be an object of column name to value, not {_kind(row)}"
            )
        return [self.value(j, v, where) for j, v in enumerate(values)]

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
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and column["kind"] == "bool" and value.lower() in TRUTH:
            return TRUTH[value.lower()]
        if isinstance(value, str) and NUMBER.match(value):
            value = float(value)
        if not isinstance(value, int | float):
            kind = "a number, true/false" if column["kind"] == "bool" else "a number"
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
