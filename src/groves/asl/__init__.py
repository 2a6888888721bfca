"""A local interpreter for the part of the Amazon States Language that groves' state machine uses.

Supported: Task, Map (inline, MaxConcurrency/MaxConcurrencyPath, iterations in threads), Choice,
Pass, Succeed, Fail (Error/Cause and ErrorPath/CausePath), Retry, Catch, InputPath, Parameters,
ItemsPath, ItemSelector, ResultSelector, ResultPath, OutputPath, and the context object
(``$$.Execution``, ``$$.State``, ``$$.Map.Item``). Anything else is refused when the definition is
loaded, so a definition that runs here uses nothing the runner ignores.

Task invocations run in the calling thread, or, given a ``WorkerPool``, in worker processes
as Lambda runs them (a worker that dies fails its invocation with ``Lambda.Unknown``). Map
iterations are interpreted in threads of this process, so the history keeps every iteration's
states and retries, tagged with the iteration's index.

Modules: ``paths`` (reference paths, payload templates, ResultPath), ``choice`` (Choice rules),
``validation`` (what a definition may use, checked when it is loaded), ``interpreter``
(executions, Retry/Catch, Map), ``errors``.
"""

from groves.asl.errors import StatesError, UnsupportedDefinition
from groves.asl.interpreter import (
    PAYLOAD_LIMIT,
    Execution,
    Interpreter,
    Scope,
    call_handler,
    execute,
)
from groves.asl.paths import evaluate, get_path, set_path
from groves.asl.validation import validate

__all__ = [
    "PAYLOAD_LIMIT",
    "Execution",
    "Interpreter",
    "Scope",
    "StatesError",
    "UnsupportedDefinition",
    "call_handler",
    "evaluate",
    "execute",
    "get_path",
    "set_path",
    "validate",
]
