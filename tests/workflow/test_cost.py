"""Every run records what it costs on AWS: each step's GB-seconds and invocations, the
execution's state transitions, and their price (``groves.steps.cost``)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from conftest import small_request, train_batch

from groves.cli import main
from groves.engine.asl import Execution
from groves.engine.asl.history import entered
from groves.engine.local import run_local
from groves.steps import handlers
from groves.steps.cost import PRICES, TEMPLATE_MEMORY_MB
from groves.store.artifacts import manifest_key, metrics_key, plan_key
from groves.store.codec import get_json
from groves.store.uris import open_store


def lambda_context(request_id: str, memory: str = "2048") -> types.SimpleNamespace:
    """What Lambda's Python runtime passes a handler (it gives the memory size as a string)."""
    return types.SimpleNamespace(
        memory_limit_in_mb=memory,
        aws_request_id=request_id,
        log_stream_name=f"2026/12/01/[$LATEST]{request_id}",
    )


def states_entered(execution: Execution) -> int:
    """State transitions as Step Functions bills them: every state entered, in the execution
    and in each of its child executions."""
    logs = [execution.history, *(child.events for child in execution.children)]
    return sum(len(entered(events)) for events in logs)


@pytest.mark.parametrize(("predict", "per_invocation"), [(True, 1), (False, 2)])
def test_a_local_run_records_each_steps_usage_and_the_executions_transitions(
    tmp_path: Path, predict: bool, per_invocation: int
) -> None:
    request = small_request(
        n_trees=10, grove_size=2, predict=predict, groves_per_invocation=per_invocation
    )
    run = run_local(request, str(tmp_path), workers=2)
    assert run.status == "SUCCEEDED", run.cause
    store, run_id = open_store(str(tmp_path)), run.output["run_id"]
    cost = get_json(store, manifest_key("t", run_id))["cost"]

    assert cost["state_transitions"] == states_entered(run)
    steps = cost["steps"]
    assert set(steps) == {"plan", "train_grove", "merge"}
    assert steps["train_grove"]["invocations"] == 5 // per_invocation + (5 % per_invocation > 0)
    assert steps["plan"]["invocations"] == steps["merge"]["invocations"] == 1
    for step, used in steps.items():
        assert used["memory_mb"] == TEMPLATE_MEMORY_MB[step] and used["estimated"]
        assert used["gb_seconds"] == pytest.approx(
            used["memory_mb"] / 1024 * used["billed_seconds"], rel=1e-3, abs=1e-6
        )
    # the groves' shares of their invocations add up to the step's GB-seconds
    groves = get_json(store, manifest_key("t", run_id))["groves"]
    assert sum(g["usage"]["gb_seconds"] for g in groves) == pytest.approx(
        steps["train_grove"]["gb_seconds"]
    )
    assert all(g["usage"]["started_at"] < g["usage"]["ended_at"] for g in groves)
    assert cost["usd"]["total"] == pytest.approx(
        cost["gb_seconds"] * PRICES["lambda_usd_per_gb_second"]
        + cost["invocations"] * PRICES["lambda_usd_per_request"]
        + cost["state_transitions"] * PRICES["standard_usd_per_state_transition"],
        abs=1e-8,  # dollars are kept to 8 places
    )
    assert (run.output.get("metrics") or run.output["model"])["cost"]["estimated"]
    if predict:
        whole = run.output["metrics"]["cost"]
        assert set(whole["steps"]) == {"plan", "train_grove", "merge", "predict"}
        assert whole["gb_seconds"] > cost["gb_seconds"]
        assert get_json(store, metrics_key("t", run_id))["usage"]["memory_mb"] == 4096


def test_deployed_steps_take_memory_and_request_ids_from_the_lambda_context(
    local_store,
) -> None:
    event = {"store": local_store.uri, "request": small_request(n_trees=4, grove_size=2)}
    plan = handlers.plan(event, lambda_context("plan-1", "1536"))
    batch_input = {k: plan[k] for k in ("store", "build_id", "run_id")}
    items = train_batch(plan)  # one invocation without a context: a local estimate
    assert len(items) == 2
    merged = handlers.merge(batch_input, lambda_context("merge-1", "4096"))

    usage = get_json(local_store, plan_key("t", plan["run_id"]))["usage"]
    assert (usage["memory_mb"], usage["request_id"], usage["estimated"]) == (1536, "plan-1", False)
    assert usage["environment"] == "2026/12/01/[$LATEST]plan-1"
    steps = merged["cost"]["steps"]
    assert (steps["merge"]["memory_mb"], steps["merge"]["estimated"]) == (4096, False)
    assert steps["train_grove"]["estimated"] and merged["cost"]["estimated"]
    assert steps["train_grove"]["invocations"] == 1


def test_summary_and_ls_show_the_cost(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = str(tmp_path)
    args = ["-t", "4", "-g", "2", "--dataset", "iris", "-p", "--store", store]
    assert main(["run", "c", *args]) == 0
    summary = capsys.readouterr().out
    line = next(x for x in summary.splitlines() if x.startswith("cost"))
    assert "GB-s in 5 invocations, 9 state transitions; estimated" in line
    assert PRICES["as_of"] in line
    assert main(["ls", "--store", store]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "cost $" in listed[0]
    assert line.split()[1].removeprefix("$") in listed[1]


def test_a_batch_prediction_records_its_cost_with_its_executions_transitions(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """GIVEN a build, WHEN a batch of 3 chunks x 2 shards of groves is predicted, THEN the
    sidecar's cost counts plan_batch, the 6 tiles and assemble, and every state the execution
    and its children entered; groves predict prints it."""
    trained = run_local(small_request("t", n_trees=6, grove_size=2), str(tmp_path), workers=2)
    assert trained.status == "SUCCEEDED", trained.cause
    out = tmp_path / "p.csv"
    request = {"build_id": "t", "data": "iris", "output": str(out), "rows_per_chunk": 50}
    run = run_local(
        {**request, "groves_per_shard": 2}, str(tmp_path), workers=2, machine="batch_predict"
    )
    assert run.status == "SUCCEEDED", run.cause
    cost = get_json(open_store(str(tmp_path.parent)), f"{tmp_path.name}/p.csv.json")["cost"]
    assert cost["state_transitions"] == states_entered(run) == 4 + 6
    steps = cost["steps"]
    assert set(steps) == {"plan_batch", "predict_chunk", "assemble_predictions"}
    assert steps["predict_chunk"]["invocations"] == 6
    assert all(s["memory_mb"] == TEMPLATE_MEMORY_MB[name] for name, s in steps.items())
    assert (
        main(["predict", "t", "--data", "iris", "--out", str(out), "--store", str(tmp_path)]) == 0
    )
    assert "cost      $" in capsys.readouterr().out


def test_a_search_records_its_whole_cost_with_its_executions_transitions(tmp_path: Path) -> None:
    request = {
        **small_request("s", n_trees=4, grove_size=1, groves_per_invocation=2),
        "search": {"grid": {"max_depth": [2, 3, 4]}},
    }
    run = run_local(request, str(tmp_path), workers=2, machine="search")
    assert run.status == "SUCCEEDED", run.cause
    cost = run.output["result"]["cost"]
    assert cost["state_transitions"] == states_entered(run)
    steps = cost["steps"]
    assert list(steps) == ["plan_search", "train_grove", "score_candidates", "merge", "score_best"]
    assert steps["train_grove"]["invocations"] == 3 * 2  # 4 groves in batches of 2, 3 candidates
