"""The lean kernel (groves.forest.kernel): a forest flattened from its grove files predicts
as scikit-learn does: the same leaf in every tree for every row (missing values, values at
the split thresholds themselves, best-first trees), probabilities and values bit for bit,
the same labels; in 16 bytes a node. Each test runs with the compiled walk and with numpy's."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_diabetes, load_digits, load_iris, make_multilabel_classification
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from groves.forest import native
from groves.forest.format import decode_grove, write_grove
from groves.forest.kernel import NODE, kernel_of


@pytest.fixture(params=["compiled", "numpy"], autouse=True)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with each walk: the compiled one (walk.c) and numpy's."""
    walk = native.walker() if request.param == "compiled" else None
    if request.param == "compiled" and walk is None:
        pytest.skip("no compiled walk here (no C compiler): numpy's alone")
    monkeypatch.setattr(native, "_walker", walk)
    return request.param


def kernel(*forests: Any) -> Any:
    """The kernel of forests written as grove files and decoded, in order (as a run's groves)."""
    return kernel_of([decode_grove(write_grove(f), f"grove {i}") for i, f in enumerate(forests)])


def with_gaps(X: np.ndarray, share: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(X.shape) < share, np.nan, X)


def at_thresholds(forest: Any, X: np.ndarray) -> np.ndarray:
    """Rows whose values sit on the forest's split thresholds (as float32, the nearest value
    and its neighbours on both sides), each on a row of ``X``."""
    rows = []
    for i, tree in enumerate(forest.estimators_[:3]):
        t = tree.tree_
        split = np.flatnonzero(t.children_left != -1)
        for node in split[:40]:
            for value in np.float32(t.threshold[node]) + np.array([-1, 0, 1]) * np.spacing(
                np.float32(t.threshold[node])
            ):
                row = X[(node + i) % len(X)].copy()
                row[t.feature[node]] = value
                rows.append(row)
    return np.asarray(rows, dtype=np.float32).reshape(-1, X.shape[1])


def cases() -> list[tuple[str, Any, np.ndarray]]:
    X, y = load_iris(return_X_y=True)
    Xd, yd = load_diabetes(return_X_y=True)
    Xg, yg = load_digits(return_X_y=True)
    Xm, ym = make_multilabel_classification(150, n_classes=3, random_state=0)
    gaps = with_gaps(X, 0.15, 0)
    text = np.array(["setosa", "versicolor", "virginica"])[y]
    return [
        ("classifier", RandomForestClassifier(5, random_state=0).fit(X, y), X),
        ("text labels", RandomForestClassifier(4, random_state=1).fit(X, text), X),
        (
            "missing values learned",
            RandomForestClassifier(6, random_state=2).fit(gaps, y),
            with_gaps(X, 0.3, 1),
        ),
        (
            "missing values never seen in training",
            RandomForestClassifier(6, random_state=2).fit(X, y),
            with_gaps(X, 0.3, 2),
        ),
        (
            "class weights, best-first trees",
            RandomForestClassifier(
                4, max_leaf_nodes=7, class_weight={0: 1.0, 1: 2.5, 2: 1.0}, random_state=3
            ).fit(X, y),
            X,
        ),
        ("ten classes", RandomForestClassifier(8, random_state=4).fit(Xg, yg), Xg),
        (
            "regressor with gaps",
            RandomForestRegressor(5, random_state=5).fit(with_gaps(Xd, 0.1, 3), yd),
            with_gaps(Xd, 0.2, 4),
        ),
        ("multi-output", RandomForestClassifier(4, random_state=6).fit(Xm, ym * 4), Xm),
        (
            "multi-output regressor",
            RandomForestRegressor(3, random_state=7).fit(Xd, np.c_[yd, -yd]),
            Xd,
        ),
    ]


CASES = cases()


def sklearn_leaves(forest: Any, X: np.ndarray) -> np.ndarray:
    return np.stack([t.apply(X.astype(np.float32)) for t in forest.estimators_])


@pytest.mark.parametrize(("name", "forest", "X"), CASES, ids=[c[0] for c in CASES])
def test_every_tree_sends_every_row_to_scikit_learns_leaf(name: str, forest: Any, X: Any) -> None:
    k = kernel(forest)
    rows = np.concatenate([X, at_thresholds(forest, np.nan_to_num(X))]).astype(np.float32)
    local = k.leaves(rows) - k.roots[:, None]  # flattening keeps each tree's node order
    np.testing.assert_array_equal(local, sklearn_leaves(forest, rows))


@pytest.mark.parametrize(("name", "forest", "X"), CASES, ids=[c[0] for c in CASES])
def test_predictions_and_probabilities_are_scikit_learns(name: str, forest: Any, X: Any) -> None:
    k = kernel(forest)
    rows = np.concatenate([X, at_thresholds(forest, np.nan_to_num(X))])
    expected = forest.predict(rows)
    assert k.predict(rows).dtype == expected.dtype
    np.testing.assert_array_equal(k.predict(rows), expected)
    if hasattr(forest, "classes_"):
        got, want = k.predict_proba(rows), forest.predict_proba(rows)
        for g, w in zip(*(p if isinstance(p, list) else [p] for p in (got, want)), strict=True):
            np.testing.assert_array_equal(g, w)  # summed in the same order: bit for bit


def test_groves_put_together_predict_as_one_forest_of_all_their_trees() -> None:
    X, y = load_iris(return_X_y=True)
    groves = [RandomForestClassifier(3, random_state=s).fit(X, y) for s in range(3)]
    whole = RandomForestClassifier(9).fit(X, y)
    whole.estimators_ = [t for g in groves for t in g.estimators_]
    k = kernel(*groves)
    assert k.n_trees == 9
    np.testing.assert_array_equal(k.predict_proba(X), whole.predict_proba(X))
    np.testing.assert_array_equal(k.predict(X), whole.predict(X))


def test_one_row_and_batches_larger_than_a_block_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    from groves.forest import kernel as module

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(7, random_state=0).fit(X, y)
    k = kernel(forest)
    monkeypatch.setattr(module, "BLOCK", 20)  # blocks of 2 rows x 7 trees
    np.testing.assert_array_equal(
        k.votes(X), np.vstack([k.votes(X[i : i + 1]) for i in range(150)])
    )


def test_a_node_takes_16_bytes_and_fully_grown_leaves_share_their_values() -> None:
    X, y = load_digits(return_X_y=True)
    forest = RandomForestClassifier(10, random_state=0).fit(X, y)
    k = kernel(forest)
    n_nodes = sum(t.tree_.node_count for t in forest.estimators_)
    assert NODE.itemsize == 16 and len(k.nodes) == n_nodes
    assert len(k.table) < n_nodes / 10  # pure leaves: a few distinct probability rows
    assert k.nbytes < 16.5 * n_nodes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(2, 60),
    n_features=st.integers(1, 5),
    gaps=st.sampled_from([0.0, 0.2, 0.6]),
    regressor=st.booleans(),
)
def test_random_forests_on_coarse_values_with_gaps_predict_alike(
    seed: int, n_rows: int, n_features: int, gaps: float, regressor: bool
) -> None:
    rng = np.random.default_rng(seed)
    X = rng.integers(-3, 4, (n_rows, n_features)) * rng.choice([1.0, 0.1, 1e-7], n_features)
    X = np.where(rng.random(X.shape) < gaps, np.nan, X)
    if regressor:
        y = rng.normal(size=n_rows)
        forest = RandomForestRegressor(3, random_state=seed % 1000).fit(X, y)
    else:
        y = rng.integers(0, 3, n_rows)
        forest = RandomForestClassifier(3, random_state=seed % 1000).fit(X, y)
    k = kernel(forest)
    probe = np.concatenate([X, with_gaps(np.nan_to_num(X), 0.3, seed % 7)])
    probe = np.concatenate([probe, at_thresholds(forest, np.nan_to_num(X))])
    np.testing.assert_array_equal(k.leaves(probe) - k.roots[:, None], sklearn_leaves(forest, probe))
    np.testing.assert_array_equal(k.predict(probe), forest.predict(probe))


@pytest.mark.parametrize("mix", [None, 0])
def test_distinct_leaf_rows_are_exact_even_when_their_hashes_collide(
    mix: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from groves.forest import kernel as module

    if mix is not None:  # every row of the same last word collides: the check falls back
        monkeypatch.setattr(module, "MIX", np.uint64(mix))
    rng = np.random.default_rng(0)
    values = rng.integers(0, 3, (500, 3)).astype(np.float64) / 2
    table, rows = module.distinct_rows(values)
    np.testing.assert_array_equal(table[rows], values)
    assert len(table) == len(np.unique(values, axis=0))


def test_the_walk_is_compiled_once_into_the_cache_and_numpy_walks_without_a_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "BUILT", tmp_path / "not-built.so")
    monkeypatch.setattr(native, "_walker", native._UNSET)
    if shutil.which("cc") or shutil.which("gcc"):
        path = native.compiled()
        assert path is not None and path.parent == tmp_path / "cache" / "groves"
        assert native.walker() is not None
    monkeypatch.setattr(native, "_walker", native._UNSET)
    monkeypatch.setenv("GROVES_KERNEL", "numpy")
    assert native.walker() is None
    monkeypatch.delenv("GROVES_KERNEL")
    monkeypatch.setattr(native, "_walker", native._UNSET)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler to be found
    assert native.compiled() is None and native.walker() is None
    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(kernel(forest).predict(X), forest.predict(X))
