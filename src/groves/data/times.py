"""Dates, timestamps, times of day and durations as numbers: the arithmetic that a table's
encoding (``groves.data.encoding``, pyarrow) and a JSON row's (``groves.data.records``, the
serve function: no pyarrow) share, in numpy alone, so both give the same features bit for bit.

Both first find each value as whole microseconds (int64) with a mask of the missing ones: a
timestamp since 1970-01-01 (in UTC, or as written: the rule is the column's, decided before),
a time of day since midnight, a duration. ``date_part`` and ``seconds`` take it from there;
a missing value is NaN.
"""

from __future__ import annotations

import numpy as np

TIME_PARTS = ("seconds", "year", "month", "day", "weekday", "hour")  # a date has no hour
MICROS = 1_000_000
HOUR_MICROS = 3600 * MICROS


def seconds(micros: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Whole microseconds as seconds (float64), missing values NaN."""
    out = np.asarray(micros, dtype=np.int64).astype(np.float64) / MICROS
    out[missing] = np.nan
    return out


def date_part(micros: np.ndarray, missing: np.ndarray, part: str) -> np.ndarray:
    """One part (``TIME_PARTS``) of timestamps given as microseconds since 1970, as float64:
    ``seconds`` since 1970, ``year``, ``month``, ``day``, ``weekday`` (Monday 0), ``hour``;
    missing values NaN. Before 1970 too (numpy's units floor)."""
    if part == "seconds":
        return seconds(micros, missing)
    us = np.where(missing, 0, np.asarray(micros, dtype=np.int64))
    stamps = us.astype("datetime64[us]")
    if part == "year":
        found = stamps.astype("datetime64[Y]").astype(np.int64) + 1970
    elif part == "month":
        found = stamps.astype("datetime64[M]").astype(np.int64) % 12 + 1
    elif part == "day":
        days = stamps.astype("datetime64[D]")
        found = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    elif part == "weekday":  # 1970-01-01 was a Thursday (3)
        found = (stamps.astype("datetime64[D]").astype(np.int64) + 3) % 7
    elif part == "hour":
        found = us // HOUR_MICROS % 24
    else:
        raise ValueError(f"no date part {part!r}")
    out = found.astype(np.float64)
    out[missing] = np.nan
    return out
