"""Models you can keep: any byte or field of any stored file of a committed build damaged, and
every entry point (load_model, export, predict, batch, report, ls, history, scoring) either
answers exactly as before or refuses with one line: a ``GrovesError`` whose message is one
line, or for a command an exit code other than 0, one line on stderr and no traceback.

The suite runs a small budget; ``bench/fuzz_store.py N`` runs N probes and counts them (clean,
refused in one line, silently wrong, tracebacks by exception type). Both share ``probe``."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris

import groves
from groves import cli
from groves.engine.local import run_local
from groves.errors import GrovesError
from groves.steps.score import score_build
from groves.store.local import LocalStore

BUILD = "d"
STORE = "store"
# What of scoring's answer is the model's and the data's (not this invocation's time or cost).
SCORED = ("metric", "score", "n_test", "n_trees", "n_groves", "grove_score_min")
SCORED += ("grove_score_mean", "grove_score_max")
DEEP = 2_000  # a nested list this deep: a JSON parser's recursion


# ---- the template: one committed build, a batch prediction, and every entry point's answer ---


@dataclass
class Template:
    root: Path  # holds STORE, the input tables and nothing else a probe writes
    frame: pd.DataFrame  # the rows predicted (with the text column)
    files: list[str]  # every file of the build, relative to the store
    baseline: dict[str, Any] = field(default_factory=dict)


def make_template(root: Path) -> Template:
    """Train build ``d`` (iris with a text column, 6 trees in groves of 3, scored) into
    ``root/store``, predict one batch with it, and record each entry point's answer."""
    X, y = load_iris(return_X_y=True)
    colours = np.array(["red", "green", "blue", "red", "blue"])[np.arange(len(y)) % 5]
    frame = pd.DataFrame(X, columns=list("abcd")).assign(colour=colours)
    frame.assign(target=np.array(["setosa", "versicolor", "virginica"])[y]).to_csv(
        root / "d.csv", index=False
    )
    rows = frame.iloc[::4].reset_index(drop=True)
    rows.to_csv(root / "new.csv", index=False)
    request = {"build_id": BUILD, "dataset": str(root / "d.csv"), "n_trees": 6, "grove_size": 3}
    done = run_local({**request, "seed": 1, "predict": True}, str(root / STORE), workers=1)
    assert done.status == "SUCCEEDED", done.cause
    groves.predict(BUILD, str(root / "new.csv"), str(root / "first.csv"), store=str(root / STORE))
    build = root / STORE / BUILD
    files = sorted(str(p.relative_to(root / STORE)) for p in build.rglob("*") if p.is_file())
    template = Template(root, rows, files)
    first = answers(template, copied(template, root / "baseline-1"))
    again = answers(template, copied(template, root / "baseline-2"))
    assert first == again, "the entry points' answers must be deterministic"
    assert all(kind == "answer" for kind, _ in first.values()), first
    template.baseline = first
    return template


def copied(template: Template, where: Path) -> Path:
    shutil.copytree(template.root / STORE, where / STORE)
    return where


# ---- the entry points ------------------------------------------------------------------------


def _api(call: Any) -> tuple[str, Any]:
    """("answer", value), ("refused", message) for a GrovesError, ("raised", type name)."""
    try:
        return "answer", call()
    except GrovesError as exc:
        return "refused", str(exc)
    except Exception as exc:  # what the probe counts: every other exception is a finding
        return "raised", f"{type(exc).__name__}: {_last_frame(exc)}"


def _last_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/groves/" in f.filename] or frames
    last = inside[-1] if inside else None
    where = f"{Path(last.filename).name}:{last.lineno} {last.name}" if last else "?"
    return f"{where}: {str(exc)[:150]}"


def _cli(argv: list[str], read: Any = None) -> tuple[str, Any]:
    """The command's answer (stdout, or what ``read`` reads after it), or how it failed."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    except Exception as exc:
        return "raised", f"{type(exc).__name__}: {_last_frame(exc)}"
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code != 0:
        if "Traceback" in err.getvalue():
            return "raised", f"traceback on stderr, exit {code}"
        message = [line for line in lines if not _progress(line)]
        return ("refused" if len(message) == 1 else "lines"), "\n".join(message)
    return "answer", read() if read else out.getvalue()


def _progress(line: str) -> bool:
    """A progress line of a local run's stderr (the Map's counts), not a message."""
    return line.lstrip().startswith(("PlanBatch", "PredictChunks", "AssemblePredictions", "\r"))


def answers(template: Template, where: Path) -> dict[str, tuple[str, Any]]:
    """Every entry point's outcome on the store in ``where``: reading ones first, then
    prediction (a new batch) and scoring (which rewrites metrics.json)."""
    store = str(where / STORE)
    found: dict[str, tuple[str, Any]] = {}
    found["ls"] = _cli(["ls", "--store", store])
    found["history"] = _cli(["history", BUILD, "--store", store])
    found["history --batch"] = _cli(["history", BUILD, "--batch", "--store", store])
    report = where / "report"
    found["report"] = _cli(
        ["report", BUILD, "--out", str(report), "--store", store],
        lambda: _without_files((report / "report.html").read_text()),
    )

    def load() -> tuple[Any, Any]:
        model = groves.load_model(store, BUILD)
        return model.predict(template.frame).tolist(), model.predict_proba(template.frame).tolist()

    found["load_model"] = _api(load)
    exported = where / "model.joblib"
    found["export"] = _cli(
        ["export", BUILD, "--out", str(exported), "--store", store],
        lambda: joblib.load(exported).predict_proba(template.frame).tolist(),
    )
    new = str(template.root / "new.csv")
    found["predict"] = _cli(
        ["predict", BUILD, "--data", new, "--out", str(where / "p.csv"), "--store", store],
        lambda: (where / "p.csv").read_text(),
    )
    found["batch"] = _api(
        lambda: (
            groves.predict(BUILD, new, str(where / "b.csv"), store=store)
            and (where / "b.csv").read_text()
        )
    )

    def scored() -> dict[str, Any]:
        summary = score_build(LocalStore(where / STORE), BUILD)
        return {key: summary[key] for key in SCORED}

    found["scoring"] = _api(scored)
    return {name: _normalized(outcome, store) for name, outcome in found.items()}


def _without_files(page: str) -> str:
    """The report without its list of the run's files and their sizes (a truncated file is
    listed at its size: that is the store as it is, not an answer about the model)."""
    return page.split("<h2>Files of the run</h2>")[0]


def _normalized(outcome: tuple[str, Any], store: str) -> tuple[str, Any]:
    kind, value = outcome
    return (kind, value.replace(store, "<store>")) if isinstance(value, str) else outcome


# ---- damage ----------------------------------------------------------------------------------

NUMBERS = [2**80, -(2**63) - 1, -1, 0, 1.5, float("nan"), True]
VALUES = st.sampled_from([None, *NUMBERS, "", "xxx", [], [1, "a"], {}, {"a": {"b": None}}, "DEEP"])


PLACEHOLDER = "\u0000deep\u0000"


def _dumped(document: Any) -> bytes:
    """``document`` as JSON text, the value ``"DEEP"`` written as a list nested ``DEEP``
    levels (more than ``json.dumps`` itself can write)."""
    text = json.dumps(document)
    return text.replace(json.dumps(PLACEHOLDER), "[" * DEEP + "]" * DEEP).encode()


@st.composite
def damages(draw: Any, files: list[str]) -> tuple[str, str, Any]:
    """(file, a description of the damage, a function of the file's bytes)."""
    name = draw(st.sampled_from(files))
    fields = ["replace", "delete", "duplicate"] if name.endswith(".json") else []
    kind = draw(st.sampled_from(["bytes", "truncate", *fields]))
    if kind == "bytes":
        spots = draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255))))
        spots = spots or [(draw(st.floats(0, 1, exclude_max=True)), draw(st.integers(0, 255)))]

        def overwrite(blob: bytes) -> bytes:
            changed = bytearray(blob)
            for where, byte in spots:
                if changed:
                    changed[int(where * len(changed))] = byte
            return bytes(changed)

        return name, f"bytes {spots[:3]}{'...' if len(spots) > 3 else ''}", overwrite
    if kind == "truncate":
        keep = draw(st.floats(0, 1, exclude_max=True))
        return name, f"truncate to {keep:.2f}", lambda blob: blob[: int(keep * len(blob))]
    steps = draw(st.lists(st.integers(0, 10**6), max_size=6))
    value = draw(VALUES)
    return (
        name,
        f"{kind} at {steps}" + (f" with {value!r}" if kind == "replace" else ""),
        (lambda blob: edited(blob, kind, steps, value)),
    )


def edited(blob: bytes, kind: str, steps: list[int], value: Any) -> bytes:
    """The JSON document ``blob`` with one field (found by ``steps``, each an index into the
    children of a dict or list, as deep as they go) replaced, deleted or duplicated; a file
    that is not JSON, or whose document has no field there, is left as it is."""
    try:
        document = json.loads(blob)
    except ValueError:
        return blob
    parent, key = None, None
    node = document
    for step in steps:
        children = (
            list(node)
            if isinstance(node, dict)
            else range(len(node))
            if isinstance(node, list)
            else []
        )
        if not children:
            break
        parent, key = node, list(children)[step % len(children)]
        node = parent[key]
    value = PLACEHOLDER if value == "DEEP" else value
    if parent is None:  # the document itself
        return _dumped(value) if kind == "replace" else blob
    if kind == "replace":
        parent[key] = value
    elif kind == "delete":
        del parent[key]
    elif isinstance(parent, list):
        parent.insert(key, parent[key])
    else:
        # a dict's entry written twice (JSON text allows it; the last one wins)
        text = json.dumps(document)
        entry = json.dumps({key: node})[1:-1]
        return text.replace(entry, f"{entry}, {entry}", 1).encode()
    return _dumped(document)


def damage(where: Path, name: str, change: Any) -> bool:
    """Apply ``change`` to ``name`` in the store at ``where``; whether the bytes changed."""
    path = where / STORE / name
    before = path.read_bytes()
    after = change(before)
    path.write_bytes(after)
    return after != before


# ---- one probe -------------------------------------------------------------------------------


def verdict(name: str, outcome: tuple[str, Any], baseline: tuple[str, Any]) -> str:
    """clean, refused, wrong (a different answer, or a refusal in more than one line), or
    raised: Type (a traceback)."""
    kind, value = outcome
    if kind == "answer":
        if _same(value, baseline[1]):
            return "clean"
        if name == "ls" and _listed_as_damaged(value, baseline[1]):
            return "refused"  # the run (or latest.json) is listed as damaged, naming the file
        return "wrong"
    if kind == "refused":
        return "refused" if "\n" not in value else "wrong: multi-line"
    if kind == "lines":
        return "wrong: multi-line"
    return f"raised: {value.split(':')[0]}"


def _same(a: Any, b: Any) -> bool:
    try:
        np.testing.assert_equal(a, b)
    except AssertionError:
        return False
    return True


def _listed_as_damaged(now: str, before: str) -> bool:
    """Whether ``groves ls`` lists a damaged record as one ``damaged`` row naming it, and
    otherwise the same rows (the run a damaged ``latest.json`` named is then ``committed``)."""
    changed = [line for line in now.splitlines() if line not in before.splitlines()]
    damaged = [line for line in changed if " damaged " in line]
    demoted = {line.replace(" latest    ", " committed ") for line in before.splitlines()}
    return bool(damaged) and all(line in damaged or line in demoted for line in changed)


def probe(template: Template, name: str, change: Any) -> dict[str, tuple[str, Any]]:
    """Every entry point's verdict and outcome on a fresh copy of the template with ``name``
    damaged by ``change``."""
    with tempfile.TemporaryDirectory(prefix="groves-damage-") as folder:
        where = copied(template, Path(folder))
        if not damage(where, name, change):
            return {}
        found = answers(template, where)
    return {
        entry: (verdict(entry, outcome, template.baseline[entry]), outcome)
        for entry, outcome in found.items()
    }


def tally(results: list[dict[str, tuple[str, Any]]]) -> Counter[str]:
    return Counter(v for result in results for v, _ in result.values())


# ---- the suite's budget ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return make_template(tmp_path_factory.mktemp("damage"))


def test_the_template_lists_every_kind_of_stored_file(template: Template) -> None:
    kinds = {
        Path(f).name.split(".", 1)[-1] if "grove_" in f else Path(f).name for f in template.files
    }
    expected = {"latest.json", "plan.json", "groves.json", "manifest.json", "metrics.json"}
    expected |= {"trees", "json", "votes.npy.lz4", "batch.json", "chunks.json", "X.npy"}
    assert expected <= kinds


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_damage_is_answered_as_before_or_refused_in_one_line(template: Template, data) -> None:
    name, described, change = data.draw(damages(template.files))
    found = probe(template, name, change)
    bad = {
        entry: found
        for entry, found in found.items()
        if found[0] not in ("clean", "refused")
        and not (found[0] == "wrong" and unverified(name, entry))
    }
    assert not bad, f"{name} ({described}): {bad}"


# Known gaps, the records no sha256 covers whose values these entry points print as they are:
# metrics.json (written after the commit) in ls and the report, a stored history in history and
# the report, and the manifest's own figures (cost, timings, groves' usage: the manifest is the
# root of what is verified) in ls and the report. A damaged value there is a different answer,
# not a traceback; every other file and entry point must answer as before or refuse.
UNVERIFIED = {
    "metrics.json": {"ls", "report"},
    "history": {"history", "history --batch", "report"},
    "manifest.json": {"ls", "report"},
}


def unverified(name: str, entry: str) -> bool:
    kind = "history" if "/history/" in name else Path(name).name
    return entry in UNVERIFIED.get(kind, set())


# ---- what the fuzz found, pinned -------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "argv", "change"),
    [
        ("runs", [], lambda h: h["events"][3].update(timestamp=1.5)),
        ("runs", [], lambda h: h.update(execution=None)),
        ("predictions", ["--batch"], lambda h: h["events"][2].update(stateEnteredEventDetails=[])),
        ("predictions", ["--batch"], lambda h: h["childExecutions"][0].update(status=None)),
    ],
)
def test_a_damaged_history_is_refused_in_one_line(template: Template, folder, argv, change) -> None:
    """A stored history is not covered by a sha256: a field of the wrong type was a TypeError
    or an AttributeError in ``groves history``; now one line naming the file."""

    def edit(blob: bytes) -> bytes:
        history = json.loads(blob)
        change(history)
        return json.dumps(history).encode()

    with tempfile.TemporaryDirectory() as folder_path:
        where = copied(template, Path(folder_path))
        (name,) = [f for f in template.files if f"/{folder}/" in f and "/history/" in f]
        damage(where, name, edit)
        kind, message = _cli(["history", BUILD, *argv, "--store", str(where / STORE)])
    assert kind == "refused", message
    assert f"{name} is not a valid execution history" in message


def _edited_json(change: Any) -> Any:
    def edit(blob: bytes) -> bytes:
        record = json.loads(blob)
        change(record)
        return json.dumps(record).encode()

    return edit


def _run_file(template: Template, name: str) -> str:
    (found,) = [f for f in template.files if f.startswith(f"{BUILD}/runs/") and f.endswith(name)]
    return found


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("manifest.json", lambda m: m["cost"]["steps"]["plan"].update(gb_seconds=[1, "a"])),
        ("manifest.json", lambda m: m["cost"].update(steps=None)),
        ("metrics.json", lambda m: m["usage"].update(billed_ms="x")),
    ],
)
def test_a_damaged_cost_is_refused_in_one_line(template: Template, name, change) -> None:
    """The manifest's cost and scoring's usage are records no sha256 covers: a field of the
    wrong type was a TypeError in scoring and the report; now one line naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        where = copied(template, Path(folder))
        damage(where, _run_file(template, name), _edited_json(change))
        found = answers(template, where)
    for entry in ("report", "scoring") if name == "manifest.json" else ("report",):
        assert found[entry][0] == "refused", found[entry]
        assert f"its {name} is not a valid record: " in found[entry][1]
    assert " damaged " in found["ls"][1]
    assert found["load_model"] == template.baseline["load_model"]


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("metrics.json", lambda blob: blob[: len(blob) // 2]),
        ("metrics.json", lambda blob: b"null"),
        ("metrics.json", _edited_json(lambda m: m.update(score_by_trees=None))),
        ("metrics.json", _edited_json(lambda m: m.update(grove_scores=[]))),
        # numbers numpy cannot hold were an OverflowError while drawing (fuzz, 300 probes)
        ("metrics.json", _edited_json(lambda m: m["grove_scores"].__setitem__(0, -(2**63) - 1))),
        ("metrics.json", _edited_json(lambda m: m["score_by_trees"][0].update(n_trees=2**70))),
        ("manifest.json", _edited_json(lambda m: m["groves"][1]["usage"].update(ended_at="x"))),
        ("manifest.json", _edited_json(lambda m: m.pop("timings"))),
    ],
)
def test_the_report_refuses_a_damaged_record_in_one_line(template: Template, name, change):
    """A truncated metrics.json was reported as a run never scored ("not scored: run with
    --predict"), and a field of the wrong type was a TypeError or KeyError while drawing."""
    with tempfile.TemporaryDirectory() as folder:
        where = copied(template, Path(folder))
        damage(where, _run_file(template, name), change)
        report = where / "report"
        kind, message = _cli(["report", BUILD, "--out", str(report), "--store", str(where / STORE)])
    assert kind == "refused", message
    assert name in message


@pytest.mark.parametrize("name", ["metrics.json", "manifest.json", "plan.json"])
@pytest.mark.parametrize("blob", [b"null", b"[]", b"7"])
def test_ls_lists_a_run_whose_record_is_not_an_object_as_damaged(template: Template, name, blob):
    """A metrics.json of ``null`` was listed as a run without a score, a manifest.json of
    ``null`` as an uncommitted run."""
    with tempfile.TemporaryDirectory() as folder:
        where = copied(template, Path(folder))
        damage(where, _run_file(template, name), lambda _: blob)
        kind, listed = answers(template, where)["ls"]
    assert kind == "answer" and _listed_as_damaged(listed, template.baseline["ls"][1]), listed
    assert f"{name} is not a valid {name.split('.')[0]} record" in listed
