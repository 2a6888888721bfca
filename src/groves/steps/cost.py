"""What a training run costs on AWS: each step's Lambda GB-seconds (memory size x billed
duration) and invocations, the state machine's state transitions, and their price.

Deployed, a step reads its memory size from the Lambda context and measures its own billed
duration; locally, the memory size is the template's default for that function and the duration
is what the step measured on this machine, so a local run's cost is an estimate of the same
build on AWS (``estimated: true``). Where it is recorded:

- ``plan.json`` ``usage``: the plan step's invocation;
- each grove's metadata (and the manifest's grove records) ``usage``: its share of its
  invocation (the time since the previous grove of the batch ended), the execution environment
  it ran in and when it started and ended (the report's timeline);
- ``manifest.json`` ``cost``: plan + train_grove + merge, and the execution's state transitions;
- ``metrics.json`` ``cost``: the scoring step;
- a batch prediction's output sidecar ``cost``: plan_batch, every tile's predict_chunk and
  assemble, and the batch execution's transitions (each step's ``usage`` is in ``batch.json``
  and the tiles' records);
- a search's ``result.json`` ``cost``: plan_search, every candidate's groves, score_candidates,
  the best's merge and score_best, and the search execution's transitions.

Not counted: Lambda's init duration, S3 requests and storage, CloudWatch Logs, retries.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from groves.errors import CorruptFile
from groves.store.records import Rec, check

N_JOBS_ENV = "GROVES_N_JOBS"  # the threads an invocation may use (scikit-learn's n_jobs)
# An invocation's memory size, as Lambda sets it in a function's environment; the local runner
# sets it to the size it holds the invocation to.
MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
# train_grove's memory size, which plan sizes each grove's sample of rows by: the template sets
# it in the plan function's environment, the local runner to what it holds train_grove to.
TRAIN_MEMORY_ENV = "GROVES_TRAIN_MEMORY_MB"

# Published on-demand prices, us-east-1, x86_64: check them before relying on an estimate.
PRICES = {
    "as_of": "2026-12-01",
    "region": "us-east-1",
    "architecture": "x86_64",
    "lambda_usd_per_gb_second": 0.0000166667,
    "lambda_usd_per_request": 0.20 / 1_000_000,
    "standard_usd_per_state_transition": 0.025 / 1_000,
}
# The template's default MemorySize of each step's function (tests/test_template.py checks).
TEMPLATE_MEMORY_MB = {
    "plan": 2048,
    "plan_part": 2048,
    "train_grove": 3008,
    "merge": 4096,
    "predict": 4096,
    "plan_batch": 2048,
    "predict_chunk": 3008,
    "assemble_predictions": 4096,
    "plan_search": 2048,
    "score_candidates": 4096,
    "score_best": 4096,
}
# The template's Timeout of each step's function (every function: Globals, FunctionTimeout).
TEMPLATE_TIMEOUT_SECONDS = dict.fromkeys(TEMPLATE_MEMORY_MB, 900)
TRAINING_STEPS = ("plan", "plan_part", "train_grove", "merge")


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MiB: since the invocation began in a local
    worker (which resets the peak for each), since the process started in Lambda."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


@dataclass
class Invocation:
    """One Lambda invocation of a step: its memory size, request id and execution environment
    (Lambda's log stream; locally the worker process), timed from its start."""

    step: str
    memory_mb: int
    request_id: str
    environment: str
    deployed: bool
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)

    @classmethod
    def begin(cls, step: str, context: Any = None) -> Invocation:
        """The invocation a handler runs in: deployed, as Lambda's ``context`` says; else a
        local one with the template's memory size for the step."""
        memory = getattr(context, "memory_limit_in_mb", None)
        if memory is not None:
            return cls(
                step,
                int(memory),
                str(getattr(context, "aws_request_id", "")),
                str(getattr(context, "log_stream_name", "")),
                deployed=True,
            )
        return cls(
            step,
            int(os.environ.get(MEMORY_ENV) or TEMPLATE_MEMORY_MB[step]),
            str(uuid.uuid4()),
            f"local worker {os.getpid()}",
            deployed=False,
        )

    def usage(self, since: float | None = None) -> dict[str, Any]:
        """The invocation's usage so far (or since ``since``, a ``perf_counter`` time within
        it: a grove's share), billed by the millisecond."""
        now = time.perf_counter()
        billed_ms = max(1, math.ceil((now - (self.started if since is None else since)) * 1000))
        return {
            "request_id": self.request_id,
            "environment": self.environment,
            "memory_mb": self.memory_mb,
            "billed_ms": billed_ms,
            "gb_seconds": round(self.memory_mb / 1024 * billed_ms / 1000, 6),
            "estimated": not self.deployed,
            "peak_rss_mb": peak_rss_mb(),
        }


def training_transitions(n_children: int, predict: bool, n_parts: int = 0) -> int:
    """The state transitions of a training execution (``statemachine/forest.asl.json``): Plan,
    PlannedInParts, TrainGroves, TrainGrove in each child execution, Merge, PredictRequested,
    Predict if asked, Done; a table planned in ``n_parts`` parts adds ScanParts, PlanScanned,
    PrepareParts, PlanPrepared and PlanPart twice a part. Retries would add one each."""
    return 6 + n_children + int(predict) + (4 + 2 * n_parts if n_parts else 0)


def batch_transitions(n_tiles: int) -> int:
    """``statemachine/batch_predict.asl.json``: PlanBatch, PredictChunks, PredictChunk in each
    tile's child execution, Assemble, Done."""
    return 4 + n_tiles


def search_transitions(batches_per_candidate: list[int]) -> int:
    """``statemachine/search.asl.json``: PlanSearch, TrainCandidates, in each candidate's child
    execution TrainCandidate and TrainGroveBatch per batch, ScoreCandidates, MergeBest,
    ScoreBest, Done."""
    return 6 + sum(1 + batches for batches in batches_per_candidate)


def price(gb_seconds: float, invocations: int, transitions: int) -> dict[str, float]:
    """Dollars at ``PRICES``."""
    parts = {
        "lambda_compute": gb_seconds * PRICES["lambda_usd_per_gb_second"],
        "lambda_requests": invocations * PRICES["lambda_usd_per_request"],
        "state_transitions": transitions * PRICES["standard_usd_per_state_transition"],
    }
    return {**{k: round(v, 8) for k, v in parts.items()}, "total": round(sum(parts.values()), 8)}


def step_cost(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """One step's invocations (distinct request ids), GB-seconds, billed seconds, memory size
    and peak resident memory (the largest of its invocations')."""
    peaks = [u["peak_rss_mb"] for u in usages if "peak_rss_mb" in u]
    return {
        "invocations": len({u["request_id"] for u in usages}),
        "gb_seconds": round(sum(u["gb_seconds"] for u in usages), 6),
        "billed_seconds": round(sum(u["billed_ms"] for u in usages) / 1000, 3),
        "memory_mb": max(u["memory_mb"] for u in usages),
        "estimated": any(u["estimated"] for u in usages),
        **({"peak_rss_mb": max(peaks)} if peaks else {}),  # runs before it had none
    }


def summarize(steps: dict[str, dict[str, Any]], transitions: int) -> dict[str, Any]:
    """Steps' costs with their sums and price."""
    gb_seconds = round(sum(s["gb_seconds"] for s in steps.values()), 6)
    invocations = sum(s["invocations"] for s in steps.values())
    return {
        "steps": steps,
        "gb_seconds": gb_seconds,
        "invocations": invocations,
        "state_transitions": transitions,
        "estimated": any(s["estimated"] for s in steps.values()),
        "usd": price(gb_seconds, invocations, transitions),
        "prices": PRICES,
    }


def training_cost(
    plan: dict[str, Any], grove_usages: list[dict[str, Any]], merge_usage: dict[str, Any]
) -> dict[str, Any]:
    """The manifest's ``cost``: plan, train_grove and merge, and every state transition of the
    execution (scoring's Lambda time is added from ``metrics.json``). A search's candidate
    counts its groves and its merge only: the search's own steps and transitions are not
    recorded."""
    spec = plan["spec"]
    steps = {"train_grove": step_cost(grove_usages), "merge": step_cost([merge_usage])}
    if "usage" in plan:  # a resumed run's plan was not invoked again
        planned = {"plan": step_cost(_usages(plan, [plan["usage"], *plan.get("plan_usages", [])]))}
        if plan.get("part_usages"):  # a table planned in parts (files) by the Map
            planned["plan_part"] = step_cost(_usages(plan, plan["part_usages"]))
        steps = {**planned, **steps}
    if "search_id" in plan:  # a search's candidate: its transitions are the search's
        return {**summarize(steps, 0), "search_id": plan["search_id"]}
    children = math.ceil(plan["n_groves"] / spec.get("groves_per_invocation", 1))
    n_parts = len(plan.get("part_usages", [])) // 2
    return summarize(steps, training_transitions(children, spec.get("predict", False), n_parts))


# What ``run_cost`` reads of the manifest's ``cost`` and of scoring's ``usage`` in metrics.json
# (records the manifest's sha256s do not cover).
STEP = Rec(
    {
        "invocations": int,
        "gb_seconds": float,
        "billed_seconds": float,
        "memory_mb": float,
        "estimated": bool,
    }
)
COST = Rec({"steps": Rec({}), "state_transitions": int})
USAGE = Rec(
    {
        "request_id": str,
        "gb_seconds": float,
        "billed_ms": float,
        "memory_mb": float,
        "estimated": bool,
    }
)


def run_cost(manifest: dict[str, Any], metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's whole cost: the manifest's, plus scoring's if it was scored. A cost or usage
    that is not one (a damaged record) is a ``CorruptFile`` naming the file and the field."""
    cost = manifest.get("cost")
    if cost is None:
        return None
    problem = check(cost, COST, "cost.")
    for name, step in {} if problem else cost["steps"].items():
        problem = problem or check(step, STEP, f"cost.steps.{name}.")
    if problem:
        raise CorruptFile(f"{_run(manifest)}: its manifest.json is not a valid record: {problem}")
    steps = dict(cost["steps"])
    if metrics and "usage" in metrics:
        problem = check(metrics["usage"], USAGE, "usage.")
        if problem:
            raise CorruptFile(
                f"{_run(manifest)}: its metrics.json is not a valid record: {problem}"
            )
        steps["predict"] = step_cost([metrics["usage"]])
    return summarize(steps, cost["state_transitions"])


def _usages(plan: dict[str, Any], usages: Any) -> list[dict[str, Any]]:
    """The plan's usages, each checked: a damaged one is a ``CorruptFile`` naming the run."""
    problem = None if isinstance(usages, list) else "usages must be a list"
    for usage in [] if problem else usages:
        problem = problem or check(usage, USAGE, "usage.")
    if problem:
        raise CorruptFile(f"{_run(plan)}: its plan.json is not a valid record: {problem}")
    return usages


def _run(manifest: dict[str, Any]) -> str:
    return f"run {manifest.get('run_id')} of build {manifest.get('build_id')!r}"


def describe(cost: dict[str, Any]) -> str:
    """One line: ``$0.000123 (Lambda 12.3 GB-s in 14 invocations, 19 state transitions; ...)``."""
    how = (
        "estimated at the memory sizes it ran with and this machine's durations"
        if cost["estimated"]
        else "measured in Lambda"
    )
    return (
        f"${cost['usd']['total']:.6f} (Lambda {cost['gb_seconds']:.1f} GB-s in "
        f"{cost['invocations']} invocations, {cost['state_transitions']} state transitions; "
        f"{how}; prices of {cost['prices']['as_of']}, {cost['prices']['region']})"
    )
