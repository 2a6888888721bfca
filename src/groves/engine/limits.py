"""Each function's memory size and timeout, enforced on a local invocation as Lambda enforces
them, so that a build that passes here fits when deployed.

- The limits are the template's (``groves.steps.cost.TEMPLATE_MEMORY_MB`` and
  ``TEMPLATE_TIMEOUT_SECONDS``, tested against ``template.yaml``); ``memory_mb`` holds every
  function to one size instead (``groves run --memory-mb``: tests and benchmarks), and
  ``timeout_seconds`` shortens every timeout (tests).
- Memory: the worker's resident memory (RSS; file-backed pages included, which errs on the
  safe side) may not exceed the memory size. The worker resets its
  high-water mark (``VmHWM``) when it takes an invocation, so a warm worker's kept memory
  counts, as a warm Lambda's does, but not an earlier invocation's peak. The runner reads the
  high-water mark every ``POLL_SECONDS`` while the invocation runs, and once more when it
  ends, so no spike between two reads escapes; over the limit, the worker is killed (SIGKILL)
  and the invocation fails as Lambda's does: Step Functions' ``Lambda.Unknown`` (unhandled
  errors, out of memory and timeouts alike, since the Tasks set no ``TimeoutSeconds``) with
  Lambda's error in the cause, ``{"errorType": "Runtime.OutOfMemory", ...}``.
- Time: an invocation still running after its timeout is killed and fails with
  ``Lambda.Unknown``, cause ``{"errorType": "Sandbox.Timedout", "errorMessage": "... Task timed
  out after N.00 seconds"}``. The definitions' Retry and Catch then act on it as deployed.

Not ``RLIMIT_AS``: it bounds address space, not memory. A worker that has imported
scikit-learn and trained a grove maps several times its resident memory (thread stacks,
malloc arenas, OpenBLAS buffers, memory-mapped files), so a limit on it fails builds that fit,
and it fails them with a ``MemoryError`` inside the function rather than the kill Lambda makes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from groves.errors import RequestError
from groves.steps.cost import MEMORY_ENV, TEMPLATE_MEMORY_MB, TEMPLATE_TIMEOUT_SECONDS

MEMORY_RANGE = (128, 10_240)  # Lambda's memory sizes, MB
POLL_SECONDS = 0.01  # how often the runner reads a running worker's memory


@dataclass(frozen=True)
class Limit:
    """What one function may use: ``step`` names it in errors and the summary."""

    step: str
    memory_mb: int
    timeout_seconds: float


__all__ = ["MEMORY_ENV", "Limit", "check_memory_mb", "function_limits"]


def step_of(arn_name: str) -> str:
    """The step a template substitution names: ``TrainGroveFunctionArn`` -> ``train_grove``."""
    words = re.findall(r"[A-Z][a-z]*", arn_name.removesuffix("FunctionArn"))
    return "_".join(w.lower() for w in words)


def check_memory_mb(value: object, field: str = "memory_mb") -> int:
    """``value`` as a memory size Lambda allows, or a ``RequestError`` naming ``field``."""
    low, high = MEMORY_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(
            field, f"must be a whole number of MB from {low} to {high:,} (Lambda's), got {value!r}"
        )
    return value


def function_limits(
    arn_names: Mapping[str, str],
    memory_mb: int | None = None,
    timeout_seconds: float | None = None,
) -> dict[str, Limit]:
    """Each resource (``arn_names``: ARN -> the template's substitution name) with its limit:
    the template's, or ``memory_mb`` for every function, and at most ``timeout_seconds``."""
    if memory_mb is not None:
        check_memory_mb(memory_mb)
    limits = {}
    for arn, name in arn_names.items():
        step = step_of(name)
        if step not in TEMPLATE_MEMORY_MB:  # not a function of the template: no limit
            continue
        timeout = TEMPLATE_TIMEOUT_SECONDS[step]
        if timeout_seconds is not None:
            timeout = min(timeout, timeout_seconds)
        limits[arn] = Limit(step, memory_mb or TEMPLATE_MEMORY_MB[step], timeout)
    return limits


def peak_mb(pid: int) -> float | None:
    """A process's resident high-water mark (``VmHWM``) in MiB; ``None`` if it is gone (or
    there is no ``/proc``)."""
    return _status_mb(pid, b"VmHWM:")


def resident_mb(pid: int) -> float | None:
    """A process's resident memory now (``VmRSS``) in MiB; ``None`` if it is gone."""
    return _status_mb(pid, b"VmRSS:")


def _status_mb(pid: int, field: bytes) -> float | None:
    """A field of ``/proc/<pid>/status`` given in kB, in MiB."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak() -> None:
    """Reset this process's resident high-water mark to what it holds now (Linux; elsewhere
    the peak is the process's own)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def out_of_memory(limit: Limit, used_mb: float, pid: int | None) -> tuple[str, str, str]:
    """What Step Functions reports when Lambda kills a function over its memory size."""
    cause = {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"Runtime exited with error: signal: killed ({limit.step} used "
        f"{used_mb:.0f} MB of its {limit.memory_mb} MB memory size; worker process {pid})",
    }
    return ("error", "Lambda.Unknown", json.dumps(cause))


def timed_out(limit: Limit, pid: int | None) -> tuple[str, str, str]:
    """What Step Functions reports when Lambda stops a function at its timeout (a Task without
    ``TimeoutSeconds``: ``States.Timeout`` is only for those that set one)."""
    cause = {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"Task timed out after {limit.timeout_seconds:.2f} seconds "
        f"({limit.step}; worker process {pid})",
    }
    return ("error", "Lambda.Unknown", json.dumps(cause))
