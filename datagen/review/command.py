"""`datagen review OUT`: choose the items, read their images, serve the page until interrupted."""

from __future__ import annotations

import argparse
import secrets
import sys

from datagen.errors import ConfigError


def flags(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Label a run's pairs in the browser (good / bad / unsure, from the keyboard) for `datagen calibrate`: a "
        "stratified sample of kept pairs and rejected candidates per task, served on 127.0.0.1; each label is "
        "appended to OUT/labels/ as it is given."
    )
    parser.add_argument(
        "out",
        metavar="OUT",
        help="a finished run (local); rejected candidates show where it was "
        "rendered with --set pipeline.keep_rejected=true",
    )
    parser.add_argument("--n", type=int, default=60, help="items to review, shared evenly by task (default 60)")
    parser.add_argument("--tasks", help="only these tasks: a,b,... (default: every task of the run)")
    parser.add_argument("--seed", type=int, default=0, help="which items (default 0): the same seed, the same items")
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=0, help="the port (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")


def run(args: argparse.Namespace) -> int:
    from datagen.review.sample import choose, images
    from datagen.review.server import Review, serve
    from datagen.shards import RunFolder

    if args.n < 1:
        raise ConfigError(f"--n {args.n}: allowed: a positive number of items")
    folder = RunFolder(args.out)
    if not folder.folder.local:
        raise ConfigError(f"{args.out}: review a local copy of the run (labels are appended on a local disk)")
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    items = choose(folder, args.n, tasks, args.seed)
    if not items:
        raise ConfigError(
            f"{args.out}: no kept pair or stored rejected candidate{' of ' + args.tasks if tasks else ''}"
        )
    review = Review(folder.folder, items, images(folder, items), secrets.token_urlsafe(24))
    server = serve(review, args.host, args.port)
    url = f"http://{args.host}:{server.server_address[1]}/?token={review.token}"
    kept = sum(item.status == "kept" for item in items)
    print(
        f"{len(items)} items ({kept} kept pairs, {len(items) - kept} rejected candidates); labels go to "
        f"{args.out.rstrip('/')}/labels/"
    )
    print(f"open: {url}", flush=True)
    if args.host not in ("127.0.0.1", "localhost"):
        print(f"warning: bound to {args.host}: anyone who can reach it and has the URL can label", file=sys.stderr)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped; every label given is in OUT/labels/ (rerun the same command to go on)")
    finally:
        server.server_close()
    return 0
