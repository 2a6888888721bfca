"""A local directory as a ``Store``, and the atomic file write it is built on.

Every write is a temporary file beside its key renamed over it (``atomic_file``), so readers
never see half a file; a conditional write is a hard link of a whole staged file, and
``update_json`` an exclusive ``flock`` on a lock file beside the key (``protocol`` says what
callers rely on).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from groves.store.codec import json_bytes
from groves.store.protocol import ArtifactNotFound, CannotRead

# The bucket name a local directory store goes by in state data (``Store.location``): the local
# runner maps it back to the directory for the Map's ItemReader and ResultWriter.
LOCAL_BUCKET = "local-store"
# Files are created as open() creates them: 0666 less the process's umask (read once, at
# import, while no other thread can see the umask change that reading it takes).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


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
