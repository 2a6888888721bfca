"""Errors whose class names become the Step Functions error names (Lambda's ``errorType``)."""


class GrovesError(Exception):
    """Base class for the errors groves raises on purpose."""


class RequestError(GrovesError, ValueError):
    """The build request is invalid; raised by plan before any training."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class BuildError(GrovesError):
    """A build's artifacts are missing or do not fit together; nothing is written."""


class CorruptFile(BuildError, ValueError):
    """A stored file is not what its kind must be (a truncated or damaged JSON record): one
    line naming it, and still a ``ValueError`` for readers that skip such a file."""
