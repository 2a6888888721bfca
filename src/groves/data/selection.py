"""Which columns of a table a build trains on: every column but the target and the weights, or
those of the request's ``features`` (only these), less those of its ``drop``; and which look
like ids (a distinct value in nearly every row), which plan warns of."""

from __future__ import annotations

from collections.abc import Sequence

from groves.data.encoding import TIME_PARTS
from groves.errors import RequestError, missing_column

SHOWN_COLUMNS = 20  # columns an error lists
# A column is taken for an id when it has a distinct value in more than this share of the rows
# of a table of at least ID_MIN_ROWS rows (in fewer, a measurement whose range is as wide as the
# row count, such as a distance in miles, has a distinct value in most rows too).
ID_SHARE = 0.9
ID_MIN_ROWS = 1_000


def feature_names(
    header: Sequence[str],
    target: str,
    weight: str | None,
    features: Sequence[str] | None,
    drop: Sequence[str],
    where: str,
) -> list[str]:
    """The feature columns, in the table's order; a name in ``features`` or ``drop`` that is not
    a column, or is the target or the weights, is a ``RequestError`` naming the field."""
    for field, names in (("features", features or ()), ("drop", drop)):
        for name in names:
            if name not in header:
                raise missing_column(field, name, where, list(header))
            if name in (target, weight):
                what = "target" if name == target else "weight"
                raise RequestError(field, f"column {name!r} is the {what}, never a feature")
    both = [name for name in drop if name in (features or ())]
    if both:
        raise RequestError("drop", f"column {both[0]!r} is in features too; name it in one")
    chosen = header if features is None else [n for n in header if n in features]
    names = [n for n in chosen if n not in (target, weight) and n not in drop]
    if not names:
        raise RequestError(
            "drop" if features is None else "features",
            f"leaves {where} no feature column besides {target!r}",
        )
    return names


def left_out(
    header: Sequence[str], names: Sequence[str], target: str, weight: str | None
) -> list[str]:
    """The columns of ``header`` that are neither features nor the target nor the weights:
    what ``features`` and ``drop`` left out (prediction accepts them and ignores them)."""
    kept = {*names, target, weight}
    return [n for n in header if n not in kept]


def id_warnings(distinct: dict[str, int], n_rows: int) -> list[str]:
    """A warning for each column with a distinct value in nearly every row (``distinct``:
    each integer or text feature column's count of distinct values)."""
    if n_rows < ID_MIN_ROWS:
        return []
    return [
        f"column {name!r} has a distinct value in {count / n_rows:.0%} of the {n_rows:,} rows, "
        f"as an id has; if it is one, leave it out: drop [{name!r}] (--drop {name})"
        for name, count in distinct.items()
        if count > ID_SHARE * n_rows
    ]


def check_part_names(names: Sequence[str], kinds: Sequence[str], where: str) -> None:
    """A date column's parts (``COLUMN.PART``) must not take the name of another column."""
    taken = set(names)
    for name, kind in zip(names, kinds, strict=True):
        if kind != "datetime":
            continue
        clash = [f"{name}.{part}" for part in TIME_PARTS if f"{name}.{part}" in taken]
        if clash:
            raise RequestError(
                "dataset",
                f"column {clash[0]!r} of {where} has the name groves gives a part of the date "
                f"column {name!r}; rename it, or leave one out with drop",
            )
