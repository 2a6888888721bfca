"""The grove file: a fitted scikit-learn forest as data, whose loading cannot run code.

A grove is written as one lz4 frame holding::

    b"GROVES-TREES/1\\n"   magic and version
    u32 little-endian      length of the header
    header                 JSON: estimator kind, forest and tree parameters, features, outputs,
                           classes, and per tree its seed, depth and node count
    nodes                  every tree's node records in turn (scikit-learn's ``NODE_DTYPE``)
    values                 every tree's node values in turn (float64)

Reading takes no type from the file: the node records are read as scikit-learn's own
``NODE_DTYPE``, values as float64, classes only as numbers or text, and parameters only as JSON
scalars (a ``class_weight`` object as pairs). Each tree is rebuilt through ``Tree``'s
constructor and ``__setstate__`` (as skops rebuilds trees), after its nodes were checked to
point only forward to nodes of the tree and to features of the data: a forged file is refused,
it cannot make prediction read outside a tree or loop. The file is also checked by its sha256
against the manifest before it is read, as every artifact is.

Predictions of a grove read back equal the fitted forest's exactly; its attributes are those
``fit`` sets (``_sample_weight``, kept by scikit-learn only for out-of-bag scores, which groves
does not compute, is ``None``).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import lz4.frame
import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.tree._tree import NODE_DTYPE, Tree

from groves.errors import BuildError
from groves.store.artifacts import FORMAT

MAGIC = b"GROVES-TREES/1\n"
LEVEL = 1  # lz4's fastest level: as the joblib pickles it replaces
KINDS = {
    "classifier": (RandomForestClassifier, DecisionTreeClassifier),
    "regressor": (RandomForestRegressor, DecisionTreeRegressor),
}
LEAF, UNDEFINED = -1, -2  # scikit-learn's TREE_LEAF and TREE_UNDEFINED
LABEL_KINDS = "biufU"  # classes are numbers or text


def _params(estimator: Any) -> dict[str, Any]:
    """An estimator's parameters as JSON keeps them (a dict as ``{"pairs": [[k, v], ...]}``)."""
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if isinstance(value, dict):
            value = {"pairs": [[_scalar(k), _scalar(v)] for k, v in value.items()]}
        params[name] = _scalar(value)
    return params


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _unparams(params: Any, what: str) -> dict[str, Any]:
    """Parameters read back: JSON scalars only (and ``class_weight`` pairs)."""
    if not isinstance(params, dict):
        raise BuildError(f"{what}: parameters are not an object")
    out = {}
    for name, value in params.items():
        if isinstance(value, dict) and set(value) == {"pairs"}:
            value = {_label(k, what): _number(v, what) for k, v in value["pairs"]}
        elif value is not None and not isinstance(value, bool | int | float | str):
            raise BuildError(f"{what}: parameter {name!r} is not a number, text or null")
        out[name] = value
    return out


def _label(value: Any, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BuildError(f"{what}: a class label is not a number or text")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BuildError(f"{what}: a weight is not a number")
    return value


def write_grove(forest: Any) -> bytes:
    """A fitted ``RandomForestClassifier``/``RandomForestRegressor`` as a grove file's bytes."""
    kind = "classifier" if hasattr(forest, "classes_") else "regressor"
    trees = forest.estimators_
    multi = forest.n_outputs_ > 1
    tree_params = {k: v for k, v in _params(trees[0]).items() if k != "random_state"}
    header = {
        "format": FORMAT,
        "estimator": kind,
        "forest": _params(forest),
        "tree": tree_params,
        "n_features": int(forest.n_features_in_),
        "n_outputs": int(forest.n_outputs_),
        "n_samples": int(forest._n_samples),
        "n_samples_bootstrap": _scalar(forest._n_samples_bootstrap),
        "max_features": int(trees[0].max_features_),
        "classes": None,
        "trees": [
            {
                "random_state": int(t.random_state),
                "max_depth": int(t.tree_.max_depth),
                "node_count": int(t.tree_.node_count),
            }
            for t in trees
        ],
    }
    if kind == "classifier":
        per_output = forest.classes_ if multi else [forest.classes_]
        header["classes"] = [
            {"dtype": np.asarray(c).dtype.str, "values": np.asarray(c).tolist()} for c in per_output
        ]
    states = [t.tree_.__getstate__() for t in trees]
    nodes = [np.ascontiguousarray(s["nodes"][: s["node_count"]]) for s in states]
    values = [np.ascontiguousarray(s["values"][: s["node_count"]]) for s in states]
    head = json.dumps(header, separators=(",", ":")).encode()
    body = [MAGIC, struct.pack("<I", len(head)), head]
    body += [n.tobytes() for n in nodes] + [v.tobytes() for v in values]
    return lz4.frame.compress(b"".join(body), compression_level=LEVEL)


def read_grove(blob: bytes, what: str = "grove") -> Any:
    """The forest a grove file holds; a file that is not one, or whose trees are malformed,
    is a ``BuildError`` naming ``what``. Runs no code from the file."""
    try:
        data = lz4.frame.decompress(blob)
    except RuntimeError as exc:
        raise BuildError(f"{what}: not an lz4 frame") from exc
    if not data.startswith(MAGIC):
        raise BuildError(f"{what}: not a {FORMAT} file")
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(data[start : start + size])
        return _build(header, memoryview(data)[start + size :], what)
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"{what}: malformed {FORMAT} file ({exc})") from exc


def _build(header: dict[str, Any], arrays: memoryview, what: str) -> Any:
    if header.get("format") != FORMAT or header.get("estimator") not in KINDS:
        raise BuildError(f"{what}: not a {FORMAT} file")
    forest_type, tree_type = KINDS[header["estimator"]]
    n_features, n_outputs = int(header["n_features"]), int(header["n_outputs"])
    classes = _classes(header["classes"], header["estimator"], n_outputs, what)
    n_classes = np.array([len(c) for c in classes] if classes else [1] * n_outputs, np.intp)
    width = n_outputs * int(n_classes.max())
    counts = [int(t["node_count"]) for t in header["trees"]]
    n_nodes = sum(counts)
    if n_nodes * (NODE_DTYPE.itemsize + 8 * width) != len(arrays) or min(counts, default=0) < 1:
        raise BuildError(f"{what}: its arrays do not have the sizes its header gives")
    all_nodes = np.frombuffer(arrays, NODE_DTYPE, n_nodes)
    # children and feature: the records' first three int64 fields, gathered in one pass
    fields = np.frombuffer(arrays, np.int64, n_nodes * 8).reshape(n_nodes, 8)[:, :3]
    if not _check_nodes(*np.ascontiguousarray(fields.T), counts, n_features):
        raise BuildError(f"{what}: a tree's nodes point outside the tree or the features")
    all_values = np.frombuffer(arrays, np.float64, n_nodes * width, n_nodes * NODE_DTYPE.itemsize)
    tree_params = _unparams(header["tree"], what)
    trees, first = [], 0
    for record, count in zip(header["trees"], counts, strict=True):
        nodes = all_nodes[first : first + count]
        values = all_values[first * width : (first + count) * width]
        first += count
        tree = tree_type(**tree_params, random_state=int(record["random_state"]))
        tree.n_features_in_, tree.n_outputs_ = n_features, n_outputs
        if classes is not None:  # a forest's trees learn the classes' indices
            indices = [np.arange(n, dtype=np.float64) for n in n_classes]
            tree.classes_ = indices[0] if n_outputs == 1 else indices
            tree.n_classes_ = n_classes[0] if n_outputs == 1 else n_classes.copy()
        tree.max_features_ = int(header["max_features"])
        tree.tree_ = Tree(n_features, n_classes, n_outputs)
        state = {
            "max_depth": int(record["max_depth"]),
            "node_count": count,
            "nodes": nodes,
            "values": values.reshape(count, n_outputs, -1),
        }
        tree.tree_.__setstate__(state)
        trees.append(tree)
    # the attributes fit sets, in its order
    forest = forest_type(**_unparams(header["forest"], what))
    forest.n_features_in_ = n_features
    forest._n_samples = int(header["n_samples"])
    forest.n_outputs_ = n_outputs
    if classes is not None:
        forest.classes_ = classes[0] if n_outputs == 1 else list(classes)
        forest.n_classes_ = int(n_classes[0]) if n_outputs == 1 else [int(n) for n in n_classes]
    forest._sample_weight = None
    forest._n_samples_bootstrap = header["n_samples_bootstrap"]
    forest.estimator_ = tree_type()
    forest.estimators_ = trees
    return forest


def _classes(records: Any, kind: str, n_outputs: int, what: str) -> list[np.ndarray] | None:
    if kind == "regressor":
        return None
    if not isinstance(records, list) or len(records) != n_outputs:
        raise BuildError(f"{what}: it needs the classes of each of its {n_outputs} outputs")
    classes = []
    for record in records:
        dtype = np.dtype(str(record["dtype"]))
        if dtype.kind not in LABEL_KINDS:
            raise BuildError(f"{what}: classes are numbers or text, not {dtype}")
        labels = [_label(v, what) for v in record["values"]]
        classes.append(np.array(labels, dtype=dtype))
    return classes


def _check_nodes(
    left: np.ndarray, right: np.ndarray, feature: np.ndarray, counts: list[int], n_features: int
) -> bool:
    """Whether every tree's every split points forward to nodes of its tree (so prediction
    ends) and tests a feature of the data, and leaves have neither children nor a feature.
    All trees at once, without masks: a child ``c`` of node ``i`` of a tree of ``n`` nodes is
    valid when ``c - i - 1``, as an unsigned number, is below ``n - i - 1``."""
    sizes = np.asarray(counts, dtype=np.int64)
    after = np.arange(1, len(left) + 1, dtype=np.int64)  # i + 1, i counted in its own tree
    after -= np.repeat(np.cumsum(sizes) - sizes, sizes)
    span = np.repeat(sizes, sizes)
    span -= after  # n - i - 1
    unsigned = span.view(np.uint64)
    step = np.subtract(left, after)
    bad = step.view(np.uint64) >= unsigned
    np.subtract(right, after, out=step)
    bad |= step.view(np.uint64) >= unsigned
    bad |= feature.view(np.uint64) >= n_features
    leaf = left == LEAF
    bad &= ~leaf
    bad |= leaf & ((right != LEAF) | (feature != UNDEFINED))
    return not bad.any()
