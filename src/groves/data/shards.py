"""The training rows as shards of stripes, so that a grove reads only its sample.

Plan writes the training rows, in the split's order, as shard files of at most
``SHARD_BYTES`` (``data/rows_NNNNN.bin``); a table's files are written apart (in parallel, by
the plan's Map), each into shards numbered on from the previous file's. A shard is a run of
*stripes* of ``stripe_rows`` rows each (only its last may be shorter); a stripe holds its rows'
features (float32, row-major), then their labels, then their weights if the rows are weighted,
so one ranged read fetches a stripe whole. Each shard has an index (``rows_NNNNN.index``): the
sha256 of every stripe, 32 bytes each, itself recorded (size and sha256) in the plan; a reader
checks every stripe it reads against the index, and the index against the plan.

A grove reads a seeded sample of stripes (``sample_stripes``): all of them when its sample is
the whole table (then it fits on exactly the rows every grove of a small table sees, in their
order), else a uniform choice, each with a ranged read of its own, in parallel threads, copied
into place as soon as it is verified (memory holds the rows and the reads in flight). A stripe
is a run of consecutive training rows (a table's in file order, arrays' in the shuffled order
of scikit-learn's split), small (at most ``STRIPE_BYTES``, and at least ``MIN_STRIPES`` stripes
when the table has the rows), so a sample of stripes drawn across the whole table is close to a
sample of rows unless the table is sorted within runs of a stripe's length.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from groves.errors import BuildError
from groves.store.artifacts import digest, read_verified
from groves.store.protocol import Store

FORMAT = "groves-rows/1"
SHARD_BYTES = 256 << 20
STRIPE_BYTES = 1 << 20
MIN_STRIPES = 1000
HASH_BYTES = 32
RUN_BYTES = 4 << 20  # consecutive stripes read at once, at most
ROW_READ_THREADS = 16  # ranged reads in flight: at most 16 x RUN_BYTES of memory


def rows_key(prefix: str, shard: int, suffix: str) -> str:
    return f"{prefix}rows_{shard:05d}.{suffix}"


@dataclass(frozen=True)
class Layout:
    """What one row of a stripe holds."""

    n_features: int
    y_dtype: np.dtype
    y_tail: tuple[int, ...]  # a label's shape: () or (n_outputs,)
    weighted: bool

    @property
    def y_bytes(self) -> int:
        return self.y_dtype.itemsize * math.prod(self.y_tail)

    @property
    def row_bytes(self) -> int:
        return 4 * self.n_features + self.y_bytes + (8 if self.weighted else 0)

    def record(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "y_dtype": self.y_dtype.str,
            "y_shape": list(self.y_tail),
            "weighted": self.weighted,
        }

    @classmethod
    def of(cls, record: dict[str, Any]) -> Layout:
        dtype = np.dtype(record["y_dtype"])
        if dtype.hasobject:
            raise BuildError("prepared rows: labels are plain numbers or text")
        return cls(record["n_features"], dtype, tuple(record["y_shape"]), record["weighted"])


def stripe_rows(n_rows: int, row_bytes: int) -> int:
    """Rows a stripe holds: at most ``STRIPE_BYTES``, and small enough for ``MIN_STRIPES``."""
    return max(1, min(STRIPE_BYTES // row_bytes, math.ceil(n_rows / MIN_STRIPES)))


def stripes_per_shard(stripe_rows: int, row_bytes: int) -> int:
    return max(1, SHARD_BYTES // (stripe_rows * row_bytes))


def shard_count(n_rows: int, stripe_rows: int, row_bytes: int) -> int:
    """The shards ``n_rows`` rows written by one ``RowWriter`` fill."""
    stripes = math.ceil(n_rows / stripe_rows)
    return math.ceil(stripes / stripes_per_shard(stripe_rows, row_bytes))


def write_rows(
    store: Store,
    prefix: str,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
) -> dict[str, Any]:
    """Write rows ``X, y, w`` as shards under ``prefix``; what the plan records of them."""
    layout = Layout(int(X.shape[1]), y.dtype, tuple(y.shape[1:]), w is not None)
    writer = RowWriter(store, prefix, layout, stripe_rows(len(y), layout.row_bytes))
    writer.add(X, y, w)
    return joined(layout, writer.stripe_rows, [writer.finish()])


def joined(layout: Layout, stripe_rows: int, parts: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """What the plan records of rows written by one or more ``RowWriter``s, in order (each
    part's shards numbered on from the previous part's)."""
    shards = [shard for part in parts for shard in part]
    return {
        "format": FORMAT,
        **layout.record(),
        "n_rows": sum(shard["rows"] for shard in shards),
        "stripe_rows": stripe_rows,
        "shards": shards,
    }


class RowWriter:
    """Rows appended in blocks, written stripe by stripe into shard files numbered from
    ``first_shard`` (one shard's file on local disk at a time), each shard uploaded with its
    index when it is full."""

    def __init__(
        self, store: Store, prefix: str, layout: Layout, stripe_rows: int, first_shard: int = 0
    ) -> None:
        self.store, self.prefix, self.layout = store, prefix, layout
        self.stripe_rows, self.first_shard = stripe_rows, first_shard
        self.per_shard = stripes_per_shard(stripe_rows, layout.row_bytes)
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.pending_rows, self.n_rows = 0, 0
        self.shards: list[dict[str, Any]] = []
        self.folder = tempfile.TemporaryDirectory(prefix="groves-rows-")
        self.handle: Any = None
        self.hashes: list[bytes] = []

    def add(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> None:
        self.pending.append((np.asarray(X, np.float32), np.asarray(y), w))
        self.pending_rows += len(y)
        if self.pending_rows < self.stripe_rows:
            return
        X, y, w = self._joined()  # once a block: its stripes are slices of it
        full = len(y) - len(y) % self.stripe_rows
        for at in range(0, full, self.stripe_rows):
            end = at + self.stripe_rows
            self._stripe(X[at:end], y[at:end], None if w is None else w[at:end])
        rest = (X[full:], y[full:], None if w is None else w[full:])
        self.pending, self.pending_rows = ([rest] if len(y) > full else []), len(y) - full

    def finish(self) -> list[dict[str, Any]]:
        """The shards written (rows, bytes, index digest), in order."""
        if self.pending_rows:
            self._stripe(*self._joined())
        self._close_shard()
        self.folder.cleanup()
        return self.shards

    def _joined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The pending rows as one array each."""
        X = np.concatenate([p[0] for p in self.pending])
        y = np.concatenate([p[1] for p in self.pending])
        ws = [p[2] for p in self.pending]
        return X, y, None if ws[0] is None else np.concatenate(ws)

    def _stripe(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> None:
        rows = len(y)
        parts = [np.ascontiguousarray(X, "<f4"), np.ascontiguousarray(y, self.layout.y_dtype)]
        if self.layout.weighted:
            parts.append(np.ascontiguousarray(w, "<f8"))
        blob = b"".join(p.tobytes() for p in parts)
        if self.handle is None:
            self.path = Path(self.folder.name) / f"{len(self.shards)}.bin"
            self.handle = self.path.open("wb")
            self.shard_rows = 0
        self.handle.write(blob)
        self.hashes.append(hashlib.sha256(blob).digest())
        self.shard_rows += rows
        self.n_rows += rows
        if len(self.hashes) == self.per_shard:
            self._close_shard()

    def _close_shard(self) -> None:
        if self.handle is None:
            return
        self.handle.close()
        self.handle = None
        shard = self.first_shard + len(self.shards)
        index = b"".join(self.hashes)
        self.store.put_file(rows_key(self.prefix, shard, "bin"), self.path)
        self.store.put_bytes(rows_key(self.prefix, shard, "index"), index)
        size = self.path.stat().st_size
        self.path.unlink()
        self.shards.append({"rows": self.shard_rows, "bytes": size, "index": digest(index)})
        self.hashes = []


def shard_stripes(record: dict[str, Any]) -> list[int]:
    """Each shard's stripe count: its rows in stripes of ``stripe_rows`` (only a shard's last
    stripe may be shorter)."""
    return [math.ceil(shard["rows"] / record["stripe_rows"]) for shard in record["shards"]]


def n_stripes(record: dict[str, Any]) -> int:
    return sum(shard_stripes(record))


def sample_stripes(record: dict[str, Any], rows: int | None, seed: int) -> list[int]:
    """The stripes a grove reads: every one (in order) when ``rows`` is ``None`` or covers the
    table, else a seeded uniform choice of enough stripes for ``rows`` rows, in order."""
    total = n_stripes(record)
    if rows is None or rows >= record["n_rows"]:
        return list(range(total))
    wanted = min(total, max(1, math.ceil(rows / record["stripe_rows"])))
    chosen = np.random.default_rng(seed).choice(total, size=wanted, replace=False)
    return sorted(int(s) for s in chosen)


def read_rows(
    store: Store, prefix: str, record: dict[str, Any], stripes: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The rows of ``stripes`` (``X`` float32, ``y``, ``w`` or ``None``), in order, each
    stripe checked against its shard's index (the index against the plan) before it is used.
    Shards' indexes, then stripes (each a ranged read), are read in threads, each
    copied into its place as soon as it is verified: memory holds the rows and the reads in
    flight, not the rows twice."""
    layout = Layout.of(record)
    firsts = np.cumsum([0, *shard_stripes(record)])  # each shard's first stripe
    wanted: dict[int, list[int]] = {}
    for stripe in stripes:
        shard = int(np.searchsorted(firsts, stripe, side="right")) - 1
        wanted.setdefault(shard, []).append(stripe - int(firsts[shard]))
    with ThreadPoolExecutor(ROW_READ_THREADS) as pool:
        shards = list(pool.map(lambda s: _Shard(store, prefix, record, s, layout), wanted))
        starts, n = {}, 0  # each stripe's first row in the result
        for shard in shards:
            for stripe in wanted[shard.number]:
                starts[(shard.number, stripe)] = n
                n += shard.rows[stripe]
        X = np.empty((n, layout.n_features), np.float32)
        y = np.empty((n, *layout.y_tail), layout.y_dtype)
        w = np.empty(n, np.float64) if layout.weighted else None

        def place(blocks: dict[tuple[int, int], tuple[int, memoryview]]) -> None:
            for key, (rows, blob) in blocks.items():
                at = starts[key]
                _unpack(blob, rows, layout, X[at : at + rows], y[at : at + rows], w, at)

        reads = [(shard, run) for shard in shards for run in shard.runs(wanted[shard.number])]
        for future in [pool.submit(lambda r: place(r[0].read(r[1])), read) for read in reads]:
            future.result()
    return X, y, w


def _unpack(
    blob: memoryview,
    rows: int,
    layout: Layout,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    at: int,
) -> None:
    """One stripe's bytes into its rows of ``X``, ``y`` and ``w`` (from row ``at``)."""
    x_end = rows * 4 * layout.n_features
    X[:] = np.frombuffer(blob, "<f4", rows * layout.n_features).reshape(rows, -1)
    labels = np.frombuffer(blob, layout.y_dtype, rows * math.prod(layout.y_tail), x_end)
    y[:] = labels.reshape(rows, *layout.y_tail)
    if w is not None:
        w[at : at + rows] = np.frombuffer(blob, "<f8", rows, x_end + rows * layout.y_bytes)


class _Shard:
    """One shard of prepared rows: its verified index and its stripes' byte spans."""

    def __init__(
        self, store: Store, prefix: str, record: dict[str, Any], number: int, layout: Layout
    ) -> None:
        self.store, self.number = store, number
        self.what = f"prepared rows, shard {number}"
        entry = record["shards"][number]
        self.index = read_verified(
            store, rows_key(prefix, number, "index"), entry["index"], self.what
        )
        self.key, step = rows_key(prefix, number, "bin"), record["stripe_rows"]
        count = len(self.index) // HASH_BYTES
        self.rows = [min(step, entry["rows"] - s * step) for s in range(count)]
        if sum(self.rows) != entry["rows"] or min(self.rows, default=1) < 1:
            raise BuildError(f"{self.what}: its index does not match its rows")
        ends = np.cumsum([rows * layout.row_bytes for rows in self.rows]).tolist()
        if (ends[-1] if ends else 0) != entry["bytes"]:
            raise BuildError(f"{self.what}: its index does not match its size")
        self.spans = list(zip([0, *ends[:-1]], ends, strict=True))
        self.bytes = entry["bytes"]

    def runs(self, stripes: list[int]) -> list[list[int]]:
        """``stripes`` (in order) as runs of consecutive stripes of at most ``RUN_BYTES`` each,
        one ranged read a run: a grove reading every row of a small table makes one read, not
        one per stripe, and the reads in flight stay bounded."""
        runs: list[list[int]] = []
        for stripe in stripes:
            run = runs[-1] if runs else None
            if (
                run is not None
                and stripe == run[-1] + 1
                and self.spans[stripe][1] - self.spans[run[0]][0] <= RUN_BYTES
            ):
                run.append(stripe)
            else:
                runs.append([stripe])
        return runs

    def read(self, stripes: list[int]) -> dict[tuple[int, int], tuple[int, memoryview]]:
        """A run of consecutive stripes' verified bytes, keyed by (shard, stripe), from one
        ranged read."""
        start, stop = self.spans[stripes[0]][0], self.spans[stripes[-1]][1]
        blob = memoryview(self.store.get_range(self.key, start, stop))
        parts = [blob[self.spans[s][0] - start : self.spans[s][1] - start] for s in stripes]
        return self._verified(stripes, parts)

    def _verified(
        self, stripes: list[int], blobs: list[memoryview]
    ) -> dict[tuple[int, int], tuple[int, memoryview]]:
        out = {}
        for stripe, blob in zip(stripes, blobs, strict=True):
            recorded = self.index[stripe * HASH_BYTES : (stripe + 1) * HASH_BYTES]
            if hashlib.sha256(blob).digest() != recorded:
                raise BuildError(
                    f"{self.what}: stripe {stripe} does not match its recorded sha256 "
                    "(corrupt or replaced)"
                )
            out[(self.number, stripe)] = (self.rows[stripe], blob)
        return out
