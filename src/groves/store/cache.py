"""The S3 download cache: local copies of objects (``S3Store.local_path``) under the temporary
folder, bounded by ``cache_budget``, the least recently used making room for a new one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

CACHE_BYTES_ENV = "GROVES_CACHE_BYTES"


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / "groves-cache"


def cached_path(bucket: str, key: str) -> Path:
    """Where the local copy of ``s3://bucket/key`` is kept."""
    return cache_root() / bucket / key


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
