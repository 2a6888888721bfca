"""The serve function (groves.steps.serve) and ``groves serve``: one build's model answering
JSON rows by column name as ``groves.load_model`` predicts them (text columns, missing values,
booleans, regressors, several outputs), bad requests refused in one JSON line naming the field,
a real HTTP server with concurrent clients, and a model that follows the build's latest run
without a failed request."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

import groves
from groves.engine.local import run_local
from groves.engine.server import serve
from groves.steps import serve as serving
from groves.steps.serve import Service
from groves.store.local import LocalStore

COLORS = np.array(["red", "green", "blue", "teal"])


def table(n: int, seed: int) -> pd.DataFrame:
    """Text with gaps, numbers with NaN, a boolean; a text label and a number to predict."""
    rng = np.random.default_rng(seed)
    color = pd.Series(COLORS[rng.integers(0, 4, n)], dtype=object)
    size = rng.normal(10, 3, n).round(1)
    flag = rng.random(n) < 0.4
    count = rng.integers(0, 50, n)
    status = np.where((size > 10) ^ (color == "teal") | flag & (count > 25), "late", "on time")
    frame = pd.DataFrame(
        {"color": color, "size": size, "flag": flag, "count": count, "status": status}
    )
    frame["amount"] = size * 3 + count + np.where(flag, 5.0, 0.0)
    frame.loc[rng.random(n) < 0.1, "color"] = None
    frame.loc[rng.random(n) < 0.1, "size"] = np.nan
    return frame


def train(store: Path, dataset: str, seed: int = 1, **request: Any) -> dict[str, Any]:
    run = run_local(
        {"build_id": "s", "n_trees": 8, "grove_size": 3, "dataset": dataset, "seed": seed}
        | request,
        str(store),
        workers=2,
    )
    assert run.status == "SUCCEEDED", run.cause
    return run.output


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A classifier trained on a Parquet table, and new rows to ask it about."""
    folder = tmp_path_factory.mktemp("serve")
    data = folder / "train.parquet"
    frame = table(400, 0)
    pq.write_table(pa.Table.from_pandas(frame.drop(columns="amount"), preserve_index=False), data)
    train(folder / "store", str(data), target="status")
    new = table(120, 5).drop(columns=["status", "amount"])
    new.loc[:3, "color"] = "mauve"  # never seen in training: missing
    return folder / "store", new


def records(frame: pd.DataFrame, seed: int = 0) -> list[dict[str, Any]]:
    """Rows as a client sends them: JSON objects, keys in a shuffled order, null for gaps."""
    rng = np.random.default_rng(seed)
    out = []
    for row in json.loads(frame.to_json(orient="records")):
        keys = list(row)
        rng.shuffle(keys)
        out.append({k: row[k] for k in keys})
    return out


def test_answers_are_the_loaded_models_row_for_row(built: tuple[Path, pd.DataFrame]) -> None:
    store, new = built
    service = Service(LocalStore(store), "s")
    answer = service.predict({"rows": records(new)})
    model = groves.load_model(str(store), "s")
    assert answer["predictions"] == model.predict(new).tolist()
    np.testing.assert_allclose(answer["probabilities"], model.predict_proba(new), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(answer["probabilities"], model.predict_proba(new))
    assert answer["classes"] == ["late", "on time"] == model.classes_.tolist()
    assert answer["build_id"] == "s"
    assert answer["run_id"] == json.loads((store / "s/latest.json").read_text())["run_id"]


def test_a_regressor_and_a_model_without_column_names(tmp_path: Path) -> None:
    frame = table(300, 1)
    data = tmp_path / "train.csv"
    frame.drop(columns="status").to_csv(data, index=False)
    train(tmp_path / "store", str(data), target="amount", estimator="regressor")
    service = Service(LocalStore(tmp_path / "store"), "s")
    new = table(50, 2).drop(columns=["status", "amount"])
    answer = service.predict({"rows": records(new)})
    assert set(answer) == {"predictions", "build_id", "run_id"}
    model = groves.load_model(str(tmp_path / "store"), "s")
    np.testing.assert_array_equal(answer["predictions"], model.predict(new))

    rng = np.random.default_rng(0)  # two outputs, no names: rows as plain lists too
    X = rng.normal(size=(200, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.c_[np.nan_to_num(X[:, 0]) > 0, np.nan_to_num(X[:, 1]) > 0.5].astype(int)
    np.savez(tmp_path / "multi.npz", X=X, y=y)
    train(tmp_path / "multi", str(tmp_path / "multi.npz"))
    service = Service(LocalStore(tmp_path / "multi"), "s")
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in X[:40]]
    answer = service.predict({"rows": rows})
    model = groves.load_model(str(tmp_path / "multi"), "s")
    expected = model.predict(X[:40])
    assert answer["predictions"] == [expected[:, 0].tolist(), expected[:, 1].tolist()]
    for got, want in zip(answer["probabilities"], model.predict_proba(X[:40]), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert answer["classes"] == [[0, 1], [0, 1]]


GOOD = {"color": "red", "size": 9.5, "flag": False, "count": 3}
BAD_REQUESTS = [
    (b"{not json", 400, "body", "is not JSON"),
    (b"\xff\xfe", 400, "body", "not UTF-8"),
    (b"[1, 2]", 400, "body", "must be a JSON object"),
    (b'{"rows": [], "limit": 3}', 400, "limit", "is not a field"),
    (b"{}", 400, "rows", "is missing"),
    (b'{"rows": {"color": "red"}}', 400, "rows", "must be a list of rows"),
    (b'{"rows": []}', 400, "rows", "is empty"),
    (json.dumps({"rows": [GOOD] * 1001}).encode(), 413, "rows", "1001 rows; at most 1000"),
    (b" " * (2**20 + 1), 413, "body", "at most 1048576"),
    (
        json.dumps({"rows": [GOOD, {**GOOD, "colour": "red"}]}).encode(),
        400,
        "rows[1].colour",
        "is not a column",
    ),
    (
        json.dumps({"rows": [{k: v for k, v in GOOD.items() if k != "size"}]}).encode(),
        400,
        "rows[0].size",
        "is missing",
    ),
    (
        json.dumps({"rows": [{**GOOD, "color": 3}]}).encode(),
        400,
        "rows[0].color",
        "is a text column",
    ),
    (
        json.dumps({"rows": [{**GOOD, "size": "big"}]}).encode(),
        400,
        "rows[0].size",
        "must be a number or null",
    ),
    (
        json.dumps({"rows": [{**GOOD, "flag": "yes"}]}).encode(),
        400,
        "rows[0].flag",
        "must be a number, true/false or null",
    ),
    (
        json.dumps({"rows": [{**GOOD, "count": 1e39}]}).encode(),
        400,
        "rows[0].count",
        "beyond float32",
    ),
    (json.dumps({"rows": [[1, 2, 3, 4]]}).encode(), 400, "rows[0]", "has named columns"),
    (json.dumps({"rows": ["red"]}).encode(), 400, "rows[0]", "must be an object"),
    (b"[" * 200_000 + b"]" * 200_000, 400, "body", "is nested too deeply"),
]


@pytest.mark.parametrize(
    ("body", "status", "field", "words"), BAD_REQUESTS, ids=[r[3] for r in BAD_REQUESTS]
)
def test_a_bad_request_is_a_4xx_naming_the_field(
    built: tuple[Path, pd.DataFrame], body: bytes, status: int, field: str, words: str
) -> None:
    store, _ = built
    got, payload = Service(LocalStore(store), "s").respond("POST", "/", body)
    assert (got, payload["field"]) == (status, field)
    assert words in payload["error"] and payload["error"].startswith(field)
    assert "Traceback" not in json.dumps(payload)


def test_good_values_of_every_kind_and_the_methods_and_paths(
    built: tuple[Path, pd.DataFrame],
) -> None:
    store, _ = built
    service = Service(LocalStore(store), "s")
    loose = {"color": None, "size": "9.5", "flag": 1, "count": True}  # as groves predict reads
    strict = {"color": None, "size": 9.5, "flag": True, "count": 1}
    text = {"color": None, "size": " 9.5 ", "flag": "TRUE", "count": "1"}
    assert service.predict({"rows": [loose]}) == service.predict({"rows": [strict]})
    assert service.predict({"rows": [text]}) == service.predict({"rows": [strict]})
    assert service.respond("GET", "/", b"")[1]["columns"][0] == {
        "name": "color",
        "kind": "category",
        "categories": ["blue", "green", "red", "teal"],
    }
    assert service.respond("DELETE", "/", b"")[0] == 405
    assert service.respond("POST", "/predict", b"{}")[0] == 404
    missing = Service(LocalStore(store), "nothing-here").respond("GET", "/", b"")
    assert missing[0] == 503 and "no committed run" in missing[1]["error"]


def function_url_event(body: bytes, method: str = "POST", encode: bool = False) -> dict[str, Any]:
    """A Lambda Function URL event, payload format 2.0."""
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": "/"}},
        "body": base64.b64encode(body).decode() if encode else body.decode(),
        "isBase64Encoded": encode,
    }


def test_the_lambda_handler_answers_function_url_events(
    built: tuple[Path, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, new = built
    monkeypatch.setattr(serving, "_SERVICE", None)
    monkeypatch.setenv("GROVES_STORE", str(store))
    monkeypatch.setenv("GROVES_BUILD", "s")
    body = json.dumps({"rows": records(new.iloc[:5])}).encode()
    for encode in (False, True):
        response = serving.handler(function_url_event(body, encode=encode))
        assert response["statusCode"] == 200
        assert response["headers"] == {"content-type": "application/json"}
        assert "\n" not in response["body"]
        expected = Service(LocalStore(store), "s").predict({"rows": records(new.iloc[:5])})
        assert json.loads(response["body"]) == expected
    bad = serving.handler(function_url_event(b'{"rows": [{"x": 1}]}'))
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["field"] == "rows[0].x"
    monkeypatch.setattr(serving, "_SERVICE", None)
    monkeypatch.delenv("GROVES_BUILD")
    unset = serving.handler(function_url_event(body))
    assert unset["statusCode"] == 500 and "GROVES_BUILD" in unset["body"]


@pytest.fixture
def server(built: tuple[Path, pd.DataFrame]) -> Iterator[Any]:
    store, _ = built
    with serve(Service(LocalStore(store), "s"), port=0).start() as running:
        yield running


def post(url: str, payload: Any, connection: http.client.HTTPConnection | None = None) -> Any:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    conn = connection or http.client.HTTPConnection(host, int(port), timeout=10)
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    conn.request("POST", "/", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if connection is None:
        conn.close()
    return response.status, json.loads(data)


def test_the_local_server_answers_over_http_as_the_service_does(
    server: Any, built: tuple[Path, pd.DataFrame]
) -> None:
    store, new = built
    rows = records(new.iloc[:20])
    status, payload = post(server.url, {"rows": rows})
    assert status == 200
    assert payload == Service(LocalStore(store), "s").predict({"rows": rows})
    assert post(server.url, b"{oops") == (
        400,
        {
            "error": "body: is not JSON (Expecting property name enclosed in double quotes: line 1 "
            "column 2 (char 1))",
            "field": "body",
        },
    )
    status, payload = post(server.url, b" " * (2**20 + 1))
    assert status == 413 and payload["field"] == "body"


def test_concurrent_clients_on_persistent_connections(
    server: Any, built: tuple[Path, pd.DataFrame]
) -> None:
    _, new = built
    rows = records(new)
    expected = [post(server.url, {"rows": [row]})[1] for row in rows[:16]]
    failures: list[Any] = []

    def client(k: int) -> None:
        host, port = server.url.removeprefix("http://").rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        for i in range(40):
            j = (k + i) % 16
            got = post(server.url, {"rows": [rows[j]]}, conn)
            if got != (200, expected[j]):
                failures.append(got)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_the_model_follows_the_builds_latest_run_without_a_failed_request(
    tmp_path: Path,
) -> None:
    """GIVEN a server answering from run A, WHEN run B of the build is committed while 4
    clients keep asking, THEN every request succeeds, each answer is the one of the run it
    names, and within the refresh interval plus a load every answer names B."""
    frame = table(300, 3)
    data = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pandas(frame.drop(columns="amount"), preserve_index=False), data)
    store = tmp_path / "store"
    first = train(store, str(data), target="status")["run_id"]
    new = table(30, 4).drop(columns=["status", "amount"])
    rows = records(new)
    answers: list[tuple[float, int, dict[str, Any]]] = []
    stop = threading.Event()
    service = Service(LocalStore(store), "s", refresh_seconds=0.2)
    with serve(service, port=0).start() as running:

        def client() -> None:
            while not stop.is_set():
                status, payload = post(running.url, {"rows": rows})
                answers.append((time.monotonic(), status, payload))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        second = train(store, str(data), target="status", seed=2)["run_id"]
        committed = time.monotonic()
        deadline = committed + 10
        while time.monotonic() < deadline and not (
            answers and answers[-1][2].get("run_id") == second
        ):
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
    assert {status for _, status, _ in answers} == {200}
    runs = [payload["run_id"] for _, _, payload in answers]
    assert runs[0] == first and runs[-1] == second
    switched = next(at for at, _, p in answers if p["run_id"] == second)
    assert switched - committed < 5
    for run_id in (first, second):
        model = groves.load_model(str(store), "s", run_id=run_id)
        payload = next(p for _, _, p in answers if p["run_id"] == run_id)
        assert payload["predictions"] == model.predict(new).tolist()


def test_a_pinned_run_stays(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = train(store, "iris")["run_id"]
    service = Service(LocalStore(store), "s", run_id=first, refresh_seconds=0)
    names = [c["name"] for c in service.model().describe()["columns"]]
    request = {"rows": [dict(zip(names, [5.1, 3.5, 1.4, 0.2], strict=True))]}
    train(store, "iris", seed=5)
    assert service.predict(request)["run_id"] == first
    assert Service(LocalStore(store), "s").predict(request)["run_id"] != first


def test_groves_serve_on_the_command_line(built: tuple[Path, pd.DataFrame]) -> None:
    """A real ``groves serve`` process: it prints where it listens, answers, and stops on
    SIGINT with exit status 0."""
    store, new = built
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "groves.cli", "serve", "s", "--store", str(store), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("serving   s (run ") and "following its latest" in first
        memory = process.stdout.readline()
        assert memory.startswith("lambda    ServeMemorySize=") and "MiB flat" in memory
        assert int(memory.split("=")[1].split()[0]) >= 1769
        url = process.stdout.readline().split()[1]
        status, payload = post(url, {"rows": records(new.iloc[:3])})
        assert status == 200 and len(payload["predictions"]) == 3
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0


def test_groves_serve_from_python(built: tuple[Path, pd.DataFrame]) -> None:
    store, new = built
    with groves.serve("s", str(store), port=0) as running:
        status, payload = post(running.url, {"rows": records(new.iloc[:2])})
    assert status == 200 and payload["build_id"] == "s"


def test_the_serve_function_answers_without_scikit_learn_or_pyarrow(
    built: tuple[Path, pd.DataFrame],
) -> None:
    """GIVEN the serve function's entry point in a fresh interpreter, WHEN it loads the model
    and answers, THEN neither scikit-learn, scipy, pandas nor pyarrow was imported."""
    store, new = built
    code = (
        "import json, sys; sys.path.insert(0, 'functions/serve'); import app; "
        "event = json.loads(sys.argv[1]); response = app.handler(event, None); "
        "print(response['statusCode'], "
        "sorted({'sklearn', 'scipy', 'pandas', 'pyarrow', 'joblib'} & set(sys.modules)))"
    )
    event = function_url_event(json.dumps({"rows": records(new.iloc[:3])}).encode())
    env = {**os.environ, "GROVES_STORE": str(store), "GROVES_BUILD": "s"}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(event)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert done.stdout.strip() == "200 []"


def test_the_command_line_starts_without_the_serve_functions_code() -> None:
    """``groves serve`` imports the server and the model's code when it runs: every other
    command starts as fast as before (no numpy at start-up)."""
    code = (
        "import sys, groves.cli; print(sorted({'numpy', 'groves.steps.serve'} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_new_run_that_does_not_load_leaves_the_current_one_answering(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    first = train(store, "iris")["run_id"]
    service = Service(LocalStore(store), "s", refresh_seconds=0)
    names = service.model().encoder.names
    request = {"rows": [dict(zip(names, [5.1, 3.5, 1.4, 0.2], strict=True))]}
    second = train(store, "iris", seed=5)["run_id"]
    grove = store / "s" / "runs" / second / "groves" / "grove_00000.trees"
    grove.write_bytes(b"\x00" * grove.stat().st_size)  # damaged after its commit
    with caplog.at_level("WARNING", logger="groves"):
        answer = service.predict(request)
    assert answer["run_id"] == first
    assert (
        f"kept run {first}" in caplog.text and "does not match its recorded sha256" in caplog.text
    )
