"""A committed run as the ``Kernel`` the serve function answers with, loaded without
scikit-learn: each grove found by its own key, checked by size and sha256 against the
manifest (``artifacts.read_verified``), decoded as data (``format.decode_grove``), checked
against the run's record of it and flattened, in threads; then put together in grove order.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from groves.data.records import RowEncoder, feature_columns
from groves.errors import BuildError
from groves.forest.kernel import Kernel, Part, assemble, flatten
from groves.store import artifacts
from groves.store.artifacts import GROVE_SUFFIX
from groves.store.storage import Store

READ_THREADS = 4  # groves read, decoded and flattened at once (lz4 and numpy release the GIL)


@dataclass(frozen=True)
class ServedModel:
    """A committed run ready to answer: its kernel, the encoder of its rows, and what a
    response names (build, run, each output's classes)."""

    build_id: str
    run_id: str
    kernel: Kernel
    encoder: RowEncoder
    classes: Any  # as the manifest records them: a list, one list per output, or None
    load_seconds: float

    def describe(self) -> dict[str, Any]:
        """What a client needs to call the model: its columns and what it answers."""
        return {
            "build_id": self.build_id,
            "run_id": self.run_id,
            "estimator": self.kernel.estimator,
            "n_trees": self.kernel.n_trees,
            "n_outputs": self.kernel.n_outputs,
            "classes": self.classes,
            "columns": [
                {"name": c["name"], "kind": c["kind"], **_categories(c)}
                for c in self.encoder.columns
            ],
        }


def _categories(column: dict[str, Any]) -> dict[str, Any]:
    return {"categories": column["categories"]} if column["kind"] == "category" else {}


def decode(blob: bytes, what: str) -> Any:
    """A grove file's verified arrays (``groves.forest.format.decode_grove``)."""
    from groves.forest import format as grove_format

    if hasattr(grove_format, "decode_grove"):
        return grove_format.decode_grove(blob, what)
    return _arrays(grove_format.read_grove(blob, what))  # TEMPORARY: until issue 21 lands


def _arrays(forest: Any) -> Any:  # TEMPORARY: GroveArrays' fields from a rebuilt forest
    from types import SimpleNamespace

    import numpy as np

    states = [t.tree_.__getstate__() for t in forest.estimators_]
    classes = None
    if hasattr(forest, "classes_"):
        classes = forest.classes_ if forest.n_outputs_ > 1 else [forest.classes_]
    return SimpleNamespace(
        estimator="classifier" if classes is not None else "regressor",
        n_features=forest.n_features_in_,
        n_outputs=forest.n_outputs_,
        classes=classes,
        n_classes=np.array([len(c) for c in classes] if classes else [1] * forest.n_outputs_),
        counts=np.array([s["node_count"] for s in states], np.int64),
        nodes=np.concatenate([s["nodes"] for s in states]),
        values=np.concatenate([s["values"] for s in states]),
        header={},
    )


def _grove_part(store: Store, manifest: dict[str, Any], record: dict[str, Any]) -> Part:
    gid = record["grove_id"]
    key = artifacts.grove_key(manifest["build_id"], manifest["run_id"], gid, GROVE_SUFFIX)
    grove = decode(artifacts.read_verified(store, key, record, f"grove {gid}"), f"grove {gid}")
    data = manifest["data"]
    found = (len(grove.counts), int(grove.n_features), _labels(grove))
    if found != (record["n_trees"], data["n_features"], data["classes"]):
        raise BuildError(f"grove {gid}: its trees do not match the run's record of them")
    return flatten(grove)


def _labels(grove: Any) -> Any:
    """A grove's classes as a manifest records them (as ``votes.forest_classes``)."""
    if grove.classes is None:
        return None
    labels = [c.tolist() for c in grove.classes]
    return labels[0] if int(grove.n_outputs) == 1 else labels


def load_served(store: Store, build_id: str, run_id: str | None = None) -> ServedModel:
    """The run's ``ServedModel`` (by default the build's latest committed run)."""
    started = time.perf_counter()
    manifest = artifacts.read_manifest(store, build_id, run_id)
    records = manifest["groves"]
    with ThreadPoolExecutor(min(READ_THREADS, len(records))) as pool:
        parts = list(pool.map(lambda r: _grove_part(store, manifest, r), records))
    kernel = assemble(parts)
    if kernel.n_trees != manifest["n_trees"]:
        raise BuildError(
            f"run {manifest['run_id']}: its groves hold {kernel.n_trees} trees, "
            f"its manifest records {manifest['n_trees']}"
        )
    data = manifest["data"]
    encoder = RowEncoder(feature_columns(data), bool(data.get("named", True)))
    return ServedModel(
        build_id=build_id,
        run_id=manifest["run_id"],
        kernel=kernel,
        encoder=encoder,
        classes=data["classes"],
        load_seconds=time.perf_counter() - started,
    )
