"""Stop and resume: a worker that dies fails its iteration like a crashed Lambda, SIGINT and
SIGTERM stop a build within 2 s leaving no process, and --resume (or a redrive) retrains only
the groves without a verified file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import grove_items, small_request, train_batch
from sklearn.datasets import make_classification

from groves import cli
from groves.engine import executions, local
from groves.engine.asl.history import entered, failure, status
from groves.engine.local import FUNCTIONS, run_local
from groves.errors import RequestError
from groves.steps import handlers
from groves.store.artifacts import VOTES_SUFFIX, grove_key
from groves.store.codec import get_json
from groves.store.local import LocalStore

SMALL_FLAGS = ["-t", "7", "-g", "3", "--dataset", "iris", "--seed", "3"]


def killed_on_grove_1(event: dict[str, Any]) -> dict[str, Any]:
    """train_grove, except that grove 1's worker process is killed (as an OOM kill would)."""
    if any(grove["grove_id"] == 1 for grove in event["Items"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return handlers.train_grove(event)


def grove_files(root: Path) -> dict[str, int]:
    """Each grove file of the build's runs, with its modification time in ns."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("*/runs/*/groves/*")}


def test_a_killed_worker_fails_its_iteration_like_a_crashed_lambda(tmp_path: Path) -> None:
    failing = {**FUNCTIONS, "TrainGroveFunctionArn": killed_on_grove_1}
    run = run_local(small_request(), str(tmp_path), workers=2, functions=failing)
    assert (run.status, run.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    child = next(c for c in run.children if status(c.events) == "FAILED")
    error, cause = failure(child.events)
    assert error == "Lambda.Unknown" and child.index == 1
    assert "Runtime exited with error: signal: killed" in (cause or "")
    assert entered(child.events)[-2:] == ["TrainGrove", "GroveFailed"]
    assert entered(run.history)[-1] == "BuildFailed"
    assert not list(tmp_path.glob("t/runs/*/manifest.json")), "nothing was committed"


def test_cli_reports_a_killed_worker_and_resume_trains_only_the_missing_grove(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(local.FUNCTIONS, "TrainGroveFunctionArn", killed_on_grove_1)
    assert cli.main(["run", "t", *SMALL_FLAGS, "--store", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        "build failed: Lambda.Unknown: Runtime.ExitError: Runtime exited with error: signal: killed"
        in err
    )
    assert "Traceback" not in err
    done = grove_files(tmp_path)
    names = {Path(k).name for k in done}
    assert {"grove_00000.json", "grove_00000.trees"} <= names, "grove 0 ran beside it"
    assert not any("grove_00001" in name for name in names)
    monkeypatch.setitem(local.FUNCTIONS, "TrainGroveFunctionArn", handlers.train_grove)
    assert cli.main(["run", "t", "--resume", "--store", str(tmp_path)]) == 0
    after = grove_files(tmp_path)
    assert {k: after[k] for k in done} == done, "verified groves were not trained again"
    assert len(after) == 9, "model, votes and metadata of each of the 3 groves"
    [run_folder] = (tmp_path / "t" / "runs").iterdir()
    assert get_json(LocalStore(tmp_path), "t/latest.json")["run_id"] == run_folder.name


def test_resume_retrains_a_grove_whose_file_fails_its_check(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    plan = handlers.plan({"store": store.uri, "request": small_request()})
    run = plan["run_id"]
    train_batch(plan)
    store.put_bytes(grove_key("t", run, 2, "trees"), b"truncated")
    done = grove_files(tmp_path)
    resumed = run_local({"build_id": "t", "resume": True}, str(tmp_path), workers=1)
    assert resumed.status == "SUCCEEDED", resumed.cause
    after = grove_files(tmp_path)
    changed = sorted(k for k in after if after[k] != done[k])
    suffixes = ("json", "trees", VOTES_SUFFIX)
    assert changed == [f"t/runs/{run}/groves/grove_00002.{s}" for s in suffixes]


def test_train_grove_is_idempotent_for_a_redriven_map(tmp_path: Path) -> None:
    """Step Functions redrive reruns failed iterations; a grove already verified in its run
    is returned as it is, not trained again."""
    store = LocalStore(tmp_path)
    plan = handlers.plan({"store": store.uri, "request": small_request()})
    (first,) = train_batch(plan, grove_items(plan)[:1])
    before = grove_files(tmp_path)
    (again,) = train_batch(plan, grove_items(plan)[:1])
    assert first["reused"] is False and again["reused"] is True
    assert {k: v for k, v in again.items() if k != "reused"} == {
        k: v for k, v in first.items() if k != "reused"
    }
    assert grove_files(tmp_path) == before


def test_resume_requests_are_checked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(RequestError, match="resume: build 't' has no uncommitted run"):
        handlers.plan({"store": store.uri, "request": {"build_id": "t", "resume": True}})
    with pytest.raises(RequestError, match="n_trees: cannot be changed when resuming"):
        handlers.plan(
            {"store": store.uri, "request": {"build_id": "t", "resume": True, "n_trees": 5}}
        )
    with pytest.raises(RequestError, match="resume: 'yes' is not a run id"):
        handlers.plan({"store": store.uri, "request": {"build_id": "t", "resume": "yes"}})
    done = run_local(small_request(), str(tmp_path), workers=1)
    with pytest.raises(RequestError, match="is already committed"):
        handlers.plan(
            {
                "store": store.uri,
                "request": {"build_id": "t", "resume": done.output["run_id"]},
            }
        )
    assert cli.main(["run", "t", "--resume", "-t", "9", "--store", str(tmp_path)]) == 2


def slow_dataset(tmp_path: Path) -> Path:
    """Generated data whose one-tree groves take a few tenths of a second each."""
    X, y = make_classification(20_000, 40, n_informative=20, random_state=0)
    path = tmp_path / "slow.npz"
    np.savez(path, X=X.astype(np.float32), y=y)
    return path


def live_processes(group: int) -> list[int]:
    """Processes of a process group that are still running (zombies wait only to be reaped)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_build_within_2_seconds_and_it_resumes(
    tmp_path: Path, signum: int, capsys
) -> None:
    store = tmp_path / "store"
    command = [sys.executable, "-m", "groves.cli", "run", "slow", "-t", "24", "-g", "1"]
    command += ["--dataset", str(slow_dataset(tmp_path)), "--store", str(store)]
    runner = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not list(store.glob("slow/runs/*/groves/*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.poll() is None, runner.communicate()
    sent = time.monotonic()
    runner.send_signal(signum)
    _, err = runner.communicate(timeout=10)
    stopped = time.monotonic() - sent
    left_at_exit = live_processes(runner.pid)  # when the command has exited: none of its own
    while live_processes(runner.pid) and time.monotonic() - sent < 5:
        time.sleep(0.02)
    all_gone = time.monotonic() - sent
    assert runner.returncode == 128 + signum, err
    assert "Traceback" not in err and f"stopped by {signal.Signals(signum).name}" in err
    assert live_processes(runner.pid) == [], "a process of the build survived"
    assert left_at_exit == [], "a process outlived the command"
    assert stopped < 2 and all_gone < 2, (stopped, all_gone)
    # the stopped execution's history is kept, ending as Step Functions ends an aborted one
    (aborted,) = executions.stored(LocalStore(store), "slow")
    assert aborted["execution"]["status"] == "ABORTED"
    assert aborted["events"][-1]["type"] == "ExecutionAborted"
    print(
        f"{signal.Signals(signum).name}: runner exited in {stopped:.2f}s, all gone {all_gone:.2f}s"
    )
    if signum != signal.SIGTERM:
        return
    done = {k: v for k, v in grove_files(store).items() if k.endswith(".json")}
    assert 1 <= len(done) < 24
    capsys.readouterr()
    assert cli.main(["run", "slow", "--resume", "--store", str(store)]) == 0
    after = grove_files(store)
    assert {k: after[k] for k in done} == done, "verified groves were not trained again"
    assert len(after) == 3 * 24
    histories = executions.stored(LocalStore(store), "slow")  # the run's two executions
    assert [h["execution"]["status"] for h in histories] == ["ABORTED", "SUCCEEDED"]
    print(f"resume retrained {24 - len(done)} of 24 groves")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_a_signal_during_start_up_stops_the_fork_server_too(tmp_path: Path) -> None:
    """Before the workers are up, the fork server is still importing scikit-learn: an
    interrupt must not leave it running for those seconds."""
    command = [sys.executable, "-m", "groves.cli", "run", "early", "--store", str(tmp_path)]
    runner = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    time.sleep(0.3)
    sent = time.monotonic()
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=10)  # returns once no process holds its pipes
    while live_processes(runner.pid) and time.monotonic() - sent < 5:
        time.sleep(0.02)
    assert runner.returncode == 130 and "Traceback" not in err, err
    assert time.monotonic() - sent < 2 and live_processes(runner.pid) == []
