"""Run the state machines that are deployed (``statemachine/*.asl.json``) on this machine."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import sys
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from groves import steps
from groves.engine.asl import Execution, Interpreter, call_handler, execute
from groves.engine.executions import save as save_history
from groves.engine.limits import function_limits
from groves.engine.workers import WorkerPool
from groves.steps.cost import N_JOBS_ENV
from groves.store.uris import DEFAULT_STORE, bucket_stores, check_store, open_store


@dataclass(frozen=True)
class Handler:
    """A handler named by module and function, imported where it is first called: the runner
    itself never imports scikit-learn, and warm workers import it while the runner starts."""

    module: str
    __name__: str

    def __call__(self, event: Any, context: Any = None) -> Any:
        return getattr(importlib.import_module(self.module), self.__name__)(event, context)


# The template's DefinitionSubstitutions, and the handler each function ARN stands for.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "PlanFunctionArn": Handler("groves.steps.handlers", "plan"),
    "PlanPartFunctionArn": Handler("groves.steps.handlers", "plan_part"),
    "TrainGroveFunctionArn": Handler("groves.steps.handlers", "train_grove"),
    "MergeFunctionArn": Handler("groves.steps.handlers", "merge"),
    "PredictFunctionArn": Handler("groves.steps.handlers", "predict"),
    "PlanBatchFunctionArn": Handler("groves.steps.handlers", "plan_batch"),
    "PredictChunkFunctionArn": Handler("groves.steps.handlers", "predict_chunk"),
    "AssemblePredictionsFunctionArn": Handler("groves.steps.handlers", "assemble_predictions"),
    "PlanSearchFunctionArn": Handler("groves.steps.handlers", "plan_search"),
    "ScoreCandidatesFunctionArn": Handler("groves.steps.handlers", "score_candidates"),
    "ScoreBestFunctionArn": Handler("groves.steps.handlers", "score_best"),
}
# The state machines, by the name of their definition file in statemachine/.
MACHINES = ("forest", "batch_predict", "search")
STORE_SUBSTITUTION = "StoreUri"
LOCAL_ARN = "arn:aws:lambda:local:000000000000:function:{}"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def definition_path(machine: str = "forest") -> Path:
    """A packaged definition: a link to ``statemachine/<machine>.asl.json`` in the repository."""
    if machine not in MACHINES:
        raise ValueError(f"no state machine {machine!r}; there are {', '.join(MACHINES)}")
    return Path(str(resources.files("groves") / f"{machine}.asl.json"))


def load_definition(substitutions: Mapping[str, str], machine: str = "forest") -> dict[str, Any]:
    """The definition with ``${Name}`` placeholders replaced, as CloudFormation would."""
    text = definition_path(machine).read_text()
    unknown = sorted(set(PLACEHOLDER.findall(text)) - set(substitutions))
    if unknown:
        raise ValueError(f"no substitution for {', '.join(unknown)}")
    return json.loads(PLACEHOLDER.sub(lambda m: json.dumps(substitutions[m[1]])[1:-1], text))


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_worker(concurrency: int) -> dict[str, str]:
    """Split the cores between invocations running at once so they do not oversubscribe."""
    return {N_JOBS_ENV: str(max(1, usable_cores() // concurrency))}


def local_machine(
    store: str,
    functions: Mapping[str, Callable[..., Any]] = FUNCTIONS,
    machine: str = "forest",
    **options: Any,
) -> tuple[dict[str, Any], Interpreter]:
    """The definition with local function ARNs and the store substituted, and an interpreter
    that calls each ARN's handler and reaches the store's bucket for the Map's ItemReader and
    ResultWriter. ``options`` are the interpreter's (workers, pool, ...)."""
    opened = open_store(store)
    arns = {name: LOCAL_ARN.format(name) for name in functions}
    definition = load_definition({**arns, STORE_SUBSTITUTION: opened.uri}, machine)
    interpreter = Interpreter(
        resources=local_resources(functions), buckets=bucket_stores(opened), **options
    )
    return definition, interpreter


def local_resources(
    functions: Mapping[str, Callable[..., Any]] = FUNCTIONS,
) -> dict[str, Callable[..., Any]]:
    """Each local function ARN's handler."""
    return {LOCAL_ARN.format(name): handler for name, handler in functions.items()}


def start_workers(
    workers: int | None = None,
    functions: Mapping[str, Callable[..., Any]] = FUNCTIONS,
    *,
    memory_mb: int | None = None,
    timeout_seconds: float | None = None,
) -> WorkerPool:
    """Warm workers for ``run_local``. Started first thing, they import scikit-learn while the
    caller does its own start-up: the handlers' modules and every step, which a handler imports
    only when called (a Lambda function loads its own step; a local worker serves them all).
    Each invocation is held to its function's memory size and timeout in the template, or to
    ``memory_mb`` (128 to 10,240: a ``RequestError`` naming ``memory_mb`` otherwise) and at
    most ``timeout_seconds``."""
    limits = function_limits(
        {LOCAL_ARN.format(name): name for name in functions}, memory_mb, timeout_seconds
    )
    resources = local_resources(functions)
    modules = {getattr(h, "module", None) or h.__module__ for h in functions.values()}
    modules |= {f"{steps.__name__}.{m.name}" for m in pkgutil.iter_modules(steps.__path__)}
    return WorkerPool(
        workers or usable_cores(), resources, call_handler, preload=sorted(modules), limits=limits
    )


def run_local(
    request: Mapping[str, Any],
    store: str = DEFAULT_STORE,
    *,
    workers: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    functions: Mapping[str, Callable[..., Any]] = FUNCTIONS,
    pool: WorkerPool | None = None,
    machine: str = "forest",
    memory_mb: int | None = None,
    timeout_seconds: float | None = None,
) -> Execution:
    """Execute the state machine on ``request``. Every Task invocation runs in one of
    ``workers`` warm worker processes (``pool``, or ones started here), as a Lambda would;
    leaving early (an interrupt, an error) terminates them all. ``functions`` replaces
    handlers, as a fault would on AWS. ``machine`` names the state machine: ``forest``
    (training), ``batch_predict`` or ``search``. The execution's history is stored in the
    folder of the run (or batch, or search) it planned, also when it is stopped. A store that
    cannot be written is a ``RequestError`` naming ``store`` before any work. Each invocation
    is held to its function's memory size and timeout, as Lambda holds it: the template's, or
    ``memory_mb`` for every function and at most ``timeout_seconds`` (workers started here;
    ``pool`` has its own)."""
    check_store(open_store(store))
    limits = {"memory_mb": memory_mb, "timeout_seconds": timeout_seconds}
    with nullcontext(pool) if pool else start_workers(workers, functions, **limits) as running:
        name = request.get("build_id")
        definition, interpreter = local_machine(
            store,
            functions,
            machine,
            workers=running.size,
            worker_env=threads_per_worker,
            on_progress=on_progress,
            on_event=on_event,
            pool=running,
        )
        try:
            return execute(definition, dict(request), interpreter, name=name)
        finally:  # also when stopped: the execution then ends ABORTED
            if interpreter.execution is not None:
                keep_history(store, interpreter.execution, machine)


def keep_history(store: str, execution: Any, machine: str) -> None:
    """Store the execution's history; if the store fails now (S3 lost mid-build), say so on
    stderr and let the execution's own outcome, or its own error, stand."""
    try:
        save_history(open_store(store), execution, machine)
    except Exception as exc:  # the history must never hide what happened to the build
        print(
            f"groves: the execution's history could not be stored in {store}: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
