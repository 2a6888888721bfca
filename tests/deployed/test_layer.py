"""The layer that deploys, built as ``sam build`` builds it (``make build-GrovesLayer`` in
``layer/``) for Lambda's Python 3.12, then the training chain run from ``functions/*/app.py``
under a python3.12 interpreter that sees only what Lambda gives a function: its folder, the
layer's ``python/`` and the runtime's boto3, each step in a process of its own, against S3 (a
moto server on loopback)."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FAKE_AWS, ROOT

import groves

LAYER_LIMIT = 250 * 1024 * 1024  # Lambda's limit on a function's unzipped code and layers
# What the python3.12 runtime provides besides the layers (Lambda ships boto3 with it).
RUNTIME_PACKAGES = ("boto3",)
WHEELS = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.12")
# Run one handler as Lambda would: its module ``app`` from the function's folder.
INVOKE = """
import json, sys, types
sys.path[:0] = sys.argv[1:4]
import app
context = types.SimpleNamespace(
    memory_limit_in_mb=1024, aws_request_id="req-" + sys.argv[4],
    log_stream_name="2026/12/01/[$LATEST]" + sys.argv[4], function_name=sys.argv[4],
)
print(json.dumps(app.handler(json.load(sys.stdin), context)))
"""


def messy_table(n: int, seed: int = 0) -> pa.Table:
    """A table as users have them: a text column with gaps (as a Parquet dictionary), a
    boolean, nulls in numbers, and a text label that depends on them."""
    rng = np.random.default_rng(seed)
    colours = np.array(["red", "green", "blue", "teal"])
    colour = colours[rng.integers(0, 4, n)]
    size = rng.normal(size=n)
    flag = rng.random(n) < 0.5
    weight = rng.normal(50, 10, n)
    label = np.where((colour == "red") | (size > 0.8) ^ flag, "yes", "no")
    missing = rng.random((3, n)) < 0.1
    return pa.table(
        {
            "colour": pa.array(colour, mask=missing[0]).dictionary_encode(),
            "size": pa.array(size, mask=missing[1]),
            "flag": pa.array(flag),
            "weight_kg": pa.array(weight, mask=missing[2]),
            "label": label,
        }
    )


def python312() -> str | None:
    """A python3.12 that runs: one of pyenv's versions, or one on PATH (a pyenv shim on PATH
    may name a version that is not active, so each candidate is tried)."""
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"), reverse=True)
    candidates.append(shutil.which("python3.12") or "")
    for candidate in filter(None, candidates):
        check = [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"]
        if subprocess.run(check, capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.fixture(scope="module")
def lambda_python() -> str:
    found = python312()
    if found is None:
        pytest.skip("no python3.12 on PATH or in pyenv's versions: Lambda's Python is needed")
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The layer as ``sam build`` makes it, and the runtime's boto3, with the build's output."""
    artifacts = tmp_path_factory.mktemp("layer")
    make = subprocess.run(
        ["make", "--no-print-directory", "build-GrovesLayer", f"ARTIFACTS_DIR={artifacts}"],
        cwd=ROOT / "layer",
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert make.returncode == 0, make.stderr[-3000:]
    runtime = tmp_path_factory.mktemp("runtime")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target"]
    subprocess.run(
        [*pip, str(runtime), *WHEELS, "--only-binary=:all:", *RUNTIME_PACKAGES],
        check=True,
        timeout=600,
    )
    return {"python": artifacts / "python", "runtime": runtime, "output": make.stdout}


def test_layer_is_under_lambdas_limit_with_no_bytecode_of_another_python(
    built: dict[str, Any],
) -> None:
    files = [p for p in built["python"].rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    assert size < LAYER_LIMIT
    assert f"{size} bytes unzipped" in built["output"]  # the build prints what it built
    assert not [p for p in files if p.suffix == ".pyc"]
    assert (built["python"] / "groves" / "steps" / "handlers.py").is_file()
    assert not (built["python"] / "groves" / "__pycache__").exists()


def test_layer_runs_plan_train_merge_predict_under_lambdas_python(
    built: dict[str, Any], lambda_python: str, s3_server: str, moto_server: str, tmp_path: Path
) -> None:
    env = {**FAKE_AWS, "AWS_ENDPOINT_URL_S3": moto_server, "AWS_EC2_METADATA_DISABLED": "true"}
    env["PATH"] = os.environ["PATH"]
    (tmp_path / "lambda-tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "lambda-tmp")  # the functions' /tmp: their S3 download cache
    store = f"s3://{s3_server}/layer"

    def invoke(step: str, event: dict[str, Any]) -> Any:
        paths = [str(ROOT / "functions" / step), str(built["python"]), str(built["runtime"])]
        done = subprocess.run(
            [lambda_python, "-S", "-c", INVOKE, *paths, step],
            input=json.dumps(event),
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT / "functions" / step,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])

    s3 = boto3.client("s3")
    table = messy_table(240)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=s3_server, Key="data/messy.parquet", Body=sink.getvalue())
    request = {
        "build_id": "layer",
        "n_trees": 4,
        "grove_size": 2,
        "dataset": f"s3://{s3_server}/data/messy.parquet",
        "target": "label",
        "seed": 5,
    }
    plan = invoke("plan", {"store": store, "request": request})
    batch_input = {key: plan[key] for key in ("store", "build_id", "run_id")}
    items = json.loads(s3.get_object(**plan["items"])["Body"].read())
    for item in items:  # one invocation per grove, as the Map's ItemBatcher sends them
        trained = invoke("train_grove", {"Items": [item], "BatchInput": batch_input})
        assert trained["groves"][0]["grove_id"] == item["grove_id"]
    merged = invoke("merge", batch_input)
    scored = invoke("predict", batch_input)

    assert merged["n_trees"] == 4 and scored["n_trees"] == 4
    assert 0.7 < scored["score"] <= 1.0

    # batch prediction of the same table (columns in another order, the label dropped, an id
    # kept) into Parquet, from the layer too
    ids = pa.array([f"row-{i}" for i in range(table.num_rows)])
    new = table.append_column("id", ids).select(["colour", "id", "size", "flag", "weight_kg"])
    sink = io.BytesIO()
    pq.write_table(new, sink)
    s3.put_object(Bucket=s3_server, Key="data/new.parquet", Body=sink.getvalue())
    output = f"s3://{s3_server}/outputs/p.parquet"
    batch = {
        "build_id": "layer",
        "data": f"s3://{s3_server}/data/new.parquet",
        "output": output,
        "rows_per_chunk": 100,
        "keep": ["id"],
    }
    planned = invoke("plan_batch", {"store": store, "request": batch})
    chunk_event = {key: planned[key] for key in ("store", "build_id", "batch_id")}
    for chunk in json.loads(s3.get_object(**planned["items"])["Body"].read()):
        invoke("predict_chunk", {**chunk_event, "chunk": chunk})
    invoke("assemble_predictions", chunk_event)
    body = s3.get_object(Bucket=s3_server, Key="outputs/p.parquet")["Body"].read()
    predicted = pq.read_table(io.BytesIO(body))

    # the model that Lambda's Python wrote loads here as the Pipeline of its encoding and forest,
    # and predicts what the deployed batch predicted, row for row
    model = groves.load_model(store, "layer")
    assert len(model[-1].estimators_) == 4
    frame = new.to_pandas()
    assert predicted.column("id").to_pylist() == frame["id"].tolist()
    assert predicted.column("prediction").to_pylist() == model.predict(frame).tolist()
    np.testing.assert_array_equal(
        np.column_stack([predicted.column(f"proba_{c}") for c in model.classes_]),
        model.predict_proba(frame),
    )
