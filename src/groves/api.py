"""The Python API: what the CLI does, as functions."""

from __future__ import annotations

from typing import Any

from groves import artifacts
from groves.storage import Store, open_store


def load_model(store: Store | str, build_id: str, run_id: str | None = None) -> Any:
    """The plain scikit-learn forest of a build's committed run (by default the latest),
    checked against the run's manifest (size and sha256) before it is unpickled."""
    return artifacts.load_model(
        open_store(store) if isinstance(store, str) else store, build_id, run_id
    )
