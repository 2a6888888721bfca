"""groves: random forests trained as independently seeded groves, merged into one model."""

__version__ = "0.1.0"
