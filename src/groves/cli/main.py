"""``groves``: the command line's parser and entry point, and the commands that train and
predict: ``run`` and ``predict`` (the state machines on this machine), ``start`` and
``start-predict`` (the deployed ones). ``search``, the commands that read what runs left
(``ls``, ``history``, ``report``, ``export``, ``event``), ``serve``, and those that manage a
model's life after training (``score``, ``promote``, ``rm``, ``gc``) are in ``cli.search``,
``cli.inspect``, ``cli.serving`` and ``cli.lifecycle``; every option is defined once in
``cli.options``."""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from groves.cli import inspect, lifecycle, search, serving
from groves.cli.options import (
    DefaultsHelp,
    build_request,
    deployed_arguments,
    limits_argument,
    request_arguments,
    store_argument,
)
from groves.cli.running import batch_summary, run_here, summary_lines
from groves.engine.console import (
    UsageError,
    aws_problem,
    deployed_root_cause,
    execution_name,
    follow,
    report_failure,
    state_machine_arn,
)
from groves.errors import BuildError, RequestError
from groves.steps.request import BATCH
from groves.store.protocol import CannotRead


def cmd_run(args: argparse.Namespace) -> int:
    request = build_request(args, args.parser)
    code, done = run_here("forest", request, args.store, "groves", "build failed", args.memory_mb)
    if done is not None:
        print("\n".join(summary_lines(done.output, done.seconds)))
    return code


def cmd_start(args: argparse.Namespace, session: Any = None) -> int:
    import boto3

    from groves.steps.checks import validate_request
    from groves.steps.planned import n_groves

    request = build_request(args, args.parser)
    spec = validate_request(request) if not args.resume else None
    session = session or boto3.session.Session()
    sfn = session.client("stepfunctions")
    arn = state_machine_arn(session, args.stack_name, args.state_machine_arn)
    name = execution_name(args.build_id)
    started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(request))
    execution_arn = started["executionArn"]
    print(f"started {execution_arn}")
    if not args.wait:
        return 0
    total = n_groves(spec) if spec else None
    described = follow(sfn, execution_arn, ("TrainGroves", total, "groves"), args.poll_seconds)
    if described["status"] != "SUCCEEDED":
        return report_failure(
            *deployed_root_cause(sfn, described), f"\nexecution {described['status']}"
        )
    seconds = (described["stopDate"] - described["startDate"]).total_seconds()
    print("\n".join(summary_lines(json.loads(described["output"]), seconds)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    code, done = run_here(
        "batch_predict",
        build_request(args, args.parser, BATCH),
        args.store,
        "chunks",
        "prediction failed",
        args.memory_mb,
    )
    if done is not None:
        print(batch_summary(done.output, done.seconds))
    return code


def cmd_start_predict(args: argparse.Namespace, session: Any = None) -> int:
    import boto3

    from groves.steps.batch import validate_batch_request

    request = build_request(args, args.parser, BATCH)
    validate_batch_request(request)  # before an execution is started
    session = session or boto3.session.Session()
    sfn = session.client("stepfunctions")
    arn = state_machine_arn(
        session, args.stack_name, args.state_machine_arn, "BatchPredictStateMachineArn"
    )
    name = execution_name(args.build_id, "predict")
    started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(request))
    print(f"started {started['executionArn']}")
    if not args.wait:
        return 0
    described = follow(
        sfn, started["executionArn"], ("PredictChunks", None, "chunks"), args.poll_seconds
    )
    if described["status"] != "SUCCEEDED":
        return report_failure(
            *deployed_root_cause(sfn, described), f"\nexecution {described['status']}"
        )
    seconds = (described["stopDate"] - described["startDate"]).total_seconds()
    print(batch_summary(json.loads(described["output"]), seconds))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="groves",
        description="Random forests trained as groves: on this machine (run, predict, search) "
        "or on the deployed Step Functions state machines (start, start-predict); then look at "
        "what they left (ls, history, report), score a run later (score), choose the model a "
        "build serves (promote), clean up (rm, gc) or make a step's event for sam local invoke "
        "(event).",
    )
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser = functools.partial(  # type: ignore[method-assign]
        commands.add_parser, formatter_class=DefaultsHelp
    )
    run = commands.add_parser("run", help="run the state machine on this machine")
    request_arguments(run)
    store_argument(run)
    limits_argument(run)
    run.set_defaults(func=cmd_run, parser=run)
    start = commands.add_parser("start", help="start an execution of the deployed state machine")
    request_arguments(start)
    deployed_arguments(start, "StateMachineArn")
    start.set_defaults(func=cmd_start, parser=start)
    predict = commands.add_parser("predict", help="predict new rows with a build, on this machine")
    request_arguments(predict, BATCH)
    store_argument(predict, " of the build")
    limits_argument(predict)
    predict.set_defaults(func=cmd_predict, parser=predict)
    start_predict = commands.add_parser(
        "start-predict", help="predict new rows with the deployed batch prediction state machine"
    )
    request_arguments(start_predict, BATCH)
    deployed_arguments(start_predict, "BatchPredictStateMachineArn")
    start_predict.set_defaults(func=cmd_start_predict, parser=start_predict)
    search.add_parser(commands)
    serving.add_parser(commands)
    inspect.add_parsers(commands)
    lifecycle.add_parsers(commands)
    return root


class Stopped(BaseException):
    """SIGINT or SIGTERM reached the runner: raised in the main thread to unwind the build."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handlers = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return args.func(args)
    except RequestError as exc:
        print(f"invalid request: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"groves: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"groves: {exc}", file=sys.stderr)
        return 1
    except CannotRead as exc:  # a store could not read a key (missing, a directory, ...)
        print(f"groves: cannot read: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the store or an output refused a write (read-only, full)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"groves: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not type(exc).__module__.startswith("botocore"):
            raise
        print(f"groves: {aws_problem(exc, getattr(args, 'stack_name', None))}", file=sys.stderr)
        return 1
    except Stopped as stop:
        # leaving run_local terminated every worker; the run's verified groves stay
        name = signal.Signals(stop.signum).name
        then = (
            f"continue the run with groves {args.command} {args.build_id} --resume"
            if hasattr(args, "resume")
            else "no output was written"
        )
        print(f"\nstopped by {name}: every worker was terminated; {then}", file=sys.stderr)
        return 128 + stop.signum
    finally:
        for signum, previous in handlers.items():
            signal.signal(signum, previous)
