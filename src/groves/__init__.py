"""groves: random forests trained as independently seeded groves, merged into one model."""

__version__ = "0.1.0"

from groves.api import load_model

__all__ = ["__version__", "load_model"]
