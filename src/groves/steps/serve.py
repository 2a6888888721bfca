"""The serve function: one build's model answering JSON over HTTPS (a Lambda Function URL,
payload format 2.0), and the same answers behind ``groves serve``'s local server.

``POST /`` with ``{"rows": [{"<column>": value, ...}, ...]}`` (columns by name, any order,
encoded as the training rows were: ``groves.data.records``) answers ``200`` with
``{"predictions": [...], "probabilities": [[...], ...], "classes": [...], "build_id": ...,
"run_id": ...}``: a regressor's answer has no probabilities or classes; with several outputs,
``predictions``, ``probabilities`` and ``classes`` hold one list per output. ``GET /``
describes the model (columns, kinds, categories, classes). A bad request is a ``4xx`` whose
body is one JSON line, ``{"error": ..., "field": ...}``, naming the field or the row and
column; ``503`` when the model cannot be loaded; never a stack trace.

The model (``forest.served``: verified groves in a ``forest.kernel``, no scikit-learn) is the
build's latest committed run, or a pinned one. Every ``refresh_seconds`` one request reads
``latest.json``; when it names another run, that request loads it and swaps it in, while
concurrent requests keep answering from the model they hold: no request fails during the
switch, and every answer names the run that gave it.

The deployed function is configured by ``GROVES_STORE``, ``GROVES_BUILD`` and optionally
``GROVES_RUN`` (pinned), ``GROVES_REFRESH_SECONDS``, ``GROVES_MAX_ROWS``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from groves.errors import GrovesError, RequestError
from groves.forest.served import ServedModel, load_served
from groves.steps.request import REFRESH_SECONDS
from groves.store.artifacts import check_build_id, check_run_id, latest_run
from groves.store.protocol import Store
from groves.store.uris import open_store

log = logging.getLogger("groves")
MAX_ROWS = 1_000  # rows a request may hold
MAX_BODY_BYTES = 2**20  # a request's body (a Function URL takes up to 6 MB)
JSON_HEADERS = {"content-type": "application/json"}


class TooLarge(RequestError):
    """A request over a limit (rows, bytes): HTTP 413."""


class Service:
    """One build's model behind the serve function's requests (thread-safe)."""

    def __init__(
        self,
        store: Store,
        build_id: str,
        run_id: str | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        max_rows: int = MAX_ROWS,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.build_id = store, check_build_id({"build_id": build_id})
        self.pinned = None if run_id is None else check_run_id(run_id)
        self.refresh_seconds = refresh_seconds
        self.max_rows = max_rows
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self._model: ServedModel | None = None
        self._checked = -float("inf")
        self._loading = threading.Lock()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Service:
        """The deployed function's service, from its environment variables."""
        env = os.environ if environ is None else environ
        missing = [name for name in ("GROVES_STORE", "GROVES_BUILD") if not env.get(name)]
        if missing:
            raise RequestError(missing[0], "is not set: the serve function needs a store and build")
        return cls(
            open_store(env["GROVES_STORE"]),
            env["GROVES_BUILD"],
            env.get("GROVES_RUN") or None,
            float(env.get("GROVES_REFRESH_SECONDS") or REFRESH_SECONDS),
            int(env.get("GROVES_MAX_ROWS") or MAX_ROWS),
        )

    # ---- the model, kept fresh --------------------------------------------------------------

    def model(self) -> ServedModel:
        """The model to answer with: loaded on first use; then, every ``refresh_seconds``,
        the run ``latest.json`` names, swapped in once loaded. Only one caller checks and
        loads at a time; the others answer from the model they have meanwhile."""
        current = self._model
        if current is None:
            with self._loading:
                if self._model is None:
                    self._model = load_served(self.store, self.build_id, self.pinned)
                    self._checked = self.clock()
                return self._model
        elapsed = self.clock() - self._checked  # negative after a SnapStart restore: due
        if self.pinned or 0 <= elapsed < self.refresh_seconds:
            return current
        if not self._loading.acquire(blocking=False):
            return current
        try:
            self._checked = self.clock()
            latest = latest_run(self.store, self.build_id)
            if latest is not None and latest != current.run_id:
                self._model = load_served(self.store, self.build_id, latest)
                log.info("serving run %s of %s (was %s)", latest, self.build_id, current.run_id)
        except Exception as exc:  # a run that does not load, a store that does not answer
            log.warning("kept run %s of %s: %r", current.run_id, self.build_id, exc)
        finally:
            self._loading.release()
        return self._model or current

    # ---- requests ---------------------------------------------------------------------------

    def predict(self, request: Any) -> dict[str, Any]:
        """The answer to a request body already parsed (``{"rows": [...]}``); a bad one is a
        ``RequestError`` naming the field."""
        if not isinstance(request, dict):
            raise RequestError("body", 'must be a JSON object: {"rows": [...]}')
        extra = [name for name in request if name != "rows"]
        if extra:
            raise RequestError(extra[0], 'is not a field of a request; it takes {"rows": [...]}')
        if "rows" not in request:
            raise RequestError("rows", 'is missing: {"rows": [{"<column>": value, ...}, ...]}')
        rows = request["rows"]
        if isinstance(rows, list) and len(rows) > self.max_rows:
            raise TooLarge("rows", f"{len(rows)} rows; at most {self.max_rows} a request")
        if isinstance(rows, list) and not rows:
            raise RequestError("rows", "is empty: give at least one row")
        model = self.model()
        X = model.encoder.encode(rows)
        return answer(model, X)

    def respond(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """An HTTP request's status and JSON body."""
        try:
            if path.rstrip("/") != "":
                return 404, {"error": f"no such path {path!r}: the model answers at /"}
            if method == "GET":
                return 200, self.model().describe()
            if method != "POST":
                return 405, {"error": f"{method} is not allowed: POST rows, or GET a description"}
            if len(body) > self.max_body_bytes:
                raise TooLarge("body", f"{len(body)} bytes; at most {self.max_body_bytes}")
            return 200, self.predict(parse_body(body))
        except TooLarge as exc:
            return 413, error_body(exc)
        except RequestError as exc:
            return 400, error_body(exc)
        except GrovesError as exc:  # the model cannot be loaded: not the request's fault
            return 503, {"error": f"the model is not available: {exc}"}
        except Exception:
            log.exception("serve: unexpected error")
            return 500, {"error": "internal error (logged by the server)"}

    def lambda_response(self, event: Any) -> dict[str, Any]:
        """A Function URL event (payload format 2.0) answered."""
        if not isinstance(event, dict):
            status, payload = 400, {"error": "not a Function URL event"}
        else:
            http = (event.get("requestContext") or {}).get("http") or {}
            body = event.get("body") or ""
            try:
                raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
            except ValueError:
                raw = b"\xff"  # not base64: refused as not JSON
            path = event.get("rawPath") or http.get("path") or "/"
            status, payload = self.respond(str(http.get("method", "POST")), path, raw)
        return {"statusCode": status, "headers": JSON_HEADERS, "body": dump(payload)}


def parse_body(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError("body", "is not UTF-8 text") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise RequestError("body", "is nested too deeply") from exc
    except ValueError as exc:
        raise RequestError("body", f"is not JSON ({exc})") from exc


def error_body(exc: RequestError) -> dict[str, Any]:
    return {"error": str(exc), "field": exc.field}


def dump(payload: dict[str, Any]) -> str:
    """One line of JSON (strict: no bare NaN or Infinity)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def answer(model: ServedModel, X: Any) -> dict[str, Any]:
    """The response for encoded rows ``X``: predictions (and a classifier's probabilities and
    classes), and the build and run that answered."""
    kernel = model.kernel
    out: dict[str, Any] = {}
    if kernel.classes is None:
        values = kernel.predict(X)
        out["predictions"] = values.T.tolist()  # one list per output
    else:
        proba = kernel.predict_proba(X)
        parts = [proba] if kernel.n_outputs == 1 else proba
        labels = [c[p.argmax(axis=1)] for c, p in zip(kernel.classes, parts, strict=True)]
        if kernel.n_outputs == 1:
            out["predictions"] = labels[0].tolist()
            out["probabilities"] = parts[0].tolist()
        else:
            out["predictions"] = [label.tolist() for label in labels]
            out["probabilities"] = [p.tolist() for p in parts]
        out["classes"] = model.classes
    out["build_id"], out["run_id"] = model.build_id, model.run_id
    return out


_SERVICE: Service | None = None


def deployed_service() -> Service:
    """The function's service, made once per execution environment from its environment."""
    global _SERVICE
    if _SERVICE is None:
        _SERVICE = Service.from_env()
    return _SERVICE


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The deployed function's entry point (``functions/serve/app.py``)."""
    try:
        service = deployed_service()
    except RequestError as exc:  # a deployment without its variables
        log.error("serve: %s", exc)
        return {"statusCode": 500, "headers": JSON_HEADERS, "body": dump({"error": str(exc)})}
    return service.lambda_response(event)


def prepare() -> None:
    """Load the model at the function's start (its init phase), so that the first request
    finds it ready; a failure is logged and left for the first request to report."""
    try:
        deployed_service().model()
    except Exception as exc:
        log.warning("serve: the model was not loaded at start: %s", exc)
