"""What each deployed function may read, checked against what it really reads: the three state
machines run on moto's S3 through the real handlers, every S3 read is recorded with the
function that made it, and each function's ``s3:GetObject`` resources in ``template.yaml``
must allow every read it made and nothing it never reads (least privilege, tested like the
write set in test_template.py)."""

from __future__ import annotations

import contextvars
import io
import tempfile
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.client
import numpy as np
import pytest
from conftest import BUCKET, allowed, object_patterns, small_request, statements
from sklearn.datasets import load_iris

from groves.data.datasets import load_dataset
from groves.engine.asl import execute
from groves.engine.local import FUNCTIONS, local_machine
from groves.forest.loading import WARM
from groves.steps.checks import validate_request
from groves.steps.planned import planned_grove
from groves.steps.serve import Service
from groves.store.uris import open_store

STORE = f"s3://{BUCKET}/builds"
READS = ("GetObject", "HeadObject")  # both need s3:GetObject
CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


def function_name(arn_name: str) -> str:
    """``TrainGroveFunctionArn`` -> ``TrainGroveFunction``: the template's resource."""
    return arn_name.removesuffix("Arn")


@pytest.fixture
def recorded(s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, set[str]]:
    """Every object key each function reads (in its own threads too), by function."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a download cache of its own
    reads: dict[str, set[str]] = defaultdict(set)
    call = botocore.client.BaseClient._make_api_call

    def recording(self: Any, operation: str, params: dict[str, Any]) -> Any:
        caller = CALLER.get()
        if caller is not None and operation in READS and params.get("Bucket") == BUCKET:
            reads[caller].add(params["Key"])
        return call(self, operation, params)

    submit = ThreadPoolExecutor.submit

    def in_context(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    monkeypatch.setattr(ThreadPoolExecutor, "submit", in_context)
    return reads


def attributed() -> dict[str, Callable[..., Any]]:
    """The local functions, each running with its template name as the caller and, as on
    Lambda, nothing cached by another function: a /tmp of its own, no loaded dataset and no
    decoded groves."""
    root = Path(tempfile.gettempdir())

    def wrap(name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def run(event: Any, context: Any = None) -> Any:
            token = CALLER.set(function_name(name))
            tempfile.tempdir = str(root / name)
            Path(tempfile.tempdir).mkdir(exist_ok=True)
            load_dataset.cache_clear()
            WARM.clear()
            try:
                return handler(event, context)
            finally:
                CALLER.reset(token)

        return run

    return {name: wrap(name, handler) for name, handler in FUNCTIONS.items()}


def run_machine(machine: str, request: dict[str, Any]) -> dict[str, Any]:
    definition, interpreter = local_machine(STORE, attributed(), machine)
    run = execute(definition, request, interpreter)
    assert run.status == "SUCCEEDED", run.cause
    return run.output


def replay(name: str, event: dict[str, Any]) -> None:
    """A step invoked again on its event, as a redrive or a resume does (it verifies what it
    wrote the first time)."""
    attributed()[f"{name}Arn"](event)


@pytest.fixture
def every_step_read(recorded: dict[str, set[str]], s3: Any) -> dict[str, set[str]]:
    """Training with scoring (on arrays, and on a table of two files), a batch prediction
    keeping a column, and a search; each Map's function and merge replayed once."""
    iris = load_iris()
    buffer = io.BytesIO()
    np.savez(buffer, X=iris.data, y=iris.target)
    s3.put_object(Bucket=BUCKET, Key="data/iris.npz", Body=buffer.getvalue())
    request = small_request("b", predict=True, dataset=f"s3://{BUCKET}/data/iris.npz")
    out = run_machine("forest", request)
    ids = {"store": STORE, "build_id": "b", "run_id": out["run_id"]}
    first = planned_grove(validate_request(request), 0)
    replay("TrainGroveFunction", {"Items": [first], "BatchInput": ids})
    replay("MergeFunction", ids)
    replay("PredictFunction", {"store": STORE, "build_id": "b"})  # the latest committed run

    rows = np.random.default_rng(0).uniform(0, 8, (30, 4)).astype(np.float32)
    header = "id," + ",".join(f"x{j}" for j in range(4)) + "\n"
    body = "".join(f"{i}," + ",".join(map(str, r)) + "\n" for i, r in enumerate(rows))
    s3.put_object(Bucket=BUCKET, Key="data/new.csv", Body=(header + body).encode())
    batch = {
        "build_id": "b",
        "data": f"s3://{BUCKET}/data/new.csv",
        "output": f"s3://{BUCKET}/outputs/p.parquet",
        "rows_per_chunk": 10,
        "keep": ["id"],
    }
    done = run_machine("batch_predict", batch)
    chunk = {"chunk_id": 0, "shard": 0}
    replay("PredictChunkFunction", {**ids, "batch_id": done["batch_id"], "chunk": chunk})

    # a table of two CSV files: planned in parts (plan_part, twice a file)
    frame = load_iris(as_frame=True).frame
    for k in range(2):
        part = frame.iloc[k::2].to_csv(index=False).encode()
        s3.put_object(Bucket=BUCKET, Key=f"data/parts/p{k}.csv", Body=part)
    run_machine("forest", {**request, "build_id": "p", "dataset": f"s3://{BUCKET}/data/parts/"})

    searched = {k: v for k, v in request.items() if k != "predict"}
    run_machine("search", {**searched, "build_id": "s", "search": {"grid": {"max_depth": [2, 3]}}})

    # the serve function, deployed for build b: it loads the latest run, answers, and reads
    # latest.json again for a newer run
    token = CALLER.set("ServeFunction")
    try:
        service = Service(open_store(STORE), SERVED, refresh_seconds=0)
        row = dict(zip(service.model().encoder.names, rows[0].tolist(), strict=True))
        service.predict({"rows": [row]})
    finally:
        CALLER.reset(token)
    return recorded


SERVED = "b"  # the serve function's build (its template parameter ServeBuild)


def read_patterns(function: dict[str, Any]) -> list[str]:
    """Its readable keys; the serve function's with its build (under this test's store
    prefix: deployed, the store is the bucket's root) and any run filled in."""
    build = f"{STORE.split(BUCKET + '/', 1)[1]}/{SERVED}"
    return [
        pattern.replace("${Build}", build).replace("${Runs}", "*")
        for statement in statements(function["Properties"]["Policies"])
        if statement["Action"] == "s3:GetObject"
        for pattern in object_patterns(statement["Resource"])
    ]


def test_each_function_reads_only_what_its_step_reads(
    template: dict[str, Any], every_step_read: dict[str, set[str]]
) -> None:
    functions = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(every_step_read) == set(functions), "every function ran and read"
    for name, function in functions.items():
        patterns = read_patterns(function)
        keys = every_step_read[name]
        denied = sorted(k for k in keys if not any(allowed(p, k) for p in patterns))
        assert not denied, (name, denied)
        unused = [p for p in patterns if not any(allowed(p, k) for k in keys)]
        assert not unused, (name, unused)


def test_only_the_table_readers_read_the_whole_bucket(template: dict[str, Any]) -> None:
    """plan, plan_part, plan_batch and plan_search read datasets, which may be anywhere in the
    bucket (an estimator's rows are under inputs/); every other function reads its steps'
    files."""
    whole = {
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        and "${Bucket}/*" in read_patterns(resource)
    }
    assert whole == {"PlanFunction", "PlanPartFunction", "PlanBatchFunction", "PlanSearchFunction"}
