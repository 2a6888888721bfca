"""``groves report``: a self-contained HTML page with its plots, checked as a browser renders it."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import finished_execution

from groves import cli

PNG = b"\x89PNG\r\n\x1a\n"
# Appended to a copy of the page: once loaded, the body says how many images the browser drew.
COUNT_DRAWN = (
    "<script>window.addEventListener('load', () => document.body.setAttribute('data-drawn', "
    "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length))</script>"
)


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


def images_drawn_by_chromium(page: Path) -> int:
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium) to render the report")
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", COUNT_DRAWN + "</body>"))
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'data-drawn="(\d+)"', dom)
    assert found, dom[:500]
    return int(found.group(1))


def test_report_of_a_scored_run_renders_its_plots_in_a_browser(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "store")
    args = ["-t", "12", "-g", "3", "--dataset", "digits", "-p", "--store", store]
    assert cli.main(["run", "r", *args]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert cli.main(["report", "r", "--store", store, "--out", str(out)]) == 0
    page = out / "report.html"
    assert capsys.readouterr().out.strip() == f"report    {page}"
    text = page.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [
        "confusion.png",
        "grove_scores.png",
        "importances.png",
        "score_by_trees.png",
        "timeline.png",
    ]
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(f.read_bytes() for f in files)
    assert all(f.read_bytes().startswith(PNG) for f in files)
    assert "accuracy 0." in text and "Lambda" in text and "in 4 groves" in text
    assert "grove_00003.trees" in text and '"n_trees": 12' in html.unescape(text)
    assert "Plan" in text and "TrainGroves" in text  # the steps of the execution
    assert "Confusion matrix on 450 held-out rows" in text or "Confusion matrix" in text
    assert images_drawn_by_chromium(page) == 5


def test_report_goes_to_the_runs_folder_and_says_when_a_run_is_not_scored(
    tmp_path: Path, capsys
) -> None:
    store = tmp_path / "store"
    assert (
        cli.main(["run", "u", "-t", "4", "-g", "2", "--dataset", "iris", "--store", str(store)])
        == 0
    )
    capsys.readouterr()
    assert cli.main(["report", "u", "--store", str(store)]) == 0
    (page,) = store.glob("u/runs/*/report/report.html")
    assert str(page) in capsys.readouterr().out
    text = page.read_text()
    assert "not scored: run with --predict" in text
    # no scores: the importances, the confusion matrix (from the groves' votes) and the timeline
    assert text.count("data:image/png;base64,") == 3
    assert cli.main(["report", "none", "--store", str(store)]) == 1
    assert "build 'none' has no committed run" in capsys.readouterr().err


def test_a_regressors_report_plots_its_predictions_against_the_actual_values(
    tmp_path: Path, capsys
) -> None:
    store = str(tmp_path / "store")
    args = ["-t", "6", "-g", "3", "--dataset", "diabetes", "--estimator", "regressor", "-p"]
    assert cli.main(["run", "g", *args, "--store", store]) == 0
    out = tmp_path / "out"
    assert cli.main(["report", "g", "--store", store, "--out", str(out)]) == 0
    assert {f.name for f in out.glob("*.png")} >= {"predicted_vs_actual.png", "importances.png"}
    assert not (out / "confusion.png").exists()
    assert images_drawn_by_chromium(out / "report.html") == 5


def test_a_searchs_best_reports_what_the_search_measured(tmp_path: Path, capsys) -> None:
    """The committed best of a search: its validation rank and score, the held-out score the
    search read once, the search's rows, steps and whole cost (not 0 state transitions)."""
    store = str(tmp_path / "store")
    argv = ["search", "s", "-t", "4", "-g", "2", "--dataset", "iris", "--store", store]
    assert cli.main([*argv, "--grid", "max_depth=2,3", "--commit"]) == 0
    out = tmp_path / "out"
    assert cli.main(["report", "s", "--store", store, "--out", str(out)]) == 0
    text = html.unescape((out / "report.html").read_text())
    assert "ranked 1 of 2 by validation score" in text
    assert "held-out rows (read once, after the choice)" in text
    assert "validation rows" in text and "held out by the search" in text
    assert "not scored" not in text and " 0 state transitions" not in text
    assert "the whole search" in text and "ScoreCandidates" in text
    assert "Confusion matrix on" in text or (out / "confusion.png").exists()


def test_a_deployed_runs_report_takes_its_steps_from_step_functions(
    tmp_path: Path, capsys, aws_env: None
) -> None:
    """A run trained on AWS has no history in the store: --execution-arn reads its steps from
    Step Functions (here moto's engine running a two-step machine)."""
    import boto3
    from moto import mock_aws

    store = str(tmp_path / "store")
    assert cli.main(["run", "d", "-t", "4", "-g", "2", "--dataset", "iris", "--store", store]) == 0
    steps = {
        "StartAt": "Plan",
        "States": {
            "Plan": {"Type": "Pass", "Next": "Merge"},
            "Merge": {"Type": "Pass", "End": True},
        },
    }
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions")
        arn = finished_execution(sfn, steps, "forest")
        out = tmp_path / "out"
        argv = ["report", "d", "--store", store, "--out", str(out), "--execution-arn", arn]
        assert cli.main(argv) == 0
    steps_html = (out / "report.html").read_text().split("<h2>Steps of the last execution</h2>")[1]
    steps_html = steps_html.split("<h2>")[0]
    assert "<th>Plan</th>" in steps_html and "<th>Merge</th>" in steps_html
    assert "TrainGroves" not in steps_html, "the deployed execution's steps, not the local run's"
