"""One small interface over a local directory and an ``s3://bucket/prefix``, chosen by URI.

S3 goes through boto3, so any S3-compatible store works by setting ``AWS_ENDPOINT_URL_S3``
(or ``AWS_ENDPOINT_URL``), which boto3 reads itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from groves.errors import CorruptFile, RequestError

# S3's error codes for an object, or a bucket, that is not there (a HEAD has no body: "404")
MISSING_OBJECT = frozenset({"404", "NotFound", "NoSuchKey"})
MISSING_BUCKET = frozenset({"404", "NotFound", "NoSuchBucket"})
READ_THREADS = 64  # small objects a step reads at once: S3 reads wait on the network, ~30 ms each

# lz4 level 1: measured against zlib 1/3/6, lz4 3 and none on 300k-row forests, it writes a
# third of the bytes of no compression for +0.1 s per 56 MB, and loads 2x faster than zlib.
JOBLIB_COMPRESSION = ("lz4", 1)
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
DEFAULT_STORE = "groves-runs"  # where local runs go unless --store says otherwise
# The bucket name a local directory store goes by in state data (``Store.location``): the local
# runner maps it back to the directory for the Map's ItemReader and ResultWriter.
LOCAL_BUCKET = "local-store"
# Files are created as open() creates them: 0666 less the process's umask (read once, at
# import, while no other thread can see the umask change that reading it takes).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
# S3's answers to a conditional write whose condition does not hold (or that raced another)
CONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
UPDATE_ATTEMPTS = 50
DELETE_BATCH = 1000  # keys one S3 DeleteObjects request takes, at most


class CannotRead(OSError):
    """A store could not read a key (the CLI says ``cannot read``, never ``cannot write``)."""


class ArtifactNotFound(FileNotFoundError, CannotRead):
    """A key that should exist in the store does not."""


class Store(Protocol):
    """Where builds live: keys are ``/``-separated paths relative to the store root."""

    uri: str

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str) -> list[str]: ...

    def list_sizes(self, prefix: str) -> dict[str, int]: ...

    def list_children(self, prefix: str) -> list[str]: ...

    def local_path(self, key: str) -> Path: ...

    def put_file(self, key: str, path: Path) -> None: ...

    def location(self, key: str) -> dict[str, str]: ...

    def get_range(self, key: str, start: int, stop: int) -> bytes: ...

    def create_bytes(self, key: str, data: bytes) -> bool: ...

    def evict(self, key: str) -> bool: ...

    def update_json(self, key: str, change: Callable[[Any], Any]) -> Any: ...

    def delete(self, keys: list[str]) -> int: ...


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block ends without error,
    so readers never see half a file; on error the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would hide a team's shared store from the team
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LocalStore:
    """A directory; writes are atomic (temp file + rename), so readers never see half a file."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"key {key!r} escapes the store root {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        with atomic_file(self._path(key)) as tmp:
            tmp.write_bytes(data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist (atomically: a hard link of the whole file
        either appears or fails); whether it was written."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.fchmod(fd, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.link(staged, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(staged)
        return True

    def update_json(self, key: str, change: Callable[[Any], Any]) -> Any:
        """Replace the JSON at ``key`` by ``change(current)`` (``current`` is ``None`` when
        absent; a ``None`` result leaves it as it is), under an exclusive lock: concurrent
        updates apply one after the other. The value left at ``key``."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = json.loads(path.read_bytes()) if path.is_file() else None
            new = change(current)
            if new is None:
                return current
            self.put_bytes(key, json_bytes(new))
            return new

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"{self.uri}/{key} does not exist") from exc
        except OSError as exc:  # a directory, no permission
            raise CannotRead(f"{self.uri}/{key}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, keys: list[str]) -> int:
        """Remove these files (one missing already is not an error) and the folders they
        leave empty; how many were removed. Only client-side commands delete (``groves rm``,
        ``groves gc``): no step does."""
        removed, folders = 0, set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            folders.update(p for p in path.parents if self.root in p.parents)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            for lock in folder.glob(".*.lock"):  # update_json's lock files
                if not lock.with_name(lock.name[1:-5]).exists():
                    lock.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: something else is still there
                folder.rmdir()
        return removed

    def list_keys(self, prefix: str) -> list[str]:
        return list(self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes, in key order."""
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return {}
        files = (p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))
        return dict(sorted((p.relative_to(self.root).as_posix(), p.stat().st_size) for p in files))

    def put_file(self, key: str, path: Path) -> None:
        """Copy a local file in, atomically."""
        with atomic_file(self._path(key)) as tmp:
            shutil.copyfile(path, tmp)

    def evict(self, key: str) -> bool:
        """Nothing to drop: the file itself is what ``local_path`` gives."""
        return False

    def local_path(self, key: str) -> Path:
        """The file itself (for memory-mapping)."""
        path = self._path(key)
        if not path.is_file():
            raise ArtifactNotFound(f"{self.uri}/{key} does not exist")
        return path

    def list_children(self, prefix: str) -> list[str]:
        """Names of the files and folders directly under ``prefix`` (a folder path)."""
        base = self._path(prefix) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if not p.name.startswith("."))

    def location(self, key: str) -> dict[str, str]:
        """Where ``key`` is, in the form a state machine's S3 fields take."""
        self._path(key)
        return {"Bucket": LOCAL_BUCKET, "Key": key}

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes ``start:stop`` of a file."""
        with self.local_path(key).open("rb") as handle:
            handle.seek(start)
            return handle.read(stop - start)


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

    def _cached(self, key: str) -> Path:
        return cache_root() / self.bucket / self._key(key)

    def evict(self, key: str) -> bool:
        """Drop the local copy of ``key`` (one that failed its check), so that the next
        ``local_path`` downloads it again."""
        self._cached(key).unlink(missing_ok=True)
        return True

    def local_path(self, key: str) -> Path:
        """A local copy of an object, downloaded once per process by boto3's transfer manager
        (parallel ranged GETs). Keys of a run are never rewritten, so the copy stays valid;
        readers check it against its recorded sha256 (and ``evict`` a bad one). The cache is
        bounded (``cache_budget``): the least recently used copies make room for a new one."""
        path = self._cached(key)
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


CACHE_BYTES_ENV = "GROVES_CACHE_BYTES"


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / "groves-cache"


def cache_budget() -> int:
    """Bytes the S3 download cache may hold: ``GROVES_CACHE_BYTES``, else half of the file
    system of the temporary folder (on Lambda: half of the function's ``EphemeralStorage``,
    leaving the rest for the files a step writes there)."""
    configured = os.environ.get(CACHE_BYTES_ENV)
    if configured:
        return int(configured)
    return shutil.disk_usage(tempfile.gettempdir()).total // 2


def make_room(incoming: int) -> None:
    """Remove the least recently used cached copies until ``incoming`` more bytes fit the
    budget. A copy in use stays readable: a mapped or open file outlives its name."""
    root = cache_root()
    if not root.is_dir():
        return
    cached = []
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.name.startswith("."):
                info = path.stat()
                cached.append((info.st_mtime, info.st_size, path))
    total, budget = sum(size for _, size, _ in cached), cache_budget()
    for _, size, path in sorted(cached):
        if total + incoming <= budget:
            break
        path.unlink(missing_ok=True)
        total -= size


def bucket_stores(store: Store) -> dict[str, Store]:
    """The bucket ``store.location`` names, as a store rooted at the bucket itself: what the
    local runner's ItemReader and ResultWriter read and write through."""
    if isinstance(store, S3Store):
        return {store.bucket: S3Store(store.bucket, "", store._client)}
    if isinstance(store, LocalStore):
        return {LOCAL_BUCKET: LocalStore(store.root)}
    raise TypeError(f"no bucket for a {type(store).__name__}")


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


def json_bytes(value: Any) -> bytes:
    """A JSON record as groves stores every one (indented, keys sorted)."""
    return json.dumps(value, indent=2, sort_keys=True).encode()


def put_json(store: Store, key: str, value: Any) -> None:
    store.put_bytes(key, json_bytes(value))


def get_json(store: Store, key: str) -> Any:
    """The JSON at ``key``; a file that is not JSON (truncated, damaged, nested past Python's
    recursion limit) is a ``CorruptFile`` naming it, not a parser's traceback."""
    return parse_json(store.get_bytes(key), f"{store.uri}/{key}")


def parse_json(blob: bytes, name: str) -> Any:
    """``blob`` as JSON, or a ``CorruptFile`` naming ``name``."""
    try:
        return json.loads(blob)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise CorruptFile(f"{name} is not valid JSON (truncated or damaged)") from exc


def dump_npy(array: Any) -> bytes:
    """An array as ``.npy`` bytes (no pickled objects)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def dump_npy_lz4(array: Any) -> bytes:
    """An array as ``.npy`` bytes in an lz4 frame: a grove's votes, whose few distinct values
    (whole numbers of trees, for fully grown ones) shrink 4.5x, so scoring downloads less."""
    import lz4.frame

    return lz4.frame.compress(dump_npy(array))


def load_npy_lz4(data: bytes) -> Any:
    import lz4.frame

    return load_npy(lz4.frame.decompress(data))


def load_npy(data: bytes) -> Any:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


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
