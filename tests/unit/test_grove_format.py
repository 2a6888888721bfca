"""The grove file (groves.forest.format): a fitted forest read back is the forest scikit-learn
fitted, attribute for attribute and prediction for prediction, and no file, however damaged or
forged, is more than a BuildError."""

from __future__ import annotations

import json
import struct
from typing import Any

import lz4.frame
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_diabetes, load_iris, make_multilabel_classification
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from groves.errors import BuildError
from groves.forest.format import MAGIC, read_grove, write_grove


def differences(a: Any, b: Any, path: str = "forest") -> list[str]:
    """Where two fitted objects differ: types, attribute names in order, array values and
    dtypes, trees' states."""
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
    if isinstance(a, np.ndarray):
        same = a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        return [] if same else [f"{path}: {a!r} vs {b!r}"]
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, dict):
        if list(a) != list(b):
            return [f"{path}: keys {list(a)} vs {list(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if type(a).__module__.startswith("sklearn"):
        return differences(a.__getstate__(), b.__getstate__(), path)
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def fitted() -> list[tuple[str, Any, np.ndarray]]:
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    X_gaps = np.where(rng.random(X.shape) < 0.1, np.nan, X)  # missing values: their own branch
    Xd, yd = load_diabetes(return_X_y=True)
    Xm, ym = make_multilabel_classification(120, n_classes=3, random_state=0)
    text = np.array(["setosa", "versicolor", "virginica"])[y]
    return [
        ("classifier", RandomForestClassifier(4, random_state=0).fit(X, y), X),
        ("text labels", RandomForestClassifier(3, random_state=1).fit(X, text), X),
        ("missing values", RandomForestClassifier(3, random_state=2).fit(X_gaps, y), X_gaps),
        (
            "class weights, best-first trees",
            RandomForestClassifier(
                3, max_leaf_nodes=6, class_weight={0: 1.0, 1: 2.5, 2: 1.0}, random_state=3
            ).fit(X, y),
            X,
        ),
        ("regressor", RandomForestRegressor(3, min_samples_leaf=3, random_state=4).fit(Xd, yd), Xd),
        ("multi-output", RandomForestClassifier(3, random_state=5).fit(Xm, ym * 4), Xm),
        (
            "multi-output regressor",
            RandomForestRegressor(2, random_state=6).fit(Xd, np.c_[yd, -yd]),
            Xd,
        ),
    ]


@pytest.mark.parametrize(("name", "forest", "X"), fitted(), ids=[f[0] for f in fitted()])
def test_a_grove_reads_back_as_the_forest_scikit_learn_fitted(
    name: str, forest: Any, X: Any
) -> None:
    back = read_grove(write_grove(forest))
    # scikit-learn keeps the weights it fitted with for out-of-bag scores only (not computed)
    original = {**forest.__getstate__(), "_sample_weight": None}
    assert differences(original, back.__getstate__()) == []
    if hasattr(forest, "predict_proba"):
        proba, again = forest.predict_proba(X), back.predict_proba(X)
        for p, q in zip(*(v if isinstance(v, list) else [v] for v in (proba, again)), strict=True):
            np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(forest.predict(X), back.predict(X))


@pytest.fixture(scope="module")
def payload() -> tuple[bytes, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(3, random_state=0).fit(X, y)
    return lz4.frame.decompress(write_grove(forest)), X


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_damage_is_refused_or_still_predicts_safely(payload: Any, data: Any) -> None:
    """Bytes overwritten anywhere (header or arrays): the file is refused with a BuildError,
    or it is a forest whose trees stay inside themselves and predict without fault."""
    raw, X = payload
    blob = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        forest = read_grove(lz4.frame.compress(bytes(blob)))
    except BuildError:
        return
    assert forest.predict_proba(X).shape[0] == len(X)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.update(estimator="os.system"), "not a groves-trees/1 file"),
        (lambda h: h["classes"][0].update(dtype="|O"), "classes are numbers or text"),
        (lambda h: h["tree"].update(criterion={"__reduce__": "x"}), "not a number, text or null"),
        (lambda h: h["trees"][0].update(node_count=10**9), "sizes its header gives"),
    ],
)
def test_a_forged_header_is_refused(payload: Any, change: Any, message: str) -> None:
    raw, _ = payload
    (size,) = struct.unpack_from("<I", raw, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(raw[start : start + size])
    change(header)
    head = json.dumps(header).encode()
    forged = MAGIC + struct.pack("<I", len(head)) + head + raw[start + size :]
    with pytest.raises(BuildError, match=message):
        read_grove(lz4.frame.compress(forged))
