"""The requests' fields are defined once (``groves.steps.request``), and everything that
offers or checks them agrees with that definition: plan's checks, the command line's options,
the estimators' parameters, constraints and docstrings, ``groves.predict``'s keywords, the
sample events and ``docs/request.md``."""

from __future__ import annotations

import argparse
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from sklearn.utils.estimator_checks import check_param_validation

import groves
from groves import api, cli
from groves.cli.options import build_request, options
from groves.cli.reference import COMMAND, markdown
from groves.cli.search import search_request
from groves.errors import RequestError
from groves.estimators import OWN_DEFAULTS, REQUEST_PARAMETERS, RUN_PARAMETERS
from groves.steps.batch import validate_batch_request
from groves.steps.checks import validate_request
from groves.steps.request import (
    ABSENT,
    BATCH,
    FOREST_PARAMS,
    REQUESTS,
    REQUIRED,
    SEARCH,
    SEARCH_ONLY,
    TRAIN,
    Field,
    Flag,
    check_fields,
    names,
)
from groves.steps.search import validate_search

ESTIMATORS = [groves.GrovesClassifier, groves.GrovesRegressor]
# Each request's commands, and their options that are no request field.
COMMANDS = {
    "train": {
        "run": {"help", "store", "memory_mb"},
        "start": {"help", "state_machine_arn", "stack_name", "wait", "poll_seconds"},
    },
    "batch": {
        "predict": {"help", "store", "memory_mb"},
        "start-predict": {"help", "state_machine_arn", "stack_name", "wait", "poll_seconds"},
    },
    "search": {"search": {"help", "store", "memory_mb", "grid", "random", "param_range"}},
}
# A valid request of each kind, to which one bad value is added.
VALID = {
    "train": {"build_id": "b", "dataset": "iris", "n_trees": 4, "grove_size": 2},
    "batch": {"build_id": "b", "data": "iris", "output": "out.csv"},
    "search": {"build_id": "b", "dataset": "iris", "search": {"grid": {"max_depth": [2]}}},
}
VALIDATE = {"train": validate_request, "batch": validate_batch_request, "search": validate_search}


def command_parser(command: str) -> argparse.ArgumentParser:
    commands = next(a for a in cli.parser()._actions if a.dest == "command")
    return commands.choices[command]


def bad_values(field: Field) -> list[Any]:
    """Values just outside the field's type or bounds."""
    if field.kind in ("integer", "number"):
        outside = [field.low - 1, field.high + 1, True, "1"]
        if field.kind == "integer":
            return [*outside, field.low + 0.5]
        return [
            *outside,
            *([field.low] if field.closed in ("right", "neither") else []),
            *([field.high] if field.closed in ("left", "neither") else []),
        ]
    return {
        "boolean": ["yes", 1],
        "choice": ["nope", 1],
        "text": ["", 5],
        "columns": ["a", ["a", "a"], [""]],
        "object": [[], "x"],
        "build id": ["has space", 5],
        "run id": ["latest"],
    }.get(field.kind, [])


def test_every_field_is_one_a_request_names_and_documents() -> None:
    for kind, fields in REQUESTS.items():
        assert len(set(names(fields))) == len(fields), kind
        for field in fields:
            assert field.help and field.help[0].islower() and not field.help.endswith("."), field
            assert field.allowed(), field
            assert field.default is not REQUIRED or not field.null, field
            assert "|" not in field.help + field.details + field.allowed(), "breaks the table"
    assert names(SEARCH) == (
        *(n for n in names(TRAIN) if n not in ("predict", "resume")),
        *names(SEARCH_ONLY),
    )


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        *(("train", f) for f in TRAIN),
        *(("batch", f) for f in BATCH),
        *(("search", f) for f in SEARCH_ONLY),  # beside the training fields
    ],
    ids=lambda p: p if isinstance(p, str) else p.name,
)
def test_plan_refuses_each_fields_bad_values_naming_it(kind: str, field: Field) -> None:
    for value in bad_values(field):
        with pytest.raises(RequestError) as caught:
            VALIDATE[kind]({**VALID[kind], field.name: value})
        assert caught.value.field == field.name, value
    if field.kind in ("integer", "number"):
        for bound in (field.low, field.high):
            closed = field.closed in ("both", "left" if bound == field.low else "right")
            assert field.takes(bound) is closed, (field.name, bound)
        words = re.escape(field.allowed())
        with pytest.raises(RequestError, match=f"^{field.name}: .* must be {words}$"):
            field.check(field.high + 1)


def test_defaults_are_what_plan_fills_in() -> None:
    spec = validate_request({"build_id": "b"})
    assert {f.name: spec[f.name] for f in TRAIN if f.default not in (REQUIRED, ABSENT)} == {
        f.name: f.default for f in TRAIN if f.default not in (REQUIRED, ABSENT)
    }
    with pytest.raises(RequestError, match=r"^data: required: the rows to predict"):
        validate_batch_request({"build_id": "b", "output": "o.csv"})


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_every_field_is_a_command_line_option_of_its_type_and_default(kind: str) -> None:
    """Each field's option (or why it has none); each command's options are its request's
    fields and the few that are no request field."""
    fields = REQUESTS[kind]
    for command, others in COMMANDS[kind].items():
        parser = command_parser(command)
        actions = {a.dest: a for a in parser._actions}
        flagged = options(fields)
        assert set(actions) == {flag.key for _, flag in flagged} | others, command
        for field in fields:
            if not isinstance(field.cli, Flag):
                assert field.cli, f"{field.name}: an option, or why it has none"
                continue
            action = actions[field.cli.key]
            assert field.help in " ".join((action.help or "").split()), field.name
            if field.cli.positional:
                assert action.metavar == field.cli.metavar
                continue
            assert set(field.cli.names) <= set(action.option_strings)
            if field.default is REQUIRED:
                assert action.required, field.name
            elif field.kind not in ("columns", "object") or field.cli.comma:
                default = False if field.cli.switch else field.default
                assert action.default == default, field.name
            if field.kind in ("integer", "number"):
                assert action.type is (int if field.kind == "integer" else float)
            assert tuple(action.choices or ()) == field.choices


def test_the_options_defaults_make_the_requests_defaults() -> None:
    parsed = cli.parser().parse_args(["run", "b"])
    assert validate_request(build_request(parsed, parsed.parser)) == validate_request(
        {"build_id": "b"}
    )
    argv = ["search", "b", "--dataset", "iris", "--grid", "max_depth=2,3", "--build", "w"]
    parsed = cli.parser().parse_args([*argv, "--commit", "--validation-size", "0.3"])
    request = search_request(parsed)
    assert request["winner_build"] == "w" and request["commit"] is True
    assert request["validation_size"] == 0.3
    check_fields(request, names(SEARCH))
    parsed = cli.parser().parse_args(["predict", "b", "--data", "x.csv", "--out", "o.csv"])
    request = build_request(parsed, parsed.parser, BATCH)
    assert request == {
        "build_id": "b",
        "data": "x.csv",
        "output": "o.csv",
        "rows_per_chunk": 50_000,
        "max_concurrency": 10,
    }


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_estimators_parameters_are_the_fields_the_forests_and_their_own(
    estimator: Any,
) -> None:
    signature = inspect.signature(estimator).parameters
    forest = FOREST_PARAMS[estimator._estimator]
    assert set(signature) == set(REQUEST_PARAMETERS) | set(forest) | set(RUN_PARAMETERS)
    assert set(estimator._parameter_constraints) == set(signature)
    for field in TRAIN:
        assert field.estimator, f"{field.name}: an estimator parameter, or how fit sets it"
        if field.estimator.isidentifier():
            default = signature[field.estimator].default
            assert default == OWN_DEFAULTS.get(field.estimator, field.default), field.name
        else:
            assert field.name not in signature or field.name == "build_id", field.name
    check_param_validation(estimator.__name__, estimator(store="unused"))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_each_request_parameters_help_is_in_the_estimators_docstring(estimator: Any) -> None:
    doc = inspect.getdoc(estimator)
    parameters = doc.split("Parameters\n----------\n")[1].split("\n\nAttributes")[0]
    entries = dict(re.findall(r"^(\w+) : .*\n((?:    .*\n?)+)", parameters, re.M))
    for name, field in REQUEST_PARAMETERS.items():
        text = " ".join(entries[name].split())
        assert f"{field.help[0].upper()}{field.help[1:]}." in text, name


def test_groves_predict_takes_every_batch_field_with_its_default() -> None:
    keywords = inspect.signature(api.predict).parameters
    for field in BATCH:
        default = keywords[field.name].default
        if field.default is REQUIRED:
            assert default is inspect.Parameter.empty, field.name
        else:
            assert (list(default) if field.kind == "columns" else default) == field.default


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        ("execution", "train"),
        ("plan", "train"),
        ("batch_predict", "batch"),
        ("plan_batch", "batch"),
        ("search", "search"),
        ("plan_search", "search"),
    ],
)
def test_the_sample_events_name_only_their_requests_fields(sample: str, kind: str) -> None:
    event = json.loads((ROOT / "events" / f"{sample}.json").read_text())
    request = event.get("request", event)
    check_fields(request, names(REQUESTS[kind]))
    for field in REQUESTS[kind]:
        if field.name in request:
            field.check(request[field.name])


def test_docs_request_md_is_what_the_definitions_generate() -> None:
    path: Path = ROOT / "docs" / "request.md"
    assert path.read_text() == markdown(), f"stale: regenerate it with {COMMAND}"
    for fields in REQUESTS.values():
        for field in fields:
            assert f"| `{field.name}` |" in path.read_text()
