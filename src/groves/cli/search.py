"""``groves search``: a hyper-parameter search on this machine, with a leaderboard at the end."""

from __future__ import annotations

import argparse
import json
from typing import Any

from groves.cli.options import (
    build_request,
    limits_argument,
    parse_param,
    request_arguments,
    store_argument,
)
from groves.cli.running import run_here
from groves.engine.console import UsageError
from groves.steps.cost import describe
from groves.steps.request import SEARCH
from groves.store.codec import get_json
from groves.store.uris import open_store


def _values(text: str) -> tuple[str, list[Any]]:
    """``NAME=V1,V2,...``, each value JSON (``null``, ``0.5``) or else a bare string."""
    name, values = parse_param(text)
    parts = values.split(",") if isinstance(values, str) else [values]
    return name, [_json_or_text(part) for part in parts] if isinstance(values, str) else parts


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _range(text: str) -> tuple[str, list[float]]:
    """``NAME=LOW:HIGH``: integers draw integers, otherwise floats."""
    name, _, bounds = text.partition("=")
    low, sep, high = bounds.partition(":")
    try:
        values = [json.loads(low), json.loads(high)]
    except json.JSONDecodeError:
        values = []
    if not name or not sep or len(values) != 2:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=LOW:HIGH, e.g. min_samples_leaf=1:20"
        )
    return name, values


def add_parser(commands: Any) -> None:
    search = commands.add_parser(
        "search", help="search forest parameters on this machine (grid or random)"
    )
    request_arguments(search, SEARCH)
    search.add_argument(
        "--grid",
        type=_values,
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="values to try, each JSON or a bare string, e.g. max_depth=8,16,null",
    )
    search.add_argument(
        "--random", type=int, metavar="N", help="draw N candidates (from --param-range and --grid)"
    )
    search.add_argument(
        "--param-range",
        type=_range,
        action="append",
        default=[],
        metavar="NAME=LOW:HIGH",
        help="a range to draw from, e.g. min_samples_leaf=1:20 or max_features=0.1:1.0",
    )
    store_argument(search)
    limits_argument(search)
    search.set_defaults(func=cmd_search, parser=search)


def search_request(args: argparse.Namespace) -> dict[str, Any]:
    request = build_request(args, args.parser, SEARCH)
    if args.random is not None:
        space = {"n_candidates": args.random, "ranges": dict(args.param_range)}
        if args.grid:
            space["choices"] = dict(args.grid)
        request["search"] = {"random": space}
    elif args.grid and not args.param_range:
        request["search"] = {"grid": dict(args.grid)}
    else:
        raise UsageError(
            "give --grid NAME=V1,V2 (a grid), or --random N with --param-range NAME=LOW:HIGH"
        )
    return request


def leaderboard_lines(store: str, output: dict[str, Any]) -> list[str]:
    board = get_json(
        open_store(store), f"{output['build_id']}/searches/{output['search_id']}/leaderboard.json"
    )
    metric = (board[0].get("metric") if board else None) or "validation"
    width = max(10, len(metric))
    lines = [f"{'candidate':>9}  {metric:>{width}}  {'trees':>5}  {'seconds':>7}  params"]
    for row in board:
        params = " ".join(f"{k}={json.dumps(v)}" for k, v in row["params"].items())
        score = row["validation_score"]
        lines.append(
            f"{row['candidate']:>9}  {'-' if score is None else f'{score:.4f}':>{width}}  "
            f"{row['n_trees']:>5}  {row['seconds']:>7.2f}  {params}"
        )
    result = output["result"]
    winner = output.get("runs_build_id", output["build_id"])
    lines += [
        f"best      candidate {result['best']['candidate']}: held-out {result['metric']} "
        f"{result['test_score']:.4f} on {result['n_test']:,} rows (read once, after the choice)",
        f"cost      {describe(result['cost'])} (the whole search)",
        model_line(winner, None if result.get("latest", True) else result["run_id"]),
        f"manifest  {output['model']['manifest']}",
        *latest_lines(winner, result),
        f"search    {store}/{output['build_id']}/searches/{output['search_id']}/",
    ]
    return lines


def model_line(build_id: str, run_id: str | None) -> str:
    """How to load the model: the build's latest, or a run of it."""
    if run_id is None:
        return (
            f"model     groves.load_model(store, {build_id!r}), or one file: "
            f"groves export {build_id} --out model.joblib"
        )
    return (
        f"model     groves.load_model(store, {build_id!r}, run_id={run_id!r}), or one file: "
        f"groves export {build_id} --run {run_id} --out model.joblib"
    )


def latest_lines(build_id: str, result: dict[str, Any]) -> list[str]:
    """Whether the best is the build's latest now: if not, how to promote it; if so, what it
    took the place of (the build's latest run until now)."""
    if not result.get("latest", True):  # results before commit was a field: it moved
        return [
            f"promote   {result['promote']} (the best is committed beside build "
            f"{build_id!r}'s latest, which groves predict {build_id} keeps using; --commit "
            "promotes at once)"
        ]
    replaced = result.get("replaces")
    if not replaced:
        return [f"latest    the best is build {build_id!r}'s latest"]
    return [
        f"replaced  build {build_id!r}'s latest model until now, run {replaced['run_id']} "
        f"({replaced['n_trees']} trees): it stays, as groves predict {build_id} --run "
        f"{replaced['run_id']} uses it; --build WINNER puts a search's best in a build of its own"
    ]


def cmd_search(args: argparse.Namespace) -> int:
    request = search_request(args)
    code, done = run_here(
        "search", request, args.store, "candidates", "search failed", args.memory_mb
    )
    if done is not None:
        print("\n".join(leaderboard_lines(args.store, done.output)))
    return code
