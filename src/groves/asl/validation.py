"""Refuse, when a definition is loaded, anything this engine would not run faithfully."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from groves.asl.errors import UnsupportedDefinition

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
