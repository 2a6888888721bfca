"""Batch inference: predict new rows with a committed run's groves, chunk by chunk.

plan_batch checks the request and the input's columns against the training features, writes
the rows once as float32 and one item per chunk; predict_chunk streams the run's groves one at a
time over its chunk's rows (memory: one grove and the chunk's vote sums, whatever the forest's
size); assemble writes one output file in input order with a sidecar naming the build and run.
Votes are summed tree by tree in the forest's order, exactly as scikit-learn's ``predict`` sums
them, so predictions equal ``groves.load_model(...).predict(X)`` row for row.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import tempfile
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from groves.data.rows import write_rows
from groves.data.tables import check_source
from groves.errors import BuildError, RequestError
from groves.forest.loading import WARM, committed_votes
from groves.forest.votes import Target
from groves.steps.cost import Invocation, batch_transitions, peak_rss_mb, step_cost, summarize
from groves.steps.request import BATCH, checked, field
from groves.store.artifacts import (
    BUILD_ID,
    batch_key,
    check_run_id,
    chunk_key,
    digest,
    file_digest,
    new_run_id,
    read_manifest,
    read_record,
    read_verified,
)
from groves.store.codec import dump_npy, get_json, load_npy, put_json
from groves.store.protocol import ArtifactNotFound, Store
from groves.store.records import record_format
from groves.store.s3 import MISSING_BUCKET, error_code, s3_client
from groves.store.uris import locked_output, split_s3_uri, write_uri

MAX_TILES = 100_000  # items of the batch's Distributed Map: chunks of rows x shards of groves
SHARD_BYTES = 512 * 2**20  # grove files one tile reads, when the request does not choose
OUTPUT_SUFFIXES = (".csv", ".parquet")
OUTPUTS_PREFIX = "outputs/"  # where the deployed assemble function may write, in the store's bucket


def validate_batch_request(request: Any) -> dict[str, Any]:
    """The request with defaults filled in; a ``RequestError`` names the first bad field."""
    spec = checked(request, BATCH)
    check_source(spec["data"], None, "data")
    check_output(spec["output"])
    check_keep(spec["keep"], spec["data"])
    return spec


RESERVED = "prediction"  # the output's own column, and the prefix of its probabilities


def is_reserved(name: str) -> bool:
    """Whether the output may name a column of its own so: ``prediction``, ``prediction_<j>``
    (several outputs) or ``proba_*``."""
    return name == RESERVED or name.startswith((f"{RESERVED}_", "proba_"))


def check_keep(keep: list[str], data: str) -> None:
    """Columns of the input to carry into the output beside the predictions (a list of
    distinct names: ``BATCH``'s checks)."""
    if keep and not data.lower().endswith((".csv", ".parquet")):
        raise RequestError("keep", "applies only to CSV and Parquet input, whose columns are named")
    clash = [n for n in keep if is_reserved(n)]
    if clash:
        raise RequestError(
            "keep",
            f"{clash[0]!r} is a name the output gives its own columns (prediction, "
            "prediction_<j>, proba_*)",
        )


def check_output(output: Any) -> None:
    if not isinstance(output, str) or not output.lower().endswith(OUTPUT_SUFFIXES):
        raise field(BATCH, "output").refused(output)
    if output.startswith("s3://"):
        try:
            split_s3_uri(output)
        except ValueError as exc:
            raise RequestError("output", str(exc)) from exc


def check_output_place(output: str, data: str) -> None:
    """Before any work: the output is not the input, and can be written where it goes (a
    local path that is not a directory, under a directory that exists or can be made and is
    writable; an S3 bucket that exists)."""
    if _same_place(output, data) or _same_place(output + ".json", data):
        raise RequestError("output", f"{output!r} is the input: it would replace the rows")
    if output.startswith("s3://"):
        _check_bucket(output)
        return
    path = Path(output.removeprefix("file://")).expanduser().absolute()
    if path.is_dir():
        raise RequestError("output", f"{output!r} is a directory; name a file in it")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RequestError("output", f"{output!r}: {str(parent)!r} is not a directory")
    try:  # a real write: permissions, read-only file systems and /proc alike
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise RequestError(
            "output", f"{output!r}: {str(parent)!r} is not writable ({exc.strerror})"
        ) from exc


def _same_place(a: str, b: str) -> bool:
    if a.startswith("s3://") or b.startswith("s3://"):
        return a == b
    first, second = (Path(p.removeprefix("file://")).expanduser() for p in (a, b))
    return first.absolute().resolve() == second.absolute().resolve()


def _check_bucket(output: str) -> None:
    """The output's bucket exists (where the caller may ask: a 403 is left to the write)."""
    bucket = split_s3_uri(output)[0]
    client = s3_client()
    try:
        client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError as exc:
        if error_code(exc) in MISSING_BUCKET:
            raise RequestError("output", f"{output!r}: bucket {bucket!r} does not exist") from exc


def planned_tile(record: dict[str, Any], item: Any) -> dict[str, int]:
    """Tile ``item`` of a batch: chunk ``chunk_id`` of consecutive rows (the last chunk takes
    the remainder) and shard ``shard`` of consecutive groves (the last shard likewise)."""
    chunk_id = item.get("chunk_id") if isinstance(item, dict) else None
    shard = item.get("shard") if isinstance(item, dict) else None
    size, n_rows = record["spec"]["rows_per_chunk"], record["n_rows"]
    per, n_groves = record["groves_per_shard"], record["n_groves"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (chunk_id, shard)) or not (
        0 <= chunk_id * size < n_rows and 0 <= shard * per < n_groves
    ):
        raise BuildError(f"tile {item!r} is not one of the batch's {record['n_tiles']} planned")
    return {
        "chunk_id": chunk_id,
        "start": chunk_id * size,
        "stop": min(n_rows, (chunk_id + 1) * size),
        "shard": shard,
        "first_grove": shard * per,
        "stop_grove": min(n_groves, (shard + 1) * per),
    }


def groves_per_shard(spec: dict[str, Any], manifest: dict[str, Any]) -> int:
    """The request's ``groves_per_shard``, else as many groves as ``SHARD_BYTES`` of their
    files hold: a small forest is one shard (every tile predicts with the whole forest), a
    huge one is split so that no function reads more than that."""
    n_groves = len(manifest["groves"])
    if spec["groves_per_shard"] is not None:
        return min(spec["groves_per_shard"], n_groves)
    largest = max(record["bytes"] for record in manifest["groves"])
    return max(1, min(n_groves, SHARD_BYTES // largest))


def plan_batch(store: Store, request: Any, invocation: Invocation | None = None) -> dict[str, Any]:
    """Validate the request against the build's committed run and the input's columns; write
    the rows (float32, training column order), the chunk items and ``batch.json``."""
    spec = validate_batch_request(request)
    check_output_place(spec["output"], spec["data"])  # looks at the place: a step's work
    build_id = spec["build_id"]
    if "AWS_LAMBDA_FUNCTION_NAME" in os.environ:  # deployed: IAM lets assemble write only there
        allowed = f"s3://{store.location('')['Bucket']}/{OUTPUTS_PREFIX}"
        if not spec["output"].startswith(allowed):
            raise RequestError("output", f"{spec['output']!r}: on AWS it must be under {allowed}")
    try:
        manifest = read_manifest(store, build_id, spec["run_id"])
    except BuildError as exc:
        raise RequestError("run_id" if spec["run_id"] else "build_id", str(exc)) from exc
    run_id = manifest["run_id"]
    batch_id = new_run_id()
    with tempfile.TemporaryDirectory(prefix="groves-batch-") as folder:
        rows = Path(folder) / "X.npy"
        kept = Path(folder) / "keep.arrow"
        n_rows, n_features = write_rows(spec["data"], manifest["data"], spec["keep"], rows, kept)
        n_chunks = math.ceil(n_rows / spec["rows_per_chunk"])
        per = groves_per_shard(spec, manifest)
        n_shards = math.ceil(len(manifest["groves"]) / per)
        if n_chunks * n_shards > MAX_TILES:
            raise RequestError(
                "rows_per_chunk",
                f"{n_rows} rows make {n_chunks} chunks, times {n_shards} shards of groves: "
                f"{n_chunks * n_shards} tiles; at most {MAX_TILES}",
            )
        written = file_digest(rows)
        store.put_file(batch_key(build_id, batch_id, "X.npy"), rows)
        if spec["keep"]:
            store.put_file(batch_key(build_id, batch_id, "keep.arrow"), kept)
            written_keep = file_digest(kept)
    record = {
        "format": record_format("batch"),
        "build_id": build_id,
        "run_id": run_id,
        "batch_id": batch_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": {**spec, "run_id": run_id},
        "n_rows": n_rows,
        "n_features": n_features,
        "n_chunks": n_chunks,
        "n_groves": len(manifest["groves"]),
        "groves_per_shard": per,
        "n_shards": n_shards,
        "n_tiles": n_chunks * n_shards,
        "X": written,
        "estimator": manifest["spec"]["estimator"],
        "classes": manifest["data"]["classes"],
        "n_outputs": manifest["data"].get("n_outputs", 1),
        "n_trees": manifest["n_trees"],
        "model": manifest["model"],
    }
    if spec["keep"]:
        record["keep"] = written_keep
    record["usage"] = (invocation or Invocation.begin("plan_batch")).usage()
    # shard by shard: the chunks a warm function gets in turn share its decoded groves
    tiles = [{"chunk_id": c, "shard": s} for s in range(n_shards) for c in range(n_chunks)]
    put_json(store, batch_key(build_id, batch_id, "chunks.json"), tiles)
    put_json(store, batch_key(build_id, batch_id, "batch.json"), record)
    return record


def state_output(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    """What plan_batch passes on: ids, counts and where the Map reads its chunk items."""
    build_id, batch_id = record["build_id"], record["batch_id"]
    return {
        "store": store.uri,
        "build_id": build_id,
        "run_id": record["run_id"],
        "batch_id": batch_id,
        "n_rows": record["n_rows"],
        "n_chunks": record["n_chunks"],
        "n_shards": record["n_shards"],
        "max_concurrency": record["spec"]["max_concurrency"],
        "items": store.location(batch_key(build_id, batch_id, "chunks.json")),
    }


def read_batch(store: Store, build_id: str, batch_id: str) -> dict[str, Any]:
    if not BUILD_ID.fullmatch(build_id):
        raise RequestError("build_id", f"{build_id!r} is not a build id")
    check_run_id(batch_id, "batch_id")
    return read_record(
        store, batch_key(build_id, batch_id, "batch.json"), build_id, "batch", batch_id
    )


NPY_HEAD = 4096  # bytes that hold an .npy file's magic and header


def read_rows(store: Store, record: dict[str, Any], start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the batch's input: the ``.npy`` header, then just those rows' bytes
    (one ranged GET on S3), so a chunk's function never downloads the whole input."""
    key = batch_key(record["build_id"], record["batch_id"], "X.npy")
    head = io.BytesIO(store.get_range(key, 0, NPY_HEAD))
    version = np.lib.format.read_magic(head)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
        version, np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read_header(head)
    expected = (record["n_rows"], record["n_features"])
    if shape != expected or fortran or dtype != np.float32:
        raise BuildError(f"the input of batch {record['batch_id']} is not its recorded table")
    row = shape[1] * dtype.itemsize
    offset = head.tell()
    data = store.get_range(key, offset + start * row, offset + stop * row)
    if len(data) != (stop - start) * row:
        raise BuildError(f"the input of batch {record['batch_id']} is shorter than recorded")
    return np.frombuffer(data, dtype=np.float32).reshape(stop - start, shape[1])


def tile_key(record: dict[str, Any], tile: dict[str, int], suffix: str) -> str:
    return chunk_key(
        record["build_id"], record["batch_id"], tile["chunk_id"], tile["shard"], suffix
    )


def verified_tile(
    store: Store, record: dict[str, Any], tile: dict[str, int]
) -> dict[str, Any] | None:
    """The stored result of a tile whose votes file matches it, else ``None``."""
    try:
        meta = get_json(store, tile_key(record, tile, "json"))
        read_verified(store, tile_key(record, tile, "votes.npy"), meta, "")
    except (ArtifactNotFound, BuildError, ValueError):
        return None
    return meta if {k: meta.get(k) for k in tile} == tile else None


def predict_chunk(
    store: Store, build_id: str, batch_id: str, chunk: Any, invocation: Invocation | None = None
) -> dict[str, Any]:
    """Sum the votes of one shard's trees on one chunk of rows (a tile) and store them;
    idempotent (a tile whose votes verify is not computed again, for a redrive)."""
    started = time.perf_counter()
    record = read_batch(store, build_id, batch_id)
    planned = planned_tile(record, chunk)
    if {k: planned[k] for k in ("chunk_id", "shard")} != chunk:
        raise BuildError(f"tile {chunk!r} is not part of batch {batch_id}")
    done = verified_tile(store, record, planned)
    if done is not None:
        return {**done, "reused": True}
    manifest = read_manifest(store, build_id, record["run_id"])
    if manifest["model"] != record["model"]:
        raise BuildError(f"run {record['run_id']} is not the run batch {batch_id} was planned on")
    X = read_rows(store, record, planned["start"], planned["stop"])
    groves = manifest["groves"][planned["first_grove"] : planned["stop_grove"]]
    votes = committed_votes(store, manifest, X, record["classes"] is not None, groves, WARM)
    blob = dump_npy(votes)
    store.put_bytes(tile_key(record, planned, "votes.npy"), blob)
    meta = {
        **planned,
        **digest(blob),
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mb": peak_rss_mb(),
        "usage": (invocation or Invocation.begin("predict_chunk")).usage(),
    }
    put_json(store, tile_key(record, planned, "json"), meta)
    return {**meta, "reused": False}


def chunk_votes(
    store: Store, record: dict[str, Any], chunk_id: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A chunk's votes: its shards' sums, each checked against what its function recorded,
    added in the forest's order; and its tiles' records."""
    total, metas = None, []
    for shard in range(record["n_shards"]):
        tile = {"chunk_id": chunk_id, "shard": shard}
        try:
            meta = get_json(store, tile_key(record, tile, "json"))
        except ArtifactNotFound as exc:
            raise BuildError(
                f"chunk {chunk_id} (shard {shard}) of batch {record['batch_id']} is missing; "
                "no output was written"
            ) from exc
        what = f"chunk {chunk_id} (shard {shard})"
        votes = load_npy(read_verified(store, tile_key(record, tile, "votes.npy"), meta, what))
        total = votes if total is None else total + votes
        metas.append(meta)
    assert total is not None
    return total, metas


def kept_columns(store: Store, record: dict[str, Any]) -> pa.Table | None:
    """The input's columns carried into the output (memory-mapped), checked by sha256."""
    if "keep" not in record:
        return None
    key = batch_key(record["build_id"], record["batch_id"], "keep.arrow")
    path = store.local_path(key)
    if file_digest(path) != record["keep"]:
        raise BuildError(f"{key} does not match its recorded sha256; no output was written")
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def assemble(
    store: Store, build_id: str, batch_id: str, invocation: Invocation | None = None
) -> dict[str, Any]:
    """One output file in input order, written chunk by chunk (memory: one chunk): the kept
    input columns, ``prediction`` and, for a classifier, ``proba_<class>`` columns; beside it
    ``<output>.json`` naming the build, run and batch."""
    started = time.perf_counter()
    invocation = invocation or Invocation.begin("assemble_predictions")
    record = read_batch(store, build_id, batch_id)
    target = Target.of(record)
    tiles: list[dict[str, Any]] = []
    kept = kept_columns(store, record)
    output = record["spec"]["output"]
    with tempfile.TemporaryDirectory(prefix="groves-output-") as tmp:
        path = Path(tmp) / Path(output).name
        writer = None
        try:
            for chunk_id in range(record["n_chunks"]):
                chunk = planned_tile(record, {"chunk_id": chunk_id, "shard": 0})
                votes, metas = chunk_votes(store, record, chunk_id)
                tiles += metas
                table = output_table(target, votes, record["n_trees"])
                if kept is not None:
                    part = kept.slice(chunk["start"], chunk["stop"] - chunk["start"])
                    for name in reversed(part.column_names):
                        table = table.add_column(0, name, part.column(name))
                writer = writer or table_writer(path, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        columns = table.column_names
        written = file_digest(path)
        sidecar = {
            **{k: record[k] for k in ("build_id", "run_id", "batch_id", "n_rows", "n_trees")},
            "model": record["model"],
            "output": output,
            "columns": columns,
            **written,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cost": batch_cost(record, tiles, invocation.usage()),
        }
        side = Path(tmp) / "sidecar.json"
        side.write_text(json.dumps(sidecar, indent=2))
        write_pair(output, path, side)
    return {**sidecar, "seconds": round(time.perf_counter() - started, 3)}


def batch_cost(
    record: dict[str, Any], tiles: list[dict[str, Any]], assemble_usage: dict[str, Any]
) -> dict[str, Any]:
    """The batch's cost: plan_batch, every tile's predict_chunk, assemble, and the batch
    execution's transitions (``groves.steps.cost``)."""
    steps = {
        "plan_batch": step_cost([record["usage"]]),
        "predict_chunk": step_cost([t["usage"] for t in tiles]),
        "assemble_predictions": step_cost([assemble_usage]),
    }
    return summarize(steps, batch_transitions(record["n_tiles"]))


SIDECAR_META = "groves-sidecar"  # the output object's own copy of its sidecar (zlib, base64)
PAIR_ATTEMPTS = 20


def write_pair(output: str, path: Path, side: Path) -> None:
    """Write the output and its sidecar so that they end as one batch's pair, whoever else
    writes the same output at once: locally under one lock; on S3, which writes no two objects
    together, the output carries its sidecar in its metadata, and the sidecar is written from
    the output found there until the output did not change meanwhile (the last writer to
    finish leaves the pair of the output that stands)."""
    if not output.startswith("s3://"):
        with locked_output(output):
            write_uri(output, path)
            write_uri(output + ".json", side)
        return
    bucket, key = split_s3_uri(output)
    client = s3_client()
    carried = base64.b64encode(zlib.compress(side.read_bytes())).decode()
    if len(carried) > 1800:  # beyond S3's 2 KB of metadata: the two files, in order
        write_uri(output, path)
        write_uri(output + ".json", side)
        return
    client.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {SIDECAR_META: carried}})
    for _ in range(PAIR_ATTEMPTS):
        standing = client.head_object(Bucket=bucket, Key=key)
        tag = standing.get("Metadata", {}).get(SIDECAR_META)
        if tag is None:  # a writer that carries no sidecar stood last: it writes its own
            return
        body = zlib.decompress(base64.b64decode(tag))
        client.put_object(Bucket=bucket, Key=key + ".json", Body=body)
        if client.head_object(Bucket=bucket, Key=key)["ETag"] == standing["ETag"]:
            return
    raise BuildError(f"{output} kept changing while its sidecar was written")


def output_table(target: Target, votes: np.ndarray, n_trees: int) -> pa.Table:
    """``prediction`` (the most voted class, or the mean) and each class's probability
    ``proba_<class>``; with several outputs, ``prediction_<j>`` and ``proba_<j>_<class>``."""
    decided = target.decide(votes, n_trees)
    several = target.n_outputs > 1
    predictions = decided.T if several else [decided]
    columns: dict[str, Any] = {
        f"prediction_{j}" if several else "prediction": pa.array(np.asarray(p))
        for j, p in enumerate(predictions)
    }
    if target.classes is not None:
        parts = target.per_output(votes / n_trees)
        for j, (classes, proba) in enumerate(zip(target.classes, parts, strict=True)):
            prefix = f"proba_{j}_" if several else "proba_"
            columns.update({f"{prefix}{c}": proba[:, i] for i, c in enumerate(classes)})
    return pa.table(columns)


def table_writer(path: Path, schema: pa.Schema) -> Any:
    """pyarrow's Parquet writer when ``path`` ends in ``.parquet``, else its CSV writer."""
    if path.suffix.lower() == ".parquet":
        return pq.ParquetWriter(path, schema)
    return pa_csv.CSVWriter(path, schema)
