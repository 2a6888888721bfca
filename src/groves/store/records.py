"""One schema per kind of stored JSON record, checked whenever a record is read back.

A record read from a store is untrusted: parsing is bounded (``codec.parse_json``: size by
the store, depth by Python's recursion limit, both a ``CorruptFile``), and the parsed value is
checked against its kind's schema here before any field is used, so a damaged or forged record
is one ``CorruptFile`` line naming the file and the field, never a ``KeyError`` or a
``TypeError`` deep in a step. Schemas list the fields readers use (records may carry more).

A schema is a Python value: a type (``int``, ``float``, ``str``, ``bool``; ``int`` never
accepts a boolean, ``float`` accepts any number), a ``Rec`` (an object with required and
optional fields), a ``List``, ``Maybe`` (or null), ``AnyOf``, ``Match`` (text of a pattern),
``Range`` (a whole number in bounds) or ``ANY``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from groves.errors import CorruptFile

ANY = object()


@dataclass(frozen=True)
class Rec:
    required: dict[str, Any]
    optional: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class List:
    item: Any
    min_len: int = 0
    max_len: int = 10_000_000


@dataclass(frozen=True)
class Maybe:
    schema: Any


@dataclass(frozen=True)
class AnyOf:
    schemas: tuple[Any, ...]


@dataclass(frozen=True)
class Match:
    pattern: str


@dataclass(frozen=True)
class Range:
    low: int
    high: int


def check(value: Any, schema: Any, path: str = "") -> str | None:
    """Where ``value`` departs from ``schema`` (a field's path and what it should be), or
    ``None`` when it fits."""
    if schema is ANY:
        return None
    if isinstance(schema, Maybe):
        return None if value is None else check(value, schema.schema, path)
    if isinstance(schema, AnyOf):
        if any(check(value, s, path) is None for s in schema.schemas):
            return None
        return f"{path or 'the record'} is not of any allowed form"
    if isinstance(schema, Rec):
        if not isinstance(value, dict):
            return f"{path or 'the record'} must be an object"
        for name, sub in schema.required.items():
            if name not in value:
                return f"{path}{name} is missing"
            found = check(value[name], sub, f"{path}{name}.")
            if found:
                return found
        for name, sub in schema.optional.items():
            if name in value:
                found = check(value[name], sub, f"{path}{name}.")
                if found:
                    return found
        return None
    where = path.rstrip(".") or "the record"
    if isinstance(schema, List):
        if not isinstance(value, list) or not schema.min_len <= len(value) <= schema.max_len:
            return f"{where} must be a list of {schema.min_len} to {schema.max_len} items"
        for i, item in enumerate(value):
            found = check(item, schema.item, f"{path.rstrip('.')}[{i}].")
            if found:
                return found
        return None
    if isinstance(schema, Match):
        ok = isinstance(value, str) and re.fullmatch(schema.pattern, value) is not None
        return None if ok else f"{where} must be text of the form {schema.pattern}"
    if isinstance(schema, Range):
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and schema.low <= value <= schema.high
        return None if ok else f"{where} must be a whole number from {schema.low} to {schema.high}"
    if schema is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif schema is float:  # a number numpy holds (an integer within int64's range)
        ok = isinstance(value, float) or (
            isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
        )
    else:
        ok = isinstance(value, schema)
    return None if ok else f"{where} must be {_names.get(schema, schema.__name__)}"


_names = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


# Every record a step writes carries its format, ``groves-<kind>/<version>``; a record without
# one was written before formats were recorded, as version 1. A reader refuses a newer version
# than it knows (saying to upgrade groves) rather than misread it.
VERSIONS = {
    "latest": 1,
    "plan": 1,
    "manifest": 1,
    "grove": 1,
    "metrics": 1,
    "batch": 1,
    "search": 1,
    "promotion": 1,
}


def record_format(kind: str) -> str:
    return f"groves-{kind}/{VERSIONS[kind]}"


def stamped(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """``record`` with the format of its kind, as a writer stores it."""
    return {**record, "format": record_format(kind)}


def check_format(value: Any, kind: str, name: str) -> None:
    """A record of ``kind`` in a format this groves reads; else one ``CorruptFile`` line."""
    found = value.get("format") if isinstance(value, dict) else None
    if found is None or found == record_format(kind):
        return
    match = re.fullmatch(rf"groves-{kind}/(\d+)", str(found))
    if match and int(match[1]) > VERSIONS[kind]:
        raise CorruptFile(
            f"{name} is {found}, newer than this groves reads ({record_format(kind)}): "
            "upgrade groves to read it"
        )
    raise CorruptFile(f"{name} is not a {kind} record (format {str(found)[:40]!r})")


def checked(value: Any, kind: str, name: str) -> Any:
    """``value`` if it is a record of ``kind`` in a format this groves reads and fits its
    schema; else a ``CorruptFile`` naming ``name``."""
    check_format(value, kind, name)
    problem = check(value, SCHEMAS[kind])
    if problem:
        raise CorruptFile(f"{name} is not a valid {kind} record: {problem}")
    return value


# ---- the schemas ---------------------------------------------------------------------------

BUILD_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}"
RUN_ID = r"\d{8}T\d{9}Z-[0-9a-f]{8}"
SHA256 = Match(r"[0-9a-f]{64}")
COUNT = Range(0, 1 << 62)
DIGEST = Rec({"sha256": SHA256, "bytes": COUNT})
LABEL = AnyOf((int, float, str, bool))
CLASSES = Maybe(AnyOf((List(LABEL, 1), List(List(LABEL, 1), 1))))
COLUMN = AnyOf(
    (
        Rec(
            {"name": str, "kind": Match("number|bool|category|time|duration")},
            {"categories": List(Maybe(str))},
        ),
        Rec(
            {
                "name": str,
                "kind": Match("datetime"),
                "column": str,
                "part": Match("seconds|year|month|day|weekday|hour"),
                "utc": bool,
            }
        ),
    )
)
DATA = Rec(
    {
        "n_features": Range(1, 1 << 31),
        "classes": CLASSES,
    },
    {
        "columns": List(COLUMN),
        "dropped": List(str),
        "warnings": List(str),
        "feature_names": List(str),
        "named": bool,
        "n_outputs": Range(1, 1 << 16),
        "n_test": COUNT,
        "n_train": COUNT,
        "n_rows": COUNT,
        "split_fingerprint": str,
        "prepared": ANY,
    },
)
# metrics.json's measures beyond the score (``groves.forest.measures``)
MEASURES = ("accuracy", "balanced_accuracy", "log_loss", "roc_auc", "r2", "mae", "rmse")
SCORES = Rec({}, {name: Maybe(float) for name in MEASURES})
PER_CLASS = List(
    Rec({"class": LABEL, "precision": float, "recall": float, "f1": float, "support": COUNT})
)
SPEC = Rec({"n_trees": Range(1, 1 << 31), "estimator": Match("classifier|regressor")})
GROVE = Rec(
    {
        "grove_id": Range(0, 1 << 31),
        "seed": Range(0, 2**32 - 1),
        "n_trees": Range(1, 1 << 31),
        "sha256": SHA256,
        "bytes": COUNT,
        "votes": DIGEST,
    },
    {"fit_seconds": float, "seconds": float, "peak_rss_mb": Maybe(float), "usage": ANY},
)
SCHEMAS: dict[str, Any] = {
    "latest": Rec(
        {"build_id": Match(BUILD_ID), "run_id": Match(RUN_ID)},
        {"promoted": Rec({"at": Match(RUN_ID), "from": Maybe(Match(RUN_ID))})},
    ),
    "promotion": Rec(
        {
            "build_id": Match(BUILD_ID),
            "promotion_id": Match(RUN_ID),
            "run_id": Match(RUN_ID),
            "from": Maybe(Match(RUN_ID)),
            "promoted_at": str,
        }
    ),
    "plan": Rec(
        {"build_id": Match(BUILD_ID), "run_id": Match(RUN_ID), "spec": SPEC, "data": DATA},
        {"created_at": str},
    ),
    "manifest": Rec(
        {
            "build_id": Match(BUILD_ID),
            "run_id": Match(RUN_ID),
            "created_at": str,
            "estimator": Match("classifier|regressor"),
            "spec": SPEC,
            "n_trees": Range(1, 1 << 31),
            "n_groves": Range(1, 1 << 31),
            "groves": List(GROVE, 1),
            "data": DATA,
            "model": Rec({"sha256": SHA256, "bytes": COUNT}),
        },
        {"plan": DIGEST, "timings": Rec({}, {"fit_seconds_total": float}), "cost": ANY},
    ),
    "grove": Rec(
        {
            **GROVE.required,
            "build_id": Match(BUILD_ID),
            "run_id": Match(RUN_ID),
            "split_fingerprint": str,
            "n_features": Range(1, 1 << 31),
            "classes": CLASSES,
            "sklearn_version": str,
        },
        GROVE.optional,
    ),
    "metrics": Rec(
        {
            "build_id": Match(BUILD_ID),
            "run_id": Match(RUN_ID),
            "metric": Match("accuracy|r2"),
            "score": float,
            "n_test": COUNT,
            "n_trees": Range(1, 1 << 31),
        },
        {
            "grove_scores": List(float),
            "score_by_trees": List(Rec({"n_trees": Range(1, 1 << 31), "score": float})),
            "cost": ANY,
            "scores": SCORES,
            "per_class": PER_CLASS,
            "per_output": List(
                Rec({"output": Range(0, 1 << 16), "scores": SCORES}, {"per_class": PER_CLASS})
            ),
        },
    ),
}


def check_manifest(manifest: Any, name: str) -> dict[str, Any]:
    """A manifest that fits its schema and agrees with itself: groves listed once each, in
    order, their trees summing to the run's."""
    checked(manifest, "manifest", name)
    groves = manifest["groves"]
    if [g["grove_id"] for g in groves] != list(range(len(groves))):
        raise CorruptFile(f"{name} is not a valid manifest record: groves are not 0..n-1 once each")
    if (
        len(groves) != manifest["n_groves"]
        or sum(g["n_trees"] for g in groves) != manifest["n_trees"]
    ):
        raise CorruptFile(
            f"{name} is not a valid manifest record: its groves do not add up to its trees"
        )
    return manifest
