"""Outputs that are whole or absent, checked before any work; inputs that cannot hang or
vanish; store files that a team's shared directory can read."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import small_request

import groves
from groves.engine.local import run_local
from groves.errors import RequestError
from groves.steps import handlers
from groves.steps.batch import assemble, plan_batch, predict_chunk
from groves.store.codec import get_json
from groves.store.local import LocalStore


@pytest.fixture
def built(tmp_path: Path) -> str:
    """A committed iris build ``t`` in a store; the store's path."""
    store = str(tmp_path / "store")
    run = run_local(small_request(), store, workers=1)
    assert run.status == "SUCCEEDED", run.cause
    return store


def rows(tmp_path: Path, n: int = 30) -> str:
    from sklearn.datasets import load_iris

    path = tmp_path / "new.npz"
    np.savez(path, X=load_iris().data[:n])
    return str(path)


@pytest.mark.parametrize(
    ("place", "pattern"),
    [
        (lambda d: d / "dir.csv", "is a directory; name a file in it"),
        (lambda d: d / "file.txt" / "p.csv", "is not a directory"),
        (lambda d: Path("/proc/groves/p.csv"), "is not writable"),
    ],
    ids=["a directory", "under a file", "unwritable"],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    built: str, tmp_path: Path, place: Any, pattern: str
) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir.csv").mkdir()
    request = {"build_id": "t", "data": rows(tmp_path), "output": str(place(tmp_path))}
    store = LocalStore(built)
    before = store.list_keys("t/")
    with pytest.raises(RequestError, match=pattern):
        plan_batch(store, request)
    assert store.list_keys("t/") == before  # nothing planned, nothing computed


def test_an_output_in_a_missing_bucket_is_refused(s3, built: str, tmp_path: Path) -> None:
    request = {"build_id": "t", "data": rows(tmp_path), "output": "s3://no-such-bucket/p.csv"}
    with pytest.raises(RequestError, match="bucket 'no-such-bucket' does not exist"):
        plan_batch(LocalStore(built), request)


def test_the_input_is_never_the_output(built: str, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("a\n1\n")
    for output in (str(data), str(tmp_path / "." / "rows.csv")):
        with pytest.raises(RequestError, match="is the input"):
            plan_batch(LocalStore(built), {"build_id": "t", "data": str(data), "output": output})


def test_empty_and_special_inputs_are_one_line_errors(built: str, tmp_path: Path) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text(",".join(f"f{i}" for i in range(4)) + "\n")
    fifo = tmp_path / "x.csv"
    os.mkfifo(fifo)
    for data, pattern in ((header_only, "has no rows to predict"), (fifo, "not a regular file")):
        request = {"build_id": "t", "data": str(data), "output": str(tmp_path / "p.csv")}
        with pytest.raises(RequestError, match=pattern):
            plan_batch(LocalStore(built), request)
    with pytest.raises(RequestError, match="not a regular file"):
        handlers.plan({"store": built, "request": small_request(dataset=str(fifo), build_id="u")})


def test_racing_predictions_to_one_output_leave_a_matching_pair(built: str, tmp_path: Path) -> None:
    """Two batches assembled into one output at once: the output and its sidecar are always
    those of one batch."""
    store = LocalStore(built)
    output = str(tmp_path / "out" / "p.csv")
    batches = []
    for n in (20, 40):
        record = plan_batch(store, {"build_id": "t", "data": rows(tmp_path, n), "output": output})
        for chunk in get_json(store, f"t/predictions/{record['batch_id']}/chunks.json"):
            predict_chunk(store, "t", record["batch_id"], chunk)
        batches.append(record["batch_id"])
    for _ in range(25):
        threads = [threading.Thread(target=assemble, args=(store, "t", b)) for b in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sidecar = json.loads(Path(output + ".json").read_text())
        lines = Path(output).read_text().count("\n") - 1
        assert lines == sidecar["n_rows"], "the output and the sidecar of one batch"


UMASK_002 = """
import os, stat, sys
os.umask(0o002)  # a team's shared directory, before groves reads the umask
from groves.store.local import LocalStore
store = LocalStore(sys.argv[1])
store.put_bytes("b/x.json", b"{}")
assert store.create_bytes("b/y.json", b"{}")
print(" ".join(oct(stat.S_IMODE(os.stat(f"{sys.argv[1]}/b/{n}.json").st_mode)) for n in "xy"))
"""


def test_store_files_honour_the_umask(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", UMASK_002, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0o664", "0o664"]


def test_a_model_loads_from_a_store_written_by_another_umask(built: str) -> None:
    assert groves.load_model(built, "t") is not None
    manifest = next(Path(built).rglob("manifest.json"))
    assert stat.S_IMODE(manifest.stat().st_mode) & 0o044, "readable by group and others"


def test_a_store_that_cannot_exist_is_one_line_naming_store(s3, capsys) -> None:
    from groves import cli

    for store, pattern in (
        ("/proc/groves", "store: '/proc/groves' cannot be written"),
        ("s3://no-such-bucket/x", "store: bucket 'no-such-bucket' does not exist"),
    ):
        assert cli.main(["run", "x", "-t", "2", "-g", "1", "--store", store]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"invalid request: {pattern}") and err.count("\n") == 1


def test_a_history_that_cannot_be_stored_does_not_hide_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import groves.engine.local

    def store_lost(*args: Any) -> None:
        raise ConnectionError("S3 went away")

    monkeypatch.setattr(groves.engine.local, "save_history", store_lost)
    run = run_local(small_request(), str(tmp_path), workers=1)
    assert run.status == "SUCCEEDED", run.cause
    assert "history could not be stored" in capsys.readouterr().err


def test_one_damaged_file_spoils_no_reader(built: str, capsys, monkeypatch) -> None:
    """A truncated record: ``groves ls`` lists every other run and marks the damaged one;
    ``report``, ``history`` and ``load_model`` say in one line which file it is."""
    from groves import cli

    second = run_local(small_request("u"), built, workers=1)
    assert second.status == "SUCCEEDED", second.cause
    manifest = next((Path(built) / "t").rglob("manifest.json"))
    manifest.write_bytes(manifest.read_bytes()[:30])
    assert cli.main(["ls", "--store", built]) == 0
    out = capsys.readouterr().out
    assert "u " in out and "latest" in out  # build u is listed as ever
    damaged = [line for line in out.splitlines() if " damaged " in line]
    assert len(damaged) == 1 and "manifest.json is not valid JSON" in damaged[0]
    history = next((Path(built) / "t").rglob("history/*.json"))
    history.write_bytes(history.read_bytes()[:30])
    for argv in (["report", "t"], ["history", "t"]):
        code = cli.main([*argv, "--store", built])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "is not valid JSON" in err, (argv, err)
    with pytest.raises(groves.errors.BuildError, match=r"manifest\.json is not valid JSON"):
        groves.load_model(built, "t")

    def read_only(*args: Any) -> None:
        raise PermissionError(13, "Permission denied", "report.html")

    monkeypatch.setattr(LocalStore, "put_bytes", read_only)
    assert cli.main(["report", "u", "--store", built]) == 1
    assert capsys.readouterr().err.strip() == "groves: cannot write report.html: Permission denied"


def test_on_s3_a_writer_that_lost_the_race_leaves_the_standing_pair(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch B writes the whole pair between batch A's output and A's sidecar: A notices the
    output changed under it and writes the sidecar of the output that stands, B's. (moto
    runs the interleaving in order; S3 offers no two-object write.)"""
    import boto3

    import groves.steps.batch

    output = "s3://groves-test/outputs/p.csv"
    files = {}
    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_text(f"prediction\n{name}\n")
        (tmp_path / f"{name}.json").write_text(json.dumps({"batch_id": name}))
        files[name] = (tmp_path / f"{name}.csv", tmp_path / f"{name}.json")
    real = boto3.client("s3")

    class Interleaved:
        """A's client: B's whole write lands just before A's first sidecar write."""

        def __init__(self) -> None:
            self.raced = False

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put_object(self, **kwargs: Any) -> Any:
            if not self.raced:
                self.raced = True
                with monkeypatch.context() as inner:
                    inner.setattr(groves.steps.batch, "s3_client", lambda: real)
                    groves.steps.batch.write_pair(output, *files["b"])
            return real.put_object(**kwargs)

    monkeypatch.setattr(groves.steps.batch, "s3_client", Interleaved)
    groves.steps.batch.write_pair(output, *files["a"])
    body = real.get_object(Bucket="groves-test", Key="outputs/p.csv")["Body"].read().decode()
    side = real.get_object(Bucket="groves-test", Key="outputs/p.csv.json")["Body"].read()
    assert body.strip().endswith("b") and json.loads(side) == {"batch_id": "b"}
