"""The recorded encoding (``groves.data.encoding``) as a scikit-learn ``Pipeline`` in front of
the forest, which takes a DataFrame by column name, in any column order, and predicts what
``groves predict`` predicts, row for row.

It is built from scikit-learn and pandas alone, so an exported model loads where groves is not
installed: a ``ColumnTransformer`` passes numbers and booleans through, encodes text with an
``OrdinalEncoder`` holding the recorded categories (unknown and missing: NaN), and takes each
date or timestamp column apart with ``FunctionTransformer``s of pandas' and the ``operator``
module's functions (``pandas.to_datetime``, ``operator.attrgetter("dt.year")``, ...): a
transformer class or function of groves's own would make the pickle need groves to load.

Time zones as ``groves predict`` has them: a column trained with time zones is converted to
UTC and refuses values without one (a naive dtype by pandas' ``astype``, naive text by being
replaced with text that does not parse: pandas alone has no other refusal); one trained
without is taken as written and refuses values with a time zone (pandas' ``astype`` raises).

A time of day becomes seconds since midnight (``pandas.to_timedelta`` of its text: ``HH:MM:SS``,
as ``datetime.time`` prints and a CSV has it), a duration seconds (``pandas.to_timedelta`` with
``unit="s"``: numbers are seconds, as ``groves predict`` takes them).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from itertools import groupby
from typing import Any

import numpy as np

from groves.data.encoding import NO_CATEGORY, input_name, input_names

# A date part as the pandas ``Series.dt`` attribute that gives it
PANDAS_PARTS = {
    "year": "dt.year",
    "month": "dt.month",
    "day": "dt.day",
    "weekday": "dt.day_of_week",
    "hour": "dt.hour",
}


# Text without a time zone at its end (``Z``, ``+01:00``, ``-0500``): what a column trained
# with time zones refuses, replaced by text that then fails to parse, naming what is wrong
NO_ZONE = r"^(?!.*(?:Z|[+-]\d\d:?\d\d)$).+$"
NO_ZONE_TEXT = "a time without a time zone (the model was trained with time zones)"


def _group(column: dict[str, Any]) -> tuple[str, str]:
    """Consecutive feature columns encoded by one transformer: text, numbers, the parts of
    one date column, or one time-of-day or duration column."""
    if column["kind"] == "datetime":
        return "datetime", column["column"]
    if column["kind"] in ("time", "duration"):
        return column["kind"], column["name"]
    return ("text", "") if column["kind"] == "category" else ("numbers", "")


def _text(run: list[dict[str, Any]]) -> Any:
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    return make_pipeline(
        # a column pandas read as numbers (all empty: NaN) is text all the same
        FunctionTransformer(
            pd.DataFrame.astype, kw_args={"dtype": object}, feature_names_out="one-to-one"
        ),
        OrdinalEncoder(
            categories=[c["categories"] or [NO_CATEGORY] for c in run],
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
        ),
    )


def _times(run: list[dict[str, Any]]) -> Any:
    """One date column's parts, in order, from the column as a Series."""
    import pandas as pd
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    utc = run[0]["utc"]
    epoch = pd.Timestamp(0, tz="UTC" if utc else None)
    if utc:  # any time zone, converted to UTC; none refused
        read = [
            # Python datetimes as a datetime dtype, which astype checks
            FunctionTransformer(operator.methodcaller("infer_objects")),
            FunctionTransformer(
                operator.methodcaller("replace", NO_ZONE, NO_ZONE_TEXT, regex=True)
            ),
            FunctionTransformer(operator.methodcaller("astype", "datetime64[us, UTC]")),
        ]
    else:  # as written; a value with a time zone is refused
        read = [
            FunctionTransformer(pd.to_datetime),
            FunctionTransformer(operator.methodcaller("astype", "datetime64[us]")),
        ]
    parts = []
    for column in run:
        if column["part"] == "seconds":
            steps = [
                FunctionTransformer(operator.methodcaller("__sub__", epoch)),
                FunctionTransformer(operator.methodcaller("__truediv__", pd.Timedelta(1, "s"))),
            ]
        else:
            steps = [FunctionTransformer(operator.attrgetter(PANDAS_PARTS[column["part"]]))]
        # a Series of floats (NaN where missing) as a one-column frame
        steps.append(FunctionTransformer(operator.methodcaller("to_frame")))
        parts.append((column["part"], make_pipeline(*steps)))
    return make_pipeline(*read, FeatureUnion(parts))


def _seconds(column: dict[str, Any]) -> Any:
    """A time-of-day column as seconds since midnight, or a duration column as seconds."""
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    if column["kind"] == "time":  # its text, HH:MM:SS[.ffffff]
        read = [
            FunctionTransformer(operator.methodcaller("astype", "string")),
            FunctionTransformer(pd.to_timedelta),
        ]
    else:  # durations, or numbers of seconds
        read = [FunctionTransformer(pd.to_timedelta, kw_args={"unit": "s"})]
    return make_pipeline(
        *read,
        FunctionTransformer(operator.methodcaller("__truediv__", pd.Timedelta(1, "s"))),
        FunctionTransformer(operator.methodcaller("to_frame")),
    )


def _example(columns: Sequence[dict[str, Any]]) -> Any:
    """A frame with every input column, of its kind, to fit the encoding on (it learns the
    column names only: categories and parts are given)."""
    import pandas as pd

    rows = max([1] + [len(c["categories"]) for c in columns if c["kind"] == "category"])
    values: dict[str, Any] = {}
    for c in columns:
        if c["kind"] == "category":
            values[c["name"]] = np.resize(np.array(c["categories"] or [""], dtype=object), rows)
        elif c["kind"] == "datetime":
            values[c["column"]] = pd.Series(
                [pd.Timestamp(0, tz="UTC" if c["utc"] else None)] * rows
            )
        elif c["kind"] == "time":
            values[c["name"]] = ["00:00:00"] * rows
        elif c["kind"] == "duration":
            values[c["name"]] = pd.Series([pd.Timedelta(0)] * rows)
        else:
            values[c["name"]] = np.zeros(rows)
    return pd.DataFrame(values, columns=input_names(columns))


def pipeline(columns: Sequence[dict[str, Any]], forest: Any) -> Any:
    """The ``Pipeline``: the recorded encoding of ``columns`` (in training order), then
    ``forest``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    steps = []
    for (kind, name), group in groupby(columns, key=_group):
        run = list(group)
        if kind == "datetime":
            steps.append((f"time_{len(steps)}", _times(run), name))  # a Series: one column
        elif kind in ("time", "duration"):
            steps.append((f"{kind}_{len(steps)}", _seconds(run[0]), name))
        elif kind == "text":
            steps.append((f"text_{len(steps)}", _text(run), [input_name(c) for c in run]))
        else:
            steps.append((f"numbers_{len(steps)}", "passthrough", [c["name"] for c in run]))
    encoding = ColumnTransformer(steps, remainder="drop", verbose_feature_names_out=False)
    encoding.fit(_example(columns))
    return Pipeline([("encoding", encoding), ("forest", forest)])
