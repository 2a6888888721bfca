"""Choice rules: the comparison operators the definition may use, and And/Or/Not."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from groves.engine.asl.errors import UnsupportedDefinition
from groves.engine.asl.paths import get_path, path_exists

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "StringEquals": lambda a, b: isinstance(a, str) and a == b,
    "BooleanEquals": lambda a, b: isinstance(a, bool) and a == b,
    "NumericEquals": lambda a, b: is_number(a) and a == b,
    "NumericLessThan": lambda a, b: is_number(a) and a < b,
    "NumericGreaterThan": lambda a, b: is_number(a) and a > b,
    "NumericLessThanEquals": lambda a, b: is_number(a) and a <= b,
    "NumericGreaterThanEquals": lambda a, b: is_number(a) and a >= b,
    "IsNull": lambda a, b: (a is None) == b,
    "IsBoolean": lambda a, b: isinstance(a, bool) == b,
    "IsNumeric": lambda a, b: is_number(a) == b,
    "IsString": lambda a, b: isinstance(a, str) == b,
}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def rule_matches(rule: Mapping[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(rule_matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(rule_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not rule_matches(rule["Not"], data)
    variable = rule["Variable"]
    operators = set(rule) - {"Variable", "Next", "Comment"}
    if len(operators) != 1:
        raise UnsupportedDefinition(f"choice rule {rule!r} needs exactly one comparison")
    (operator,) = operators
    if operator == "IsPresent":
        return path_exists(data, variable) == rule[operator]
    if operator not in COMPARISONS:
        raise UnsupportedDefinition(f"choice comparison {operator!r} is not supported")
    return COMPARISONS[operator](get_path(data, variable), rule[operator])
