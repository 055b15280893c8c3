"""``python -m jupyter_imagine.sandbox`` — serve the sandbox over HTTP with uvicorn.

Options: ``--host`` (default 127.0.0.1), ``--port`` (default 8765), ``--speed`` (simulated
seconds per real second, default 1.0), ``--seed`` (image seed, default 0), ``--log-level``
(default info).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from .._secrets import get_logger
from ._app import create_app

logger = get_logger("jupyter_imagine.sandbox")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` and serve the sandbox until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_imagine.sandbox",
        description="Serve the jupyter_imagine provider sandbox (APIFRAME … emulated) over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind (default 8765)")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second for job progress (default 1.0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="image seed (default 0)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info)",
    )
    args = parser.parse_args(argv)
    if args.speed < 0:
        parser.error("--speed must be >= 0")

    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    app = create_app(speed=args.speed, seed=args.seed)
    host = f"[{args.host}]" if ":" in args.host else args.host
    logger.info(
        "jupyter_imagine sandbox on http://%s:%d (speed %g); set JUPYTER_IMAGINE_SANDBOX_URL "
        "to this URL to use it",
        host,
        args.port,
        args.speed,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
