"""Training rows written as shards of stripes (``groves.data.shards``): however the rows arrive
in blocks, and wherever a writer's shards are numbered from, they read back as written, and a
table's parts joined read back as the parts in order."""

from __future__ import annotations

import itertools
import tempfile
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from groves.data import shards
from groves.store.local import LocalStore

Rows = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def rows(n: int, seed: int, weighted: bool) -> Rows:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, rng.choice(np.array(["a", "bb", "ccc"]), n), rng.random(n) if weighted else None


def write(
    store: LocalStore, layout: shards.Layout, parts: list[Rows], step: int, cuts: list[int]
) -> dict[str, Any]:
    """Each part's rows through its own writer (shards numbered on), added in ``cuts``."""
    written, first = [], 0
    for X, y, w in parts:
        writer = shards.RowWriter(store, "d/", layout, step, first)
        edges = sorted({0, len(y), *[c % (len(y) + 1) for c in cuts]})
        for a, b in itertools.pairwise(edges):
            writer.add(X[a:b], y[a:b], None if w is None else w[a:b])
        written.append(writer.finish())
        first += len(written[-1])
        assert len(written[-1]) == shards.shard_count(len(y), step, layout.row_bytes)
    return shards.joined(layout, step, written)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=4),
    step=st.integers(1, 50),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    weighted=st.booleans(),
)
def test_parts_written_in_any_blocks_read_back_in_order(
    sizes: list[int], step: int, cuts: list[int], weighted: bool
) -> None:
    layout = shards.Layout(3, np.dtype("<U3"), (), weighted)
    parts = [rows(n, seed, weighted) for seed, n in enumerate(sizes)]
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(folder)
        shards.SHARD_BYTES, saved = 7 * step * layout.row_bytes, shards.SHARD_BYTES  # 7 stripes
        try:
            record = write(store, layout, parts, step, cuts)
        finally:
            shards.SHARD_BYTES = saved
        total = shards.n_stripes(record)
        X, y, w = shards.read_rows(store, "d/", record, list(range(total)))
        np.testing.assert_array_equal(X, np.concatenate([p[0] for p in parts]))
        np.testing.assert_array_equal(y, np.concatenate([p[1] for p in parts]))
        if weighted:
            np.testing.assert_array_equal(w, np.concatenate([p[2] for p in parts]))
        sample = shards.sample_stripes(record, max(1, sum(sizes) // 3), seed=1)
        X_s, _, _ = shards.read_rows(store, "d/", record, sample)
        assert len(X_s) <= sum(sizes) and set(map(bytes, X_s)) <= set(map(bytes, X))
