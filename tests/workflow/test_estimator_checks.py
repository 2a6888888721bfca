"""scikit-learn's own estimator checks on ``GrovesClassifier`` and ``GrovesRegressor``: every
check is a real groves build on the check's rows, in a store of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

import groves

# scikit-learn's forests fail these too: a bootstrap draws rows, not weights, so weight 2 is
# not a repeated row (RandomForestClassifier and RandomForestRegressor fail both checks)
LIKE_SCIKIT_LEARNS_FORESTS = {
    "check_sample_weight_equivalence_on_dense_data": "bootstrap sampling, as in RandomForest*",
    "check_sample_weight_equivalence_on_sparse_data": "bootstrap sampling, as in RandomForest*",
}
STORE = "groves-estimator-checks"  # one name: stable test ids; each test runs in its tmp_path


def expected_failures(estimator: Any) -> dict[str, str]:
    return LIKE_SCIKIT_LEARNS_FORESTS


@parametrize_with_checks(
    [
        groves.GrovesClassifier(4, 2, random_state=0, store=STORE),
        groves.GrovesRegressor(4, 2, random_state=0, store=STORE),
    ],
    expected_failed_checks=expected_failures,
)
def test_scikit_learn_estimator_checks(estimator: Any, check: Any, tmp_path: Path) -> None:
    check(clone(estimator).set_params(store=str(tmp_path / STORE)))


def check_names(estimator: Any) -> set[str]:
    """The names of the checks scikit-learn runs on ``estimator`` (its tags decide which)."""
    return {
        getattr(check, "func", check).__name__
        for check in estimator_checks._yield_all_checks(estimator, legacy=True)
    }


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (groves.GrovesClassifier(), RandomForestClassifier()),
        (groves.GrovesRegressor(), RandomForestRegressor()),
    ],
)
def test_every_check_of_scikit_learns_forests_is_run(ours: Any, theirs: Any) -> None:
    """No check is left out by a tag: multi-output and multi-label ones included."""
    assert check_names(theirs) <= check_names(ours)
