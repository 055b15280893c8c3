"""``python -m jupyter_imagine.store migrate --to postgresql://… [--from HOME] [--images]``."""

from __future__ import annotations

import argparse
import sys

from .._config import home as default_home
from ..errors import ImagineError
from . import open_store
from ._migrate import migrate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jupyter_imagine.store",
                                     description="Manage the jupyter_imagine history.")
    commands = parser.add_subparsers(dest="command", required=True)
    move = commands.add_parser(
        "migrate", help="copy a personal SQLite history into a team store (idempotent)")
    move.add_argument("--to", required=True, metavar="URL",
                      help="the team store: postgresql://user@host/db")
    move.add_argument("--from", dest="source", metavar="HOME", default=None,
                      help="the history's folder (default: JUPYTER_IMAGINE_HOME or its default)")
    move.add_argument("--images", action="store_true",
                      help="also copy the image files into the team store's image cache")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; a failure is one line on stderr and exit status 1."""
    args = _parser().parse_args(argv)
    source = args.source or default_home()
    try:
        with open_store(args.to) as target:
            report = migrate(source, target, images=args.images)
    except ImagineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{report} from {source} to {target.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
