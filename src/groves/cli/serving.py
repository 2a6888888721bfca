"""``groves serve``: the serve function behind a local HTTP server, in the foreground until
Ctrl-C (``groves.engine.server``, imported when the command runs: other commands start
without numpy)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from groves.cli.options import serve_arguments, store_argument
from groves.store.uris import open_store


def cmd_serve(args: argparse.Namespace) -> int:
    from groves.engine.server import serve  # numpy and the model's code: not at every start
    from groves.forest import native
    from groves.steps.serve import Service

    service = Service(open_store(args.store), args.build_id, args.run, args.refresh_seconds)
    model = service.model()  # loaded before listening: a missing build fails here
    server = serve(service, args.host, args.port)
    kernel = model.kernel
    print(
        f"serving   {model.build_id} (run {model.run_id}"
        f"{', pinned' if args.run else ', following its latest'}): "
        f"{kernel.n_trees} trees, loaded in {model.load_seconds:.2f} s, "
        f"walked by {'the compiled walk' if native.walker() else 'numpy'}",
        flush=True,
    )
    try:
        print(
            f"lambda    ServeMemorySize={model.lambda_memory_mb()} fits this model "
            f"({kernel.nbytes / 2**20:.1f} MiB flat, {len(kernel.nodes):,} nodes)",
            flush=True,
        )
        print(f'listening {server.url}  (POST {{"rows": [...]}}, GET for its columns)', flush=True)
        server.serve_forever()
    except BaseException as stop:  # Ctrl-C, SIGTERM (cli.main's Stopped): a clean stop
        if isinstance(stop, Exception):
            raise
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="answer predictions for one build over HTTP on this machine (the serve function)",
    )
    serve_arguments(parser)
    store_argument(parser, " of the build")
    parser.set_defaults(func=cmd_serve, parser=parser)
