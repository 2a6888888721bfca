"""Errors as Step Functions names them, and definitions this engine refuses."""

from __future__ import annotations


class StatesError(Exception):
    """An error as Step Functions names it (``error``) with its ``cause``."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class UnsupportedDefinition(ValueError):
    """The definition uses something this interpreter does not implement."""
