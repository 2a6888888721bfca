"""A forest as flat arrays, every tree walked at once: how the serve function predicts
without scikit-learn. The walk is compiled (``native``: ``walk.c``, when there is a compiled
copy) or numpy's (all (tree, row) pairs a step at a time, the pairs at a leaf set aside every
few steps); both give the same leaves.

Layout (``Kernel``): all trees' nodes concatenated in tree order, 16 bytes a node
(``NODE``: int32 feature, float32 threshold, int32 left and right, as global indices), each
tree's root, and a table of the distinct leaf values. A leaf points to itself on the right
and holds its row of the table on the left; its threshold is NaN, so no row ever leaves it.

Exactness, against scikit-learn's ``predict``/``predict_proba`` on the same forest:

- scikit-learn casts rows to float32 and sends ``x`` left when ``x <= threshold`` (float64).
  For a float32 ``x`` that is ``x <= t32``, ``t32`` the largest float32 not above the
  threshold: thresholds are stored rounded down, and every comparison stays exact.
- A missing value goes where the node learned (``missing_go_to_left``): a row is widened to
  ``[x with NaN as -inf, x]`` and a node reads the first half when missing values go left
  (``-inf <= t``), the second when they go right (``NaN <= t`` is false, also for the +inf
  threshold of scikit-learn's "missing or not" splits); one comparison, no branch.
- A classifier's leaf values are each tree's ``predict_proba`` (scikit-learn's normalisation,
  per output); every tree's votes are added in tree order (``np.add.accumulate``: one after
  the other, as the forest adds them) and divided by the tree count; labels are the first
  largest. A regressor's values are its leaves' means, summed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from groves.forest import native
from groves.forest.format import GroveArrays

NODE = np.dtype([("feature", "<i4"), ("threshold", "<f4"), ("left", "<i4"), ("right", "<i4")])
LEAF = -1  # scikit-learn's TREE_LEAF
BLOCK = 1 << 16  # (row, tree) pairs walked at once: bounds the walk's and the sums' memory
CHECK = 4  # steps between looks for pairs that reached their leaf
MIX = np.uint64(0x9E3779B97F4A7C15)  # folds a leaf row's words into one 64-bit key


@dataclass(frozen=True)
class Kernel:
    """A whole forest, flat (see the module's docstring)."""

    estimator: str  # "classifier" or "regressor"
    n_features: int
    n_outputs: int
    classes: tuple[np.ndarray, ...] | None  # each output's labels (classifiers)
    nodes: np.ndarray  # NODE, every tree's nodes
    roots: np.ndarray  # int32, each tree's first node
    table: np.ndarray  # float64 (distinct leaf values, width)
    depth: int  # the deepest tree's depth: steps of a walk

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    @property
    def width(self) -> int:
        """Votes per row: the outputs' classes side by side, or one value per output."""
        return self.table.shape[1]

    @property
    def nbytes(self) -> int:
        return self.nodes.nbytes + self.roots.nbytes + self.table.nbytes

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """Each tree's leaf for each row, ``(n_trees, n_rows)`` node indices. ``X`` is float32
        (or cast to it), ``n_features`` wide, NaN for a missing value, otherwise finite.
        Walked by the compiled walk (``native``) when there is one, else with numpy."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        n_rows = len(X)
        wide = np.concatenate([np.nan_to_num(X, nan=-np.inf), X], 1)
        walk = native.walker()
        if walk is not None:
            out = np.empty((self.n_trees, n_rows), dtype=np.int32)
            walk(
                self.nodes.ctypes.data,
                self.roots.ctypes.data,
                self.n_trees,
                wide.ctypes.data,
                n_rows,
                wide.shape[1],
                self.depth,
                out.ctypes.data,
            )
            return out
        flat = wide.ravel()
        # tree-major: a tree's rows walk its nodes together (fewer cache misses in a batch)
        idx = np.repeat(self.roots, n_rows)
        offset = np.tile(np.arange(n_rows, dtype=np.int32) * wide.shape[1], self.n_trees)
        out, place = np.empty_like(idx), np.arange(len(idx))
        nodes = self.nodes
        for step in range(self.depth):
            node = nodes[idx]
            feature = node["feature"] if n_rows == 1 else node["feature"] + offset
            moved = np.where(flat[feature] <= node["threshold"], node["left"], node["right"])
            if step % CHECK == CHECK - 1:  # walk on with the pairs not yet at a leaf
                going = moved != idx
                if not going.all():
                    out[place[~going]] = moved[~going]
                    idx, place, offset = moved[going], place[going], offset[going]
                    if not len(idx):
                        return out.reshape(self.n_trees, n_rows)
                    continue
            idx = moved
        out[place] = idx
        return out.reshape(self.n_trees, n_rows)

    def votes(self, X: np.ndarray) -> np.ndarray:
        """The trees' votes summed in tree order, ``(n_rows, width)`` float64: class
        probabilities summed (classifiers) or predictions summed (regressors)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must be (n_rows, {self.n_features}), not {X.shape}")
        step = max(1, BLOCK // self.n_trees)
        out = np.empty((len(X), self.width))
        for start in range(0, len(X), step):
            rows = self.nodes["left"][self.leaves(X[start : start + step])]  # rows of the table
            out[start : start + step] = np.add.accumulate(self.table[rows], axis=0)[-1]
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """As ``RandomForestClassifier.predict_proba``: one array, or one per output."""
        if self.classes is None:
            raise ValueError("a regressor has no class probabilities")
        proba = self.votes(X)
        proba /= self.n_trees
        edges = np.cumsum([len(c) for c in self.classes])[:-1]
        parts = np.split(proba, edges, axis=1)
        return parts[0] if self.n_outputs == 1 else parts

    def predict(self, X: np.ndarray) -> np.ndarray:
        """As the forest's ``predict``: labels (each output's first most probable class) or
        values (the trees' mean), ``(n_rows,)`` or ``(n_rows, n_outputs)``."""
        if self.classes is None:
            values = self.votes(X)
            values /= self.n_trees
            return values[:, 0] if self.n_outputs == 1 else values
        proba = self.predict_proba(X)
        parts = [proba] if self.n_outputs == 1 else proba
        labels = [c[np.argmax(p, axis=1)] for c, p in zip(self.classes, parts, strict=True)]
        return labels[0] if self.n_outputs == 1 else np.column_stack(labels)


@dataclass(frozen=True)
class Part:
    """One grove flattened (grove-local indices), before the groves are put together; the
    decoded grove itself is not kept."""

    estimator: str
    n_features: int
    n_outputs: int
    classes: tuple[np.ndarray, ...] | None
    nodes: np.ndarray
    counts: np.ndarray
    table: np.ndarray
    depth: int
    decoded_bytes: int  # the grove's decoded arrays, while it was flattened
    leaves: np.ndarray  # where its leaves are


def flatten(grove: GroveArrays) -> Part:
    """One grove's verified arrays (``format.decode_grove``) as flat nodes: tree-local indices
    made grove-local, thresholds rounded down to float32, missing values' side folded into the
    feature index, leaves pointing at rows of the grove's distinct leaf values."""
    raw, counts = grove.nodes, np.asarray(grove.counts, dtype=np.int64)
    n_features = int(grove.n_features)
    nodes = np.empty(len(raw), NODE)
    left = raw["left_child"].astype(np.int32)  # each field read once, into int32
    leaf = left == LEAF
    where_leaf = np.flatnonzero(leaf)
    first = np.repeat((np.cumsum(counts) - counts).astype(np.int32), counts)  # its tree's root
    with np.errstate(over="ignore"):  # beyond float32: +-inf, then rounded down
        threshold = raw["threshold"].astype(np.float32)
    above = np.flatnonzero(threshold > raw["threshold"])
    threshold[above] = np.nextafter(threshold[above], np.float32(-np.inf))
    threshold[where_leaf] = np.nan
    nodes["threshold"] = threshold
    feature = raw["feature"].astype(np.int32)
    feature[raw["missing_go_to_left"] == 0] += n_features  # missing values go right: x as is
    feature[where_leaf] = 0
    nodes["feature"] = feature
    table, rows = distinct_rows(leaf_values(grove, leaf))
    left += first
    left[where_leaf] = rows
    nodes["left"] = left
    right = raw["right_child"].astype(np.int32)
    right += first
    right[where_leaf] = where_leaf
    nodes["right"] = right
    classes = None if grove.classes is None else tuple(np.asarray(c) for c in grove.classes)
    return Part(
        grove.estimator,
        n_features,
        int(grove.n_outputs),
        classes,
        nodes,
        counts,
        table,
        int(np.max(grove.depths, initial=0)),
        grove.nodes.nbytes + grove.values.nbytes,
        where_leaf,
    )


def leaf_values(grove: GroveArrays, leaf: np.ndarray) -> np.ndarray:
    """The leaves' votes as each tree gives them: a classifier's ``predict_proba`` (each
    output's values over their sum, a zero sum left as is, as scikit-learn normalises), the
    outputs side by side; a regressor's values."""
    values = grove.values[leaf]
    if grove.estimator != "classifier":
        return np.ascontiguousarray(values[:, :, 0])
    parts = []
    for k, n in enumerate(np.asarray(grove.n_classes)):
        proba = values[:, k, : int(n)]  # as DecisionTreeClassifier.predict_proba computes
        normalizer = proba.sum(axis=1)[:, np.newaxis]
        normalizer[normalizer == 0.0] = 1.0
        parts.append(proba / normalizer)
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def distinct_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``values`` (by their bytes) and each row's index among them:
    fully grown classifiers' leaves hold a handful of distinct probability rows. Rows are
    told apart by a 64-bit hash of their words, checked: a collision falls back to sorting
    the rows' bytes."""
    if not len(values):
        return values, np.empty(0, np.int64)
    words = np.ascontiguousarray(values).view(np.uint64)
    key = words[:, 0].copy()
    for j in range(1, words.shape[1]):
        key *= MIX
        key ^= words[:, j]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not np.array_equal(words[first][inverse], words):  # two rows share a hash
        keys = words.view(np.dtype((np.void, words.itemsize * words.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    return values[first], inverse


def assemble(parts: Sequence[Part]) -> Kernel:
    """Groves' parts, in grove order, as one ``Kernel``: indices made global (each part moved
    past the nodes of the parts before it), the parts' tables made one of distinct rows, and
    each leaf pointed at its row there."""
    head = parts[0]
    sizes = [len(p.nodes) for p in parts]
    if sum(sizes) >= 2**31:
        raise ValueError("a forest of 2^31 nodes or more does not fit a kernel's int32 indices")
    table, rows = distinct_rows(np.concatenate([p.table for p in parts]))
    rows = rows.astype(np.int32)
    nodes = np.empty(sum(sizes), NODE)
    roots, start, row_start = [], 0, 0
    for part, size in zip(parts, sizes, strict=True):
        out = nodes[start : start + size]
        local = part.nodes["left"][part.leaves]  # a leaf's row of its part's table
        out[...] = part.nodes
        out["right"] += start  # a leaf's right is itself: moved too
        out["left"] += start
        out["left"][part.leaves] = rows[local + row_start]
        roots.append(np.cumsum(part.counts) - part.counts + start)
        start, row_start = start + size, row_start + len(part.table)
    return Kernel(
        estimator=head.estimator,
        n_features=head.n_features,
        n_outputs=head.n_outputs,
        classes=head.classes,
        nodes=nodes,
        roots=np.concatenate(roots).astype(np.int32),
        table=table,
        depth=max(p.depth for p in parts),
    )


def kernel_of(groves: Sequence[GroveArrays]) -> Kernel:
    """A forest's kernel from its groves (``GroveArrays``), in grove order."""
    return assemble([flatten(g) for g in groves])
