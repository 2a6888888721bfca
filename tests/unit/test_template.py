"""The SAM template and the ASL definition: linted, wired to the same functions the runner uses."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_all, lint_file
from conftest import ROOT, allowed, object_patterns, statements
from packaging.requirements import Requirement

from groves.engine.local import FUNCTIONS, STORE_SUBSTITUTION, definition_path
from groves.forest.served import ONE_VCPU_MB
from groves.steps import handlers
from groves.steps.batch import OUTPUTS_PREFIX, validate_batch_request
from groves.steps.checks import validate_request
from groves.steps.cost import TEMPLATE_MEMORY_MB, TEMPLATE_TIMEOUT_SECONDS
from groves.steps.search import search_key, validate_search
from groves.store import artifacts
from groves.store.artifacts import GROVE_SUFFIX, VOTES_SUFFIX

ASL = ROOT / "statemachine" / "forest.asl.json"
# Each state machine: its resource, its definition, its Distributed Map, and its Fail state.
# Each state machine's definition, its Distributed Maps, and its Fail state.
MACHINES = {
    "ForestStateMachine": ("forest", ("ScanParts", "PrepareParts", "TrainGroves"), "BuildFailed"),
    "BatchPredictStateMachine": ("batch_predict", ("PredictChunks",), "BatchFailed"),
    "SearchStateMachine": ("search", ("TrainCandidates",), "SearchFailed"),
}


def definition_file(machine: str) -> Any:
    return ROOT / "statemachine" / f"{MACHINES[machine][0]}.asl.json"


RETRIED = {
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.SdkClientException",
}


def tasks(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every Task state, Map processors included."""
    found = {}
    for name, state in machine["States"].items():
        if state["Type"] == "Task":
            found[name] = state
        if state["Type"] == "Map":
            found.update(tasks(state["ItemProcessor"]))
    return found


def problems(matches: list[Any]) -> list[str]:
    """cfn-lint's errors and warnings; informational suggestions are not failures."""
    return [str(m) for m in matches if m.rule.id[0] in "EW"]


def test_template_passes_cfn_lint() -> None:
    assert problems(lint_file(ROOT / "template.yaml")) == []


def asl_template(definition: dict[str, Any]) -> str:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    substitutions = {name: arn for name in FUNCTIONS} | {STORE_SUBSTITUTION: "s3://bucket"}
    return json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "Machine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {
                        "RoleArn": "arn:aws:iam::123456789012:role/r",
                        "Definition": definition,
                        "DefinitionSubstitutions": substitutions,
                    },
                }
            },
        }
    )


def test_asl_definition_passes_cfn_lint_schema_checks() -> None:
    definition = json.loads(ASL.read_text())
    assert problems(lint_all(asl_template(definition))) == []
    definition["States"]["Done"]["Bogus"] = 1
    assert any("Bogus" in p for p in problems(lint_all(asl_template(definition))))


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_runner_reads_the_deployed_definition_file(machine: str) -> None:
    assert definition_path(MACHINES[machine][0]).resolve() == definition_file(machine).resolve()


def test_every_function_is_used_by_a_state_machine(template) -> None:
    used = {
        name
        for machine in MACHINES
        for name in template["Resources"][machine]["Properties"]["DefinitionSubstitutions"]
        if name != STORE_SUBSTITUTION
    }
    assert used == set(FUNCTIONS)


@pytest.mark.parametrize("machine_id", sorted(MACHINES))
def test_every_task_has_its_function_handler_and_substitution(
    template, monkeypatch, machine_id: str
) -> None:
    machine = template["Resources"][machine_id]["Properties"]
    path = definition_file(machine_id)
    assert machine["DefinitionUri"] == f"statemachine/{path.name}"
    substitutions = machine["DefinitionSubstitutions"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert placeholders == set(substitutions) and STORE_SUBSTITUTION in placeholders
    mine = {name: FUNCTIONS[name] for name in substitutions if name != STORE_SUBSTITUTION}
    resources = {state["Resource"] for state in tasks(json.loads(path.read_text())).values()}
    assert resources == {f"${{{name}}}" for name in mine}
    for name, handler in mine.items():
        logical_id = substitutions[name]["Fn::GetAtt"][0]
        function = template["Resources"][logical_id]
        assert function["Type"] == "AWS::Serverless::Function"
        app = ROOT / function["Properties"]["CodeUri"] / "app.py"
        assert (app.parent / "requirements.txt").is_file()
        spec = importlib.util.spec_from_file_location(f"app_{logical_id}", app)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        calls: list[tuple[Any, Any]] = []
        monkeypatch.setattr(handlers, handler.__name__, lambda e, c, seen=calls: seen.append(e))
        module.handler({"x": 1}, "ctx")
        assert calls == [{"x": 1}], f"{app} does not call handlers.{handler.__name__}"
    globals_ = template["Globals"]["Function"]
    assert (globals_["Runtime"], globals_["Handler"]) == ("python3.12", "app.handler")


@pytest.mark.parametrize("machine_id", sorted(MACHINES))
def test_every_task_retries_lambda_errors_and_catches_to_a_fail_state(machine_id: str) -> None:
    _, map_states, failed = MACHINES[machine_id]
    machine = json.loads(definition_file(machine_id).read_text())
    for name, state in tasks(machine).items():
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert retried >= RETRIED, name
        assert all(r["BackoffRate"] > 1 for r in state["Retry"]), name
        [catch] = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
    assert machine["States"][failed]["Type"] == "Fail"
    for map_state in map_states:
        distributed = machine["States"][map_state]
        assert distributed["Catch"][0]["Next"] == failed
        assert distributed["MaxConcurrencyPath"] == "$.max_concurrency"
        assert distributed["ToleratedFailurePercentage"] == 0
        assert distributed["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"


# groves rm and groves gc delete client-side: no function may delete anything
FORBIDDEN = {
    "s3:*",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectAcl",
    "s3:PutLifecycleConfiguration",
}
RUN = "20261125T120301123Z-1a2b3c4d"
# What each step writes, as groves.store.artifacts names it: the template must allow exactly these.
WRITES = {
    "PlanFunction": [  # and a one-file table's shards, as plan_part writes a file's
        artifacts.plan_key("b", RUN),
        artifacts.items_key("b", RUN),
        artifacts.data_key("b", RUN, "X_train"),
        f"{artifacts.data_prefix('b', RUN)}scan_00003.json",
        f"{artifacts.data_prefix('b', RUN)}rows_00012.bin",
    ],
    # a table's file planned in parts: its scan, its shards and held-out rows, beside the run's
    # prepared data
    "PlanPartFunction": [
        f"{artifacts.data_prefix('b', RUN)}scan_00003.json",
        f"{artifacts.data_prefix('b', RUN)}rows_00012.bin",
    ],
    "TrainGroveFunction": [
        artifacts.grove_key("b", RUN, 7, s) for s in (GROVE_SUFFIX, "json", VOTES_SUFFIX)
    ],
    "MergeFunction": [
        artifacts.manifest_key("b", RUN),
        artifacts.latest_key("b"),
    ],
    "PredictFunction": [artifacts.metrics_key("b", RUN)],
    "PlanBatchFunction": [
        artifacts.batch_key("b", RUN, name)
        for name in ("batch.json", "X.npy", "keep.arrow", "chunks.json")
    ],
    "PredictChunkFunction": [
        artifacts.chunk_key("b", RUN, 3, 1, suffix) for suffix in ("votes.npy", "json")
    ],
    "AssemblePredictionsFunction": [
        f"{OUTPUTS_PREFIX}new.csv",
        f"{OUTPUTS_PREFIX}2026/new.parquet.json",
    ],
    # a search plans one run per candidate, as plan does for a build
    "PlanSearchFunction": [
        *(search_key("b", RUN, n) for n in ("search.json", "candidates.json", "data/X_test.npy")),
        artifacts.plan_key("b", RUN),
        artifacts.data_key("b", RUN, "X_train"),
        f"{artifacts.data_prefix('b', RUN)}scan_00003.json",  # data/*, as plan
        f"{artifacts.data_prefix('b', RUN)}rows_00012.bin",
    ],
    "ScoreCandidatesFunction": [
        search_key("b", RUN, name) for name in ("leaderboard.json", "usage.json")
    ],
    "ScoreBestFunction": [search_key("b", RUN, "result.json")],
    "ServeFunction": [],  # answers requests, writes nothing
}


def test_each_function_writes_only_its_own_files(template) -> None:
    resources = template["Resources"]
    functions = {k: r for k, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(functions) == set(WRITES)
    for name, function in functions.items():
        found = statements(function["Properties"]["Policies"])
        actions = {
            a
            for s in found
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        assert not actions & FORBIDDEN and all("*" not in a for a in actions), name
        assert actions <= {"s3:GetObject", "s3:ListBucket", "s3:PutObject"}, name
        writes = [
            p
            for s in found
            if s["Action"] == "s3:PutObject"
            for p in object_patterns(s["Resource"])
        ]
        for keys in WRITES.values():
            for key in keys:
                assert any(allowed(p, key) for p in writes) == (key in WRITES[name]), (name, key)


# What each state machine's Distributed Maps read: the items its first step wrote.
MAP_ITEMS = {
    "ForestStateMachine": [
        f"{artifacts.data_prefix('b', RUN)}parts.json",
        artifacts.items_key("b", RUN),
    ],
    "BatchPredictStateMachine": [artifacts.batch_key("b", RUN, "chunks.json")],
    "SearchStateMachine": [search_key("b", RUN, "candidates.json")],
}
LOG_GROUPS = {
    "ForestStateMachine": "StateMachineLogGroup",
    "BatchPredictStateMachine": "BatchPredictLogGroup",
    "SearchStateMachine": "SearchLogGroup",
}


@pytest.mark.parametrize("machine_id", sorted(MACHINES))
def test_state_machine_invokes_only_its_functions_and_logs_and_traces(
    template, machine_id: str
) -> None:
    resources = template["Resources"]
    machine = resources[machine_id]["Properties"]
    invoked = [
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in machine["Policies"]
        if "LambdaInvokePolicy" in p
    ]
    substitutions = machine["DefinitionSubstitutions"]
    mine = [v["Fn::GetAtt"][0] for k, v in substitutions.items() if k != STORE_SUBSTITUTION]
    assert sorted(invoked) == sorted(mine)
    by_service: dict[str, list[dict[str, Any]]] = {}
    for statement in statements(machine["Policies"]):
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        (service,) = {a.split(":")[0] for a in actions}
        by_service.setdefault(service, []).append({**statement, "Action": actions})
    assert set(by_service) == {"logs", "xray", "states", "s3"}
    # the Distributed Map starts, describes, stops and redrives its own child executions only
    file_name, map_states, _ = MACHINES[machine_id]
    name = machine["Name"]["Fn::Sub"]
    assert name == "${AWS::StackName}-" + file_name.replace("_", "-")
    arns = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
    granted = {
        (a, r["Fn::Sub"])
        for s in by_service["states"]
        for a in s["Action"]
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    assert granted == {
        ("states:StartExecution", f"{arns}:stateMachine:{name}"),
        ("states:DescribeExecution", f"{arns}:execution:{name}/*"),
        ("states:StopExecution", f"{arns}:execution:{name}/*"),
        *(("states:RedriveExecution", f"{arns}:execution:{name}/{m}:*") for m in map_states),
    }
    # they read the items the plan steps wrote, and write only their ResultWriter prefix
    definition = json.loads(definition_file(machine_id).read_text())["States"]
    (prefix,) = {definition[m]["ResultWriter"]["Parameters"]["Prefix"] for m in map_states}
    reads = [
        p
        for s in by_service["s3"]
        if s["Action"] == ["s3:GetObject"]
        for p in object_patterns(s["Resource"])
    ]
    items = MAP_ITEMS[machine_id]
    others = [k for keys in WRITES.values() for k in keys if k not in items]
    assert [[allowed(p, key) for key in items] for p in reads] == [
        [i == j for j in range(len(items))] for i in range(len(items))
    ]
    assert not any(allowed(p, key) for p in reads for key in others)
    (writer,) = [s for s in by_service["s3"] if "s3:PutObject" in s["Action"]]
    [pattern] = object_patterns(writer["Resource"])
    assert allowed(pattern, f"{prefix}/6a3e/SUCCEEDED_0.json")
    assert not any(allowed(pattern, key) for keys in WRITES.values() for key in keys)
    assert machine["Tracing"] == {"Enabled": True}
    logging = machine["Logging"]
    assert logging["Level"] == {"Ref": "StateMachineLogLevel"}
    parameters = template["Parameters"]
    assert parameters["StateMachineLogLevel"]["AllowedValues"] == ["ERROR", "ALL"]
    assert parameters["StateMachineLogLevel"]["Default"] == "ERROR"
    assert parameters["LogExecutionData"]["Default"] == "false"
    [destination] = logging["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert group == LOG_GROUPS[machine_id]
    assert template["Globals"]["Function"]["Tracing"] == "Active"


def test_functions_that_stage_tables_or_cache_rows_get_the_tmp_storage_parameter(template) -> None:
    """plan, plan_batch, plan_search and assemble stage the input, the rows and the output in
    /tmp (groves.data.tables.local_file, groves.data.rows.write_rows); train_grove and the
    scoring functions cache the prepared rows there (groves.store.s3.S3Store.local_path):
    Lambda's 512 MB default would cap the tables they can take."""
    resources = template["Resources"]
    staged = {
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
        and resource["Properties"].get("EphemeralStorage") == {"Size": {"Ref": "TmpStorageSize"}}
    }
    assert staged == {
        "PlanFunction",
        "PlanPartFunction",
        "PlanBatchFunction",
        "PlanSearchFunction",
        "AssemblePredictionsFunction",
        "TrainGroveFunction",
        "PredictFunction",
        "ScoreCandidatesFunction",
        "ScoreBestFunction",
    }
    assert template["Parameters"]["TmpStorageSize"]["MaxValue"] == 10240


def test_every_log_group_has_the_retention_parameter(template) -> None:
    resources = template["Resources"]
    groups = {
        k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"
    }
    assert all(g["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())
    names = [g["LogGroupName"]["Fn::Sub"] for g in groups.values()]
    for function in WRITES:
        assert f"/aws/lambda/${{{function}}}" in names, function


def test_the_bucket_refuses_requests_without_tls(template) -> None:
    policy = template["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]
    [deny] = policy["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def pinned(path: Path) -> list[Requirement]:
    lines = path.read_text().splitlines()
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def test_lambda_pins_fall_inside_the_package_ranges() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    pins = pinned(ROOT / "layer" / "requirements.txt")
    assert {"scikit-learn", "joblib", "numpy"} <= {pin.name for pin in pins}
    for pin in pins:
        (version,) = [s.version for s in pin.specifier]
        if pin.name in ranges:
            assert version in ranges[pin.name], (pin.name, version)
    # the serve layer: numpy and lz4 alone, the very versions the other functions run
    serve = {str(pin) for pin in pinned(ROOT / "layer" / "serve" / "requirements.txt")}
    assert serve == {str(pin) for pin in pins if pin.name in ("numpy", "lz4")}
    assert len(serve) == 2


def test_the_serve_function_has_its_own_layer_a_url_and_its_builds_files_alone(template) -> None:
    """The serve function: its own small layer (the others' has scikit-learn and pyarrow), a
    Function URL signed by default, its build and run from the parameters, concurrency and
    SnapStart as parameters, and reads of its build's model files alone."""
    resources, parameters = template["Resources"], template["Parameters"]
    assert "Layers" not in template["Globals"]["Function"]  # lists in Globals are prepended
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function":
            layer = "ServeLayer" if name == "ServeFunction" else "GrovesLayer"
            assert resource["Properties"]["Layers"] == [{"Ref": layer}], name
    assert resources["ServeLayer"]["Properties"]["ContentUri"] == "layer/serve/"
    serve = resources["ServeFunction"]
    assert serve["Condition"] == "Serves" and resources["ServeLogGroup"]["Condition"] == "Serves"
    properties = serve["Properties"]
    assert properties["FunctionUrlConfig"]["AuthType"] == {"Ref": "ServeAuthType"}
    assert parameters["ServeAuthType"]["Default"] == "AWS_IAM"
    assert "NONE opens it to anyone" in parameters["ServeAuthType"]["Description"]
    variables = properties["Environment"]["Variables"]
    assert variables["GROVES_BUILD"] == {"Ref": "ServeBuild"}
    assert variables["GROVES_RUN"] == {"Ref": "ServeRun"}
    assert properties["MemorySize"] == {"Ref": "ServeMemorySize"}
    assert properties["ReservedConcurrentExecutions"]["Fn::If"][0] == "ReservesServing"
    assert properties["ProvisionedConcurrencyConfig"]["Fn::If"][0] == "ProvisionsServing"
    assert properties["SnapStart"]["Fn::If"][0] == "SnapStartsServing"
    reads = [
        p
        for s in statements(properties["Policies"])
        if s["Action"] == "s3:GetObject"
        for p in object_patterns(s["Resource"])
    ]
    assert reads and all(p.startswith("${Bucket}/${Build}/") for p in reads)
    built = [r["Fn::Sub"][1]["Build"] for r in statements(properties["Policies"])[0]["Resource"]]
    assert built == [{"Ref": "ServeBuild"}] * len(reads)


@pytest.mark.parametrize("name", ["execution", "plan"])
def test_sample_requests_are_valid(name: str) -> None:
    payload = json.loads((ROOT / "events" / f"{name}.json").read_text())
    validate_request(payload.get("request", payload))


@pytest.mark.parametrize("name", ["search", "plan_search"])
def test_sample_search_requests_are_valid(name: str) -> None:
    payload = json.loads((ROOT / "events" / f"{name}.json").read_text())
    spec, candidates = validate_search(payload.get("request", payload))
    assert len(candidates) == 6 and spec["validation_size"] == 0.2


@pytest.mark.parametrize("name", ["batch_predict", "plan_batch"])
def test_sample_batch_requests_are_valid(name: str) -> None:
    payload = json.loads((ROOT / "events" / f"{name}.json").read_text())
    request = payload.get("request", payload)
    validate_batch_request(request)
    assert request["output"].startswith("s3://replace-with-bucketname-output/" + OUTPUTS_PREFIX)


def test_events_cover_every_function() -> None:
    names = {p.stem for p in (ROOT / "events").glob("*.json")}
    folders = {p.name for p in (ROOT / "functions").iterdir() if p.is_dir()}
    assert folders <= names and "execution" in names


def test_local_limits_and_cost_estimates_use_the_templates_memory_sizes_and_timeouts(
    template,
) -> None:
    """A local run holds each function to its default MemorySize and Timeout in the template
    (its own, or the Globals'), and estimates its cost at that memory size."""
    parameters = template["Parameters"]
    defaults = template["Globals"]["Function"]

    def default(value: Any) -> Any:
        return parameters[value["Ref"]]["Default"] if isinstance(value, dict) else value

    sizes, timeouts = {}, {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            properties = {**defaults, **resource["Properties"]}
            step = properties["CodeUri"].strip("/").split("/")[-1]
            sizes[step] = default(properties["MemorySize"])
            timeouts[step] = default(properties["Timeout"])
    # the serve function is no state machine's step: no local run holds it to limits; its
    # default memory is the one vCPU ServedModel.lambda_memory_mb never goes below
    assert sizes.pop("serve") == ONE_VCPU_MB and timeouts.pop("serve") == 60
    assert sizes == TEMPLATE_MEMORY_MB
    assert timeouts == TEMPLATE_TIMEOUT_SECONDS


def test_only_the_table_readers_may_read_the_data_bucket(template) -> None:
    """Least privilege: the datasets bucket is read by plan, plan_part, plan_batch and
    plan_search alone;
    every other step reads only the store."""
    readers = set()
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        if "ReadData" in json.dumps(resource["Properties"].get("Policies", [])):
            readers.add(name)
    assert readers == {
        "PlanFunction",
        "PlanPartFunction",
        "PlanBatchFunction",
        "PlanSearchFunction",
    }


def test_the_bucket_keeps_versions_and_training_concurrency_can_be_reserved(template) -> None:
    bucket = template["Resources"]["ArtifactBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    train = template["Resources"]["TrainGroveFunction"]["Properties"]
    assert train["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReservesTraining", {"Ref": "TrainReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert template["Parameters"]["TrainReservedConcurrency"]["Default"] == -1
