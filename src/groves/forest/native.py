"""The kernel's walk compiled (``walk.c``, called through ``ctypes``): the same steps as the
numpy walk in ``kernel``, one node at a time, so one row through 100 trees costs a few
microseconds instead of ~35 numpy calls.

Where the library comes from, first found:

1. ``_walk.so`` beside this module: the serve function's layer compiles it at build time
   (``layer/serve/Makefile``);
2. a copy compiled here, once, with the system's C compiler (``cc``), cached by the machine's
   architecture and the source's sha256 under ``$XDG_CACHE_HOME/groves`` (``~/.cache/groves``)
   for ``groves serve``;
3. none (no compiler, a library that does not load): ``walker()`` is ``None`` and the kernel
   walks with numpy. ``GROVES_KERNEL=numpy`` chooses numpy whatever is found.

Both walks give the same leaves (``tests/unit/test_kernel.py`` checks every case with each).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("groves")
HERE = Path(__file__).resolve().parent
SOURCE = HERE / "walk.c"
BUILT = HERE / "_walk.so"
FLAGS = ("-O2", "-fPIC", "-shared")  # never -ffast-math: the comparisons must stay IEEE's
ENGINE_ENV = "GROVES_KERNEL"
_UNSET: Any = object()
_walker: Any = _UNSET


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "groves"


def compiled() -> Path | None:
    """A compiled copy of ``walk.c``: the built one, else one compiled into the cache."""
    if BUILT.is_file():
        return BUILT
    if not SOURCE.is_file():
        return None
    source = SOURCE.read_bytes()
    name = f"walk-{platform.machine()}-{hashlib.sha256(source).hexdigest()[:16]}.so"
    target = cache_dir() / name
    if target.is_file():
        return target
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return None
    staged: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=target.parent, suffix=".so")
        os.close(fd)
        staged = Path(name)
        command = [compiler, *FLAGS, "-o", str(staged), str(SOURCE)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        os.replace(staged, target)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("the compiled walk is not available (%s); numpy walks", exc)
        if staged is not None:
            staged.unlink(missing_ok=True)
        return None
    return target


def _load() -> Callable[..., None] | None:
    if os.environ.get(ENGINE_ENV, "").lower() == "numpy":
        return None
    path = compiled()
    if path is None:
        return None
    try:
        library = ctypes.CDLL(str(path))
    except OSError as exc:  # built for another platform
        log.info("the compiled walk %s does not load (%s); numpy walks", path, exc)
        return None
    walk = library.groves_walk
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    walk.argtypes = [pointer, pointer, size, pointer, size, size, size, pointer]
    walk.restype = None
    return walk


def walker() -> Callable[..., None] | None:
    """The compiled walk (loaded, or compiled, once per process), or ``None``."""
    global _walker
    if _walker is _UNSET:
        _walker = _load()
    return _walker


def use(walk: Callable[..., None] | None) -> None:
    """Make ``walk`` (``None``: numpy) the walk of this process (tests, benchmarks)."""
    global _walker
    _walker = walk
