"""``python -m jupyter_imagine.sandbox`` — serve the sandbox over HTTP with uvicorn.

Options: ``--host`` (default 127.0.0.1), ``--port`` (default 8765), ``--speed`` (simulated
seconds per real second, default 1.0), ``--seed`` (image seed, default 0), ``--drawing``
(``full`` landscapes, the default, or ``quick`` plain pictures at about a fifteenth of the CPU, for
load tests), ``--log-level`` (default info), ``--max-body`` (largest request body in bytes,
default 32 MiB).

The ``/_sandbox/*`` control routes (faults, clock, request counts, webhook sink) are open on a
loopback bind. On any other bind they are refused (403) unless ``--control-token TOKEN`` (then
every control request must carry the header ``x-sandbox-token: TOKEN``) or
``--allow-remote-control`` is given.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from collections.abc import Sequence

from .._secrets import get_logger
from ._app import create_app
from ._art import DRAWINGS, set_drawing
from ._middleware import DEFAULT_MAX_BODY, ControlPolicy

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
        "--drawing",
        default="full",
        choices=DRAWINGS,
        help="full: the landscapes (default); quick: plain pictures of the same sizes at about a "
        "fifteenth of the CPU, for load tests where the sandbox's drawing would use the CPU",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info)",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        help=f"largest request body in bytes; larger get 413 (default {DEFAULT_MAX_BODY})",
    )
    parser.add_argument(
        "--control-token",
        default=None,
        help="require header x-sandbox-token: TOKEN on the /_sandbox/* routes",
    )
    parser.add_argument(
        "--allow-remote-control",
        action="store_true",
        help="open the /_sandbox/* routes without a token on a non-loopback bind",
    )
    args = parser.parse_args(argv)
    if args.speed < 0:
        parser.error("--speed must be >= 0")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, not {args.port}")
    if args.max_body < 1:
        parser.error("--max-body must be >= 1")
    control = control_policy(args.host, args.control_token, args.allow_remote_control)
    if not control.enabled:
        logger.warning(
            "%s is not a loopback address: the /_sandbox/* control routes are disabled "
            "(give --control-token TOKEN or --allow-remote-control to enable them)",
            args.host,
        )

    import uvicorn

    set_drawing(args.drawing)  # this process serves only this sandbox

    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    app = create_app(
        speed=args.speed, seed=args.seed, max_body=args.max_body, control=control
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    logger.info(
        "jupyter_imagine sandbox on http://%s:%d (speed %g%s); set JUPYTER_IMAGINE_SANDBOX_URL "
        "to this URL to use it",
        host,
        args.port,
        args.speed,
        ", quick drawing" if args.drawing == "quick" else "",
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


def is_loopback(host: str) -> bool:
    """``True`` if ``host`` binds only the loopback interface (``localhost``, 127/8, ``::1``)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def control_policy(host: str, token: str | None, allow_remote: bool) -> ControlPolicy:
    """Who may use the control routes of a server bound to ``host``: anyone on loopback or with
    ``allow_remote``, holders of ``token`` when given, else nobody."""
    if token:
        return ControlPolicy(token=token)
    return ControlPolicy(enabled=allow_remote or is_loopback(host))


if __name__ == "__main__":
    main()
