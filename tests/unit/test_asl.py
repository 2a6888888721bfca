"""The ASL interpreter on small definitions: paths, Choice, Retry, Catch, Fail, Map."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from groves.engine.asl import (
    PAYLOAD_LIMIT,
    Interpreter,
    StatesError,
    UnsupportedDefinition,
    evaluate,
    execute,
    get_path,
    set_path,
)
from groves.engine.asl.history import entered, iteration
from groves.engine.asl.paths import check_template

ServiceException = type("Lambda.ServiceException", (Exception,), {})


def double(event: dict[str, Any]) -> dict[str, Any]:
    if event["n"] < 0:
        raise ValueError(f"negative: {event['n']}")
    return {"n": event["n"] * 2}


class Flaky:
    """Fails with Lambda.ServiceException ``failures`` times, then doubles."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ServiceException("try again")
        return double(event)


def task(resource: str = "double", **fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": resource, **fields}


def machine(states: dict[str, Any], start: str | None = None) -> dict[str, Any]:
    return {"StartAt": start or next(iter(states)), "States": states}


def test_paths_selectors_and_result_paths() -> None:
    data = {"a": {"b": [10, {"c": "x"}]}, "flag": True}
    context = {"Map": {"Item": {"Index": 2, "Value": "v"}}}
    assert get_path(data, "$.a.b[1].c") == "x"
    assert get_path(data, "$['a']['b'][0]") == 10
    assert get_path(data, "$$.Map.Item.Value", context) == "v"
    assert evaluate(
        {"k.$": "$.flag", "fixed": 1, "deep": {"i.$": "$$.Map.Item.Index"}}, data, context
    ) == {"k": True, "fixed": 1, "deep": {"i": 2}}
    assert set_path(data, "$.a.new", 5)["a"]["new"] == 5 and "new" not in data["a"]
    assert set_path(data, None, 5) is data
    assert set_path(data, "$", 5) == 5
    with pytest.raises(StatesError, match=r"States\.Runtime"):
        get_path(data, "$.missing")
    with pytest.raises(UnsupportedDefinition, match="intrinsic"):
        check_template({"x.$": "States.Format('{}', $.a)"}, "Parameters")


def test_task_choice_pass_and_output_paths() -> None:
    definition = machine(
        {
            "Start": {
                "Type": "Pass",
                "Parameters": {"n.$": "$.value"},
                "ResultPath": "$.input",
                "Next": "Double",
            },
            "Double": task(InputPath="$.input", ResultPath="$.doubled", Next="Big?"),
            "Big?": {
                "Type": "Choice",
                "Default": "Small",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.doubled.n", "NumericGreaterThan": 10},
                            {"Not": {"Variable": "$.doubled.n", "NumericEquals": 12}},
                        ],
                        "Next": "Big",
                    }
                ],
            },
            "Big": {"Type": "Pass", "Result": "big", "ResultPath": "$.size", "End": True},
            "Small": {"Type": "Succeed", "OutputPath": "$.doubled"},
        }
    )
    run = Interpreter({"double": double})
    assert execute(definition, {"value": 7}, run).output["size"] == "big"
    assert execute(definition, {"value": 6}, Interpreter({"double": double})).output == {"n": 12}
    assert execute(definition, {"value": 2}, Interpreter({"double": double})).output == {"n": 4}


def test_retry_backs_off_then_catch_routes_to_fail_with_error_and_cause() -> None:
    retry = [
        {
            "ErrorEquals": ["Lambda.ServiceException"],
            "IntervalSeconds": 2,
            "BackoffRate": 3,
            "MaxAttempts": 3,
            "MaxDelaySeconds": 10,
        }
    ]
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}]
    definition = machine(
        {
            "Work": task(Retry=retry, Catch=catch, End=True),
            "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        }
    )
    sleeps: list[float] = []
    flaky = Flaky(failures=3)
    done = execute(definition, {"n": 4}, Interpreter({"double": flaky}, sleep=sleeps.append))
    assert done.status == "SUCCEEDED" and done.output == {"n": 8}
    assert sleeps == [2, 6, 10] and flaky.calls == 4  # 2, 2*3, min(2*9, 10)

    sleeps.clear()
    exhausted = execute(
        definition, {"n": 4}, Interpreter({"double": Flaky(failures=9)}, sleep=sleeps.append)
    )
    assert exhausted.status == "FAILED" and exhausted.error == "Lambda.ServiceException"
    assert len(sleeps) == 3
    assert entered(exhausted.history) == ["Work", "Failed"]
    kinds = [e["type"] for e in exhausted.history]
    # each attempt is scheduled anew; the caught failure exits the Task into the Fail state
    assert kinds.count("LambdaFunctionScheduled") == kinds.count("LambdaFunctionFailed") == 4
    assert kinds[-4:] == [
        "LambdaFunctionFailed",
        "TaskStateExited",
        "FailStateEntered",
        "ExecutionFailed",
    ]
    failed = exhausted.history[-1]["executionFailedEventDetails"]
    assert failed["error"] == "Lambda.ServiceException"

    failed = execute(definition, {"n": -1}, Interpreter({"double": double}, sleep=sleeps.append))
    assert failed.status == "FAILED" and failed.error == "ValueError"
    assert '"errorMessage": "negative: -1"' in failed.cause


def test_uncaught_error_fails_the_execution() -> None:
    done = execute(machine({"Work": task(End=True)}), {"n": -3}, Interpreter({"double": double}))
    assert (done.status, done.error) == ("FAILED", "ValueError")


def map_machine(limit: int) -> dict[str, Any]:
    return machine(
        {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": limit,
                "ItemSelector": {"n.$": "$$.Map.Item.Value", "offset.$": "$.offset"},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "D",
                    "States": {"D": task(End=True)},
                },
                "ResultPath": "$.out",
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Bad"}],
                "End": True,
            },
            "Bad": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        }
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_map_keeps_item_order_reports_progress_and_fails_as_a_whole(workers: int) -> None:
    progress: list[tuple[str, int, int]] = []
    threads: set[str] = set()

    def doubled_in(event: dict[str, Any]) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough for the other threads to take items too
        return double(event)

    run = Interpreter(
        {"double": doubled_in}, workers=workers, on_progress=lambda *p: progress.append(p)
    )
    done = execute(map_machine(limit=3), {"items": [1, 2, 3, 4, 5], "offset": 0}, run)
    assert done.status == "SUCCEEDED"
    assert [r["n"] for r in done.output["out"]] == [2, 4, 6, 8, 10]
    assert progress[0] == ("Each", 0, 5) and progress[-1] == ("Each", 5, 5)
    assert len(progress) == 6
    assert len(threads) == min(workers, 3)
    started = next(e for e in done.history if e["type"] == "MapStateStarted")
    assert started["mapStateStartedEventDetails"] == {"length": 5}

    failed = execute(
        map_machine(limit=0),
        {"items": [1, -2, 3], "offset": 0},
        Interpreter({"double": double}, workers=workers),
    )
    assert failed.status == "FAILED" and failed.error == "ValueError"
    assert "negative: -2" in failed.cause


def test_definitions_using_unsupported_features_are_refused() -> None:
    run = Interpreter({"double": double})
    with pytest.raises(UnsupportedDefinition, match=r"field\(s\) \['TimeoutSeconds'\]"):
        execute(machine({"W": task(TimeoutSeconds=5, End=True)}), {}, run)
    with pytest.raises(UnsupportedDefinition, match="no local handler for resource 'nope'"):
        execute(machine({"W": task("nope", End=True)}), {}, run)
    with pytest.raises(UnsupportedDefinition, match="type 'Wait'"):
        execute(machine({"W": {"Type": "Wait", "Seconds": 1, "End": True}}), {}, run)
    other_mode = map_machine(2)
    other_mode["States"]["Each"]["ItemProcessor"]["ProcessorConfig"]["Mode"] = "PARALLEL"
    with pytest.raises(UnsupportedDefinition, match="Map mode 'PARALLEL'"):
        execute(other_mode, {}, run)
    inline_batches = map_machine(2)
    inline_batches["States"]["Each"]["ItemBatcher"] = {"MaxItemsPerBatch": 2}
    with pytest.raises(UnsupportedDefinition, match=r"\['ItemBatcher'\] need DISTRIBUTED"):
        execute(inline_batches, {}, run)
    with pytest.raises(UnsupportedDefinition, match="Next 'Nowhere'"):
        execute(machine({"W": task(Next="Nowhere")}), {}, run)


def test_payloads_over_the_step_functions_limit_fail_like_on_aws() -> None:
    definition = machine({"Big": {"Type": "Pass", "Result": "x" * PAYLOAD_LIMIT, "End": True}})
    done = execute(definition, {}, Interpreter({}))
    assert (done.status, done.error) == ("FAILED", "States.DataLimitExceeded")


# ---- where the States Language specification is exact (found by probing a second engine) ----


def catching(errors: list[str], **fields: Any) -> dict[str, Any]:
    """A Task whose errors are caught by ``errors`` into a Succeed state."""
    catch = [{"ErrorEquals": errors, "ResultPath": "$.e", "Next": "Caught"}]
    return machine({"Work": task(Catch=catch, End=True, **fields), "Caught": {"Type": "Succeed"}})


# How the engine itself ends a Task in a terminal error: a ResultSelector path that matches
# nothing (States.Runtime), a result over the payload limit (States.DataLimitExceeded).
TERMINAL = {
    "States.Runtime": ({"ResultSelector": {"x.$": "$.missing"}}, double),
    "States.DataLimitExceeded": ({}, lambda event: {"n": "x" * PAYLOAD_LIMIT}),
}


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
@pytest.mark.parametrize("catcher", ["States.ALL", "States.TaskFailed"])
def test_terminal_errors_are_not_caught_by_wildcards(terminal: str, catcher: str) -> None:
    fields, handler = TERMINAL[terminal]
    run = execute(catching([catcher], **fields), {"n": 1}, Interpreter({"double": handler}))
    assert (run.status, run.error) == ("FAILED", terminal)
    by_name = execute(catching([terminal], **fields), {"n": 1}, Interpreter({"double": handler}))
    assert by_name.status == "SUCCEEDED", "a terminal error is still matched by its own name"


def test_wildcards_still_catch_ordinary_errors() -> None:
    for errors in (["States.ALL"], ["States.TaskFailed"]):
        done = execute(catching(errors), {"n": -1}, Interpreter({"double": double}))
        assert done.status == "SUCCEEDED" and done.output["e"]["Error"] == "ValueError"


@pytest.mark.parametrize(
    ("data", "result_path"),
    [({"a": 5}, "$.a.b"), ("text", "$.x"), ({"a": [1]}, "$.a[3]"), ({"a": [1]}, "$.a.b")],
)
def test_a_result_path_that_cannot_be_applied_fails(data: Any, result_path: str) -> None:
    definition = machine(
        {"P": {"Type": "Pass", "Result": 1, "ResultPath": result_path, "End": True}}
    )
    done = execute(definition, data, Interpreter({}))
    assert (done.status, done.error) == ("FAILED", "States.ResultPathMatchFailure")
    assert set_path({"a": {}}, "$.a.b.c", 1) == {"a": {"b": {"c": 1}}}, "missing objects are made"


def test_intrinsic_functions_are_refused_when_loaded_not_when_reached() -> None:
    calls: list[Any] = []
    definition = machine(
        {
            "First": task("record", Next="Later"),
            "Later": {
                "Type": "Pass",
                "Parameters": {"deep": {"x.$": "States.Format('{}', $.a)"}},
                "End": True,
            },
        }
    )
    with pytest.raises(UnsupportedDefinition, match=r"Later.*Parameters\.deep\.x\.\$.*intrinsic"):
        execute(definition, {}, Interpreter({"record": calls.append}))
    assert calls == [], "no state ran before the definition was refused"


@pytest.mark.parametrize("field", ["Retry", "Catch"])
def test_states_all_must_be_alone_and_last(field: str) -> None:
    rule = {"Next": "Done"} if field == "Catch" else {}
    for rules in (
        [{"ErrorEquals": ["States.ALL"], **rule}, {"ErrorEquals": ["ValueError"], **rule}],
        [{"ErrorEquals": ["States.ALL", "ValueError"], **rule}],
    ):
        definition = machine(
            {"Work": task(**{field: rules}, Next="Done"), "Done": {"Type": "Succeed"}}
        )
        with pytest.raises(UnsupportedDefinition, match=r"States\.ALL must appear alone"):
            execute(definition, {"n": 1}, Interpreter({"double": double}))


def test_map_iterations_keep_their_states_and_retries_in_the_history() -> None:
    flaky = Flaky(failures=1)
    definition = map_machine(limit=2)
    processor = definition["States"]["Each"]["ItemProcessor"]["States"]
    processor["D"]["Retry"] = [{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 0}]
    run = execute(
        definition,
        {"items": [1, 2, 3], "offset": 0},
        Interpreter({"double": flaky}, workers=2, sleep=lambda s: None),
    )
    assert run.status == "SUCCEEDED", run.cause
    attempt = ["LambdaFunctionScheduled", "LambdaFunctionStarted"]
    succeeded = [*attempt, "LambdaFunctionSucceeded"]
    retried = [*attempt, "LambdaFunctionFailed", *succeeded]
    tasks = []
    for index in range(3):
        kinds = [e["type"] for e in iteration(run.history, index, "Each")]
        assert kinds[0] == "TaskStateEntered", kinds
        assert kinds[-2:] == ["TaskStateExited", "MapIterationSucceeded"], kinds
        tasks.append(kinds[1:-2])
    # the one failure was retried in its own iteration, the others succeeded at once
    assert sorted(tasks, key=len) == [succeeded, succeeded, retried]
    ids = [e["id"] for e in run.history]
    assert ids == list(range(1, len(ids) + 1))
    assert [e["type"] for e in run.history][-3:] == [
        "MapStateSucceeded",
        "MapStateExited",
        "ExecutionSucceeded",
    ]
