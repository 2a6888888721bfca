"""``groves run`` (the state machine on this machine) and ``groves start`` (on AWS)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from groves.asl.distributed import THRESHOLD_ERROR
from groves.errors import RequestError
from groves.local import run_local, start_workers
from groves.request import DEFAULTS
from groves.storage import DEFAULT_STORE

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# Each request option's argparse dest and the request field it sets.
REQUEST_OPTIONS = {
    "trees": "n_trees",
    "grove": "grove_size",
    "dataset": "dataset",
    "target": "target",
    "estimator": "estimator",
    "test_size": "test_size",
    "seed": "seed",
    "param": "params",
    "max_concurrency": "max_concurrency",
    "groves_per_invocation": "groves_per_invocation",
    "predict": "predict",
}


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE, e.g. max_depth=12")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value  # a bare string such as sqrt or entropy


def _request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build_id", metavar="NAME", help="build id: where the model is stored")
    parser.add_argument(
        "-t",
        "--trees",
        type=int,
        default=DEFAULTS["n_trees"],
        help="trees in the forest (default %(default)s)",
    )
    parser.add_argument(
        "-g",
        "--grove",
        type=int,
        default=DEFAULTS["grove_size"],
        help="trees per grove (default %(default)s)",
    )
    parser.add_argument(
        "-p", "--predict", action="store_true", help="score the model on the held-out split"
    )
    parser.add_argument(
        "--dataset",
        default=DEFAULTS["dataset"],
        help="digits, breast_cancer, iris, wine, diabetes, or a .csv/.npz/"
        ".parquet path or s3:// URI (default %(default)s)",
    )
    parser.add_argument("--target", help="label column of a CSV/Parquet file (default target)")
    parser.add_argument(
        "--estimator", choices=("classifier", "regressor"), default=DEFAULTS["estimator"]
    )
    parser.add_argument("--test-size", type=float, default=DEFAULTS["test_size"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="forest parameter, e.g. max_depth=12 or max_features=sqrt",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=DEFAULTS["max_concurrency"],
        help="child executions (batches of groves) at once, up to 10000 (default %(default)s)",
    )
    parser.add_argument(
        "--groves-per-invocation",
        type=int,
        default=DEFAULTS["groves_per_invocation"],
        help="groves one Lambda invocation trains, in turn (default %(default)s)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest unfinished run of NAME with its stored request: groves "
        "with a verified file are not trained again",
    )


class UsageError(Exception):
    """A command line that cannot work; printed as one line, exit 2."""


def build_request(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if args.resume:
        changed = [
            f"--{dest.replace('_', '-')}"
            for dest in REQUEST_OPTIONS
            if getattr(args, dest) != parser.get_default(dest)
        ]
        if changed:
            raise UsageError(
                f"--resume continues the run with its stored request; drop {', '.join(changed)}"
            )
        return {"build_id": args.build_id, "resume": True}
    request = {"build_id": args.build_id}
    request |= {field: getattr(args, dest) for dest, field in REQUEST_OPTIONS.items()}
    request["params"] = dict(args.param)
    if args.target is None:
        del request["target"]
    return request


class ProgressBar:
    """``TrainGroves [#########-----------] 9/20 groves``: redrawn in place on a terminal,
    otherwise one line per tenth done."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.redraw = stream.isatty()
        self.shown: int | None = None

    def __call__(self, state: str, done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if not self.redraw and tenth == self.shown:
            return
        self.shown = tenth
        filled = self.width * done // max(total, 1)
        bar = f"{state} [{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} groves"
        if self.redraw:
            self.stream.write(f"\r{bar}" + ("\n" if done == total else ""))
        else:
            self.stream.write(f"{bar}\n")
        self.stream.flush()


def summary_lines(output: dict[str, Any], seconds: float) -> list[str]:
    model = output.get("model", {})
    lines = [
        f"build     {output['build_id']} (run {output['run_id']})",
        f"groves    {output['n_groves']}",
        f"trees     {model.get('n_trees')}",
        f"seconds   {seconds:.2f}",
        f"run       {model.get('run')}/",
    ]
    metrics = output.get("metrics")
    if metrics:
        lines.append(
            f"score     {metrics['metric']} {metrics['score']:.4f} on {metrics['n_test']} "
            f"held-out rows (groves alone: {metrics['grove_score_min']:.4f}-"
            f"{metrics['grove_score_max']:.4f})"
        )
    lines += [f"model     {model.get('model')}", f"manifest  {model.get('manifest')}"]
    if metrics:
        lines.append(f"metrics   {metrics['metrics']}")
    return lines


def failure_message(error: str | None, cause: str | None) -> str:
    try:
        detail = json.loads(cause or "")["errorMessage"]
    except (ValueError, KeyError, TypeError):
        detail = cause
    return f"{error}: {detail}"


def report_failure(error: str | None, cause: str | None, heading: str) -> int:
    """One line on stderr: an invalid request (exit 2) or a failed build (exit 1)."""
    if error == "RequestError":
        detail = failure_message(error, cause).split(": ", 1)[1]
        print(f"invalid request: {detail}", file=sys.stderr)
        return 2
    print(f"{heading}: {failure_message(error, cause)}", file=sys.stderr)
    return 1


def cmd_run(args: argparse.Namespace) -> int:
    request = build_request(args, args.parser)
    # The plan step validates the request before any work, in a warm worker: this process
    # never imports scikit-learn, and on 2 cores does not compete with the workers doing so.
    with start_workers() as pool:
        execution = run_local(request, args.store, on_progress=ProgressBar(sys.stderr), pool=pool)
    if execution.status != "SUCCEEDED":
        child = next(
            (
                (e["error"], e["cause"])
                for e in execution.history
                if e["type"] == "ChildExecutionFailed"
            ),
            None,
        )
        return report_failure(*root_cause(execution.error, execution.cause, child), "build failed")
    print("\n".join(summary_lines(execution.output, execution.seconds)))
    return 0


def state_machine_arn(args: argparse.Namespace, session: Any) -> str:
    """``--state-machine-arn``, or the StateMachineArn output of ``--stack-name``."""
    if args.state_machine_arn:
        return args.state_machine_arn
    stacks = session.client("cloudformation").describe_stacks(StackName=args.stack_name)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks["Stacks"][0].get("Outputs", [])}
    if "StateMachineArn" not in outputs:
        raise SystemExit(f"stack {args.stack_name!r} has no StateMachineArn output")
    return outputs["StateMachineArn"]


def groves_done(sfn: Any, execution_arn: str) -> int:
    """How many grove items the execution's Map Run has succeeded so far (0 before it starts)."""
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if not runs:
        return 0
    return sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]["succeeded"]


def failed_child(sfn: Any, execution_arn: str) -> tuple[str, str] | None:
    """The error and cause of a failed child execution of the execution's Map Run: what a
    ``States.ExceedToleratedFailureThreshold`` hides."""
    for run in sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", []):
        failed = sfn.list_executions(mapRunArn=run["mapRunArn"], statusFilter="FAILED")
        for child in failed.get("executions", [])[:1]:
            described = sfn.describe_execution(executionArn=child["executionArn"])
            return described.get("error", ""), described.get("cause", "")
    return None


def root_cause(
    error: str | None, cause: str | None, child: tuple[str, str] | None
) -> tuple[str | None, str | None]:
    """The first failed child execution's error and cause in place of the Map's threshold
    error, which names no grove."""
    if error == THRESHOLD_ERROR and child is not None:
        return child
    return error, cause


def cmd_start(args: argparse.Namespace, session: Any = None) -> int:
    import boto3

    from groves.plan import validate_request

    request = build_request(args, args.parser)
    spec = validate_request(request) if not args.resume else None
    session = session or boto3.session.Session()
    sfn = session.client("stepfunctions")
    arn = state_machine_arn(args, session)
    name = f"{args.build_id}-{time.strftime('%Y%m%dT%H%M%S')}"[:80]
    started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(request))
    execution_arn = started["executionArn"]
    print(f"started {execution_arn}")
    if not args.wait:
        return 0
    bar = ProgressBar(sys.stderr)
    n_groves = -(-spec["n_trees"] // spec["grove_size"]) if spec else None
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] in TERMINAL:
            break
        if n_groves:
            bar("TrainGroves", min(groves_done(sfn, execution_arn), n_groves), n_groves)
        time.sleep(args.poll_seconds)
    seconds = (described["stopDate"] - described["startDate"]).total_seconds()
    if described["status"] != "SUCCEEDED":
        error, cause = described.get("error"), described.get("cause")
        if error == THRESHOLD_ERROR:
            error, cause = root_cause(error, cause, failed_child(sfn, execution_arn))
        return report_failure(error, cause, f"\nexecution {described['status']}")
    print("\n".join(summary_lines(json.loads(described["output"]), seconds)))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="groves", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the state machine on this machine")
    _request_arguments(run)
    run.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="directory or s3://bucket[/prefix] (default ./%(default)s)",
    )
    run.set_defaults(func=cmd_run, parser=run)
    start = commands.add_parser("start", help="start an execution of the deployed state machine")
    _request_arguments(start)
    target = start.add_mutually_exclusive_group()
    target.add_argument("--state-machine-arn")
    target.add_argument(
        "--stack-name",
        default="groves",
        help="read StateMachineArn from this stack's outputs (default %(default)s)",
    )
    start.add_argument("--wait", action="store_true", help="follow the execution to its end")
    start.add_argument("--poll-seconds", type=float, default=3.0)
    start.set_defaults(func=cmd_start, parser=start)
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
    except Stopped as stop:
        # leaving run_local terminated every worker; the run's verified groves stay
        name = signal.Signals(stop.signum).name
        print(
            f"\nstopped by {name}: every worker was terminated; continue the run with "
            f"groves {args.command} {args.build_id} --resume",
            file=sys.stderr,
        )
        return 128 + stop.signum
    finally:
        for signum, previous in handlers.items():
            signal.signal(signum, previous)


if __name__ == "__main__":
    sys.exit(main())
