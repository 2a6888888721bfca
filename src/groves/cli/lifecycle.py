"""A model's life after training, client-side: ``groves score`` (score a committed run on its
held-out rows later, as ``-p`` does at the end of a build), ``groves promote`` (any committed
run becomes the build's latest; a rollback is a promote), ``groves rm`` and ``groves gc``
(delete runs, or a build, never the latest or a run that work in progress uses). See
``groves.store.promotions`` and ``groves.store.cleanup``."""

from __future__ import annotations

import argparse
from typing import Any

from groves.cli.options import store_argument
from groves.store.artifacts import check_build_id, check_run_id
from groves.store.protocol import Store
from groves.store.uris import open_store


def opened(args: argparse.Namespace) -> Store:
    """The store, once NAME is a build id (a ``RequestError`` naming it otherwise)."""
    check_build_id({"build_id": args.build_id})
    return open_store(args.store)


def cmd_score(args: argparse.Namespace) -> int:
    from groves.errors import RequestError
    from groves.steps.cost import describe
    from groves.steps.score import score_build
    from groves.store.artifacts import committed_run, read_plan

    store = opened(args)
    run_id = committed_run(store, args.build_id, args.run)
    plan = read_plan(store, args.build_id, run_id)
    if "search_id" in plan:
        raise RequestError(
            "--run", f"run {run_id} is a search's candidate: the search scored its best (groves ls)"
        )
    if not plan["data"].get("n_test"):
        raise RequestError("--run", f"run {run_id} held out no rows to score (test_size 0)")
    scored = score_build(store, args.build_id, run_id)
    print(
        f"score     {scored['metric']} {scored['score']:.4f} on {scored['n_test']:,} held-out rows "
        f"(run {run_id}; groves alone: {scored['grove_score_min']:.4f}-"
        f"{scored['grove_score_max']:.4f})\ncost      {describe(scored['cost'])}\n"
        f"metrics   {scored['metrics']}"
    )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from groves.store.promotions import promote

    record = promote(opened(args), args.build_id, check_run_id(args.run, "--run"))
    before = record["from"] or "none"
    print(
        f"latest    build {args.build_id!r}: run {record['run_id']} (was {before}); pinned until "
        "the next promote or the commit of a run started after now"
    )
    return 0


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}{'es' if word[-1] == 'h' else 's'}"


def removed_lines(removed: Any, what: str) -> list[str]:
    """What a removal deleted, one line in all; with ``--dry-run``, first each item it would
    delete with its bytes, then the line in all, removing nothing."""
    kept = (
        f"; the rows of {', '.join(removed.rows_kept)} stay (a kept run shares them)"
        if removed.rows_kept
        else ""
    )
    counts = ", ".join(
        plural(len(removed.ids(kind)), kind) for kind in ("run", "batch prediction", "search")
    )
    verb = "would remove" if removed.dry_run else "removed  "
    lines = [f"{verb} {kind} {item_id}: {size:,} bytes" for kind, item_id, size in removed.items]
    lines = lines if removed.dry_run else []
    lines.append(
        f"{verb} {what}: {counts}, {removed.files} files, {removed.bytes / 2**20:.1f} MB "
        f"({removed.bytes:,} bytes){kept}"
    )
    if removed.dry_run:
        lines.append("dry run   nothing was removed")
    return lines


def cmd_rm(args: argparse.Namespace) -> int:
    from groves.store.cleanup import remove_build, remove_run

    store = opened(args)
    if args.run is None:
        removed = remove_build(store, args.build_id, args.dry_run)
        print("\n".join(removed_lines(removed, f"build {args.build_id!r}")))
        return 0
    removed = remove_run(store, args.build_id, check_run_id(args.run, "--run"), args.dry_run)
    print("\n".join(removed_lines(removed, f"run {args.run} of build {args.build_id!r}")))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from groves.store.cleanup import collect

    removed = collect(opened(args), args.build_id, args.keep, args.dry_run)
    kept = f"the latest and the {args.keep} newest committed runs kept"
    print("\n".join(removed_lines(removed, f"build {args.build_id!r} ({kept})")))
    return 0


def dry_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be removed and its bytes, removing nothing",
    )


def add_parsers(commands: Any) -> None:
    score = commands.add_parser(
        "score", help="score a committed run on its held-out rows (as -p does), on this machine"
    )
    score.add_argument("build_id", metavar="NAME", help="a build in the store")
    score.add_argument("--run", help="a committed run id (default: the build's latest)")
    store_argument(score)
    score.set_defaults(func=cmd_score, parser=score)

    promote = commands.add_parser(
        "promote", help="make a committed run the build's latest (a rollback is a promote)"
    )
    promote.add_argument("build_id", metavar="NAME", help="a build in the store")
    promote.add_argument(
        "--run", required=True, help="the committed run id that groves predict and load_model use"
    )
    store_argument(promote)
    promote.set_defaults(func=cmd_promote, parser=promote)

    rm = commands.add_parser(
        "rm", help="delete a run of a build, or the whole build (never what work in progress uses)"
    )
    rm.add_argument("build_id", metavar="NAME", help="a build in the store")
    rm.add_argument(
        "--run",
        help="delete this run only, not the latest, and its ended batch predictions and "
        "searches (default: the whole build)",
    )
    dry_run_argument(rm)
    store_argument(rm)
    rm.set_defaults(func=cmd_rm, parser=rm)

    gc = commands.add_parser(
        "gc",
        help="delete a build's runs but the latest, the newest committed ones and those in "
        "use, and its ended batch predictions and searches",
    )
    gc.add_argument("build_id", metavar="NAME", help="a build in the store")
    gc.add_argument(
        "--keep",
        type=int,
        required=True,
        metavar="N",
        help="committed runs to keep besides the latest, newest first",
    )
    dry_run_argument(gc)
    store_argument(gc)
    gc.set_defaults(func=cmd_gc, parser=gc)
