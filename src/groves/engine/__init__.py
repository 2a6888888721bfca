"""What runs the state machines on this machine, and follows them on AWS.

- ``asl``: the Amazon States Language interpreter (paths, validation, state kinds, inline and
  distributed Map, histories in Step Functions' event shapes).
- ``local``: the deployed definitions (``statemachine/*.asl.json``) run here, each Task's
  function ARN mapped to its handler in ``groves.steps.handlers``.
- ``workers``: warm worker processes, as Lambda execution environments.
- ``limits``: each function's memory size and timeout (the template's, or ``--memory-mb``),
  enforced on every invocation in a worker as Lambda enforces them.
- ``executions``: execution histories, stored locally or read from Step Functions.
- ``server``: the serve function (``groves.steps.serve``) behind a local HTTP server.
- ``console``: progress while an execution runs, following a deployed one, and the root cause
  of a failure in one line.

The engine knows handlers only by name: it never imports scikit-learn itself.
"""
