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
from groves.forest.format import decode_grove
from groves.forest.kernel import Kernel, Part, assemble, flatten
from groves.store import artifacts
from groves.store.artifacts import GROVE_SUFFIX
from groves.store.protocol import Store

READ_THREADS = 4  # groves read, decoded and flattened at once (lz4 and numpy release the GIL)
BASELINE_BYTES = 160 * 2**20  # Python, numpy, boto3 and the runtime (measured: about 110 MB)
ONE_VCPU_MB = 1769  # Lambda gives one whole vCPU at 1,769 MB: the walk uses one


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
    decoded_bytes: int  # the largest grove's decoded arrays (what loading holds per thread)

    def lambda_memory_mb(self) -> int:
        """The serve function's memory for this model: the process and its libraries; while
        the build's latest is swapped in, the model answering, the new one's flattened groves
        and the new model they make; a grove decoding and flattening per loading thread; at
        least one whole vCPU (1,769 MB), in 64 MB steps."""
        need = BASELINE_BYTES + 3 * self.kernel.nbytes + READ_THREADS * 2 * self.decoded_bytes
        return max(ONE_VCPU_MB, -(-need // (64 * 2**20)) * 64)

    def describe(self) -> dict[str, Any]:
        """What a client needs to call the model: its columns and what it answers."""
        return {
            "build_id": self.build_id,
            "run_id": self.run_id,
            "estimator": self.kernel.estimator,
            "n_trees": self.kernel.n_trees,
            "n_outputs": self.kernel.n_outputs,
            "classes": self.classes,
            "columns": [_described(self.encoder, name) for name in self.encoder.names],
        }


def _described(encoder: RowEncoder, name: str) -> dict[str, Any]:
    """An input column as a request gives it: its kind, a text column's categories, whether
    a date column takes time zones and the parts it becomes."""
    features = [encoder.columns[j] for j in encoder.features[name]]
    found = {"name": name, "kind": features[0]["kind"]}
    if found["kind"] == "category":
        found["categories"] = features[0]["categories"]
    if found["kind"] == "datetime":
        found["utc"] = features[0]["utc"]
        found["parts"] = [c["part"] for c in features]
    return found


def _grove_part(store: Store, manifest: dict[str, Any], record: dict[str, Any]) -> Part:
    """One grove, verified (sha256, then its arrays and header against the run's record of
    its trees, features and classes), flattened; the decoded arrays are dropped."""
    gid = record["grove_id"]
    key = artifacts.grove_key(manifest["build_id"], manifest["run_id"], gid, GROVE_SUFFIX)
    blob = artifacts.read_verified(store, key, record, f"grove {gid}")
    expected = {**manifest["data"], "n_trees": record["n_trees"]}
    return flatten(decode_grove(blob, f"grove {gid}", expected))


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
    encoder = RowEncoder(
        feature_columns(data), bool(data.get("named", True)), ignore=data.get("dropped", ())
    )
    return ServedModel(
        build_id=build_id,
        run_id=manifest["run_id"],
        kernel=kernel,
        encoder=encoder,
        classes=data["classes"],
        load_seconds=time.perf_counter() - started,
        decoded_bytes=max(p.decoded_bytes for p in parts),
    )
