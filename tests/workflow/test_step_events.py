"""``groves event``: the ``sam local invoke`` sequence of ``docs/deploying.md``, run as
written, with each ``sam local invoke`` replaced by the function's own handler
(``functions/<step>/app.py``)."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode
from conftest import BUCKET, ROOT

from groves import cli
from groves.store.artifacts import metrics_key
from groves.store.codec import get_json
from groves.store.uris import open_store

DEPLOYING = ROOT / "docs" / "deploying.md"


def docs_block(marker: str) -> list[str]:
    """The lines of docs/deploying.md's first ``sh`` block that contains ``marker``."""
    for block in re.findall(r"```sh\n(.*?)```", DEPLOYING.read_text(), re.S):
        if marker in block:
            return block.strip().splitlines()
    raise AssertionError(f"no block of {DEPLOYING.name} with {marker!r}")


def handler_of(logical_id: str) -> Any:
    """The handler ``sam local invoke LOGICAL_ID`` runs: ``app.handler`` in its CodeUri."""
    template, _ = decode(str(ROOT / "template.yaml"))
    folder = ROOT / template["Resources"][logical_id]["Properties"]["CodeUri"]
    spec = importlib.util.spec_from_file_location(f"app_{logical_id}", folder / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def test_the_sam_local_invoke_sequence_of_the_docs_works_as_written(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    outputs = []
    for line in docs_block("sam local invoke PlanFunction"):
        words = shlex.split(line.replace("s3://BUCKET", f"s3://{BUCKET}"))
        if words[:2] == ["groves", "event"]:
            redirect = words.index(">")
            assert cli.main(words[1:redirect]) == 0
            Path(words[redirect + 1]).write_text(capsys.readouterr().out)
        else:
            assert words[:3] == ["sam", "local", "invoke"] and words[4] == "-e"
            event = json.loads(Path(words[5]).read_text())
            outputs.append(handler_of(words[3])(event, None))
    plan, trained, merged, scored = outputs
    assert [g["grove_id"] for g in trained["groves"]] == [0, 1, 2, 3]
    assert merged["n_trees"] == 40 and scored["n_trees"] == 40
    store = open_store(f"s3://{BUCKET}")
    assert get_json(store, metrics_key(plan["build_id"], plan["run_id"]))["score"] > 0.85


def test_event_refuses_what_it_cannot_make(local_store, capsys) -> None:
    store = ["--store", local_store.uri]
    assert cli.main(["event", "merge", "none", *store]) == 2
    assert "build 'none' has no planned run" in capsys.readouterr().err
    assert cli.main(["event", "plan", "e", "-t", "4", "-g", "2", "--dataset", "iris", *store]) == 0
    plan_event = json.loads(capsys.readouterr().out)
    assert plan_event["request"]["grove_size"] == 2
    handler_of("PlanFunction")(plan_event, None)
    assert cli.main(["event", "train_grove", "e", "--grove-id", "1", *store]) == 0
    one = json.loads(capsys.readouterr().out)
    assert [g["grove_id"] for g in one["Items"]] == [1] and one["BatchInput"]["build_id"] == "e"
    assert cli.main(["event", "train_grove", "e", "--grove-id", "2", *store]) == 2
    assert "grove: 2 is not one of the run's 2 groves" in capsys.readouterr().err


def test_events_default_to_the_latest_committed_run_never_a_search_candidate(
    local_store, capsys
) -> None:
    """GIVEN a build with a model and a search of it (its candidates are newer runs), WHEN
    groves event makes train_grove, merge and predict events, THEN each names the build's
    latest committed run; a run that cannot be read says "cannot read", never "cannot write"."""
    store = ["--store", local_store.uri]
    assert cli.main(["run", "e", "-t", "4", "-g", "2", "--dataset", "iris", *store]) == 0
    latest = get_json(local_store, "e/latest.json")["run_id"]
    search = ["search", "e", "-t", "4", "-g", "2", "--dataset", "iris", "--grid", "max_depth=1,2"]
    assert cli.main([*search, *store]) == 0
    capsys.readouterr()
    for step in ("train_grove", "merge", "predict"):
        assert cli.main(["event", step, "e", *store]) == 0
        event = json.loads(capsys.readouterr().out)
        assert event.get("BatchInput", event)["run_id"] == latest, step
    assert (
        cli.main(["event", "train_grove", "e", "--run", "20200101T000000000Z-00000000", *store])
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("groves: cannot read: ") and "plan.json does not exist" in err
    # a run the build planned itself after its latest is what the next step works on
    assert cli.main(["event", "plan", "e", "-t", "4", "-g", "2", "--dataset", "iris", *store]) == 0
    planned = handler_of("PlanFunction")(json.loads(capsys.readouterr().out), None)
    assert cli.main(["event", "merge", "e", *store]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == planned["run_id"]
