"""The Python API: what the CLI does, as functions. Each runs the same state machine the CLI
runs, here (``store`` a directory or ``s3://``) or, given ``stack_name`` or
``state_machine_arn``, on the deployed one, waiting for it to end:

- ``train(build_id, **request)``: ``groves run`` / ``groves start --wait``; the execution's output
- ``predict(build_id, data, output)``: ``groves predict`` / ``groves start-predict --wait``

(The requests' fields, their defaults and bounds: docs/request.md.)
- ``load_model(store, build_id)``: a committed run's scikit-learn forest (or the ``Pipeline`` of
  its text encoding and forest), verified
- ``export_model(store, build_id, path)``: that model as one joblib file
- ``serve(build_id)``: ``groves serve``: the serve function behind a local HTTP server

A failed execution raises ``RequestError`` (naming the field, before any work) or ``BuildError``;
AWS that cannot be used (no region, no credentials, no such stack) raises ``AwsError``, the one
line ``groves start`` prints.
The estimators ``GrovesClassifier``/``GrovesRegressor`` are in ``groves.estimators``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from groves.engine.asl.history import failure_message
from groves.engine.console import (
    Progress,
    aws_problem,
    deployed_root_cause,
    execution_name,
    follow,
    local_root_cause,
    stack_output,
    state_machine_arn,
)
from groves.engine.server import LocalServer
from groves.engine.server import serve as start_server
from groves.errors import AwsError, BuildError, GrovesError, RequestError
from groves.forest import loading
from groves.steps.request import BATCH_DEFAULTS
from groves.steps.serve import REFRESH_SECONDS, Service
from groves.store.protocol import Store
from groves.store.uris import DEFAULT_STORE, open_store

# Each state machine: the stack output naming it, its Map, and what an item of the Map is.
MACHINES = {
    "forest": ("StateMachineArn", "TrainGroves", "groves"),
    "batch_predict": ("BatchPredictStateMachineArn", "PredictChunks", "chunks"),
}


def load_model(store: Store | str, build_id: str, run_id: str | None = None) -> Any:
    """The plain scikit-learn forest of a build's committed run (by default the latest), put
    together from its groves, each checked against the run's manifest (size and sha256) and
    read as data (no pickle: loading runs no code); it has ``feature_names_in_`` when trained
    on named columns. With text columns, a ``Pipeline`` (their encoding, then the forest) that
    takes a DataFrame by column name."""
    return loading.load_model(_opened(store), build_id, run_id)


def export_model(
    store: Store | str, build_id: str, path: str | Path, run_id: str | None = None
) -> Path:
    """Write what ``load_model`` gives (the forest, or the ``Pipeline`` of its text encoding
    and the forest) to ``path`` as a joblib file, drawing one grove at a time; ``joblib.load``
    reads it back and predicts the same rows alike."""
    return loading.export_model(_opened(store), build_id, Path(path), run_id)


def serve(
    build_id: str,
    store: Store | str = DEFAULT_STORE,
    *,
    run_id: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    refresh_seconds: float = REFRESH_SECONDS,
) -> LocalServer:
    """The serve function answering for ``build_id``'s latest committed run (or ``run_id``)
    on ``http://host:port/`` (``port=0``: a free one), started in a background thread: POST
    ``{"rows": [...]}`` to its ``url``; ``close()`` it, or use it in a ``with`` block. The
    model is loaded before it returns (a build without a committed run raises
    ``BuildError``) and follows the build's latest every ``refresh_seconds``."""
    service = Service(_opened(store), build_id, run_id, refresh_seconds)
    service.model()
    return start_server(service, host, port).start()


def _opened(store: Store | str) -> Store:
    return open_store(store) if isinstance(store, str) else store


def train(
    build_id: str,
    *,
    store: str = DEFAULT_STORE,
    stack_name: str | None = None,
    state_machine_arn: str | None = None,
    session: Any = None,
    progress: bool = False,
    memory_mb: int | None = None,
    **request: Any,
) -> dict[str, Any]:
    """Train a build: the training request's fields as keywords (``n_trees=100``,
    ``dataset="x.csv"``, ...: every field of ``groves.steps.request.TRAIN``, listed in
    docs/request.md). The execution's output: ``run_id``, ``model`` (where the model and
    manifest are, and the cost), ``metrics`` if scored. ``memory_mb`` (here only, 128 to
    10,240) holds every function to that memory size instead of the template's, as Lambda
    would (``groves run --memory-mb``)."""
    return run(
        "forest",
        {"build_id": build_id, **request},
        store,
        stack_name,
        state_machine_arn,
        session,
        progress,
        memory_mb,
    )


def predict(
    build_id: str,
    data: str,
    output: str,
    *,
    run_id: str | None = None,
    rows_per_chunk: int = BATCH_DEFAULTS["rows_per_chunk"],
    groves_per_shard: int | None = None,
    max_concurrency: int = BATCH_DEFAULTS["max_concurrency"],
    keep: Sequence[str] = (),
    store: str = DEFAULT_STORE,
    stack_name: str | None = None,
    state_machine_arn: str | None = None,
    session: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Predict the rows of ``data`` with a build's latest committed run (or ``run_id``) into
    ``output`` (``.csv`` or ``.parquet``), carrying the input's ``keep`` columns (an id, say)
    beside the predictions; the batch request's fields as keywords (docs/request.md); what
    was written: rows, run, model sha256."""
    request: dict[str, Any] = {
        "build_id": build_id,
        "data": data,
        "output": output,
        "rows_per_chunk": rows_per_chunk,
        "max_concurrency": max_concurrency,
    }
    if groves_per_shard is not None:
        request["groves_per_shard"] = groves_per_shard
    if run_id is not None:
        request["run_id"] = run_id
    if keep:
        request["keep"] = list(keep)
    done = run("batch_predict", request, store, stack_name, state_machine_arn, session, progress)
    return done["output"]


def run(
    machine: str,
    request: dict[str, Any],
    store: str,
    stack_name: str | None,
    arn: str | None,
    session: Any,
    progress: bool,
    memory_mb: int | None = None,
) -> dict[str, Any]:
    """Run a state machine here, or on AWS when it is named; its output, or the error. Here,
    every function is held to its memory size in the template, or to ``memory_mb``."""
    if memory_mb is not None and (stack_name is not None or arn is not None):
        raise RequestError(
            "memory_mb",
            "holds functions run on this machine; deployed, each function's memory is the "
            "stack's (parameters PlanMemorySize, TrainMemorySize, MergeMemorySize)",
        )
    if stack_name is None and arn is None:
        from groves.engine.limits import check_memory_mb
        from groves.engine.local import run_local

        if memory_mb is not None:
            check_memory_mb(memory_mb)

        shown = Progress(sys.stderr, unit=MACHINES[machine][2]) if progress else None
        execution = run_local(
            request,
            store,
            on_progress=shown,
            on_event=shown.event if shown else None,
            machine=machine,
            memory_mb=memory_mb,
        )
        if execution.status != "SUCCEEDED":
            raise failed(*local_root_cause(execution))
        return execution.output
    return run_deployed(machine, request, stack_name or "groves", arn, session, progress)


def run_deployed(
    machine: str,
    request: dict[str, Any],
    stack_name: str,
    arn: str | None,
    session: Any = None,
    progress: bool = False,
    poll_seconds: float = 3.0,
) -> dict[str, Any]:
    """Start an execution of the deployed state machine and wait for its output."""
    import boto3

    check(machine, request)  # before an execution is started
    with aws(stack_name):
        session = session or boto3.session.Session()
        sfn = session.client("stepfunctions")
        output_name, map_state, unit = MACHINES[machine]
        arn = state_machine_arn(session, stack_name, arn, output_name)
        name = execution_name(request["build_id"], "predict" if machine == "batch_predict" else "")
        started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(request))
        described = follow(
            sfn, started["executionArn"], (map_state, None, unit), poll_seconds, show=progress
        )
        if described["status"] != "SUCCEEDED":
            raise failed(*deployed_root_cause(sfn, described))
    return json.loads(described["output"])


def deployed_store(stack_name: str = "groves", session: Any = None) -> str:
    """The store of a deployed stack (its ``StoreUri`` output)."""
    import boto3

    with aws(stack_name):
        return stack_output(session or boto3.session.Session(), stack_name, "StoreUri")


@contextmanager
def aws(stack_name: str) -> Iterator[None]:
    """botocore's errors as ``AwsError``: the one line ``groves start`` prints (no region, no
    credentials, no such stack, a refused call), not botocore's traceback."""
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith("botocore"):
            raise
        problem = aws_problem(exc, stack_name, ("stack_name", "state_machine_arn"))
        raise AwsError(problem) from None


def check(machine: str, request: dict[str, Any]) -> None:
    """Validate a request as the state machine's first step will, naming the field."""
    if machine == "forest":
        from groves.steps.checks import validate_request

        if "resume" not in request:
            validate_request(request)
    else:
        from groves.steps.batch import validate_batch_request

        validate_batch_request(request)


def failed(error: str | None, cause: str | None) -> GrovesError:
    """The exception for an execution that ended with ``error`` and ``cause``."""
    message = failure_message(error, cause)
    if error == "RequestError":
        field, _, detail = message.split(": ", 1)[1].partition(": ")
        return RequestError(field, detail)
    return BuildError(message)
