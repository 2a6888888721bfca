"""A committed run as the scikit-learn model a user predicts with.

A committed run is its manifest and its verified groves; no step writes a whole-forest file.
``load_model`` reads the groves (each checked by size and sha256 against the manifest, then
read as data: ``groves.forest.format``) in threads and puts their trees, in grove order, into
one plain forest (with text columns, behind their encoding: ``model``); ``export_model`` writes
exactly that model as a joblib file for users who want one (a pickle: it is made here, from
verified groves, never read from a store).
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.tree._tree import NODE_DTYPE

from groves.data.encoding import needs_encoding
from groves.data.pipeline import pipeline
from groves.data.rows import feature_columns
from groves.forest.trees import read_grove
from groves.forest.votes import add_votes
from groves.store import artifacts
from groves.store.artifacts import GROVE_SUFFIX
from groves.store.local import atomic_file
from groves.store.protocol import Store

# lz4 level 1: measured against zlib 1/3/6, lz4 3 and none on 300k-row forests, it writes a
# third of the bytes of no compression for +0.1 s per 56 MB, and loads 2x faster than zlib.
JOBLIB_COMPRESSION = ("lz4", 1)
READ_THREADS = 4  # groves read and decoded at once (lz4 and numpy release the GIL)
GROVE_CACHE_ENV = "GROVES_GROVE_CACHE_MB"
NODE_BYTES = NODE_DTYPE.itemsize


def read_verified_grove(store: Store, manifest: dict[str, Any], record: dict[str, Any]) -> Any:
    """One grove's forest, found by its own key, checked against its record's size and
    sha256 before it is read, and holding the trees, features and classes the run records."""
    gid = record["grove_id"]
    key = artifacts.grove_key(manifest["build_id"], manifest["run_id"], gid, GROVE_SUFFIX)
    blob = artifacts.read_verified(store, key, record, f"grove {gid}")
    data = manifest["data"]
    expected = {**data, "n_trees": record["n_trees"]}
    return read_grove(blob, f"grove {gid}", expected)


class DecodedGroves:
    """Groves a warm process (a warm Lambda, a local worker) keeps decoded for its next
    invocations, keyed by their verified sha256, the least recently used dropped beyond
    ``budget`` bytes: the chunks of a batch that reach one warm function read each grove once.
    Only for groves that are read, never changed (prediction; not ``load_model``)."""

    def __init__(self, budget: int) -> None:
        self.budget, self.held, self.groves = budget, 0, OrderedDict[str, tuple[Any, int]]()

    def clear(self) -> None:
        self.groves.clear()
        self.held = 0

    def get(self, sha256: str) -> Any:
        found = self.groves.get(sha256)
        if found is None:
            return None
        self.groves.move_to_end(sha256)
        return found[0]

    def put(self, sha256: str, forest: Any) -> None:
        size = sum(
            t.tree_.node_count * (NODE_BYTES + t.tree_.value.strides[0]) for t in forest.estimators_
        )
        if size > self.budget or sha256 in self.groves:
            return
        self.groves[sha256] = (forest, size)
        self.held += size
        while self.held > self.budget:
            _, (_, dropped) = self.groves.popitem(last=False)
            self.held -= dropped


def cache_budget() -> int:
    """Bytes of decoded groves a warm process keeps: ``GROVES_GROVE_CACHE_MB``, else half of
    the Lambda function's memory, else 1 GiB."""
    configured = os.environ.get(GROVE_CACHE_ENV)
    if configured:
        return int(configured) * 2**20
    function_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    return int(function_mb) * 2**20 // 2 if function_mb else 2**30


WARM = DecodedGroves(cache_budget())


def committed_groves(
    store: Store,
    manifest: dict[str, Any],
    records: list[dict[str, Any]] | None = None,
    cache: DecodedGroves | None = None,
) -> Iterator[Any]:
    """Each grove of a committed run (or of ``records``, some of its groves), verified, in
    grove order; read ahead in threads while the caller uses the previous ones (memory: the
    groves being read and the one in use), or taken from ``cache``."""
    with ThreadPoolExecutor(READ_THREADS) as pool:
        pending = []
        for record in manifest["groves"] if records is None else records:
            found = None if cache is None else cache.get(record["sha256"])
            if found is not None:
                pending.append((record, None, found))
            else:
                future = pool.submit(read_verified_grove, store, manifest, record)
                pending.append((record, future, None))
            if len(pending) > READ_THREADS:
                yield _taken(pending.pop(0), cache)
        for item in pending:
            yield _taken(item, cache)


def committed_votes(
    store: Store,
    manifest: dict[str, Any],
    X: np.ndarray,
    classifier: bool,
    records: list[dict[str, Any]] | None = None,
    cache: DecodedGroves | None = None,
) -> np.ndarray:
    """The sum of every tree's class probabilities (or predictions) on ``X`` (of the groves of
    ``records``, by default all), tree by tree in the forest's order, as scikit-learn's forest
    sums them; groves are read (verified) a few at a time ahead of their use, or taken from
    ``cache`` (``WARM``: a warm process keeps them decoded for its next chunks)."""
    total: np.ndarray | None = None
    for grove in committed_groves(store, manifest, records, cache):
        total = add_votes(total, grove.estimators_, X, classifier)
    assert total is not None
    return total


def _taken(item: tuple[dict[str, Any], Any, Any], cache: DecodedGroves | None) -> Any:
    record, future, found = item
    if found is not None:
        return found
    forest = future.result()
    if cache is not None:
        cache.put(record["sha256"], forest)
    return forest


def _named(forest: Any, manifest: dict[str, Any]) -> Any:
    """The forest set as the whole build's: its tree count and seed, no threads of its own,
    and the training columns' names when they came from the data (a model with text or date
    columns checks them in its encoding step instead)."""
    data = manifest["data"]
    forest.set_params(
        n_estimators=manifest["n_trees"], random_state=manifest["spec"]["seed"], n_jobs=None
    )
    if data.get("named") and not needs_encoding(data.get("columns", ())):
        forest.feature_names_in_ = np.asarray(data["feature_names"], dtype=object)
    return forest


def load_forest(store: Store, manifest: dict[str, Any]) -> Any:
    """The run's plain forest: every grove's trees, in grove order."""
    groves = committed_groves(store, manifest)
    forest = next(groves)
    trees = list(forest.estimators_)
    for grove in groves:
        trees.extend(grove.estimators_)
    forest.estimators_ = trees
    return _named(forest, manifest)


def model(forest: Any, manifest: dict[str, Any]) -> Any:
    """What a user predicts with: the run's forest, or, with text or date columns, a
    ``Pipeline`` whose first step encodes them as the build did (by column name, any column
    order) and whose last step is the forest."""
    columns = feature_columns(manifest["data"])
    return pipeline(columns, forest) if needs_encoding(columns) else forest


def load_model(store: Store, build_id: str, run_id: str | None = None) -> Any:
    """The run's ``model`` (by default the latest committed run), every grove checked against
    the manifest before it is read."""
    manifest = artifacts.read_manifest(store, build_id, run_id)
    return model(load_forest(store, manifest), manifest)


def export_model(store: Store, build_id: str, path: Path, run_id: str | None = None) -> Path:
    """Write what ``load_model`` returns to ``path`` as a joblib file (lz4; ``joblib.load``
    reads it), drawing the trees one grove at a time: memory holds a few groves, not the
    forest."""
    manifest = artifacts.read_manifest(store, build_id, run_id)
    groves = committed_groves(store, manifest)
    first = next(groves)
    head = list(first.estimators_)

    def trees() -> Iterator[Any]:
        yield from head
        for grove in groves:
            yield from grove.estimators_

    path.parent.mkdir(parents=True, exist_ok=True)
    forest = _named(first, manifest)
    dump_streamed(model(forest, manifest), (forest, "estimators_"), trees(), path)
    return path


class _StreamedList:
    """Pickles as a plain ``list`` whose items are drawn from an iterator while the pickle is
    written (pickle's ``__reduce__`` list-items protocol), so they never all live at once."""

    def __init__(self, items: Iterator[Any]) -> None:
        self.items = items

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (), None, self.items)


def dump_streamed(obj: Any, streamed: tuple[Any, str], items: Iterator[Any], path: Path) -> None:
    """Write ``obj`` as a ``.joblib`` file (a protocol-5 pickle in an lz4 frame, which
    ``joblib.load`` reads as ``compress=("lz4", 1)``; by the C pickler) in which the attribute
    ``streamed = (holder, name)`` of ``obj`` or of an object inside it is the list of ``items``,
    drawn one at a time: memory holds one item and what ``items`` keeps (a grove), never the
    whole list. ``joblib.load`` gives back ``obj`` with a plain list. Only for exports a user
    asks for: no store holds a pickle."""
    import lz4.frame

    holder, attribute = streamed
    setattr(holder, attribute, _StreamedList(items))
    method, level = JOBLIB_COMPRESSION
    assert method == "lz4"
    # written beside ``path`` and renamed over it only once whole: a failure (a full disk, a
    # damaged grove) leaves the file that was there, never half a model
    with atomic_file(path) as tmp, lz4.frame.open(tmp, "wb", compression_level=level) as out:
        pickler = pickle.Pickler(out, protocol=5)
        pickler.fast = True  # no memo: a pickled item is not kept alive by the pickler
        pickler.dump(obj)
