"""``groves run`` (the state machine on this machine) and ``groves start`` (on AWS)."""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from groves.console import (
    Progress,
    UsageError,
    deployed_root_cause,
    execution_name,
    follow,
    local_root_cause,
    report_failure,
    state_machine_arn,
)
from groves.cost import describe
from groves.errors import BuildError, RequestError
from groves.local import run_local, start_workers
from groves.request import BATCH_DEFAULTS, DEFAULTS
from groves.storage import DEFAULT_STORE

# Each request option's argparse dest and the request field it sets.
REQUEST_OPTIONS = {
    "trees": "n_trees",
    "grove": "grove_size",
    "dataset": "dataset",
    "target": "target",
    "weight": "weight",
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


def _request_arguments(
    parser: argparse.ArgumentParser,
    build: bool = True,
    grove_flags: tuple[str, ...] = ("-g", "--grove"),
) -> None:
    """The training request's options; ``build`` adds --predict and --resume (not a search);
    ``grove_flags`` name the grove size's option."""
    parser.add_argument("build_id", metavar="NAME", help="build id: where the model is stored")
    parser.add_argument(
        "-t",
        "--trees",
        type=int,
        default=DEFAULTS["n_trees"],
        help="trees in the forest (default %(default)s)",
    )
    parser.add_argument(
        *grove_flags,
        dest="grove",
        type=int,
        default=DEFAULTS["grove_size"],
        help="trees per grove (default %(default)s)",
    )
    if build:
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
        "--weight",
        help="column (CSV/Parquet) or array (.npz) of row weights, numbers >= 0 (default: none)",
    )
    parser.add_argument(
        "--estimator",
        choices=("classifier", "regressor"),
        default=DEFAULTS["estimator"],
        help="what the forest predicts: classes or a quantity",
    )
    parser.add_argument(
        "--test-size",
        type=float,
        default=DEFAULTS["test_size"],
        help="share of the rows held out for scoring",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS["seed"], help="seeds the split and every grove"
    )
    parser.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a forest parameter; VALUE is JSON (12, 0.5, null, true) or else a bare string "
        "(sqrt), e.g. max_depth=12 or max_features=sqrt",
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
    if build:
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue the newest unfinished run of NAME with its stored request: groves "
            "with a verified file are not trained again",
        )


def build_request(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if getattr(args, "resume", False):
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
    request |= {
        field: getattr(args, dest) for dest, field in REQUEST_OPTIONS.items() if hasattr(args, dest)
    }
    request["params"] = dict(args.param)
    for field in ("target", "weight"):
        if request.get(field) is None:
            request.pop(field, None)
    return request


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
    cost = (metrics or model).get("cost")
    if cost:
        lines.append(f"cost      {describe(cost)}")
    lines += [f"model     {model.get('model')}", f"manifest  {model.get('manifest')}"]
    if metrics:
        lines.append(f"metrics   {metrics['metrics']}")
    return lines


def run_here(
    machine: str, request: dict[str, Any], store: str, unit: str, failed: str
) -> tuple[int, Any]:
    """Run a state machine on this machine with warm workers and a progress bar of ``unit``;
    on failure print one line (``failed: error: cause``). The exit code, and the execution
    if it succeeded.

    The first step validates the request before any work, in a warm worker: this process never
    imports scikit-learn, and on 2 cores does not compete with the workers doing so."""
    progress = Progress(sys.stderr, unit=unit)
    with start_workers() as pool:
        execution = run_local(
            request,
            store,
            on_progress=progress,
            on_event=progress.event,
            pool=pool,
            machine=machine,
        )
    if execution.status != "SUCCEEDED":
        return report_failure(*local_root_cause(execution), failed), None
    return 0, execution


def cmd_run(args: argparse.Namespace) -> int:
    code, done = run_here(
        "forest", build_request(args, args.parser), args.store, "groves", "build failed"
    )
    if done is not None:
        print("\n".join(summary_lines(done.output, done.seconds)))
    return code


def cmd_start(args: argparse.Namespace, session: Any = None) -> int:
    import boto3

    from groves.plan import n_groves, validate_request

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


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build_id", metavar="NAME", help="the build whose model predicts")
    parser.add_argument(
        "--data", required=True, help="rows to predict: .csv/.parquet/.npz path or s3:// URI"
    )
    parser.add_argument("--out", required=True, help="output .csv or .parquet: path or s3:// URI")
    parser.add_argument("--run", help="a committed run id (default: the build's latest)")
    parser.add_argument(
        "--rows-per-chunk",
        type=int,
        default=BATCH_DEFAULTS["rows_per_chunk"],
        help="rows each function predicts at once",
    )
    parser.add_argument(
        "--groves-per-shard",
        type=int,
        help="groves each function reads (default: chosen from the groves' sizes, so that a "
        "function reads at most 512 MiB of them; a small forest is one shard)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=BATCH_DEFAULTS["max_concurrency"],
        help="functions predicting at once",
    )
    parser.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COL",
        help="an input column to carry into the output beside the predictions, such as an id "
        "(repeat for more)",
    )


def batch_request(args: argparse.Namespace) -> dict[str, Any]:
    request = {
        "build_id": args.build_id,
        "data": args.data,
        "output": args.out,
        "rows_per_chunk": args.rows_per_chunk,
        "max_concurrency": args.max_concurrency,
    }
    if args.groves_per_shard is not None:
        request["groves_per_shard"] = args.groves_per_shard
    if args.keep:
        request["keep"] = args.keep
    return {**request, "run_id": args.run} if args.run else request


def batch_summary(output: dict[str, Any], seconds: float) -> str:
    written = output["output"]
    return (
        f"predicted {written['n_rows']} rows with build {written['build_id']} "
        f"(run {written['run_id']}, {written['n_trees']} trees) in {seconds:.2f} s\n"
        f"output    {written['output']}\nsidecar   {written['output']}.json"
    )


def cmd_predict(args: argparse.Namespace) -> int:
    code, done = run_here(
        "batch_predict", batch_request(args), args.store, "chunks", "prediction failed"
    )
    if done is not None:
        print(batch_summary(done.output, done.seconds))
    return code


def cmd_start_predict(args: argparse.Namespace, session: Any = None) -> int:
    import boto3

    from groves.batch import validate_batch_request

    request = batch_request(args)
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


def _deployed_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--state-machine-arn")
    target.add_argument(
        "--stack-name",
        default="groves",
        help=f"read {output} from this stack's outputs (default %(default)s)",
    )
    parser.add_argument("--wait", action="store_true", help="follow the execution to its end")
    parser.add_argument(
        "--poll-seconds", type=float, default=3.0, help="how often --wait asks for the status"
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="groves",
        description="Random forests trained as groves: on this machine (run, predict, search) "
        "or on the deployed Step Functions state machines (start, start-predict); then look at "
        "what they left (ls, history, report) or make a step's event for sam local invoke (event).",
    )
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser = functools.partial(  # type: ignore[method-assign]
        commands.add_parser, formatter_class=DefaultsHelp
    )
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
    _deployed_arguments(start, "StateMachineArn")
    start.set_defaults(func=cmd_start, parser=start)
    predict = commands.add_parser("predict", help="predict new rows with a build, on this machine")
    _batch_arguments(predict)
    predict.add_argument(
        "--store", default=DEFAULT_STORE, help="directory or s3://bucket[/prefix] of the build"
    )
    predict.set_defaults(func=cmd_predict, parser=predict)
    start_predict = commands.add_parser(
        "start-predict", help="predict new rows with the deployed batch prediction state machine"
    )
    _batch_arguments(start_predict)
    _deployed_arguments(start_predict, "BatchPredictStateMachineArn")
    start_predict.set_defaults(func=cmd_start_predict, parser=start_predict)
    from groves import cli_inspect, cli_search  # they build on this module's options

    cli_search.add_parser(commands)
    cli_inspect.add_parsers(commands)
    return root


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default, unless it has none or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == []
        if nothing or "default" in text:
            return text
        return super()._get_help_string(action) or ""


def aws_problem(exc: Exception, args: argparse.Namespace) -> str:
    """One line saying what is wrong with the AWS set-up and what to do (botocore is imported
    here, not at start-up)."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_DEFAULT_REGION (or AWS_REGION), or run aws configure"
    if isinstance(exc, NoCredentialsError):
        return (
            "no AWS credentials: run aws configure, or set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        if code == "ValidationError" and "does not exist" in message:
            return (
                f"stack {getattr(args, 'stack_name', '?')!r} does not exist in this region: "
                "deploy it with sam deploy, or pass --stack-name or --state-machine-arn"
            )
        if code == "StateMachineDoesNotExist":
            return f"{message}: check --state-machine-arn (and the region)"
        return f"AWS refused {exc.operation_name}: {code}: {message}"
    return f"cannot reach AWS: {exc}"


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
    except OSError as exc:  # the store or an output refused a write (read-only, full)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"groves: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not type(exc).__module__.startswith("botocore"):
            raise
        print(f"groves: {aws_problem(exc, args)}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
