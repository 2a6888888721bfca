"""Values as the bytes a store holds, and back: JSON records (indented, keys sorted; a file that
is not JSON is a ``CorruptFile``) and numpy arrays as ``.npy`` (never pickled objects), a
grove's votes in an lz4 frame."""

from __future__ import annotations

import io
import json
from typing import Any

from groves.errors import CorruptFile
from groves.store.protocol import Store


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
