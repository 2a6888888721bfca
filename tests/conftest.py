"""Shared fixtures: local and moto-backed stores, and small requests that train in seconds."""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from groves.data.datasets import load_dataset
from groves.steps import handlers
from groves.store.artifacts import items_key
from groves.store.codec import get_json
from groves.store.local import LocalStore
from groves.store.uris import open_store

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "groves-test"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def grove_items(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The grove items a plan step wrote where the Map's ItemReader reads them."""
    return get_json(open_store(plan["store"]), items_key(plan["build_id"], plan["run_id"]))


def train_batch(
    plan: dict[str, Any], groves: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """train_grove on one ItemBatcher batch (by default every grove), as the Map passes it."""
    batch_input = {key: plan[key] for key in ("store", "build_id", "run_id")}
    event = {"Items": grove_items(plan) if groves is None else groves, "BatchInput": batch_input}
    return handlers.train_grove(event)["groves"]


def named(model: Any, X: Any) -> Any:
    """``X`` as the DataFrame a model trained on named columns (a CSV's, a built-in dataset's)
    takes: given an array, scikit-learn warns that X does not have valid feature names."""
    import pandas as pd

    names = getattr(model, "feature_names_in_", None)
    return X if names is None else pd.DataFrame(X, columns=names)


def small_request(build_id: str = "t", **overrides: Any) -> dict[str, Any]:
    """A request on iris that trains in well under a second."""
    return {
        "build_id": build_id,
        "n_trees": 7,
        "grove_size": 3,
        "dataset": "iris",
        "seed": 3,
        **overrides,
    }


# ---- template.yaml: the deployed stack's resources and their IAM policies --------------------


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml as CloudFormation reads it (cfn-lint's decoder: !Sub, !If and the rest)."""
    from cfnlint.decode import decode

    decoded, problems = decode(str(ROOT / "template.yaml"))
    assert not problems
    return decoded


def statements(policies: list[Any]) -> list[dict[str, Any]]:
    """Every inline statement, with a conditional policy's when-true branch."""
    found = []
    for policy in policies:
        if "Fn::If" in policy:
            policy = policy["Fn::If"][1]
        found.extend(policy.get("Statement", []))
    return found


def object_patterns(resources: Any) -> list[str]:
    """The object-key part of each ``arn:...:s3:::${Bucket}/KEY`` resource."""
    resources = resources if isinstance(resources, list) else [resources]
    subs = [r["Fn::Sub"] for r in resources]
    return [(sub[0] if isinstance(sub, list) else sub).split(":::", 1)[1] for sub in subs]


def allowed(pattern: str, key: str) -> bool:
    """IAM resource matching: ``*`` matches any run of characters, ``/`` included."""
    return fnmatch.fnmatchcase(key, pattern.replace("${Bucket}/", "", 1))


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytests_base(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """What the code under test puts in the temporary directory (the S3 download cache,
    worker processes' files) goes under pytest's own base folder, never loose in /tmp."""
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    yield
    if saved is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved
    tempfile.tempdir = None


@pytest.fixture(autouse=True)
def _fresh_dataset_cache() -> Iterator[None]:
    load_dataset.cache_clear()
    yield
    load_dataset.cache_clear()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    """moto's in-process S3 mock with an empty bucket."""
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on loopback, for worker processes that moto's in-process mock cannot reach."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_server(moto_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server, as a bucket name; child processes get the endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    name = f"{BUCKET}-{os.urandom(4).hex()}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def finished_execution(sfn: Any, definition: dict[str, Any], name: str) -> str:
    """Create a state machine on moto's engine, run it to its end (30 s at most), and return
    the execution's ARN."""
    import json
    import time

    machine = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/r"
    )
    arn = sfn.start_execution(
        stateMachineArn=machine["stateMachineArn"], name=f"{name}-1", input="{}"
    )["executionArn"]
    deadline = time.monotonic() + 30
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return arn
