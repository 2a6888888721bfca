"""The groves command: run locally, and start executions of the deployed state machine."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import joblib
import numpy as np
import pytest
from conftest import ROOT, named
from moto import mock_aws
from sklearn.datasets import load_wine

import groves
from groves import cli
from groves.engine import console
from groves.engine.local import FUNCTIONS, STORE_SUBSTITUTION, load_definition


def test_run_prints_a_summary(tmp_path: Path, capsys) -> None:
    code = cli.main(
        [
            "run",
            "demo",
            "-t",
            "5",
            "-g",
            "2",
            "-p",
            "--dataset",
            "wine",
            "--param",
            "max_depth=4",
            "--store",
            str(tmp_path),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "groves    3" in out and "trees     5" in out
    run_id = json.loads((tmp_path / "demo" / "latest.json").read_text())["run_id"]
    assert f"run       {tmp_path}/demo/runs/{run_id}/" in out
    assert "model     groves.load_model(store, 'demo'), or one file: groves export demo" in out
    assert f"manifest  {tmp_path}/demo/runs/{run_id}/manifest.json" in out
    assert re.search(r"score     accuracy (0\.9|1\.0)\d+ on 45 held-out rows", out)
    assert "TrainGroves" in err and "3/3 groves" in err
    manifest = json.loads((tmp_path / "demo" / "runs" / run_id / "manifest.json").read_text())
    assert manifest["spec"]["params"] == {"max_depth": 4}
    # the one file a scikit-learn user keeps: groves export, read by joblib.load
    exported = tmp_path / "out" / "model.joblib"
    argv = ["export", "demo", "--out", str(exported), "--store", str(tmp_path)]
    assert cli.main(argv) == 0
    assert f"model     {exported} (" in capsys.readouterr().out
    model = groves.load_model(str(tmp_path), "demo")
    X = named(model, load_wine().data)
    np.testing.assert_array_equal(
        joblib.load(exported).predict_proba(X),
        model.predict_proba(X),
    )


def test_run_rejects_a_bad_request_before_any_work(tmp_path: Path, capsys) -> None:
    code = cli.main(["run", "demo", "--param", "max_depth=0", "--store", str(tmp_path)])
    assert code == 2
    assert "invalid request: params.max_depth: The 'max_depth' parameter" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.fixture
def deployed(aws_env):
    """A state machine with the real definition in moto's Step Functions."""
    with mock_aws():
        substitutions = {
            name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in FUNCTIONS
        }
        definition = load_definition({**substitutions, STORE_SUBSTITUTION: "s3://bucket"})
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(
            name="groves",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/r",
        )
        yield sfn, arn["stateMachineArn"]


def test_start_sends_the_request_as_execution_input(deployed, capsys) -> None:
    sfn, arn = deployed
    assert (
        cli.main(["start", "prod-1", "-t", "40", "-g", "8", "-p", "--state-machine-arn", arn]) == 0
    )
    [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert execution["name"].startswith("prod-1-")
    assert f"started {execution['executionArn']}" in capsys.readouterr().out
    sent = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent["n_trees"] == 40 and sent["grove_size"] == 8 and sent["predict"] is True
    sample = json.loads((ROOT / "events" / "execution.json").read_text())
    assert set(sample) <= set(sent), "the CLI sends every field the sample input has"


def test_start_finds_the_state_machine_from_the_stack_outputs(deployed) -> None:
    sfn, arn = deployed
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"StateMachineArn": {"Value": arn}},
    }
    boto3.client("cloudformation").create_stack(
        StackName="groves", TemplateBody=json.dumps(template)
    )
    assert cli.main(["start", "from-stack", "--stack-name", "groves"]) == 0
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 1


def test_start_wait_follows_the_execution_to_its_end(deployed, monkeypatch, capsys) -> None:
    sfn, arn = deployed

    def operator_aborts(seconds: float) -> None:
        [running] = sfn.list_executions(stateMachineArn=arn)["executions"]
        sfn.stop_execution(
            executionArn=running["executionArn"], error="Stopped", cause="stopped by an operator"
        )

    monkeypatch.setattr(console.time, "sleep", operator_aborts)
    code = cli.main(["start", "w", "--state-machine-arn", arn, "--wait", "--poll-seconds", "0"])
    assert code == 1
    err = capsys.readouterr().err
    assert "TrainGroves " in err and "0/10 groves" in err and "execution ABORTED" in err


def test_start_resume_sends_a_resume_request(deployed, capsys) -> None:
    sfn, arn = deployed
    assert cli.main(["start", "prod-1", "--resume", "--state-machine-arn", arn]) == 0
    [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
    sent = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent == {"build_id": "prod-1", "resume": True}
    assert cli.main(["start", "prod-1", "--resume", "-g", "5", "--state-machine-arn", arn]) == 2
    assert "--resume continues the run with its stored request; drop --grove" in (
        capsys.readouterr().err
    )


def test_the_cli_process_never_imports_scikit_learn() -> None:
    """The runner leaves scikit-learn to its warm workers: importing it here too cost the
    digits demo 0.6 s of its 3 s on 2 cores, and 80 MiB (bench/bench_process.py). Nor numpy:
    the summary's text needs none, and a slower start-up is a longer window before Ctrl-C is
    handled (test_stop_resume)."""
    probe = (
        "import sys; from groves import cli; cli.parser().parse_args(['predict', 'b', "
        "'--data', 'x.csv', '--out', 'y.csv']); print(sorted({m.split('.')[0] for m in "
        "sys.modules} & {'sklearn', 'scipy', 'joblib', 'numpy'}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_start_predict_finds_the_batch_machine_in_the_stack_and_sends_the_request(
    aws_env, capsys
) -> None:
    with mock_aws():
        substitutions = {
            name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in FUNCTIONS
        }
        definition = load_definition(
            {**substitutions, STORE_SUBSTITUTION: "s3://bucket"}, "batch_predict"
        )
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(
            name="groves-batch-predict",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/r",
        )["stateMachineArn"]
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"BatchPredictStateMachineArn": {"Value": arn}},
        }
        boto3.client("cloudformation").create_stack(
            StackName="groves", TemplateBody=json.dumps(template)
        )
        boto3.client("s3").create_bucket(Bucket="bucket")  # the output's bucket is checked
        out = "s3://bucket/outputs/p.csv"
        argv = ["start-predict", "b", "--data", "s3://bucket/in.csv", "--out", out]
        assert cli.main([*argv, "--rows-per-chunk", "1000"]) == 0
        [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
        assert execution["name"].startswith("b-predict-")
        sent = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
        assert sent == {
            "build_id": "b",
            "data": "s3://bucket/in.csv",
            "output": out,
            "rows_per_chunk": 1000,
            "max_concurrency": 10,
        }
        assert cli.main([*argv[:5], "p.txt"]) == 2, "checked before an execution starts"
        assert "invalid request: output: 'p.txt' must be" in capsys.readouterr().err
        assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 1


@pytest.mark.parametrize(
    ("unset", "words"),
    [
        (("AWS_DEFAULT_REGION", "AWS_REGION"), "groves: no AWS region: set AWS_DEFAULT_REGION"),
        (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
            "groves: no AWS credentials: run aws configure",
        ),
    ],
)
def test_missing_aws_setup_is_one_line_not_a_traceback(
    aws_env, monkeypatch, tmp_path: Path, capsys, unset: tuple[str, ...], words: str
) -> None:
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance for a role
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    assert cli.main(["start", "x", "--state-machine-arn", "arn:aws:states:x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(words) and len(err.strip().splitlines()) == 1


def test_a_missing_stack_or_state_machine_is_one_line(aws_env, capsys) -> None:
    with mock_aws():
        assert cli.main(["start", "x", "--stack-name", "nope"]) == 1
        assert capsys.readouterr().err.startswith(
            "groves: stack 'nope' does not exist in this region: deploy it with sam deploy"
        )
        arn = "arn:aws:states:us-east-1:123456789012:stateMachine:gone"
        assert cli.main(["start", "x", "--state-machine-arn", arn]) == 1
        err = capsys.readouterr().err
        assert err.startswith("groves: ") and "check --state-machine-arn" in err
        assert "Traceback" not in err


def test_help_shows_defaults_and_that_param_values_are_json(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "VALUE is JSON (12, 0.5, null, true)" in text
    assert "seeds the split and every grove (default: 0)" in text
    assert "(default: classifier)" in text and "(default: 0.25)" in text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()], ids=["lines", "terminal"])
def test_progress_shows_each_step_with_its_time_and_the_maps_items(stream: io.StringIO) -> None:
    progress = console.Progress(stream, unit="chunks")
    entered = {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "PlanBatch"}}
    exited = {"type": "TaskStateExited", "stateExitedEventDetails": {"name": "PlanBatch"}}
    failed = {"type": "LambdaFunctionFailed", "lambdaFunctionFailedEventDetails": {}}
    progress.event(entered)
    progress.event(exited)
    progress.event({**entered, "stateEnteredEventDetails": {"name": "Failing"}})
    progress.event(failed)
    progress.event({**exited, "stateExitedEventDetails": {"name": "Failing"}})  # caught
    progress.event({**entered, "stateEnteredEventDetails": {"name": "Retried"}})
    progress.event(failed)
    progress.event({"type": "LambdaFunctionSucceeded"})  # its retry succeeded
    progress.event({**exited, "stateExitedEventDetails": {"name": "Retried"}})
    for done in range(21):  # the Map reports 0 items done as it starts
        progress("PredictChunks", done, 20)
    text = stream.getvalue()
    assert re.search(r"PlanBatch +\d+\.\d\d s  \(\d+\.\d s in all\)", text)
    assert "Failing" not in text, "a step that failed is not shown as done"
    assert re.search(r"Retried +\d+\.\d\d s", text), "a step that succeeded on retry is"
    if isinstance(stream, Terminal):  # a tqdm bar
        assert "PredictChunks: 100%" in text and "20/20" in text
    else:  # a line per tenth
        assert text.count("PredictChunks") == 11 and "20/20 chunks" in text  # 0% to 100%


def test_ls_lists_builds_and_runs_with_status_trees_and_score(tmp_path: Path, capsys) -> None:
    store = str(tmp_path)
    assert (
        cli.main(["run", "b", "-t", "6", "-g", "3", "--dataset", "iris", "-p", "--store", store])
        == 0
    )
    search = ["search", "s", "-t", "4", "-g", "2", "--dataset", "iris", "--store", store]
    assert cli.main([*search, "--grid", "max_depth=1,null"]) == 0
    capsys.readouterr()
    assert cli.main(["ls", "--store", store]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["build", "run", "status", "trees"]
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["b", "s", "s"]
    assert rows[0][2] == "latest" and rows[0][3] == "6" and rows[0][4] == "accuracy"
    assert lines[0].split()[5:10] == ["wall", "s", "cpu", "s", "cost"]
    assert sorted(r[2] for r in rows[1:]) == ["candidate", "committed"], "a search moves no latest"
    # the search's best shows what the search measured: its held-out score and whole cost
    best = next(r for r in rows[1:] if r[2] == "committed")
    result = json.loads(next((tmp_path / "s" / "searches").glob("*/result.json")).read_text())
    assert best[3:6] == ["(search)", "4", "accuracy"] and float(best[6]) == round(
        result["test_score"], 4
    )
    assert float(best[9]) == pytest.approx(result["cost"]["usd"]["total"], abs=1e-6)
    # wall time is the run's, end to end; cpu time its groves' fit seconds summed
    manifest = json.loads(next((tmp_path / "b" / "runs").glob("*/manifest.json")).read_text())
    groves_span = max(g["usage"]["ended_at"] for g in manifest["groves"]) - min(
        g["usage"]["started_at"] for g in manifest["groves"]
    )
    assert float(rows[0][6]) >= round(groves_span, 1) - 0.05
    assert float(rows[0][7]) == round(manifest["timings"]["fit_seconds_total"], 1)
    assert cli.main(["ls", "--store", str(tmp_path / "none")]) == 0
    assert "no builds in" in capsys.readouterr().err


def test_every_option_of_every_command_says_what_it_is_for() -> None:
    """One table of options: every command's every option and argument has help."""
    commands = next(a for a in cli.parser()._actions if a.dest == "command").choices
    missing = [
        (name, action.option_strings or action.dest)
        for name, command in commands.items()
        for action in command._actions
        if action.dest != "help" and not (action.help or "").strip()
    ]
    assert missing == []
    assert set(commands) >= {"run", "start", "predict", "search", "event", "export", "ls"}


def test_the_grove_size_is_g_in_every_command_that_takes_it(tmp_path, capsys) -> None:
    for command in ("run", "start", "search", "event"):
        parsed = cli.parser().parse_args(
            [command, "b", "-g", "7"] if command != "event" else [command, "plan", "b", "-g", "7"]
        )
        assert parsed.grove == 7, command
