"""Refuse, when a definition is loaded, anything this engine would not run faithfully."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from groves.asl.errors import UnsupportedDefinition
from groves.asl.paths import check_path, check_template

Handler = Callable[[Any], Any]

COMMON = {"Type", "Comment", "Next", "End", "InputPath", "OutputPath"}
FIELDS = {
    "Task": COMMON | {"Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"},
    "Map": COMMON
    | {
        "ItemsPath",
        "ItemSelector",
        "ItemProcessor",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ResultSelector",
        "ResultPath",
        "Retry",
        "Catch",
    },
    "Pass": COMMON | {"Parameters", "Result", "ResultPath"},
    "Choice": {"Type", "Comment", "InputPath", "OutputPath", "Choices", "Default"},
    "Succeed": {"Type", "Comment", "InputPath", "OutputPath"},
    "Fail": {"Type", "Comment", "Error", "Cause", "ErrorPath", "CausePath"},
}
RETRY_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
CATCH_FIELDS = {"ErrorEquals", "ResultPath", "Next", "Comment"}
PATH_FIELDS = (
    "InputPath",
    "OutputPath",
    "ItemsPath",
    "MaxConcurrencyPath",
    "ErrorPath",
    "CausePath",
)
TEMPLATE_FIELDS = ("Parameters", "ItemSelector", "ResultSelector")


def _check_error_lists(name: str, field: str, rules: list[Mapping[str, Any]]) -> None:
    """``States.ALL`` stands alone in its ErrorEquals, in the last retrier or catcher."""
    for index, rule in enumerate(rules):
        errors = rule.get("ErrorEquals")
        if not isinstance(errors, list) or not errors:
            raise UnsupportedDefinition(f"state {name!r}: {field}[{index}] needs ErrorEquals")
        if "States.ALL" in errors and (len(errors) > 1 or index != len(rules) - 1):
            raise UnsupportedDefinition(
                f"state {name!r}: {field}[{index}]: States.ALL must appear alone, "
                f"in the last {field} rule"
            )


def _check_paths(name: str, state: Mapping[str, Any]) -> None:
    for field in PATH_FIELDS:
        if state.get(field) is not None:
            check_path(state[field], f"state {name!r}: {field}")
    for field in TEMPLATE_FIELDS:
        if field in state:
            check_template(state[field], f"state {name!r}: {field}")
    result_paths = [state.get("ResultPath")]
    result_paths += [c.get("ResultPath") for c in state.get("Catch", [])]
    for path in result_paths:
        if path is not None:
            check_path(path, f"state {name!r}: ResultPath")
            if path.startswith("$$"):
                raise UnsupportedDefinition(f"state {name!r}: a ResultPath cannot be $$")
    for rule in state.get("Choices", []):
        _check_rule(name, rule)


def _check_rule(name: str, rule: Mapping[str, Any]) -> None:
    for nested in (
        rule.get("And", []) + rule.get("Or", []) + ([rule["Not"]] if "Not" in rule else [])
    ):
        _check_rule(name, nested)
    if "Variable" in rule:
        check_path(rule["Variable"], f"state {name!r}: Choice Variable")


def validate(machine: Mapping[str, Any], resources: Mapping[str, Handler], where: str = "") -> None:
    """Refuse a definition that uses anything this interpreter would not run faithfully."""
    states = machine.get("States", {})
    if machine.get("StartAt") not in states:
        raise UnsupportedDefinition(f"{where}StartAt {machine.get('StartAt')!r} is not a state")
    for name, state in states.items():
        kind = state.get("Type")
        if kind not in FIELDS:
            raise UnsupportedDefinition(f"state {name!r}: type {kind!r} is not supported")
        extra = set(state) - FIELDS[kind]
        if extra:
            raise UnsupportedDefinition(f"state {name!r}: field(s) {sorted(extra)} not supported")
        targets = [state.get("Next"), state.get("Default")]
        targets += [c.get("Next") for c in state.get("Catch", []) + state.get("Choices", [])]
        for target in filter(None, targets):
            if target not in states:
                raise UnsupportedDefinition(f"state {name!r}: Next {target!r} is not a state")
        _check_paths(name, state)
        _check_error_lists(name, "Retry", state.get("Retry", []))
        _check_error_lists(name, "Catch", state.get("Catch", []))
        for retrier in state.get("Retry", []):
            if set(retrier) - RETRY_FIELDS:
                raise UnsupportedDefinition(
                    f"state {name!r}: Retry field(s) {sorted(set(retrier) - RETRY_FIELDS)}"
                )
        for catcher in state.get("Catch", []):
            if set(catcher) - CATCH_FIELDS:
                raise UnsupportedDefinition(
                    f"state {name!r}: Catch field(s) {sorted(set(catcher) - CATCH_FIELDS)}"
                )
        if kind == "Task" and state["Resource"] not in resources:
            raise UnsupportedDefinition(
                f"state {name!r}: no local handler for resource {state['Resource']!r}"
            )
        if kind == "Map":
            processor = state["ItemProcessor"]
            mode = processor.get("ProcessorConfig", {}).get("Mode", "INLINE")
            if mode != "INLINE":
                raise UnsupportedDefinition(f"state {name!r}: Map mode {mode!r} not supported")
            validate(processor, resources, where=f"{where}{name}.")
