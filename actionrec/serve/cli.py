"""`actionrec serve`: its options (:func:`add_parser`, for the main CLI) and :func:`run`. Importing this module is
cheap: the web stack is imported when the command runs."""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ActionrecError
from .settings import Settings

DEFAULTS = Settings(state=Path("$ACTIONREC_HOME/serve"))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `serve` command to the main CLI's subparsers; it runs :func:`run` (``args.func``)."""
    p = subparsers.add_parser("serve", help="a local web page: drop videos, see actions, timelines and runs",
                              description="Start the web application and print its address (Ctrl-C stops it). "
                                          "Finished results are kept on disk and shown again after a restart.")
    p.add_argument("--model", "--run", dest="models", action="append", default=None, metavar="NAME",
                   help=f"a pretrained model to offer (repeatable; default: {', '.join(DEFAULTS.models)}); the runs under --runs are offered too")
    p.add_argument("--runs", default=str(DEFAULTS.runs), help="folder of trained runs (default: %(default)s)")
    p.add_argument("--data-root", default=None, help="a folder whose videos and datasets the page may pick; nothing outside it is read")
    p.add_argument("--host", default=DEFAULTS.host, help="address to listen on (default: %(default)s, this machine only; another needs --token)")
    p.add_argument("--port", type=int, default=DEFAULTS.port, help="(default: %(default)s; 0: any free port)")
    p.add_argument("--token", default=None, help="a secret every request must carry ('random': make one and print it in the address)")
    p.add_argument("--state", default=None, help=f"where uploads and results are kept (default: {DEFAULTS.state})")
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="jobs run at once (default: %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULTS.max_upload_mb, help="largest upload (default: %(default)s MB)")
    p.add_argument("--upload-quota-mb", type=float, default=DEFAULTS.upload_quota_mb,
                   help="all uploads kept together; over it an upload is refused until jobs are removed (default: %(default)s MB)")
    p.add_argument("--max-body-kb", type=float, default=DEFAULTS.max_body_kb,
                   help="largest request body but an upload's, e.g. a job's JSON (default: %(default)s kB)")
    p.add_argument("--max-connections", type=int, default=DEFAULTS.max_connections,
                   help="connections open at once; a new one over it closes the oldest idle one (default: %(default)s)")
    p.add_argument("--header-timeout", type=float, default=DEFAULTS.header_timeout,
                   help="seconds a client has to send a request's headers (default: %(default)s)")
    p.add_argument("--body-timeout", type=float, default=DEFAULTS.body_timeout,
                   help="seconds a request's body (an upload) may pause (default: %(default)s)")
    p.add_argument("--retention-days", type=float, default=DEFAULTS.retention_days,
                   help="uploads and results older than this are removed (default: %(default)s)")
    p.set_defaults(func=run)
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    token = secrets.token_urlsafe(18) if args.token == "random" else args.token
    values = dict(data_root=Path(args.data_root) if args.data_root else None, runs=Path(args.runs),
                  models=args.models or list(DEFAULTS.models), host=args.host, port=args.port, token=token,
                  max_upload_mb=args.max_upload_mb, upload_quota_mb=args.upload_quota_mb, max_body_kb=args.max_body_kb,
                  max_connections=args.max_connections, header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                  workers=args.workers, retention_days=args.retention_days)
    settings = Settings(state=Path(args.state), **values) if args.state else Settings(**values)
    settings.check()
    return settings


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ActionrecError(f"cannot listen on {host}:{port} ({err.strerror}); choose another --port") from None
    sock.listen(128)
    return sock


def address(settings: Settings, port: int) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{port}/" + (f"?token={settings.token}" if settings.token else "")


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C."""
    import uvicorn

    from .app import create_app
    from .connections import uvicorn_config

    settings = settings_from(args)
    app = create_app(settings)
    sock = listen(settings.host, settings.port)
    print(f"actionrec serve: open {address(settings, sock.getsockname()[1])}  (API: /docs; results kept in "
          f"{settings.state}; Ctrl-C stops)", flush=True)
    uvicorn.Server(uvicorn_config(app, settings)).run(sockets=[sock])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m actionrec.serve [options]`: the serve command on its own."""
    parser = argparse.ArgumentParser(prog="actionrec")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except ActionrecError as err:
        print(f"actionrec: error: {err}", file=sys.stderr)
        return 2
