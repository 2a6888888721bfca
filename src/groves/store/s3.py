"""``s3://bucket/prefix`` as a ``Store``, through boto3: whole-object PUTs, conditional writes
(``If-None-Match``, ``If-Match`` on the ETag), ranged GETs, and boto3's transfer manager for
large files (multipart uploads, parallel ranged downloads into the ``cache``).

Any S3-compatible store works by setting ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``),
which boto3 reads itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from groves.store.cache import cached_path, make_room
from groves.store.codec import json_bytes
from groves.store.local import atomic_file
from groves.store.protocol import READ_THREADS, ArtifactNotFound

# S3's error codes for an object, or a bucket, that is not there (a HEAD has no body: "404")
MISSING_OBJECT = frozenset({"404", "NotFound", "NoSuchKey"})
MISSING_BUCKET = frozenset({"404", "NotFound", "NoSuchBucket"})
# S3's answers to a conditional write whose condition does not hold (or that raced another)
CONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
UPDATE_ATTEMPTS = 50
DELETE_BATCH = 1000  # keys one S3 DeleteObjects request takes, at most


def error_code(error: Any) -> str:
    """A botocore ``ClientError``'s S3 error code."""
    return error.response.get("Error", {}).get("Code", "")


def s3_client() -> Any:
    """A boto3 S3 client; endpoint and credentials come from the usual AWS environment. Its
    connection pool holds ``READ_THREADS`` connections (botocore's default is 10), so no thread
    of a step's reads waits for a connection or makes a new one per request."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(max_pool_connections=READ_THREADS))


class S3Store:
    """``s3://bucket/prefix`` through boto3."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if not bucket:
            raise ValueError("an s3:// store needs a bucket name, e.g. s3://my-bucket/builds")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> dict[str, str]:
        """Where ``key`` is, in the form a state machine's S3 fields take."""
        return {"Bucket": self.bucket, "Key": self._key(key)}

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes ``start:stop`` of an object, in one ranged GET (nothing else is downloaded)."""
        if stop <= start:
            return b""
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{stop - 1}"
            )
        except self.client.exceptions.NoSuchKey as exc:
            raise ArtifactNotFound(f"{self.uri}/{key} does not exist") from exc
        return response["Body"].read()

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist (S3's conditional write, ``If-None-Match:
        *``); whether it was written."""
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except self.client.exceptions.ClientError as exc:
            if error_code(exc) in CONDITION_FAILED:
                return False
            raise
        return True

    def update_json(self, key: str, change: Callable[[Any], Any]) -> Any:
        """Replace the JSON at ``key`` by ``change(current)`` (``None``: absent / leave it),
        as a compare-and-swap on the object's ETag (``If-Match``, or ``If-None-Match: *``
        when absent), retried when another writer got there first. The value left."""
        for _ in range(UPDATE_ATTEMPTS):
            try:
                got = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
                current, condition = json.loads(got["Body"].read()), {"IfMatch": got["ETag"]}
            except self.client.exceptions.NoSuchKey:
                current, condition = None, {"IfNoneMatch": "*"}
            new = change(current)
            if new is None:
                return current
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=json_bytes(new), **condition
                )
            except self.client.exceptions.ClientError as exc:
                if error_code(exc) in CONDITION_FAILED:
                    continue
                raise
            return new
        raise RuntimeError(f"{self.uri}/{key} kept changing under {UPDATE_ATTEMPTS} updates")

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise ArtifactNotFound(f"{self.uri}/{key} does not exist") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as exc:
            if error_code(exc) in MISSING_OBJECT:
                return False
            raise
        return True

    def list_keys(self, prefix: str) -> list[str]:
        return list(self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes, in key order."""
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        sizes: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        ):
            sizes.update((obj["Key"][strip:], obj["Size"]) for obj in page.get("Contents", []))
        return dict(sorted(sizes.items()))

    def delete(self, keys: list[str]) -> int:
        """Remove these objects with DeleteObjects, 1,000 keys a request; how many were asked
        to be removed (S3 does not say which existed). A key S3 refuses is an ``OSError``
        naming it. Only client-side commands delete: the template grants no function it."""
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": self._key(k)} for k in keys[start : start + DELETE_BATCH]]
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise OSError(
                    f"S3 refused to delete {len(errors)} objects, first "
                    f"s3://{self.bucket}/{first.get('Key')}: {first.get('Code')}: "
                    f"{first.get('Message')}"
                )
        return len(keys)

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file with boto3's transfer manager (multipart, parts in parallel)."""
        self.client.upload_file(str(path), self.bucket, self._key(key))

    def evict(self, key: str) -> bool:
        """Drop the local copy of ``key`` (one that failed its check), so that the next
        ``local_path`` downloads it again."""
        cached_path(self.bucket, self._key(key)).unlink(missing_ok=True)
        return True

    def local_path(self, key: str) -> Path:
        """A local copy of an object, downloaded once per process by boto3's transfer manager
        (parallel ranged GETs). Keys of a run are never rewritten, so the copy stays valid;
        readers check it against its recorded sha256 (and ``evict`` a bad one). The cache is
        bounded (``cache.cache_budget``): the least recently used copies make room for a new
        one."""
        path = cached_path(self.bucket, self._key(key))
        if path.is_file():
            os.utime(path)  # recently used
            return path
        try:
            size = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            make_room(int(size["ContentLength"]))
            with atomic_file(path) as tmp:
                self.client.download_file(self.bucket, self._key(key), str(tmp))
        except self.client.exceptions.ClientError as exc:
            if error_code(exc) in MISSING_OBJECT:
                raise ArtifactNotFound(f"{self.uri}/{key} does not exist") from exc
            raise
        return path

    def list_children(self, prefix: str) -> list[str]:
        """Names of the objects and "folders" directly under ``prefix`` (a folder path)."""
        folder = prefix.strip("/")
        full = f"{self._key(folder)}/" if folder else (f"{self.prefix}/" if self.prefix else "")
        names: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full, Delimiter="/"
        ):
            folders = page.get("CommonPrefixes", [])
            names.extend(p["Prefix"][len(full) :].rstrip("/") for p in folders)
            names.extend(obj["Key"][len(full) :] for obj in page.get("Contents", []))
        return sorted(n for n in names if n)
