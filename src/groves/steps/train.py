"""Train one grove: a scikit-learn forest of the grove's trees, seeded by the grove, fitted on
the run's prepared training rows; while they are loaded it also sums its votes on the held-out
rows, so that scoring never has to load the forest."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import sklearn
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from groves.data.prepared import read_prepared
from groves.errors import BuildError
from groves.forest.format import write_grove
from groves.forest.votes import forest_classes, summed_votes
from groves.steps.checks import ESTIMATORS
from groves.steps.cost import N_JOBS_ENV, Invocation, peak_rss_mb
from groves.steps.planned import planned_grove
from groves.store.artifacts import (
    GROVE_SUFFIX,
    VOTES_SUFFIX,
    digest,
    grove_key,
    read_plan,
    read_verified,
)
from groves.store.codec import dump_npy_lz4, get_json, put_json
from groves.store.protocol import Store
from groves.store.records import record_format


def make_forest(
    spec: dict[str, Any], n_trees: int, seed: int, classes: list[Any] | None = None
) -> RandomForestClassifier | RandomForestRegressor:
    """The grove's forest; ``GROVES_N_JOBS`` (default: every core) sets its threads, never
    more than its trees: one thread fits a 1-tree grove without joblib's thread pool, whose
    start-up and 10 ms result polling took 60% of a 1-tree grove's time."""
    n_jobs = int(os.environ.get(N_JOBS_ENV, "-1"))
    if n_jobs < 1:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    n_jobs = max(1, min(n_jobs, n_trees))
    params = dict(spec["params"])
    if isinstance(params.get("class_weight"), dict):  # JSON's keys are text: the classes again
        given = params["class_weight"]
        params["class_weight"] = {c: given[str(c)] for c in classes or () if str(c) in given}
    return ESTIMATORS[spec["estimator"]](
        n_estimators=n_trees, random_state=seed, n_jobs=n_jobs, **params
    )


def verified_grove(
    store: Store, build_id: str, run_id: str, grove: dict[str, Any]
) -> dict[str, Any] | None:
    """The stored metadata of a grove of this run whose files match it, else ``None``."""
    meta_key = grove_key(build_id, run_id, grove["grove_id"], "json")
    if not store.exists(meta_key):
        return None
    try:
        meta = get_json(store, meta_key)
    except ValueError:  # truncated or not JSON: the grove is trained again
        return None
    if (
        not isinstance(meta, dict)
        or meta.get("run_id") != run_id
        or any(meta.get(k) != v for k, v in grove.items())
    ):
        return None
    try:
        gid = grove["grove_id"]
        read_verified(store, grove_key(build_id, run_id, gid, GROVE_SUFFIX), meta, "")
        read_verified(store, grove_key(build_id, run_id, gid, VOTES_SUFFIX), meta["votes"], "")
    except (BuildError, KeyError, TypeError):
        return None
    return meta


def is_planned(spec: dict[str, Any], grove: Any) -> bool:
    """Whether ``grove`` is, field for field, one of the groves the request plans."""
    gid = grove.get("grove_id") if isinstance(grove, dict) else None
    if not isinstance(gid, int) or isinstance(gid, bool):
        return False
    try:
        return planned_grove(spec, gid) == grove
    except ValueError:
        return False


def train_groves(
    store: Store,
    build_id: str,
    run_id: str,
    groves: list[Any],
    invocation: Invocation | None = None,
) -> Iterator[dict[str, Any]]:
    """Fit each grove of a batch on the run's prepared training rows, save it and its votes on
    the test rows, and yield its small metadata. The plan and the prepared split are read
    once per batch, and only if some grove needs training; every grove is checked against
    the plan before any is trained.

    Idempotent: a grove of this run that already has verified files is not trained again
    (what makes ``--resume`` and Step Functions redrive cheap).

    Each grove records its share of the ``invocation`` (the time since the batch's previous
    grove ended: the first grove's share includes reading the plan and the data), where it ran
    and when, as its ``usage``."""
    invocation = invocation or Invocation.begin("train_grove")
    plan = read_plan(store, build_id, run_id)
    for grove in groves:
        if not is_planned(plan["spec"], grove):
            raise BuildError(f"grove {grove!r} is not part of the plan of build {build_id!r}")
    split = None
    sample = (plan.get("sample") or {}).get("rows")  # None: every grove reads every row
    share_started = invocation.started
    for grove in groves:
        started = time.perf_counter()
        done = verified_grove(store, build_id, run_id, grove)
        if done is not None:
            yield {**done, "reused": True}
            share_started = time.perf_counter()
            continue
        if split is None or sample is not None:  # a sample of its own for each grove
            names = ("X_train", "y_train", "w_train", "X_test")
            split = None  # the previous grove's rows go before this one's are read
            split = read_prepared(store, plan, names, (sample, grove["seed"]))
        share = Share(invocation, share_started)
        yield {**fit_grove(store, plan, split, grove, started, share), "reused": False}
        share_started = time.perf_counter()


class Share:
    """A grove's share of its invocation, from ``since`` (a ``perf_counter`` time) on."""

    def __init__(self, invocation: Invocation, since: float) -> None:
        self.invocation, self.since = invocation, since
        self.started_at = invocation.started_at + (since - invocation.started)

    def usage(self) -> dict[str, Any]:
        """The share's usage so far, with when it started and ended (epoch seconds)."""
        usage = self.invocation.usage(self.since)
        return {**usage, "started_at": round(self.started_at, 3), "ended_at": round(time.time(), 3)}


def fit_grove(
    store: Store,
    plan: dict[str, Any],
    split: Any,
    grove: dict[str, Any],
    started: float,
    share: Share,
) -> dict[str, Any]:
    """Fit one grove, write its votes and model, then its metadata (the grove's commit)."""
    build_id, run_id, gid = plan["build_id"], plan["run_id"], grove["grove_id"]
    forest = make_forest(plan["spec"], grove["n_trees"], grove["seed"], plan["data"]["classes"])
    fit_started = time.perf_counter()
    forest.fit(split.X_train, split.y_train, sample_weight=split.w_train)
    fit_seconds = time.perf_counter() - fit_started
    votes = dump_npy_lz4(summed_votes(forest, split.X_test))
    blob = write_grove(forest)
    store.put_bytes(grove_key(build_id, run_id, gid, VOTES_SUFFIX), votes)
    store.put_bytes(grove_key(build_id, run_id, gid, GROVE_SUFFIX), blob)
    meta = {
        "format": record_format("grove"),
        **grove,
        "build_id": build_id,
        "run_id": run_id,
        **digest(blob),
        "votes": digest(votes),
        "fit_seconds": round(fit_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mb": peak_rss_mb(),
        "n_train": len(split.y_train),
        "n_features": int(split.X_train.shape[1]),
        "classes": forest_classes(forest),
        "split_fingerprint": split.fingerprint,
        "sklearn_version": sklearn.__version__,
        "usage": share.usage(),
    }
    put_json(store, grove_key(build_id, run_id, gid, "json"), meta)
    return meta
