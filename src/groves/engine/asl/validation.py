"""Refuse, when a definition is loaded, anything this engine would not run faithfully."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from groves.engine.asl.distributed import GET_OBJECT, PUT_OBJECT
from groves.engine.asl.errors import UnsupportedDefinition
from groves.engine.asl.paths import check_path, check_template

Handler = Callable[[Any], Any]

# Map fields only a Distributed Map takes, and what of each this engine implements.
DISTRIBUTED_FIELDS = (
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "ToleratedFailurePercentage",
    "ToleratedFailureCount",
    "Label",
)
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
        *DISTRIBUTED_FIELDS,
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
            _check_map(name, state)
            validate(state["ItemProcessor"], resources, where=f"{where}{name}.")


def _check_map(name: str, state: Mapping[str, Any]) -> None:
    """Inline Maps, and Distributed Maps that read a JSON array from S3, batch items with a
    fixed BatchInput, write results to S3 and tolerate a fixed share of failures."""
    config = state["ItemProcessor"].get("ProcessorConfig", {})
    where = f"state {name!r}"
    if set(config) - {"Mode", "ExecutionType"}:
        raise UnsupportedDefinition(f"{where}: ProcessorConfig {sorted(config)} not supported")
    mode = config.get("Mode", "INLINE")
    if mode == "INLINE":
        used = sorted(set(state) & set(DISTRIBUTED_FIELDS))
        if used or "ExecutionType" in config:
            raise UnsupportedDefinition(f"{where}: {used or ['ExecutionType']} need DISTRIBUTED")
        return
    if mode != "DISTRIBUTED":
        raise UnsupportedDefinition(f"{where}: Map mode {mode!r} not supported")
    if config.get("ExecutionType") not in ("STANDARD", "EXPRESS"):
        raise UnsupportedDefinition(f"{where}: ExecutionType must be STANDARD or EXPRESS")
    if "ItemReader" in state:
        reader = state["ItemReader"]
        if "ItemsPath" in state:
            raise UnsupportedDefinition(f"{where}: ItemsPath and ItemReader exclude each other")
        _check_s3(where, "ItemReader", reader, GET_OBJECT, {"Bucket", "Key"})
        if set(reader) != {"Resource", "ReaderConfig", "Parameters"} or reader["ReaderConfig"] != {
            "InputType": "JSON"
        }:
            raise UnsupportedDefinition(
                f"{where}: ItemReader supports a JSON array: ReaderConfig {{'InputType': 'JSON'}}"
            )
    if "ResultWriter" in state:
        writer = state["ResultWriter"]
        _check_s3(where, "ResultWriter", writer, PUT_OBJECT, {"Bucket", "Prefix"})
        if set(writer) != {"Resource", "Parameters"}:
            raise UnsupportedDefinition(f"{where}: ResultWriter supports Resource and Parameters")
    if "ItemBatcher" in state:
        batcher = state["ItemBatcher"]
        sizes = {"MaxItemsPerBatch", "MaxItemsPerBatchPath"} & set(batcher)
        if set(batcher) - {*sizes, "BatchInput"} or len(sizes) != 1:
            raise UnsupportedDefinition(
                f"{where}: ItemBatcher supports one of MaxItemsPerBatch(Path), and BatchInput"
            )
        if "MaxItemsPerBatchPath" in batcher:
            check_path(batcher["MaxItemsPerBatchPath"], f"{where}: MaxItemsPerBatchPath")
        if "BatchInput" in batcher:
            check_template(batcher["BatchInput"], f"{where}: BatchInput")
    percentage = state.get("ToleratedFailurePercentage", 0)
    count = state.get("ToleratedFailureCount", 0)
    if not (isinstance(percentage, int | float) and 0 <= percentage <= 100) or not (
        isinstance(count, int) and count >= 0
    ):
        raise UnsupportedDefinition(f"{where}: tolerated failures must be fixed numbers")


def _check_s3(
    where: str, field: str, spec: Mapping[str, Any], resource: str, names: set[str]
) -> None:
    if spec.get("Resource") != resource:
        raise UnsupportedDefinition(f"{where}: {field} supports Resource {resource!r} only")
    params = spec.get("Parameters")
    if not isinstance(params, dict) or {k.removesuffix(".$") for k in params} != names:
        raise UnsupportedDefinition(f"{where}: {field} Parameters must set {sorted(names)}")
    check_template(params, f"{where}: {field}.Parameters")
