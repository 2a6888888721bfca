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


class AwsError(GrovesError):
    """AWS could not be used (no region, no credentials, no such stack, a refused call): one
    line saying what to do, in place of botocore's exception."""


class CorruptFile(BuildError, ValueError):
    """A stored file is not what its kind must be (a truncated or damaged JSON record): one
    line naming it, and still a ``ValueError`` for readers that skip such a file."""


SHOWN_COLUMNS = 20  # a missing column's message lists at most this many of the table's


def missing_column(field: str, name: str, where: str, header: list[str]) -> RequestError:
    """A ``RequestError`` for a column ``name`` that table ``where`` lacks: the closest column
    (same name in another case first, then ``difflib``'s nearest), and the table's columns."""
    import difflib

    folded = {column.casefold(): column for column in reversed(header)}
    close = folded.get(name.casefold())
    if close is None:
        near = difflib.get_close_matches(name.casefold(), list(folded), n=1)
        close = folded[near[0]] if near else None
    hint = f" (did you mean {close!r}?)" if close is not None else ""
    shown = ", ".join(map(repr, header[:SHOWN_COLUMNS]))
    more = f" and {len(header) - SHOWN_COLUMNS} more" if len(header) > SHOWN_COLUMNS else ""
    return RequestError(
        field, f"column {name!r} is not in {where}{hint}; its {len(header)} columns: {shown}{more}"
    )
