"""Ready events for one step's handler, as the training state machine would pass them: for
``sam local invoke`` (``groves event STEP NAME``) and for calling ``functions/*/app.py`` by hand.

- ``plan``: ``{"store", "request"}`` for a new run of the build;
- ``train_grove``: one ItemBatcher batch ``{"Items", "BatchInput"}`` of the build's run
  (``default_run``, or ``run_id``): every planned grove, or grove ``grove`` alone, derived
  from the run's stored plan as plan derives them, so seeds are never copied by hand;
- ``merge``, ``predict``: ``{"store", "build_id", "run_id"}`` of that run.

The run by default is the build's latest committed run, unless the build planned a newer run
of its own since (what ``sam local invoke PlanFunction`` just did): a search's candidates are
never picked, as nothing but the search trains or merges them.
"""

from __future__ import annotations

from typing import Any

from groves.errors import RequestError
from groves.store.artifacts import latest_run, plan_key, read_plan, run_ids
from groves.store.codec import get_json
from groves.store.protocol import Store

STEPS = ("plan", "train_grove", "merge", "predict")


def default_run(store: Store, build_id: str) -> str:
    """The build's latest committed run, or a newer run the build planned itself (not a
    search's candidate) since."""
    latest = latest_run(store, build_id) or ""
    for run_id in reversed(run_ids(store, build_id)):
        if run_id <= latest:
            return latest
        key = plan_key(build_id, run_id)
        if store.exists(key) and "search_id" not in get_json(store, key):
            return run_id
    if latest:
        return latest
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
    run_id = run_id or default_run(store, build_id)
    ids = {"store": store.uri, "build_id": build_id, "run_id": run_id}
    if step != "train_grove":
        return ids
    from groves.steps.planned import planned_groves  # numpy: not at the CLI's start-up (STEPS)

    items = planned_groves(read_plan(store, build_id, run_id)["spec"])
    if grove is not None:
        if not 0 <= grove < len(items):
            raise RequestError("grove", f"{grove} is not one of the run's {len(items)} groves")
        items = [items[grove]]
    return {"Items": items, "BatchInput": ids}
