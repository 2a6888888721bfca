"""plan: request validation with clear errors, grove planning, seeds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from conftest import small_request

from groves.errors import RequestError
from groves.steps.checks import validate_request
from groves.steps.plan import plan_build, state_output
from groves.steps.planned import planned_grove, planned_groves
from groves.steps.request import MAX_GROVES
from groves.store.artifacts import items_key
from groves.store.codec import get_json


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"colour": "red"}, "colour", "allowed fields are build_id"),
        ({"build_id": "has space"}, "build_id", "letters, digits"),
        ({"n_trees": 0}, "n_trees", "integer from 1 to"),
        ({"n_trees": True}, "n_trees", "integer"),
        ({"n_trees": 10.5}, "n_trees", "integer"),
        ({"grove_size": -2}, "grove_size", "integer from 1"),
        ({"estimator": "svm"}, "estimator", "classifier, regressor"),
        ({"test_size": 1.0}, "test_size", "a number from 0 to below 1"),
        ({"test_size": -0.1}, "test_size", "a number from 0 to below 1"),
        ({"test_size": 0, "predict": True}, "predict", "test_size 0 holds out none"),
        ({"seed": -1}, "seed", "integer from 0 to 4294967295"),
        ({"max_concurrency": 0}, "max_concurrency", "integer from 1"),
        ({"predict": "yes"}, "predict", "true or false"),
        ({"dataset": "mnist"}, "dataset", "digits, breast_cancer, iris, wine, diabetes"),
        ({"target": "label"}, "target", "only to CSV/Parquet"),
        ({"params": {"n_jobs": 4}}, "params.n_jobs", "allowed: criterion, max_depth"),
        ({"params": {"max_depth": -1}}, "params.max_depth", "range [1, inf) or None"),
        ({"params": {"criterion": "mse"}}, "params.criterion", "'gini'"),
        ({"params": {"max_features": "half"}}, "params.max_features", "'sqrt'"),
        ({"params": {"class_weight": {"0": -2}}}, "params.class_weight", "a number >= 0"),
        ({"params": {"class_weight": [1, 2]}}, "params.class_weight", "'balanced'"),
        ({"params": {"bootstrap": False, "max_samples": 0.5}}, "params.max_samples", "bootstrap"),
        ({"n_trees": 500_000, "grove_size": 2}, "grove_size", "at least 5"),
        ({"max_concurrency": 10_001}, "max_concurrency", "integer from 1 to 10000"),
        ({"groves_per_invocation": 0}, "groves_per_invocation", "integer from 1 to 1000"),
    ],
)
def test_invalid_requests_name_the_field_and_allowed_values(
    change: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(RequestError) as caught:
        validate_request(small_request(**change))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert words in str(caught.value)


def test_missing_build_id_and_non_object_are_rejected() -> None:
    with pytest.raises(RequestError, match="build_id: required"):
        validate_request({"n_trees": 3})
    with pytest.raises(RequestError, match="request: must be a JSON object"):
        validate_request(["build_id"])


def test_regressor_params_differ_from_classifier_params() -> None:
    spec = validate_request(
        small_request(
            estimator="regressor", dataset="diabetes", params={"criterion": "absolute_error"}
        )
    )
    assert spec["params"] == {"criterion": "absolute_error"}
    with pytest.raises(RequestError, match=r"params\.class_weight"):
        validate_request(small_request(estimator="regressor", params={"class_weight": None}))


def test_defaults_are_filled_in() -> None:
    spec = validate_request({"build_id": "b"})
    assert spec["n_trees"] == 100 and spec["grove_size"] == 10
    assert spec["dataset"] == "digits" and spec["estimator"] == "classifier"
    assert spec["predict"] is False and spec["max_concurrency"] == 10


@pytest.mark.parametrize(
    ("n_trees", "size", "expected"), [(10, 5, [5, 5]), (7, 3, [3, 3, 1]), (2, 10, [2]), (1, 1, [1])]
)
def test_last_grove_takes_the_remainder(n_trees: int, size: int, expected: list[int]) -> None:
    groves = planned_groves({"n_trees": n_trees, "grove_size": size, "seed": 0})
    assert [g["n_trees"] for g in groves] == expected
    assert [g["grove_id"] for g in groves] == list(range(len(expected)))


def seeds(seed: int, count: int) -> list[int]:
    return [g["seed"] for g in planned_groves({"n_trees": count, "grove_size": 1, "seed": seed})]


def test_grove_seeds_are_deterministic_distinct_and_prefix_stable() -> None:
    first = seeds(42, 200)
    assert first == seeds(42, 200)
    assert len(set(first)) == 200
    assert seeds(42, 10) == first[:10]  # a grove's seed does not depend on the count
    assert seeds(43, 10) != first[:10]
    assert all(0 <= s < 2**32 for s in first)
    # the seeds are SeedSequence(seed).spawn(n)'s children: one grove is derived alone
    children = np.random.SeedSequence(42).spawn(200)
    assert first == [int(c.generate_state(1)[0]) for c in children]


def test_a_grove_outside_the_plan_is_refused() -> None:
    spec = {"n_trees": 10, "grove_size": 3, "seed": 0}
    assert planned_grove(spec, 3)["n_trees"] == 1
    for grove_id in (-1, 4):
        with pytest.raises(ValueError, match="not one of the 4 planned"):
            planned_grove(spec, grove_id)


def test_max_groves_is_allowed() -> None:
    spec = validate_request(small_request(n_trees=MAX_GROVES, grove_size=1))
    assert spec["n_trees"] == MAX_GROVES


def test_plan_build_checks_the_data_and_writes_the_plan(local_store) -> None:
    plan = plan_build(local_store, small_request(predict=True))
    items = get_json(local_store, items_key("t", plan["run_id"]))
    assert items == planned_groves(plan["spec"])
    assert [g["n_trees"] for g in items] == [3, 3, 1] and plan["n_groves"] == 3
    assert plan["data"]["classes"] == [0, 1, 2]
    assert plan["data"]["n_train"] + plan["data"]["n_test"] == 150
    assert plan["spec"]["predict"] is True
    assert get_json(local_store, f"t/runs/{plan['run_id']}/plan.json") == plan


def test_a_plan_of_20000_groves_passes_a_few_hundred_bytes_through_the_state_machine(
    local_store,
) -> None:
    """The grove items go to the store for the Map's ItemReader; the state payload does not
    grow with the grove count (Step Functions' limit is 256 KB)."""
    small = plan_build(local_store, small_request(n_trees=2, grove_size=1))
    large = plan_build(local_store, small_request(n_trees=20_000, grove_size=1))
    sizes = [len(json.dumps(state_output(local_store, p))) for p in (small, large)]
    assert sizes[1] - sizes[0] <= 10 and sizes[1] < 1_000, sizes
    items = get_json(local_store, items_key("t", large["run_id"]))
    assert len(items) == 20_000 and items[-1] == planned_grove(large["spec"], 19_999)
    assert state_output(local_store, large)["items"] == local_store.location(
        items_key("t", large["run_id"])
    )


def test_classifier_on_a_continuous_target_is_refused_before_training(local_store) -> None:
    with pytest.raises(
        RequestError,
        match=r"estimator: 'classifier' needs at least 2 rows per class.* 'regressor'",
    ):
        plan_build(local_store, small_request(dataset="diabetes"))
    assert local_store.list_keys("") == []


def test_a_test_size_that_starves_the_training_split_is_refused(local_store) -> None:
    with pytest.raises(RequestError) as caught:
        plan_build(local_store, small_request(test_size=0.99))
    assert caught.value.field == "test_size"
    assert local_store.list_keys("") == []


def test_a_class_weight_object_names_classes_of_the_data(tmp_path) -> None:
    from groves.steps.plan import plan_build
    from groves.steps.train import make_forest
    from groves.store.local import LocalStore

    store = LocalStore(tmp_path)
    with pytest.raises(RequestError, match=r"params\.class_weight: '7' is not a class"):
        plan_build(store, small_request(params={"class_weight": {"7": 1.0}}))
    plan = plan_build(store, small_request(params={"class_weight": {"0": 5.0, "2": 0.5}}))
    forest = make_forest(plan["spec"], 3, 1, plan["data"]["classes"])
    assert forest.class_weight == {0: 5.0, 2: 0.5}  # JSON's text keys back to the labels
