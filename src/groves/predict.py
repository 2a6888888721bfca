"""Score a committed run's forest on its held-out split by aggregating its groves' votes."""

from __future__ import annotations

import functools
import itertools
import time
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import accuracy_score, r2_score

from groves.artifacts import load_verified, metrics_key, model_key, read_manifest
from groves.errors import BuildError
from groves.plan import read_plan
from groves.storage import Store, put_json
from groves.train import load_split


def grove_votes(model: Any, grove_sizes: list[int], X: np.ndarray) -> list[np.ndarray]:
    """Each grove's summed tree outputs (class probabilities, or regression predictions),
    groves in parallel threads, each summed tree by tree so memory stays flat."""
    if sum(grove_sizes) != len(model.estimators_):
        raise BuildError(
            f"groves hold {sum(grove_sizes)} trees, the model {len(model.estimators_)}"
        )
    predict = "predict_proba" if hasattr(model, "classes_") else "predict"
    bounds = np.cumsum([0, *grove_sizes])
    groves = [model.estimators_[a:b] for a, b in itertools.pairwise(bounds)]

    def votes(trees: list[Any]) -> np.ndarray:
        return functools.reduce(np.add, (getattr(tree, predict)(X) for tree in trees))

    return Parallel(n_jobs=-1, prefer="threads")(delayed(votes)(trees) for trees in groves)


def decide(model: Any, votes: np.ndarray, n_trees: int) -> np.ndarray:
    """Labels (the most voted class) or regression values (the mean) from summed votes."""
    if hasattr(model, "classes_"):
        return model.classes_[np.argmax(votes, axis=1)]
    return votes / n_trees


def score(model: Any, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if hasattr(model, "classes_"):
        return float(accuracy_score(y_true, y_pred))
    return float(r2_score(y_true, y_pred))


def score_build(store: Store, build_id: str, run_id: str | None = None) -> dict[str, Any]:
    """Write the run's ``metrics.json`` with the forest's and each grove's held-out score.
    ``run_id`` defaults to the build's latest committed run; the model is verified against
    the run's manifest before it is loaded."""
    started = time.perf_counter()
    manifest = read_manifest(store, build_id, run_id)
    run_id = manifest["run_id"]
    plan = read_plan(store, build_id, run_id)
    model = load_verified(
        store, model_key(build_id, run_id), manifest["model"], f"the model of run {run_id}"
    )
    split = load_split(plan)
    sizes = [g["n_trees"] for g in manifest["groves"]]
    votes = grove_votes(model, sizes, split.X_test)
    total = np.sum(votes, axis=0)
    forest_score = score(model, split.y_test, decide(model, total, sum(sizes)))
    grove_scores = [
        score(model, split.y_test, decide(model, v, n)) for v, n in zip(votes, sizes, strict=True)
    ]
    metrics = {
        "build_id": build_id,
        "run_id": run_id,
        "metric": "accuracy" if hasattr(model, "classes_") else "r2",
        "score": forest_score,
        "n_test": len(split.y_test),
        "n_trees": sum(sizes),
        "n_groves": len(sizes),
        "grove_score_min": min(grove_scores),
        "grove_score_mean": float(np.mean(grove_scores)),
        "grove_score_max": max(grove_scores),
        "grove_scores": grove_scores,
        "seconds": round(time.perf_counter() - started, 3),
    }
    put_json(store, metrics_key(build_id, run_id), metrics)
    summary = {k: v for k, v in metrics.items() if k != "grove_scores"}
    return {**summary, "metrics": f"{store.uri}/{metrics_key(build_id, run_id)}"}
