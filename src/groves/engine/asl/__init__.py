"""A local interpreter for the part of the Amazon States Language that groves' state machine uses.

Supported: Task, Map (inline or distributed, MaxConcurrency/MaxConcurrencyPath, iterations in
threads), Choice, Pass, Succeed, Fail (Error/Cause and ErrorPath/CausePath), Retry, Catch,
InputPath, Parameters, ItemsPath, ItemSelector, ResultSelector, ResultPath, OutputPath, and the
context object
(``$$.Execution``, ``$$.State``, ``$$.Map.Item``). Anything else is refused when the definition is
loaded, so a definition that runs here uses nothing the runner ignores.

Task invocations run in the calling thread, or, given a ``WorkerPool``, in worker processes
as Lambda runs them (a worker that dies fails its invocation with ``Lambda.Unknown``). Map
iterations are interpreted in threads of this process. The history is Step Functions' own:
the event types and details ``get_execution_history`` returns (``TaskStateEntered``,
``LambdaFunctionScheduled``, ``MapRunStarted``, ...), an inline Map's iterations in the
execution's history (each event names the one before it in its iteration), a Distributed
Map's child executions in histories of their own.

Distributed Maps: ItemReader (a JSON array in S3, through a bucket -> store mapping), ItemBatcher
(MaxItemsPerBatch(Path), BatchInput), child executions with their own names and context,
ToleratedFailurePercentage/Count, and ResultWriter's manifest and result files.

Modules: ``paths`` (reference paths, payload templates, ResultPath), ``choice`` (Choice rules),
``validation`` (what a definition may use, checked when it is loaded), ``interpreter``
(executions, Retry/Catch, Tasks), ``maps`` (Map states' iterations and child executions),
``distributed`` (ItemReader, ItemBatcher, tolerated failures, ResultWriter), ``history``,
``errors``.
"""

from groves.engine.asl.errors import StatesError, UnsupportedDefinition
from groves.engine.asl.interpreter import (
    PAYLOAD_LIMIT,
    Execution,
    Interpreter,
    Scope,
    call_handler,
    execute,
)
from groves.engine.asl.paths import evaluate, get_path, set_path
from groves.engine.asl.validation import validate

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
