"""The SAM template and the ASL definition: linted, wired to the same functions the runner uses."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from typing import Any

import pytest
from cfnlint.api import lint_all, lint_file
from cfnlint.decode import decode
from conftest import ROOT
from packaging.requirements import Requirement

from groves import handlers
from groves.local import FUNCTIONS, STORE_SUBSTITUTION, definition_path
from groves.plan import validate_request

ASL = ROOT / "statemachine" / "forest.asl.json"
RETRIED = {
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.SdkClientException",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode(str(ROOT / "template.yaml"))
    assert not problems
    return decoded


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


def test_runner_reads_the_deployed_definition_file() -> None:
    assert definition_path().resolve() == ASL.resolve()


def test_every_task_has_its_function_handler_and_substitution(template, monkeypatch) -> None:
    machine = template["Resources"]["ForestStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "statemachine/forest.asl.json"
    substitutions = machine["DefinitionSubstitutions"]
    assert set(substitutions) == set(FUNCTIONS) | {STORE_SUBSTITUTION}
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    assert placeholders == set(substitutions)
    resources = {state["Resource"] for state in tasks(json.loads(ASL.read_text())).values()}
    assert resources == {f"${{{name}}}" for name in FUNCTIONS}
    for name, handler in FUNCTIONS.items():
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


def test_every_task_retries_lambda_errors_and_catches_to_a_fail_state() -> None:
    machine = json.loads(ASL.read_text())
    for name, state in tasks(machine).items():
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert retried >= RETRIED, name
        assert all(r["BackoffRate"] > 1 for r in state["Retry"]), name
        [catch] = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
    assert machine["States"]["BuildFailed"]["Type"] == "Fail"
    assert machine["States"]["TrainGroves"]["Catch"][0]["Next"] == "BuildFailed"
    assert machine["States"]["TrainGroves"]["MaxConcurrencyPath"] == "$.max_concurrency"


def test_policies_are_least_privilege(template) -> None:
    resources = template["Resources"]
    machine = resources["ForestStateMachine"]["Properties"]["Policies"]
    invoked = [p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in machine]
    functions = [k for k, r in resources.items() if r["Type"] == "AWS::Serverless::Function"]
    assert sorted(invoked) == sorted(functions) and len(functions) == 4
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for policy in resource["Properties"]["Policies"]:
            text = json.dumps(policy)
            assert "S3CrudPolicy" in text or "S3ReadPolicy" in text, logical_id
            assert "*" not in text, logical_id


def test_lambda_pins_fall_inside_the_package_ranges() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    pins = [
        Requirement(line)
        for line in (ROOT / "lambda-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert {"scikit-learn", "joblib", "numpy"} <= {pin.name for pin in pins}
    for pin in pins:
        (version,) = [s.version for s in pin.specifier]
        if pin.name in ranges:
            assert version in ranges[pin.name], (pin.name, version)


@pytest.mark.parametrize("name", ["execution", "plan"])
def test_sample_requests_are_valid(name: str) -> None:
    payload = json.loads((ROOT / "events" / f"{name}.json").read_text())
    validate_request(payload.get("request", payload))


def test_events_cover_every_function() -> None:
    names = {p.stem for p in (ROOT / "events").glob("*.json")}
    folders = {p.name for p in (ROOT / "functions").iterdir() if p.is_dir()}
    assert folders <= names and "execution" in names
