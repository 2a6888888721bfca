"""Commands that read what runs left in a store or on Step Functions: ``groves ls`` (builds and
runs), ``groves history`` (an execution's events), ``groves report`` (a run's HTML report),
``groves event`` (a ready event for one step, from the store), ``groves export`` (a committed
run as one joblib file)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from groves.cli.options import build_request, request_arguments, store_argument
from groves.engine.console import UsageError
from groves.store.uris import open_store

# groves history's other kinds of execution: its option, and the build's folder of them.
KINDS = (("batch", "predictions"), ("search", "searches"))


def cmd_ls(args: argparse.Namespace) -> int:
    from groves.cli.listing import list_runs, table

    rows = list_runs(open_store(args.store))
    if not rows:
        print(f"no builds in {args.store}", file=sys.stderr)
        return 0
    print("\n".join(table(rows)))
    return 0


def cmd_history(args: argparse.Namespace, session: Any = None) -> int:
    from groves.engine import executions

    if args.execution_arn:
        if args.build_id or args.run:
            raise UsageError("--execution-arn names the execution: drop NAME and --run")
        import boto3

        session = session or boto3.session.Session()
        histories = [executions.deployed(session.client("stepfunctions"), args.execution_arn)]
    elif args.build_id and args.promotions:
        print("\n".join(promotion_lines(open_store(args.store), args.build_id)))
        return 0
    elif args.build_id:
        chosen = [(kind, getattr(args, d)) for d, kind in KINDS if getattr(args, d) is not None]
        kind, which = chosen[0] if chosen else ("runs", args.run)
        histories = executions.stored(open_store(args.store), args.build_id, which or None, kind)
    else:
        raise UsageError("name a build (groves history NAME [--run ID]) or --execution-arn ARN")
    print("\n\n".join("\n".join(executions.table(history)) for history in histories))
    return 0


def promotion_lines(store: Any, build_id: str) -> list[str]:
    """A build's promotes, oldest first (``groves history NAME --promotions``)."""
    from groves.store.promotions import promotions

    found = promotions(store, build_id)
    if not found:
        return [f"build {build_id!r} has no promotes in {store.uri}"]
    lines = [f"{'when':<26} {'run':<30} from"]
    for record in found:
        lines.append(f"{record['promoted_at']:<26} {record['run_id']:<30} {record['from'] or '-'}")
    return lines


def cmd_report(args: argparse.Namespace, session: Any = None) -> int:
    from pathlib import Path

    from groves.cli import report
    from groves.engine import executions

    out = Path(args.out) if args.out else None
    histories = None
    if args.execution_arn:  # a deployed run: its steps from Step Functions' history
        import boto3

        session = session or boto3.session.Session()
        histories = [executions.deployed(session.client("stepfunctions"), args.execution_arn)]
    where = report.write(open_store(args.store), args.build_id, args.run, out, histories)
    print(f"report    {where}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.format == "onnx":
        try:
            from groves.forest.onnx_export import export_onnx
        except ImportError as exc:  # onnx is an optional extra
            raise UsageError(
                "--format onnx needs the onnx package: pip install 'groves[onnx]'"
            ) from exc
        path = export_onnx(open_store(args.store), args.build_id, Path(args.out), args.run)
        print(f"model     {path} ({path.stat().st_size / 2**20:.1f} MiB; ONNX Runtime reads it)")
        return 0
    from groves.forest.loading import export_model

    path = export_model(open_store(args.store), args.build_id, Path(args.out), args.run)
    print(f"model     {path} ({path.stat().st_size / 2**20:.1f} MiB; joblib.load reads it)")
    return 0


def cmd_event(args: argparse.Namespace) -> int:
    import json

    from groves.steps.events import step_event

    request = build_request(args, args.parser) if args.step == "plan" else None
    event = step_event(
        open_store(args.store),
        args.step,
        args.build_id,
        run_id=args.run,
        grove=args.grove_id,
        request=request,
    )
    print(json.dumps(event, indent=2))
    return 0


def _store_and_run(parser: argparse.ArgumentParser, run_help: str) -> None:
    parser.add_argument("--run", help=run_help)
    store_argument(parser)


def add_parsers(commands: Any) -> None:
    ls = commands.add_parser("ls", help="list the builds and runs in a store")
    store_argument(ls)
    ls.set_defaults(func=cmd_ls, parser=ls)

    history = commands.add_parser(
        "history",
        help="print an execution's history: a local run's, or a deployed execution's",
    )
    history.add_argument("build_id", metavar="NAME", nargs="?", help="a build in the store")
    store_argument(history)
    which = history.add_mutually_exclusive_group()
    which.add_argument("--run", help="a run id of the build (default: its newest run)")
    for dest, kind in KINDS:
        which.add_argument(
            f"--{dest}",
            nargs="?",
            const="",
            metavar="ID",
            help=f"a {dest} of the build instead of a run (default ID: its newest, in {kind}/)",
        )
    which.add_argument(
        "--promotions",
        action="store_true",
        help="the build's promotes (groves promote), oldest first, instead of an execution",
    )
    history.add_argument(
        "--execution-arn", help="a deployed execution: read through get_execution_history"
    )
    history.set_defaults(func=cmd_history, parser=history)

    report = commands.add_parser(
        "report",
        help="write an HTML report of a committed run: scores, grove timeline, cost, files",
    )
    report.add_argument("build_id", metavar="NAME", help="a build in the store")
    _store_and_run(report, "a committed run id (default: the build's latest)")
    report.add_argument(
        "--out", help="a local folder for report.html and its PNGs (default: the run's report/)"
    )
    report.add_argument(
        "--execution-arn",
        help="the deployed execution that trained the run: its steps come from Step Functions",
    )
    report.set_defaults(func=cmd_report, parser=report)

    export = commands.add_parser(
        "export",
        help="write a committed run's model (what load_model returns) as one joblib file "
        "(a pickle: for your own use), or as an ONNX model",
    )
    export.add_argument("build_id", metavar="NAME", help="a build in the store")
    export.add_argument(
        "--out", required=True, help="the file to write, e.g. model.joblib or model.onnx"
    )
    export.add_argument(
        "--format",
        choices=("joblib", "onnx"),
        default="joblib",
        help="joblib: the scikit-learn forest (a pickle); onnx: the forest and its text "
        "encodings for ONNX Runtime (needs groves[onnx])",
    )
    _store_and_run(export, "a committed run id (default: the build's latest)")
    export.set_defaults(func=cmd_export, parser=export)

    from groves.steps.events import STEPS

    event = commands.add_parser(
        "event",
        help="print a ready event for one step (sam local invoke -e), from the build's newest run",
    )
    event.add_argument("step", choices=STEPS, help="the step whose function gets the event")
    # plan: the request's options, as groves run takes them; NAME for every step
    request_arguments(event, grove_alias=False)
    _store_and_run(event, "a run id of the build (default: its newest planned run)")
    event.add_argument(
        "--grove-id",
        dest="grove_id",
        type=int,
        help="train_grove: only this grove (default: every planned grove, one batch)",
    )
    event.set_defaults(func=cmd_event, parser=event)
