"""The grove file (groves.forest.format): a fitted forest read back is the forest scikit-learn
fitted, attribute for attribute and prediction for prediction, and no file, however damaged or
forged, is more than a BuildError."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from typing import Any

import lz4.frame
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_diabetes, load_iris, make_multilabel_classification
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from groves.errors import BuildError
from groves.forest.format import MAGIC, decode_grove, write_grove
from groves.forest.trees import read_grove


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
        (lambda h: h.update(estimator="os.system"), "estimator must be one of"),
        (lambda h: h["classes"][0].update(dtype="|O"), "classes are numbers, booleans or text"),
        (lambda h: h["tree"].update(criterion={"__reduce__": "x"}), "not a number, text or null"),
        (lambda h: h["trees"][0].update(node_count=10**9), "more than its"),
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


def forged(raw: bytes, change: Any = None, arrays: Any = None, magic: bytes = MAGIC) -> bytes:
    """A grove file rebuilt from ``raw`` (decompressed) with its header changed by ``change``
    and its arrays replaced by ``arrays`` (a function of the old arrays' bytes)."""
    (size,) = struct.unpack_from("<I", raw, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(raw[start : start + size])
    body = raw[start + size :]
    if change is not None:
        change(header)
    if arrays is not None:
        body = arrays(body)
    head = json.dumps(header).encode()
    return lz4.frame.compress(magic + struct.pack("<I", len(head)) + head + body)


@pytest.mark.parametrize("depth", [0, -1, 1000])
def test_a_header_whose_depth_is_not_its_trees_is_refused(payload: Any, depth: int) -> None:
    """scikit-learn sizes decision_path's buffer from max_depth: a forged one crashed it."""
    raw, _ = payload
    with pytest.raises(BuildError, match=r"max_depth must be|depth is not the depth"):
        read_grove(forged(raw, lambda h: h["trees"][0].update(max_depth=depth)))


def test_a_read_grove_walks_every_path_scikit_learn_offers(payload: Any) -> None:
    raw, X = payload
    forest = read_grove(lz4.frame.compress(raw))
    indicator, ptr = forest.decision_path(X)
    assert indicator.shape[0] == len(X) and ptr[-1] == indicator.shape[1]
    assert forest.apply(X).shape == (len(X), 3)


def test_a_small_file_claiming_many_nodes_is_refused_before_it_expands(payload: Any) -> None:
    """An lz4 bomb: megabytes of zeros behind a header that claims them."""
    raw, _ = payload
    zeros = b"\0" * (200 << 20)
    blob = forged(raw, lambda h: h["trees"][0].update(node_count=3 << 20), lambda b: zeros)
    assert len(blob) < 2 << 20
    with pytest.raises(BuildError, match=r"more than its .* bytes can hold"):
        read_grove(blob)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.update(n_outputs=10**9), "n_outputs must be"),
        (lambda h: h.update(n_features="4"), "n_features must be"),
        (lambda h: h.update(trees=[]), "trees must be a list"),
        (lambda h: h["trees"].__setitem__(0, "x"), "trees\\[0\\] is not an object"),
        (lambda h: h["trees"][0].update(random_state=-1), "random_state must be"),
        (lambda h: h["classes"][0].update(dtype="<i1", values=[0, 1, 300]), "does not fit"),
        (lambda h: h["classes"][0].update(values=[2, 1, 0]), "sorted and distinct"),
        (lambda h: h["classes"][0].update(dtype="<U100000"), "numbers, booleans or text"),
        (lambda h: h["forest"].update(n_jobs="many"), "parameters are not valid"),
        (lambda h: h["node_layout"]["fields"].append(["x", "<i8", 0]), "not one groves reads"),
        (lambda h: h["node_layout"]["fields"].pop(), "lack missing_go_to_left"),
        (lambda h: h.update(format="groves-trees/1"), "not a groves-trees/2 file"),
    ],
)
def test_a_forged_header_field_is_refused_naming_it(
    payload: Any, change: Any, message: str
) -> None:
    raw, _ = payload
    with pytest.raises(BuildError, match=message):
        read_grove(forged(raw, change))


def test_a_deeply_nested_header_is_refused_in_one_line() -> None:
    head = b"[" * 2000 + b"]" * 2000
    blob = lz4.frame.compress(MAGIC + struct.pack("<I", len(head)) + head)
    with pytest.raises(BuildError, match="header is not JSON"):
        read_grove(blob)


def test_a_newer_format_is_refused_saying_to_upgrade(payload: Any) -> None:
    raw, _ = payload
    with pytest.raises(BuildError, match=r"GROVES-TREES/3, a newer format .* upgrade groves"):
        read_grove(forged(raw, magic=b"GROVES-TREES/3\n"))


def test_a_node_with_two_parents_is_refused(payload: Any) -> None:
    """Both children of the root are the same node: forward, inside the tree, not a tree."""
    raw, _ = payload

    def twin(body: bytes) -> bytes:
        nodes = bytearray(body)
        nodes[8:16] = nodes[0:8]  # right_child := left_child
        return bytes(nodes)

    with pytest.raises(BuildError, match="no parent or more than one"):
        read_grove(forged(raw, arrays=twin))


def test_a_format_1_file_reads_as_scikit_learn_1_6_to_1_9_wrote_it(payload: Any) -> None:
    """Files written before the format recorded its node layout keep loading."""
    raw, X = payload

    def as_version_1(header: dict[str, Any]) -> None:
        header["format"] = "groves-trees/1"
        for field in ("sklearn_version", "node_layout", "value_dtype"):
            del header[field]

    old = read_grove(forged(raw, as_version_1, magic=b"GROVES-TREES/1\n"))
    now = read_grove(lz4.frame.compress(raw))
    np.testing.assert_array_equal(old.predict_proba(X), now.predict_proba(X))


def test_another_byte_order_and_index_width_map_by_field_name(payload: Any) -> None:
    """A layout written elsewhere (big-endian, 32-bit indices, fields in another order) reads
    as the same trees, field by field, as scikit-learn's own unpickling maps them."""
    raw, X = payload
    now = read_grove(lz4.frame.compress(raw))
    states = [t.tree_.__getstate__() for t in now.estimators_]
    nodes = np.concatenate([s["nodes"] for s in states])
    values = np.concatenate([s["values"] for s in states])
    other = np.dtype(
        [
            ("missing_go_to_left", "u1"),
            ("threshold", ">f8"),
            ("left_child", ">i4"),
            ("right_child", ">i4"),
            ("feature", ">i4"),
            ("impurity", ">f8"),
            ("n_node_samples", ">i4"),
            ("weighted_n_node_samples", ">f8"),
        ]
    )
    moved = np.zeros(len(nodes), other)
    for name in other.names:
        moved[name] = nodes[name]

    def relayout(header: dict[str, Any]) -> None:
        header["node_layout"] = {
            "itemsize": other.itemsize,
            "fields": [[n, other.fields[n][0].str, other.fields[n][1]] for n in other.names],
        }

    back = read_grove(forged(raw, relayout, lambda b: moved.tobytes() + values.tobytes()))
    np.testing.assert_array_equal(back.predict_proba(X), now.predict_proba(X))


def test_boolean_and_integer_labels_read_back_with_their_dtype() -> None:
    X, y = load_iris(return_X_y=True)
    for labels in (y == 1, (y + 2**40).astype(np.int64), y.astype(np.uint64) + np.uint64(2**63)):
        forest = RandomForestClassifier(2, random_state=0).fit(X, labels)
        back = read_grove(write_grove(forest))
        assert back.classes_.dtype == forest.classes_.dtype
        np.testing.assert_array_equal(back.predict(X), forest.predict(X))


def test_decoding_a_grove_needs_no_scikit_learn(payload: Any, tmp_path: Any) -> None:
    """The serving path decodes groves with numpy and lz4 alone."""
    raw, _ = payload
    path = tmp_path / "g.trees"
    path.write_bytes(lz4.frame.compress(raw))
    code = (
        "import sys; from groves.forest.format import decode_grove; "
        f"g = decode_grove(open({str(path)!r}, 'rb').read()); "
        "assert g.n_trees == 3 and 'sklearn' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_threads_decoding_at_once_never_hold_more_than_the_budget() -> None:
    """Four threads reading groves whose arrays together exceed the budget take turns."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.datasets import make_classification

    from groves.forest import format as grove_format

    X, y = make_classification(20_000, 10, random_state=0)
    blob = write_grove(RandomForestClassifier(3, random_state=0).fit(X, y))
    one = decode_grove(blob)
    size = one.nodes.nbytes + one.values.nbytes
    budget = grove_format.DecodeBudget(size + size // 2)  # room for one grove, not two
    peak, lock, original = [0], threading.Lock(), grove_format.DECODING
    hold = budget.hold

    def watched(n: int) -> Any:
        context = hold(n)

        class Watch:
            def __enter__(self) -> None:
                context.__enter__()
                with lock:
                    peak[0] = max(peak[0], budget.held)

            def __exit__(self, *exc: Any) -> None:
                context.__exit__(*exc)

        return Watch()

    budget.hold = watched  # type: ignore[method-assign]
    grove_format.DECODING = budget
    try:
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(lambda _: decode_grove(blob).n_trees, range(16)))
    finally:
        grove_format.DECODING = original
    assert found == [3] * 16
    assert peak[0] == size  # never two groves at once
