"""Local limits as Lambda enforces them: each function's memory size (the template's, or
``--memory-mb`` for all) and timeout. An invocation over either is killed and fails as
Lambda's does (``Lambda.Unknown`` with ``Runtime.OutOfMemory`` or ``Sandbox.Timedout``), the
definitions' Retry and Catch act on it as deployed, and the summary shows each step's peak
memory against its memory size."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import small_request

import groves
from groves import cli
from groves.engine import local, workers
from groves.engine.asl.history import entered, failure, status
from groves.engine.limits import function_limits, step_of
from groves.engine.local import FUNCTIONS, LOCAL_ARN, run_local, start_workers
from groves.errors import RequestError
from groves.steps import handlers
from groves.steps.cost import TEMPLATE_MEMORY_MB, TEMPLATE_TIMEOUT_SECONDS

SMALL_FLAGS = ["-t", "7", "-g", "3", "--dataset", "iris", "--seed", "3"]
TRAIN_ARN = LOCAL_ARN.format("TrainGroveFunctionArn")


def hungry_on_grove_1(event: dict[str, Any]) -> dict[str, Any]:
    """train_grove, except that grove 1 first takes 400 MB (every page touched)."""
    if any(grove["grove_id"] == 1 for grove in event["Items"]):
        held = np.ones(400 * 2**20 // 8)
        time.sleep(0.05)
        del held
    return handlers.train_grove(event)


def slow_on_grove_1(event: dict[str, Any]) -> dict[str, Any]:
    """train_grove, except that grove 1 takes a minute first."""
    if any(grove["grove_id"] == 1 for grove in event["Items"]):
        time.sleep(60)
    return handlers.train_grove(event)


def failed_child(run: Any) -> tuple[Any, dict[str, Any]]:
    child = next(c for c in run.children if status(c.events) == "FAILED")
    error, cause = failure(child.events)
    assert error == "Lambda.Unknown", (error, cause)
    return child, json.loads(cause or "")


def test_every_function_has_the_templates_limits() -> None:
    limits = function_limits({LOCAL_ARN.format(name): name for name in FUNCTIONS})
    assert {limit.step for limit in limits.values()} == set(TEMPLATE_MEMORY_MB)
    for limit in limits.values():
        assert limit.memory_mb == TEMPLATE_MEMORY_MB[limit.step]
        assert limit.timeout_seconds == TEMPLATE_TIMEOUT_SECONDS[limit.step]
    assert step_of("AssemblePredictionsFunctionArn") == "assemble_predictions"
    held = function_limits({TRAIN_ARN: "TrainGroveFunctionArn"}, 512, 2.5)
    assert (held[TRAIN_ARN].memory_mb, held[TRAIN_ARN].timeout_seconds) == (512, 2.5)


def test_a_grove_over_its_memory_size_fails_as_lambda_would_and_nothing_is_committed(
    tmp_path: Path,
) -> None:
    """GIVEN every function held to 256 MB WHEN grove 1's invocation takes 400 MB THEN its
    worker is killed and the build fails with Lambda's out-of-memory error, not retried (the
    definition retries only Lambda's service errors), naming the step; the other groves and
    the next invocations run in fresh or warm workers, and no model is committed."""
    hungry = {**FUNCTIONS, "TrainGroveFunctionArn": hungry_on_grove_1}
    run = run_local(small_request(), str(tmp_path), workers=2, functions=hungry, memory_mb=256)
    assert (run.status, run.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    child, cause = failed_child(run)
    assert child.index == 1 and cause["errorType"] == "Runtime.OutOfMemory"
    assert re.search(r"train_grove used \d+ MB of its 256 MB memory size", cause["errorMessage"])
    kinds = [e["type"] for e in child.events]
    assert kinds.count("LambdaFunctionScheduled") == 1, "Lambda.Unknown is not retried"
    assert entered(child.events)[-2:] == ["TrainGrove", "GroveFailed"]
    assert entered(run.history)[-1] == "BuildFailed"
    assert not list(tmp_path.glob("t/runs/*/manifest.json")), "nothing was committed"
    assert not list(tmp_path.glob("t/runs/*/groves/grove_00001.*"))


def test_a_spike_between_two_readings_still_fails(tmp_path: Path, monkeypatch) -> None:
    """The worker reports its invocation's peak (its high-water mark), so memory taken and
    given back between two readings of the watchdog counts."""
    monkeypatch.setattr(workers, "POLL_SECONDS", 3600.0)
    hungry = {**FUNCTIONS, "TrainGroveFunctionArn": hungry_on_grove_1}
    run = run_local(small_request(), str(tmp_path), workers=1, functions=hungry, memory_mb=256)
    _, cause = failed_child(run)
    assert cause["errorType"] == "Runtime.OutOfMemory"


def test_the_cli_names_the_out_of_memory_step(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(local.FUNCTIONS, "TrainGroveFunctionArn", hungry_on_grove_1)
    args = ["run", "t", *SMALL_FLAGS, "--store", str(tmp_path), "--memory-mb", "256"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "build failed: Lambda.Unknown: Runtime.OutOfMemory: Runtime exited with error: " in err
    assert "train_grove used" in err and "Traceback" not in err


def test_a_task_over_its_timeout_is_stopped_as_lambda_stops_it(tmp_path: Path) -> None:
    """GIVEN train_grove's timeout shortened to 1 s WHEN grove 1 runs longer THEN its worker is
    killed at 1 s and the build fails with Lambda's timeout (Step Functions: Lambda.Unknown,
    as the Task sets no TimeoutSeconds), well before the minute it would have taken."""
    slow = {**FUNCTIONS, "TrainGroveFunctionArn": slow_on_grove_1}
    started = time.monotonic()
    with start_workers(2, slow) as pool:
        pool.limits[TRAIN_ARN] = replace(pool.limits[TRAIN_ARN], timeout_seconds=1.0)
        run = run_local(small_request(), str(tmp_path), pool=pool)
    assert time.monotonic() - started < 30
    assert (run.status, run.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    child, cause = failed_child(run)
    assert child.index == 1 and cause["errorType"] == "Sandbox.Timedout"
    assert cause["errorMessage"].startswith("Task timed out after 1.00 seconds (train_grove")
    assert not list(tmp_path.glob("t/runs/*/manifest.json"))


def test_a_run_within_its_limits_shows_each_steps_peak_against_its_memory_size(
    tmp_path: Path, capsys
) -> None:
    assert cli.main(["run", "t", *SMALL_FLAGS, "-p", "--store", str(tmp_path)]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("memory ")]
    sizes = TEMPLATE_MEMORY_MB
    assert re.fullmatch(
        rf"memory +plan \d+/{sizes['plan']} MB, train_grove \d+/{sizes['train_grove']} MB "
        rf"\(peak of 3 invocations\), merge \d+/{sizes['merge']} MB, "
        rf"predict \d+/{sizes['predict']} MB",
        line,
    ), line


def test_memory_mb_holds_every_function_and_prices_the_run_at_it(tmp_path: Path) -> None:
    request = {k: v for k, v in small_request().items() if k != "build_id"}
    out = groves.train("t", store=str(tmp_path), memory_mb=1024, **request)
    steps = out["model"]["cost"]["steps"]
    assert {name: s["memory_mb"] for name, s in steps.items()} == dict.fromkeys(steps, 1024)
    assert all(0 < s["peak_rss_mb"] < 1024 for s in steps.values())


@pytest.mark.parametrize("bad", [127, 10_241, 0, "512", 512.0, True])
def test_memory_sizes_outside_lambdas_range_are_refused(bad: Any, tmp_path: Path) -> None:
    with pytest.raises(RequestError, match=r"memory_mb: must be a whole number of MB from 128 "):
        groves.train("t", store=str(tmp_path), memory_mb=bad)
    assert not list(tmp_path.iterdir()), "refused before any work"


def test_the_cli_refuses_a_bad_memory_size_naming_the_option(tmp_path: Path, capsys) -> None:
    assert cli.main(["run", "t", "--store", str(tmp_path), "--memory-mb", "64"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "invalid request: --memory-mb: must be a whole number of MB from 128 to 10,240 "
        "(Lambda's), got 64"
    )


def test_memory_mb_is_local_only(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="memory_mb: holds functions run on this machine"):
        groves.train("t", stack_name="groves", memory_mb=512)
    assert os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") is None


def test_an_estimator_held_to_a_memory_size_fits_within_it(tmp_path: Path) -> None:
    X, y = np.random.default_rng(0).normal(size=(60, 3)), np.arange(60) % 2
    model = groves.GrovesClassifier(4, 2, random_state=0, store=str(tmp_path), memory_mb=768)
    model.fit(X, y)
    manifest = json.loads(next(tmp_path.glob("*/runs/*/manifest.json")).read_text())
    assert {s["memory_mb"] for s in manifest["cost"]["steps"].values()} == {768}
    with pytest.raises(ValueError, match="'memory_mb' parameter of GrovesClassifier"):
        groves.GrovesClassifier(4, 2, store=str(tmp_path), memory_mb=64).fit(X, y)
