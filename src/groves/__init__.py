"""groves: random forests trained as independently seeded groves, merged into one model."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    # imported on first use: ``import groves.asl`` (the local runner) stays free of joblib
    if name == "load_model":
        from groves.api import load_model

        return load_model
    raise AttributeError(f"module 'groves' has no attribute {name!r}")
