"""groves: random forests trained as independently seeded groves, committed as one model.

The Python API (``train``, ``predict``, ``load_model``, ``export_model``) and the
scikit-learn estimators (``GrovesClassifier``, ``GrovesRegressor``) are imported on first use:
``import groves.engine.asl`` (the local runner) stays free of scikit-learn and joblib.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
LAZY = {
    "train": "groves.api",
    "predict": "groves.api",
    "load_model": "groves.api",
    "export_model": "groves.api",
    "serve": "groves.api",
    "GrovesClassifier": "groves.estimators",
    "GrovesRegressor": "groves.estimators",
}
__all__ = ["__version__", *LAZY]


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(import_module(LAZY[name]), name)
    raise AttributeError(f"module 'groves' has no attribute {name!r}")
