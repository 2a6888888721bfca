"""The serve function as it deploys: its layer built as ``sam build`` builds it (``make
build-ServeLayer`` in ``layer/serve/``) for Lambda's Python 3.12, then ``functions/serve/app.py``
run under a python3.12 that sees only its folder, that layer and the runtime's boto3, answering
Function URL events (payload format 2.0) from a model in S3 (a moto server on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from conftest import FAKE_AWS, ROOT
from test_layer import RUNTIME_PACKAGES, WHEELS, lambda_python  # noqa: F401 (a fixture)

import groves
from groves.engine.local import run_local

# Run the serve function as Lambda would: import app (its init: the model loads), then one
# event per line of stdin, one response per line of stdout; the modules it imported at the end.
INVOKE = """
import json, sys, time
sys.path[:0] = sys.argv[1:4]
started = time.perf_counter()
import app
print(json.dumps({"init_seconds": time.perf_counter() - started}), flush=True)
for line in sys.stdin:
    print(json.dumps(app.handler(json.loads(line), None)), flush=True)
from groves.forest import native
heavy = {"sklearn", "scipy", "pandas", "pyarrow", "joblib"} & set(sys.modules)
print(json.dumps({"modules": sorted(heavy), "compiled": str(native.compiled())}))
"""


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    artifacts = tmp_path_factory.mktemp("serve-layer")
    make = subprocess.run(
        ["make", "--no-print-directory", "build-ServeLayer", f"ARTIFACTS_DIR={artifacts}"],
        cwd=ROOT / "layer" / "serve",
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


def test_the_serve_layer_is_small_and_has_no_scikit_learn_or_pyarrow(layer: dict[str, Any]) -> None:
    files = [p for p in layer["python"].rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    assert size < 60 * 2**20, size  # the GrovesLayer: 245.6 MB
    assert f"ServeLayer: {size} bytes unzipped" in layer["output"]
    top = {p.name for p in layer["python"].iterdir()}
    assert {"groves", "numpy", "lz4"} <= top
    assert (layer["python"] / "groves" / "forest" / "_walk.so").is_file()
    assert not top & {"sklearn", "scipy", "pyarrow", "pandas", "joblib"}
    assert not [p for p in files if p.suffix == ".pyc"]


def event(body: Any = None, method: str = "POST") -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": "/",
        "requestContext": {"http": {"method": method, "path": "/"}},
        "headers": {"content-type": "application/json"},
        "body": body if isinstance(body, str) or body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def test_the_serve_function_answers_from_s3_under_lambdas_python(
    layer: dict[str, Any],
    lambda_python: str,  # noqa: F811 (test_layer's fixture)
    s3_server: str,
    moto_server: str,
    tmp_path: Path,
) -> None:
    # a model with text, missing and boolean values, trained here and stored in S3 as a
    # deployed build leaves it
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    size = np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n))
    flag = rng.random(n) < 0.5
    label = np.where((colour == "red") | (np.nan_to_num(size) > 0.5) ^ flag, "yes", "no")
    lines = ["colour,size,flag,label"] + [
        f"{c},{'' if np.isnan(s) else s},{str(f).lower()},{y}"
        for c, s, f, y in zip(colour, size, flag, label, strict=True)
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    request = {"build_id": "web", "n_trees": 6, "grove_size": 3, "target": "label"}
    run = run_local({**request, "dataset": str(tmp_path / "t.csv")}, str(tmp_path / "store"))
    assert run.status == "SUCCEEDED", run.cause
    s3 = boto3.client("s3")
    root = tmp_path / "store"
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            s3.put_object(
                Bucket=s3_server, Key=path.relative_to(root).as_posix(), Body=path.read_bytes()
            )

    rows = [
        {"size": 0.7, "colour": "red", "flag": True},
        {"flag": False, "colour": None, "size": None},
        {"colour": "mauve", "size": -1.25, "flag": False},
    ]
    env = {**FAKE_AWS, "AWS_ENDPOINT_URL_S3": moto_server, "AWS_EC2_METADATA_DISABLED": "true"}
    env |= {"PATH": os.environ["PATH"], "GROVES_STORE": f"s3://{s3_server}", "GROVES_BUILD": "web"}
    paths = [str(ROOT / "functions" / "serve"), str(layer["python"]), str(layer["runtime"])]
    events = [
        event({"rows": rows}),
        event(method="GET"),
        event({"rows": [{"colour": 1, "size": 0, "flag": True}]}),
    ]
    done = subprocess.run(
        [lambda_python, "-S", "-c", INVOKE, *paths],
        input="".join(json.dumps(e) + "\n" for e in events),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT / "functions" / "serve",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = [json.loads(line) for line in done.stdout.splitlines()]
    answer, described, refused = (json.loads(r["body"]) for r in out[1:4])
    assert [r["statusCode"] for r in out[1:4]] == [200, 200, 400]
    assert out[-1] == {
        "modules": [],
        "compiled": str(layer["python"] / "groves" / "forest" / "_walk.so"),
    }

    import pandas as pd

    model = groves.load_model(str(root), "web")
    frame = pd.DataFrame(rows)[["colour", "size", "flag"]]
    assert answer["predictions"] == model.predict(frame).tolist()
    np.testing.assert_allclose(answer["probabilities"], model.predict_proba(frame), atol=1e-6)
    assert answer["run_id"] == run.output["run_id"]
    assert [c["name"] for c in described["columns"]] == ["colour", "size", "flag"]
    assert refused["field"] == "rows[0].colour"
