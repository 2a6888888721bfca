"""The command line's options, one definition each, shared by every command that takes them:
the training request's (``run``, ``start``, ``search``, ``event``), a batch prediction's
(``predict``, ``start-predict``), ``serve``'s, the deployed stack's and the store's. Every
option has help."""

from __future__ import annotations

import argparse
import json
from typing import Any

from groves.engine.console import UsageError
from groves.steps.request import BATCH_DEFAULTS, DEFAULTS, REFRESH_SECONDS
from groves.store.uris import DEFAULT_STORE

# Each request option's argparse dest and the request field it sets.
REQUEST_OPTIONS = {
    "trees": "n_trees",
    "grove": "grove_size",
    "dataset": "dataset",
    "target": "target",
    "weight": "weight",
    "features": "features",
    "drop": "drop",
    "estimator": "estimator",
    "test_size": "test_size",
    "seed": "seed",
    "param": "params",
    "max_concurrency": "max_concurrency",
    "groves_per_invocation": "groves_per_invocation",
    "predict": "predict",
    "rows_per_grove": "rows_per_grove",
}


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


def request_arguments(
    parser: argparse.ArgumentParser, build: bool = True, grove_alias: bool = True
) -> None:
    """The training request's options; ``build`` adds --predict and --resume (not a search);
    the grove size is ``-g``/``--grove-size`` everywhere, and ``--grove`` too unless
    ``grove_alias`` is false (``groves event``, whose ``--grove-id`` picks one grove)."""
    parser.add_argument("build_id", metavar="NAME", help="build id: where the model is stored")
    parser.add_argument(
        "-t",
        "--trees",
        type=int,
        default=DEFAULTS["n_trees"],
        help="trees in the forest (default %(default)s)",
    )
    parser.add_argument(
        *(("-g", "--grove-size", "--grove") if grove_alias else ("-g", "--grove-size")),
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
        "--features",
        type=column_list,
        metavar="COL,...",
        help="train on only these columns of a CSV/Parquet table (default: every column but "
        "the target and the weights)",
    )
    parser.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="COL",
        help="leave a column of a CSV/Parquet table out of the features, such as an id "
        "(repeat for more)",
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
        type=parse_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a forest parameter; VALUE is JSON (12, 0.5, null, true) or else a bare string "
        "(sqrt), e.g. max_depth=12 or max_features=sqrt",
    )
    parser.add_argument(
        "--rows-per-grove",
        type=int,
        default=DEFAULTS["rows_per_grove"],
        help="training rows each grove reads, a seeded sample of its own (default: every row "
        "while they fit train_grove's memory, else as many as fit)",
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
    for field in ("target", "weight", "features"):
        if request.get(field) is None:
            request.pop(field, None)
    if not request.get("drop"):
        request.pop("drop", None)
    return request


def batch_arguments(parser: argparse.ArgumentParser) -> None:
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
