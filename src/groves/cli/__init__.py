"""The command line, on top of the Python API's layers: ``main`` (the parser and the
training and prediction commands), ``search`` (``groves search``), ``serving``
(``groves serve``), ``inspect`` (``ls``, ``history``, ``report``, ``export``, ``event``),
``lifecycle`` (``score``, ``promote``, ``rm``, ``gc``), ``options`` (every option, defined
once), ``running`` (running a state machine here and what a command prints), ``report`` and
``listing`` (what ``groves report`` and ``groves ls`` read and draw), ``scores`` (scoring's
measures as text, for the summary and the report), ``reference`` (docs/request.md, written
from the requests' fields).

Imports run one way: ``main`` -> ``search``, ``serving``, ``inspect``, ``lifecycle`` ->
``options``,
``running`` -> the engine and the steps."""

from groves.cli.main import main, parser

__all__ = ["main", "parser"]
