"""A committed run as the scikit-learn model a user predicts with."""

from __future__ import annotations

from typing import Any

from groves import artifacts
from groves.data.encoding import has_categories, pipeline
from groves.data.rows import feature_columns
from groves.storage import Store


def load_model(store: Store, build_id: str, run_id: str | None = None) -> Any:
    """The run's plain forest (by default the latest committed run), checked against its
    manifest before it is unpickled; with text columns, a ``Pipeline`` whose first step
    encodes them as the build did (by column name, any column order) and whose last step is
    that forest."""
    manifest = artifacts.read_manifest(store, build_id, run_id)
    forest = artifacts.load_model(store, build_id, manifest["run_id"])
    columns = feature_columns(manifest["data"])
    return pipeline(columns, forest) if has_categories(columns) else forest
