"""What the history records of where a state ran, and its timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Scope:
    """Where a state runs: how many Map iterations run beside it, which iteration it is, and
    (in a Distributed Map) the name of the child execution it runs in."""

    concurrency: int = 1
    iteration: int | None = None
    execution: str | None = None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


TOP = Scope()  # the execution itself, outside any Map
