"""The grove file: a fitted forest's trees as data, whose reading cannot run code, crash in
native code or exhaust memory, and which outlives a scikit-learn upgrade.

A grove is written as one lz4 frame holding::

    b"GROVES-TREES/2\\n"   magic, format name and version
    u32 little-endian      length of the header
    header                 JSON: the scikit-learn version and node layout it was written with
                           (field names, dtypes, offsets), estimator kind, forest and tree
                           parameters, features, outputs, classes, per tree its seed, depth
                           and node count
    nodes                  every tree's node records in turn, in the recorded layout
    values                 every tree's node values in turn (float64, scikit-learn's
                           ``tree_.value``)

``decode_grove`` reads a file into ``GroveArrays`` with numpy and lz4 only (the serving kernel
uses it without scikit-learn); ``groves.forest.trees`` rebuilds scikit-learn's trees from them.
Reading trusts nothing in the file:

- decompression is bounded by what the header implies, and that by the file's size: the
  header and node records expand at most ``NODE_RATIO`` times the file (real ones 1.5-7x),
  and the values by the outputs and classes the header gives, which the caller checks against
  the run's manifest (``expected``) before anything past the header is decompressed;
- threads decoding at once hold at most ``DECODE_BYTES`` of arrays between them (one grove
  alone always proceeds);
- the header is checked field by field (``BuildError`` naming the file and field), classes
  are numbers, booleans or text of a bounded dtype, sorted and distinct;
- the node records are read by field name from the recorded layout (any byte order or index
  width scikit-learn itself reads), into the layout of scikit-learn 1.6-1.9 (``NODE_LAYOUT``);
- every tree is a tree: children point forward inside it, every node but the root has
  exactly one parent, leaves have no children or feature, features exist; its depth is
  derived from the nodes and must be the recorded one (scikit-learn sizes buffers from it);
- impurities and values are finite, thresholds are numbers (a split on missing or not is
  +inf), a classifier's values and all sample counts are non-negative.

Files of format ``groves-trees/1`` (no layout recorded) were written by scikit-learn 1.6-1.9,
whose node layout is ``NODE_LAYOUT``; they read as such.
"""

from __future__ import annotations

import contextlib
import json
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import lz4.frame
import numpy as np

from groves.errors import BuildError

NAME = "groves-trees"
VERSION = 2
FORMAT = f"{NAME}/{VERSION}"
MAGIC = b"GROVES-TREES/2\n"
READABLE = {b"GROVES-TREES/1\n": 1, MAGIC: 2}
LEVEL = 1  # lz4's fastest level: as the joblib pickles it replaces
KINDS = ("classifier", "regressor")
LEAF, UNDEFINED = -1, -2  # scikit-learn's TREE_LEAF and TREE_UNDEFINED
LABEL_KINDS = "biufU"  # classes are numbers, booleans or text
MAX_LABEL_BYTES = 1024  # one class label's dtype at most (text of 256 characters)
MAX_HEADER = 64 << 20  # bytes of JSON header at most
# A grove's header and node records expand at most this many times its file: whole grove files
# measured 1.9-6.8x (digits, a 50k-row table, regressors, stumps, one-node trees) with few
# classes; lz4 itself reaches ~255x, which only repeated bytes give. Values grow with the
# classes (2 classes 3.5x, 1,000 classes 73x), so they are bounded by the manifest's classes.
NODE_RATIO = 16
DECODE_BYTES = 512 << 20  # grove arrays decoded at once in a process, all threads together
MAX_TREES = 1_000_000
MAX_FEATURES = 1 << 31
MAX_OUTPUTS = 1 << 16

# The node record of scikit-learn 1.6-1.9 (``sklearn.tree._tree.NODE_DTYPE`` on a little-endian
# 64-bit machine): what groves-trees/1 files hold, and the layout GroveArrays.nodes has.
NODE_LAYOUT = np.dtype(
    {
        "names": [
            "left_child",
            "right_child",
            "feature",
            "threshold",
            "impurity",
            "n_node_samples",
            "weighted_n_node_samples",
            "missing_go_to_left",
        ],
        "formats": ["<i8", "<i8", "<i8", "<f8", "<f8", "<i8", "<f8", "u1"],
        "offsets": [0, 8, 16, 24, 32, 40, 48, 56],
        "itemsize": 64,
    }
)
# the node fields a stored layout may have, and the dtypes each may be stored as
FIELD_DTYPES = {
    "left_child": ("<i8", ">i8", "<i4", ">i4"),
    "right_child": ("<i8", ">i8", "<i4", ">i4"),
    "feature": ("<i8", ">i8", "<i4", ">i4"),
    "threshold": ("<f8", ">f8"),
    "impurity": ("<f8", ">f8"),
    "n_node_samples": ("<i8", ">i8", "<i4", ">i4"),
    "weighted_n_node_samples": ("<f8", ">f8"),
    "missing_go_to_left": ("|u1", "<u1"),
}
MAX_ITEMSIZE = 256


@dataclass(frozen=True)
class GroveArrays:
    """A grove file's contents, verified (see the module's docstring).

    ``nodes`` holds every tree's nodes in turn in ``NODE_LAYOUT`` (children as indices inside
    their own tree); ``values`` is scikit-learn's ``tree_.value`` of every node,
    ``(n_nodes, n_outputs, max(n_classes))``; ``counts`` and ``depths`` are each tree's node
    count and depth; ``header`` the rest of the checked header (parameters, seeds)."""

    estimator: str
    n_features: int
    n_outputs: int
    classes: list[np.ndarray] | None
    n_classes: np.ndarray
    counts: np.ndarray
    depths: np.ndarray
    nodes: np.ndarray
    values: np.ndarray
    header: dict[str, Any]

    @property
    def n_trees(self) -> int:
        return len(self.counts)

    @property
    def starts(self) -> np.ndarray:
        """Each tree's first node in ``nodes``."""
        return np.cumsum(self.counts) - self.counts


# ---- writing ---------------------------------------------------------------------------------


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


def layout_record(dtype: np.dtype) -> dict[str, Any]:
    """A node dtype as the header records it: named fields with their dtypes and offsets."""
    fields = [
        [name, dtype.fields[name][0].str, dtype.fields[name][1]] for name in dtype.names or ()
    ]
    return {"itemsize": dtype.itemsize, "fields": fields}


def write_grove(forest: Any) -> bytes:
    """A fitted ``RandomForestClassifier``/``RandomForestRegressor`` as a grove file's bytes."""
    import sklearn

    kind = "classifier" if hasattr(forest, "classes_") else "regressor"
    trees = forest.estimators_
    multi = forest.n_outputs_ > 1
    tree_params = {k: v for k, v in _params(trees[0]).items() if k != "random_state"}
    states = [t.tree_.__getstate__() for t in trees]
    header = {
        "format": FORMAT,
        "sklearn_version": sklearn.__version__,
        "node_layout": layout_record(states[0]["nodes"].dtype),
        "value_dtype": "<f8",
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
    nodes = [np.ascontiguousarray(s["nodes"][: s["node_count"]]) for s in states]
    values = [np.ascontiguousarray(s["values"][: s["node_count"]], "<f8") for s in states]
    head = json.dumps(header, separators=(",", ":")).encode()
    body = [MAGIC, struct.pack("<I", len(head)), head]
    body += [n.tobytes() for n in nodes] + [v.tobytes() for v in values]
    return lz4.frame.compress(b"".join(body), compression_level=LEVEL)


# ---- reading ---------------------------------------------------------------------------------


class DecodeBudget:
    """Bytes of grove arrays being decompressed and checked at once, across threads: a thread
    whose grove would take the total past ``limit`` waits until others finish (one grove alone
    always proceeds), so reading groves in threads never multiplies a large file's expansion."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held, self.changed = limit, 0, threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        with self.changed:
            self.changed.wait_for(lambda: self.held == 0 or self.held + size <= self.limit)
            self.held += size
        try:
            yield
        finally:
            with self.changed:
                self.held -= size
                self.changed.notify_all()


DECODING = DecodeBudget(DECODE_BYTES)


class _Reader:
    """The frame decompressed only as far as asked."""

    def __init__(self, blob: bytes, what: str) -> None:
        self.frame, self.what, self.pending = lz4.frame.LZ4FrameDecompressor(), what, blob

    def take(self, size: int, field: str) -> bytes:
        try:
            data = self.frame.decompress(self.pending, max_length=size)
        except RuntimeError as exc:
            raise BuildError(f"{self.what}: not an lz4 frame") from exc
        self.pending = b""
        if len(data) != size:
            raise BuildError(f"{self.what}: it ends inside its {field} (truncated)")
        return data

    def finish(self) -> None:
        """The frame must have ended exactly here, with nothing after it."""
        if not self.frame.eof or self.frame.unused_data:
            raise BuildError(f"{self.what}: it holds more than its header gives")


def decode_grove(
    blob: bytes, what: str = "grove", expected: dict[str, Any] | None = None
) -> GroveArrays:
    """The verified arrays of a grove file; a file that is not one, or whose header or trees
    are malformed, is a ``BuildError`` naming ``what``. Runs no code from the file and imports
    no scikit-learn. ``expected`` (``n_trees``, ``n_features``, ``classes`` as the manifest
    records them) is checked against the header before the arrays are decompressed."""
    reader = _Reader(blob, what)
    limit = NODE_RATIO * len(blob) + 4096
    magic = reader.take(len(MAGIC), "magic")
    version = READABLE.get(magic)
    if version is None:
        if magic.startswith(b"GROVES-TREES/"):
            raise BuildError(
                f"{what}: written in {magic.decode(errors='replace').strip()}, a newer format "
                f"than this groves reads ({FORMAT}): upgrade groves to read it"
            )
        raise BuildError(f"{what}: not a {NAME} file")
    (size,) = struct.unpack("<I", reader.take(4, "header length"))
    if size > min(MAX_HEADER, limit):
        raise BuildError(f"{what}: its header claims {size} bytes, more than its file holds")
    try:
        header = json.loads(reader.take(size, "header"))
    except (ValueError, RecursionError) as exc:
        raise BuildError(f"{what}: its header is not JSON") from exc
    head = _Header(header, version, what)
    layout = head.layout()
    if expected is not None:
        head.check(expected)
    n_nodes = int(head.counts.sum())
    if n_nodes * layout.itemsize > limit:
        raise BuildError(
            f"{what}: its header claims {n_nodes} nodes, more than its {len(blob)} bytes can "
            f"hold (at most {NODE_RATIO}x); it was not decompressed"
        )
    width = head.n_outputs * int(head.n_classes.max())
    with DECODING.hold(n_nodes * (layout.itemsize + 8 * width)):
        node_bytes = reader.take(n_nodes * layout.itemsize, "node records")
        value_bytes = reader.take(n_nodes * width * 8, "values")
        reader.finish()
        nodes = _nodes(node_bytes, layout, n_nodes)
        values = np.frombuffer(value_bytes, "<f8").astype(np.float64, copy=False)
        values = values.reshape(n_nodes, head.n_outputs, -1)
        depths = _check_trees(nodes, values, head, what)
    return GroveArrays(
        estimator=head.estimator,
        n_features=head.n_features,
        n_outputs=head.n_outputs,
        classes=head.classes,
        n_classes=head.n_classes,
        counts=head.counts,
        depths=depths,
        nodes=nodes,
        values=values,
        header=head.rest,
    )


def _nodes(data: bytes, layout: np.dtype, n_nodes: int) -> np.ndarray:
    """The node records in ``NODE_LAYOUT``, read by field name from ``layout``."""
    stored = np.frombuffer(data, layout, n_nodes)
    if layout == NODE_LAYOUT:
        return stored
    nodes = np.zeros(n_nodes, NODE_LAYOUT)
    for name in layout.names or ():
        nodes[name] = stored[name]
    return nodes


class _Header:
    """A grove header's fields, each checked for type and bounds before anything is sized
    from it."""

    def __init__(self, header: Any, version: int, what: str) -> None:
        self.what = what
        if not isinstance(header, dict):
            raise BuildError(f"{what}: its header is not an object")
        self.header, self.version = header, version
        if header.get("format") != f"{NAME}/{version}":
            raise BuildError(f"{what}: not a {NAME}/{version} file")
        self.estimator = header.get("estimator")
        if self.estimator not in KINDS:
            raise BuildError(f"{what}: estimator must be one of {', '.join(KINDS)}")
        self.n_features = self.integer("n_features", 1, MAX_FEATURES)
        self.n_outputs = self.integer("n_outputs", 1, MAX_OUTPUTS)
        self.integer("max_features", 1, self.n_features)
        self.integer("n_samples", 1, 1 << 62)
        if header.get("n_samples_bootstrap") is not None:
            self.integer("n_samples_bootstrap", 1, 1 << 62)
        self.classes = self._classes(header.get("classes"))
        sizes = [len(c) for c in self.classes] if self.classes else [1] * self.n_outputs
        self.n_classes = np.array(sizes, np.intp)
        trees = header.get("trees")
        if not isinstance(trees, list) or not 1 <= len(trees) <= MAX_TREES:
            raise BuildError(f"{what}: trees must be a list of 1 to {MAX_TREES} records")
        counts, depths = [], []
        for i, tree in enumerate(trees):
            if not isinstance(tree, dict):
                raise BuildError(f"{what}: trees[{i}] is not an object")
            counts.append(self.integer("node_count", 1, 1 << 40, tree, f"trees[{i}]."))
            depths.append(self.integer("max_depth", 0, 1 << 40, tree, f"trees[{i}]."))
            self.integer("random_state", 0, 2**32 - 1, tree, f"trees[{i}].")
        self.counts = np.array(counts, np.int64)
        self.depths = np.array(depths, np.int64)
        for part in ("forest", "tree"):
            if not isinstance(header.get(part), dict):
                raise BuildError(f"{what}: {part} parameters are not an object")
        self.rest = header

    def check(self, expected: dict[str, Any]) -> None:
        """The header's trees, features and classes are the ones the run records."""
        classes = None
        if self.classes is not None:
            classes = [c.tolist() for c in self.classes]
            classes = classes[0] if self.n_outputs == 1 else classes
        found = (len(self.counts), self.n_features, classes)
        if found != (expected["n_trees"], expected["n_features"], expected["classes"]):
            raise BuildError(f"{self.what}: its trees do not match the run's record of them")

    def integer(self, field: str, low: int, high: int, record: Any = None, where: str = "") -> int:
        value = (self.header if record is None else record).get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BuildError(
                f"{self.what}: {where}{field} must be a whole number from {low} to {high}, "
                f"not {str(value)[:40]}"
            )
        return value

    def layout(self) -> np.dtype:
        """The node records' dtype as recorded (format 1: ``NODE_LAYOUT``)."""
        if self.version == 1:
            return NODE_LAYOUT
        record, version = self.header.get("node_layout"), self.header.get("sklearn_version")
        wrote = f"scikit-learn {str(version)[:20]}"
        try:
            itemsize = record["itemsize"]
            names, formats, offsets = zip(*record["fields"], strict=True)
            if not (isinstance(itemsize, int) and 1 <= itemsize <= MAX_ITEMSIZE):
                raise ValueError("itemsize")
            for name, dtype, offset in record["fields"]:
                if dtype not in FIELD_DTYPES.get(name, ()):
                    raise ValueError(f"field {str(name)[:40]} as {str(dtype)[:12]}")
                if not isinstance(offset, int) or offset < 0:
                    raise ValueError("offset")
            layout = np.dtype(
                {"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize}
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BuildError(
                f"{self.what}: its node layout (written by {wrote}) is not one groves reads "
                f"({exc}); retrain it, or read it with the scikit-learn that wrote it"
            ) from exc
        missing = [n for n in NODE_LAYOUT.names if n not in layout.names]
        if missing:
            raise BuildError(
                f"{self.what}: its node records (written by {wrote}) lack {', '.join(missing)}; "
                "retrain it, or read it with the scikit-learn that wrote it"
            )
        return layout

    def _classes(self, records: Any) -> list[np.ndarray] | None:
        what = self.what
        if self.estimator == "regressor":
            if records is not None:
                raise BuildError(f"{what}: a regressor has no classes")
            return None
        if not isinstance(records, list) or len(records) != self.n_outputs:
            raise BuildError(
                f"{what}: it needs the classes of each of its {self.n_outputs} outputs"
            )
        classes = []
        for record in records:
            try:
                dtype = np.dtype(str(record["dtype"]))
                values = record["values"]
            except (KeyError, TypeError, ValueError) as exc:
                raise BuildError(f"{what}: its classes are not a dtype and values") from exc
            if dtype.kind not in LABEL_KINDS or dtype.itemsize > MAX_LABEL_BYTES:
                raise BuildError(f"{what}: classes are numbers, booleans or text, not {dtype}")
            if not isinstance(values, list) or not values:
                raise BuildError(f"{what}: classes are a list of at least one label")
            for value in values:
                kind_ok = (
                    isinstance(value, bool)
                    if dtype.kind == "b"
                    else isinstance(value, str)
                    if dtype.kind == "U"
                    else isinstance(value, int | float) and not isinstance(value, bool)
                )
                if not kind_ok:
                    raise BuildError(f"{what}: a class label is not of its dtype {dtype}")
            try:
                labels = np.array(values, dtype=dtype)
            except (OverflowError, ValueError) as exc:
                raise BuildError(f"{what}: a class label does not fit its dtype {dtype}") from exc
            if labels.tolist() != values:
                raise BuildError(f"{what}: a class label does not fit its dtype {dtype}")
            if len(labels) > 1 and not (labels[1:] > labels[:-1]).all():
                raise BuildError(f"{what}: classes must be sorted and distinct")
            classes.append(labels)
        return classes


def _check_trees(nodes: np.ndarray, values: np.ndarray, head: _Header, what: str) -> np.ndarray:
    """Each tree's depth, derived from its nodes, after checking that every tree is a tree
    (see the module's docstring) and its numbers are finite: a forged tree cannot make
    scikit-learn read outside it, loop, or size a buffer wrongly."""
    left = nodes["left_child"].astype(np.int64)
    right = nodes["right_child"].astype(np.int64)
    feature = nodes["feature"].astype(np.int64)
    if not _points_forward(left, right, feature, head.counts, head.n_features):
        raise BuildError(f"{what}: a tree's nodes point outside the tree or the features")
    starts = np.cumsum(head.counts) - head.counts
    split = left != LEAF
    first = np.repeat(starts, head.counts)
    children = np.concatenate([(left + first)[split], (right + first)[split]])
    parents = np.zeros(len(left), np.int64)
    np.add.at(parents, children, 1)
    root = np.zeros(len(left), bool)
    root[starts] = True
    if (parents != ~root).any():
        raise BuildError(f"{what}: a tree's node has no parent or more than one")
    depth = _depths(children, np.concatenate([np.flatnonzero(split)] * 2), len(left))
    depths = np.maximum.reduceat(depth, starts)
    if (depths != head.depths).any():
        raise BuildError(f"{what}: a tree's recorded depth is not the depth of its nodes")
    # a split on "missing or not" has threshold +inf (scikit-learn's own); none is NaN
    floats = [nodes[f] for f in ("impurity", "weighted_n_node_samples")]
    finite = all(np.isfinite(f).all() for f in floats) and np.isfinite(values).all()
    if not finite or np.isnan(nodes["threshold"]).any():
        raise BuildError(f"{what}: a tree holds a number that is not finite")
    counts_ok = (nodes["n_node_samples"] >= 0).all() and (
        nodes["weighted_n_node_samples"] >= 0
    ).all()
    if not counts_ok or (head.estimator == "classifier" and (values < 0).any()):
        raise BuildError(f"{what}: a tree holds a negative count or class value")
    if (nodes["missing_go_to_left"] > 1).any():
        raise BuildError(f"{what}: a node's missing-value direction is not 0 or 1")
    return depths


def _depths(children: np.ndarray, parents_of: np.ndarray, n_nodes: int) -> np.ndarray:
    """Every node's depth, by pointer jumping: ``log2(depth)`` vectorised steps, so a forged
    chain of a million nodes costs 20 passes, not a million."""
    parent = np.full(n_nodes, -1, np.int64)
    parent[children] = parents_of
    depth = (parent >= 0).astype(np.int64)
    jump = parent.copy()
    while True:
        live = np.flatnonzero(jump >= 0)
        if not len(live):
            return depth
        above = jump[live]
        depth[live] += depth[above]
        jump[live] = jump[above]


def _points_forward(
    left: np.ndarray, right: np.ndarray, feature: np.ndarray, counts: np.ndarray, n_features: int
) -> bool:
    """Whether every tree's every split points forward to nodes of its tree (so prediction
    ends) and tests a feature of the data, and leaves have neither children nor a feature.
    All trees at once, without masks: a child ``c`` of node ``i`` of a tree of ``n`` nodes is
    valid when ``c - i - 1``, as an unsigned number, is below ``n - i - 1``."""
    sizes = counts.astype(np.int64)
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
