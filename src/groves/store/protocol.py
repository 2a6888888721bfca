"""The ``Store`` protocol: what every backend (``local.LocalStore``, ``s3.S3Store``) guarantees,
and the errors a read raises.

A run is committed with nothing but these guarantees (``store.artifacts``): no lock server, no
database, no transaction across keys. What each part of a build relies on:

- **An object is replaced whole.** ``put_bytes``, ``put_file`` and ``update_json`` replace the
  object at a key in one step: a reader gets the old bytes or the new ones, never part of
  either, and never an object that is missing between the two. S3 gives this by its PUT;
  ``LocalStore`` writes a temporary file beside the key and renames it over the key
  (``local.atomic_file``: ``os.replace``, atomic within one file system). So train_grove's
  grove ``.json``, written after the grove's trees and votes, is the grove's own commit, and a
  file a reader finds is one its writer wrote whole (readers still check its size and sha256
  against the writer's record before they use it: ``artifacts.read_verified``).
- **Read after write, and listings after write.** Once a write returns, every reader in any
  process (another Lambda, a local worker) reads the new bytes (``get_bytes``, ``get_range``,
  ``exists``, ``local_path``) and every listing (``list_keys``, ``list_sizes``,
  ``list_children``) holds the key. S3 has been strongly consistent for both since December
  2020; a directory is, by POSIX. merge relies on it: the groves the Map's workers wrote before
  they returned are all read (``read_grove_metas``) and all in one listing of the groves'
  folder (``check_grove_files``), so a missing grove is truly missing, never merely not yet
  visible; and resume, redrive and the CLI read what the last step wrote.
- **Create if absent.** ``create_bytes`` writes a key only if no object is there, as one step
  against every other writer, and says whether it wrote (S3: ``If-None-Match: *``; a
  directory: a hard link of a whole staged file, which fails if the name exists). The
  manifest, a run's commit mark, is written so (``artifacts.commit``): two merges of one run
  commit it once and a committed run is never rewritten; and each promote's record
  (``promotions``).
- **Compare-and-swap on one JSON object.** ``update_json`` reads, changes and writes back the
  JSON at a key as one step against concurrent updaters (S3: a conditional PUT on the ETag
  read, retried; a directory: an exclusive ``flock``). ``latest.json`` is only written so
  (``artifacts.advance_latest``, ``promotions.promote``): ``latest`` only moves forward when
  builds commit at once, and a promote is never lost to a commit that raced it.
- **Nothing else is conditional.** A plain write is last-writer-wins; no two steps write one
  key, and a step retried (a redrive) writes the same bytes, or bytes its readers verify by the
  record written after them. There are no transactions across keys: an order of writes is the
  protocol (trees and votes, then the grove's record; groves, then the manifest, then
  ``latest.json``), and every reader checks that order's last record before trusting the rest.
- **Deletes are the client's.** ``delete`` is used by ``groves rm`` and ``groves gc`` only, never
  by a step (the deployed functions may not delete), and never of the latest run or of a run
  that work in progress uses (``cleanup``), so no step reads a key that vanishes under it.
- **Threads.** A store is shared by a step's threads: it takes ``READ_THREADS`` calls at once
  (the S3 client's connection pool has that many connections).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

READ_THREADS = 64  # small objects a step reads at once: S3 reads wait on the network, ~30 ms each


class CannotRead(OSError):
    """A store could not read a key (the CLI says ``cannot read``, never ``cannot write``)."""


class ArtifactNotFound(FileNotFoundError, CannotRead):
    """A key that should exist in the store does not."""


class Store(Protocol):
    """Where builds live: keys are ``/``-separated paths relative to the store root, ``uri``."""

    uri: str

    def put_bytes(self, key: str, data: bytes) -> None:
        """Replace the object at ``key`` with ``data``, whole (last writer wins): every step's
        writes, and the grove record that is a grove's commit."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """``put_bytes`` of a local file's bytes, without holding them in memory (the
        prepared rows' shards, a batch's input and output)."""
        ...

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` only if no object is there, as one step against every
        other writer; whether it was written. The manifest (a run's commit) and promote
        records: a committed run is never rewritten."""
        ...

    def update_json(self, key: str, change: Callable[[Any], Any]) -> Any:
        """Replace the JSON at ``key`` by ``change(current)`` as one compare-and-swap
        (``current`` is ``None`` when absent; a ``None`` result leaves it as it is), applied
        again on the new value when another writer got there first, so concurrent updates
        apply one after the other and none is lost; the value left at ``key``. Only
        ``latest.json`` is written so (a commit's advance, a promote)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The whole object as last written; ``ArtifactNotFound`` if there is none."""
        ...

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes ``start:stop`` of the object, and nothing else read (a grove's stripes of
        the prepared rows, a chunk's rows of a batch's input)."""
        ...

    def local_path(self, key: str) -> Path:
        """A local file holding the object, for memory-mapping: the file itself in a
        directory, a cached copy of an S3 object (``cache``); ``ArtifactNotFound`` if none."""
        ...

    def evict(self, key: str) -> bool:
        """Drop a local copy ``local_path`` gave that failed its check, so that the next
        ``local_path`` reads the object again; whether there was a copy to drop."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is at ``key`` now (a committed run: its manifest exists)."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, in key order, holding every write that returned."""
        ...

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes, in key order: one listing that
        holds every write that returned (merge checks a run's grove files by it)."""
        ...

    def list_children(self, prefix: str) -> list[str]:
        """The names directly under the folder ``prefix``: its objects and its sub-folders
        (a build's runs, the builds of a store)."""
        ...

    def location(self, key: str) -> dict[str, str]:
        """Where ``key`` is in the form a state machine's S3 fields take (``Bucket``,
        ``Key``): the Distributed Map's ItemReader reads a run's items from it."""
        ...

    def delete(self, keys: list[str]) -> int:
        """Remove these objects (one already missing is no error); how many. Only for
        ``groves rm`` and ``groves gc``: no step deletes."""
        ...
