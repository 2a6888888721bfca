"""What a URI names: a store (``open_store``: a local directory or ``s3://bucket/prefix``), or
one file outside any store: a user's data to read (``read_uri``, ``list_uri``,
``download_uri``) and a batch prediction's output to write (``write_uri``, ``locked_output``).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from groves.errors import RequestError
from groves.store.local import LOCAL_BUCKET, LocalStore, atomic_file
from groves.store.protocol import ArtifactNotFound, Store
from groves.store.s3 import MISSING_BUCKET, MISSING_OBJECT, S3Store, error_code, s3_client

S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
DEFAULT_STORE = "groves-runs"  # where local runs go unless --store says otherwise


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; a ``ValueError`` unless the
    bucket name is a valid one."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not S3_BUCKET.fullmatch(bucket):
        raise ValueError(f"{uri!r} is not s3://BUCKET/... with a valid bucket name")
    return bucket, key


def open_store(uri: Any) -> Store:
    """A store for ``s3://bucket[/prefix]`` or a local directory path (``file://`` allowed);
    anything else is a ``RequestError`` naming ``store``."""
    form = "a directory or s3://bucket[/prefix]"
    if not isinstance(uri, str) or not uri.strip() or "\x00" in uri:
        raise RequestError("store", f"{uri!r} is not {form}")
    if uri.startswith("s3://"):
        try:
            return S3Store(*split_s3_uri(uri))
        except ValueError as exc:
            raise RequestError("store", f"{uri!r} is not {form} with a valid bucket name") from exc
    if "://" in uri and not uri.startswith("file://"):
        raise RequestError("store", f"{uri!r}: unsupported scheme; use {form}")
    store = LocalStore(uri.removeprefix("file://"))
    if store.root.exists() and not store.root.is_dir():
        raise RequestError("store", f"{uri!r} exists and is not a directory")
    return store


def check_store(store: Store) -> None:
    """A store a build can write to, before any work: a directory that exists or can be made
    and takes a file (a real write), or an S3 bucket that exists and answers; else a
    ``RequestError`` naming ``store``."""
    if isinstance(store, LocalStore):
        try:
            store.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=store.root):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise RequestError("store", f"{store.uri!r} cannot be written: {reason}") from exc
        return
    if isinstance(store, S3Store):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            store.client.head_bucket(Bucket=store.bucket)
        except ClientError as exc:
            code = error_code(exc)
            if code in MISSING_BUCKET:
                reason = "does not exist"
            elif code in ("403", "AccessDenied"):
                reason = "is not accessible (access denied)"
            else:
                reason = f"answers {code or 'an error'}"
            raise RequestError("store", f"bucket {store.bucket!r} {reason}") from exc
        except BotoCoreError as exc:
            raise RequestError("store", f"S3 cannot be reached: {exc}") from exc


def bucket_stores(store: Store) -> dict[str, Store]:
    """The bucket ``store.location`` names, as a store rooted at the bucket itself: what the
    local runner's ItemReader and ResultWriter read and write through."""
    if isinstance(store, S3Store):
        return {store.bucket: S3Store(store.bucket, "", store._client)}
    if isinstance(store, LocalStore):
        return {LOCAL_BUCKET: LocalStore(store.root)}
    raise TypeError(f"no bucket for a {type(store).__name__}")


def read_uri(uri: str) -> bytes:
    """The bytes of a local file or an ``s3://bucket/key`` object."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        client = s3_client()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey as exc:
            raise ArtifactNotFound(f"{uri} does not exist") from exc
    try:
        return Path(uri.removeprefix("file://")).expanduser().read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactNotFound(f"{uri} does not exist") from exc


def list_uri(uri: str) -> list[str]:
    """The files directly in a local directory or under an ``s3://bucket/prefix/``, as paths
    or URIs (an S3 prefix's objects at any depth)."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        pages = (
            s3_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
        )
        return [f"s3://{bucket}/{o['Key']}" for page in pages for o in page.get("Contents", [])]
    folder = Path(uri.removeprefix("file://")).expanduser()
    if not folder.is_dir():
        raise ArtifactNotFound(f"{uri} is not a directory")
    return [str(p) for p in sorted(folder.iterdir()) if p.is_file()]


def download_uri(uri: str, path: Path) -> None:
    """Download ``s3://bucket/key`` to ``path`` with boto3's transfer manager (parallel ranged
    GETs); a missing object is ``ArtifactNotFound``."""
    bucket, key = split_s3_uri(uri)
    client = s3_client()
    try:
        client.download_file(bucket, key, str(path))
    except client.exceptions.ClientError as exc:
        if error_code(exc) in MISSING_OBJECT:
            raise ArtifactNotFound(f"{uri} does not exist") from exc
        raise


def regular_file(uri: str) -> Path:
    """A local file's path, if it is a regular file: a directory is ``IsADirectoryError``, a
    missing one ``ArtifactNotFound``, anything else (a FIFO, which would block an ``open``
    forever; a device) ``OSError``."""
    path = Path(uri.removeprefix("file://")).expanduser()
    if path.is_dir():
        raise IsADirectoryError(str(path))
    if not path.is_file():
        raise (
            ArtifactNotFound(uri) if not path.exists() else OSError(f"{uri} is not a regular file")
        )
    return path


class _RangedObject(io.RawIOBase):
    """An S3 object read by ranged GETs where the reader seeks: a Parquet file's footer or a
    CSV's first block, not the whole object."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key, self.position = client, bucket, key, 0
        self.size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        stop = min(self.size, self.position + len(buffer))
        if stop <= self.position:
            return 0
        body = self.client.get_object(
            Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{stop - 1}"
        )["Body"].read()
        memoryview(buffer)[: len(body)] = body
        self.position += len(body)
        return len(body)


@contextlib.contextmanager
def opened_uri(uri: str, buffer_bytes: int = 1 << 20) -> Iterator[BinaryIO]:
    """A local file or an ``s3://bucket/key`` object opened for reading where it is: an S3
    object is read by ranged GETs of at least ``buffer_bytes`` as the reader seeks, nothing
    downloaded; a missing one is ``ArtifactNotFound``."""
    if not uri.startswith("s3://"):
        with regular_file(uri).open("rb") as handle:
            yield handle
        return
    bucket, key = split_s3_uri(uri)
    client = s3_client()
    try:
        raw = _RangedObject(client, bucket, key)
    except client.exceptions.ClientError as exc:
        if error_code(exc) in MISSING_OBJECT:
            raise ArtifactNotFound(f"{uri} does not exist") from exc
        raise
    with io.BufferedReader(raw, buffer_bytes) as handle:
        yield handle  # type: ignore[misc]


@contextlib.contextmanager
def locked_output(uri: str) -> Iterator[None]:
    """An exclusive lock on a local output path (a ``.<name>.lock`` file beside it), so that
    files written together under it (an output and its sidecar) change together; no lock
    for ``s3://`` outputs, which S3 cannot write together."""
    if uri.startswith("s3://"):
        yield
        return
    path = Path(uri.removeprefix("file://")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_uri(uri: str, path: Path) -> None:
    """Copy a local file to a local path (atomically) or to ``s3://bucket/key`` (boto3's
    transfer manager)."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        s3_client().upload_file(str(path), bucket, key)
        return
    with atomic_file(Path(uri.removeprefix("file://")).expanduser()) as tmp:
        shutil.copyfile(path, tmp)
