"""The README runs as written: every fenced block, in order, in one empty folder with the
default store (``./groves-runs``), as a newcomer runs them after the set-up command. Its test
command is the one ``.ci/run`` runs, its table of pieces names what the repository has, and
every link of the README and ``docs/`` leads somewhere.

What is not run is said here, narrowly: the set-up commands (``SET_UP``: the environment this
test runs in is what they make, and the test command would run this suite inside itself) and
the output and picture blocks (``SHOWN``). A block whose first line is ``NEEDS_AWS`` needs a
deployed stack; it is run with no AWS set-up at all and must end in groves' one line saying
what is missing, never a botocore traceback (and never a request to AWS: botocore fails on
the missing region before any)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode
from conftest import ROOT

import groves
from groves import cli

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.S | re.M)
SHOWN = {"text", "mermaid"}  # output the README shows, and the picture: not code
SET_UP = [
    shlex.split(command)
    for command in (
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        "pip install -e .",
        "pip install -e '.[dev]'",
        "python -m pytest -q",
    )
]
NEEDS_AWS = "# needs: a deployed stack"
NO_REGION = "no AWS region: set AWS_DEFAULT_REGION (or AWS_REGION), or run aws configure"


def blocks() -> list[tuple[str, str]]:
    """The README's fenced blocks: (language, text), in order."""
    return FENCE.findall(README.read_text())


def commands(block: str) -> list[list[str]]:
    """Each command of a shell block as words, comments dropped, ``&&`` chains split."""
    found = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            end = words.index("&&") if "&&" in words else len(words)
            found.append(words[:end])
            words = words[end + 1 :]
    return found


def without_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No region, profile or configuration, and no instance to ask; an endpoint nobody
    answers, should anything reach for AWS all the same."""
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


def keys(summary: str) -> list[str]:
    """A run summary's first words, a repeated one (``class``) once."""
    words = [line.split()[0] for line in summary.splitlines() if line.strip() not in ("", "…")]
    return [word for i, word in enumerate(words) if i == 0 or word != words[i - 1]]


def test_every_block_is_code_to_run_or_output_to_show() -> None:
    assert blocks(), "the README has fenced blocks"
    assert {language for language, _ in blocks()} <= {"sh", "python", *SHOWN}


def test_every_block_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """GIVEN an empty folder, WHEN each block of the README runs there in order (``groves``
    commands as the command line runs them, Python as a script), THEN each succeeds, the
    demo prints the summary the README shows, and a block that needs AWS says in one line
    what is missing."""
    folder = tmp_path / "reader"
    folder.mkdir()
    monkeypatch.chdir(folder)
    # the groves under test, whether installed or on PYTHONPATH
    path = [str(Path(groves.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    printed = ""
    for language, block in blocks():
        needs_aws = block.startswith(NEEDS_AWS + "\n")
        if language == "text" and printed:
            assert keys(block) == keys(printed), "the README shows the summary groves prints"
            printed = ""
        if language in SHOWN:
            continue
        with monkeypatch.context() as scoped:
            if needs_aws:
                without_aws(scoped, tmp_path)
            if language == "python":
                ran = subprocess.run(
                    [sys.executable, "-"],
                    input=block,
                    cwd=folder,
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))},
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                ran_as_written(ran, needs_aws, block)
                continue
            for words in commands(block):
                if words in SET_UP:
                    continue
                assert words[0] == "groves", f"a command the README test cannot run: {words}"
                code = cli.main(words[1:])
                out, err = capsys.readouterr()
                if needs_aws:
                    assert (code, err) == (1, f"groves: {NO_REGION}\n"), words
                else:
                    assert code == 0, f"{shlex.join(words)}: {err}"
                printed = out
    assert (folder / "groves-runs" / "demo" / "latest.json").exists()


def ran_as_written(ran: subprocess.CompletedProcess, needs_aws: bool, block: str) -> None:
    """A Python block succeeded or, needing AWS, ended in groves' one line."""
    if not needs_aws:
        assert ran.returncode == 0, f"{block}\n{ran.stderr}"
        return
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.strip().splitlines()[-1] == f"groves.errors.AwsError: {NO_REGION}"
    assert "botocore" not in ran.stderr, ran.stderr


def test_the_readme_quotes_the_line_its_aws_block_ends_in() -> None:
    assert f"`{NO_REGION}`" in README.read_text()
    assert any(block.startswith(NEEDS_AWS) for _, block in blocks())


def test_the_test_command_is_what_ci_runs_and_the_set_up_installs_and_runs_the_demo() -> None:
    shell = [commands(block) for language, block in blocks() if language == "sh"]
    set_up, test = shell[0], shell[1]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert commands(ci[0]) == test == [shlex.split("pip install -e '.[dev]'"), SET_UP[-1]]
    assert shlex.split("pip install -e .") in set_up and set_up[-1][:2] == ["groves", "run"]
    used = [words for chain in shell for words in chain]
    assert [words for words in SET_UP if words not in used] == [], "SET_UP lists only these"


def expand(pattern: str) -> list[str]:
    """Shell brace expansion of ``a/{b,c}/d``."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [path for part in match[1].split(",") for path in expand(head + part + tail)]


def piece_paths() -> list[str]:
    """Every path in the "where" column of the README's table of pieces."""
    section = README.read_text().split("## Where each piece is", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return [path for row in rows[1:] for path in expand_all(re.findall(r"`([^`]+)`", row[-1]))]


def expand_all(patterns: list[str]) -> list[str]:
    return [path for pattern in patterns for path in expand(pattern)]


def test_the_table_of_pieces_names_what_the_repository_has() -> None:
    paths = piece_paths()
    assert [path for path in paths if not (ROOT / path).exists()] == []
    for folder in ("functions", "statemachine"):
        there = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).iterdir()}
        named = {"/".join(path.split("/")[:2]) for path in paths if path.startswith(folder)}
        assert there == named, folder


def test_the_readme_counts_the_templates_functions_layers_and_state_machines() -> None:
    template, _ = decode(str(ROOT / "template.yaml"))
    resources: list[dict[str, Any]] = list(template["Resources"].values())

    def count(kind: str, conditional: bool = False) -> int:
        return sum(r["Type"] == kind and ("Condition" in r) == conditional for r in resources)

    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    words += ["ten", "eleven", "twelve"]
    text = " ".join(README.read_text().split())
    assert f"{words[count('AWS::Serverless::Function')]} step functions (and the serve" in text
    assert count("AWS::Serverless::Function", conditional=True) == 1  # the serve function
    layers = count("AWS::Serverless::LayerVersion") + count("AWS::Serverless::LayerVersion", True)
    assert f"{words[layers]} layers" in text
    assert f"{words[count('AWS::Serverless::StateMachine')]} state machines" in text


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize(
    "page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_every_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    assert broken == []
