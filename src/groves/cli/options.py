"""The command line's options, one definition each, shared by every command that takes them:
the training request's (``run``, ``start``, ``search``, ``event``), a batch prediction's
(``predict``, ``start-predict``), ``serve``'s, the deployed stack's and the store's. Every
option has help."""

from __future__ import annotations

import argparse
import json
from typing import Any

from groves.engine.console import UsageError
from groves.steps.request import REFRESH_SECONDS, REQUIRED, TRAIN, Field, Flag
from groves.store.uris import DEFAULT_STORE


def parse_param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE, e.g. max_depth=12")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value  # a bare string such as sqrt or entropy


def column_list(text: str) -> list[str]:
    """``--features a,b,c`` as the names it lists."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} is not COL,COL,...: a name is empty")
    return names


def options(fields: tuple[Field, ...]) -> list[tuple[Field, Flag]]:
    """The fields that are command-line options, with their options."""
    return [(f, f.cli) for f in fields if isinstance(f.cli, Flag)]


def option_help(field: Field, flag: Flag) -> str:
    """The field's help, the option's own note, and what a default of null means (argparse
    shows any other default: ``DefaultsHelp``)."""
    text = "; ".join(part for part in (field.help, flag.note) if part)
    if field.kind in ("columns", "object") and not flag.comma:
        text += " (repeat for more)"
    return text + (f" (default: {field.default_note})" if field.default_note else "")


def request_arguments(
    parser: argparse.ArgumentParser, fields: tuple[Field, ...] = TRAIN, grove_alias: bool = True
) -> None:
    """An option (or positional argument) for each of a request's fields that has one
    (``Field.cli``), of the field's type, default and choices: ``TRAIN`` for ``run``, ``start``
    and ``event``, ``SEARCH`` for ``search``, ``BATCH`` for ``predict`` and ``start-predict``.
    The grove size is ``-g``/``--grove-size`` everywhere, and ``--grove`` too unless
    ``grove_alias`` is false (``groves event``, whose ``--grove-id`` picks one grove)."""
    for field, flag in options(fields):
        kwargs: dict[str, Any] = {"help": option_help(field, flag)}
        if flag.metavar:
            kwargs["metavar"] = flag.metavar
        if flag.positional:
            parser.add_argument(flag.names[0], **kwargs)
            continue
        if flag.switch:
            kwargs["action"] = "store_true"
        elif field.kind == "object":
            kwargs |= {"type": parse_param, "action": "append", "default": []}
        elif field.kind == "columns" and not flag.comma:
            kwargs |= {"action": "append", "default": []}
        else:
            kwargs["type"] = {"integer": int, "number": float, "columns": column_list}.get(
                field.kind
            )
            kwargs["choices"] = field.choices or None
            if field.default is REQUIRED:
                kwargs["required"] = True
            else:
                kwargs["default"] = field.default
        names = (*flag.names, *(flag.aliases if grove_alias else ()))
        parser.add_argument(*names, dest=flag.key, **kwargs)


def build_request(
    args: argparse.Namespace, parser: argparse.ArgumentParser, fields: tuple[Field, ...] = TRAIN
) -> dict[str, Any]:
    """The request the options give: each field's value but a null or an empty list (the
    request's default then); with ``--resume``, only ``build_id`` and ``resume``."""
    given = [(f, flag) for f, flag in options(fields) if hasattr(args, flag.key)]
    if getattr(args, "resume", False):
        changed = [
            flag.names[-1]
            for f, flag in given
            if f.name not in ("build_id", "resume")
            and getattr(args, flag.key) != parser.get_default(flag.key)
        ]
        if changed:
            raise UsageError(
                f"--resume continues the run with its stored request; drop {', '.join(changed)}"
            )
        return {"build_id": args.build_id, "resume": True}
    request = {}
    for f, flag in given:
        value = getattr(args, flag.key)
        if f.kind == "object":
            value = dict(value)
        if value is not None and value != [] and f.name != "resume":
            request[f.name] = value
    return request


def deployed_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--state-machine-arn", help=f"the state machine to start (instead of the stack's {output})"
    )
    target.add_argument(
        "--stack-name",
        default="groves",
        help=f"read {output} from this stack's outputs (default %(default)s)",
    )
    parser.add_argument("--wait", action="store_true", help="follow the execution to its end")
    parser.add_argument(
        "--poll-seconds", type=float, default=3.0, help="how often --wait asks for the status"
    )


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default, unless it has none or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == []
        if nothing or "default" in text:
            return text
        return super()._get_help_string(action) or ""


def limits_argument(parser: argparse.ArgumentParser) -> None:
    """The local runner's limits (not a request field: deployed, the template sets them)."""
    parser.add_argument(
        "--memory-mb",
        type=int,
        metavar="N",
        help="hold every function to N MB (128 to 10240) instead of its MemorySize in "
        "template.yaml, as Lambda would: an invocation over it fails with Runtime.OutOfMemory "
        "(default: each function's own)",
    )


def store_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help=f"directory or s3://bucket[/prefix]{what} (default ./%(default)s)",
    )


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build_id", metavar="NAME", help="the build whose model answers")
    parser.add_argument(
        "--run", help="a committed run id to pin (default: the build's latest, followed)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to listen on (0: any free port)"
    )
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=REFRESH_SECONDS,
        help="how often the build's latest.json is read for a newer run",
    )
