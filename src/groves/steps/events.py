"""Ready events for one step's handler, as the training state machine would pass them: for
``sam local invoke`` (``groves event STEP NAME``) and for calling ``functions/*/app.py`` by hand.

- ``plan``: ``{"store", "request"}`` for a new run of the build;
- ``train_grove``: one ItemBatcher batch ``{"Items", "BatchInput"}`` of the build's newest run
  (or ``run_id``): every planned grove, or grove ``grove`` alone, read from the run's
  ``groves.json``, so seeds are never copied by hand;
- ``merge``, ``predict``: ``{"store", "build_id", "run_id"}`` of that run.
"""

from __future__ import annotations

from typing import Any

from groves.errors import RequestError
from groves.store.artifacts import items_key, plan_key, run_ids
from groves.store.storage import Store, get_json

STEPS = ("plan", "train_grove", "merge", "predict")


def newest_planned_run(store: Store, build_id: str) -> str:
    """The newest run of a build that has a plan."""
    for run_id in reversed(run_ids(store, build_id)):
        if store.exists(plan_key(build_id, run_id)):
            return run_id
    raise RequestError(
        "build_id", f"build {build_id!r} has no planned run in {store.uri}: invoke plan first"
    )


def step_event(
    store: Store,
    step: str,
    build_id: str,
    *,
    run_id: str | None = None,
    grove: int | None = None,
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event the state machine would pass ``step`` for build ``build_id``."""
    if step not in STEPS:
        raise RequestError("step", f"{step!r} is not one of {', '.join(STEPS)}")
    if step == "plan":
        return {"store": store.uri, "request": request or {"build_id": build_id}}
    run_id = run_id or newest_planned_run(store, build_id)
    ids = {"store": store.uri, "build_id": build_id, "run_id": run_id}
    if step != "train_grove":
        return ids
    items = get_json(store, items_key(build_id, run_id))
    if grove is not None:
        if not 0 <= grove < len(items):
            raise RequestError("grove", f"{grove} is not one of the run's {len(items)} groves")
        items = [items[grove]]
    return {"Items": items, "BatchInput": ids}
