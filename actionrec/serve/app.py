"""The web application: the page (plain HTML, CSS and JavaScript from ``actionrec/assets/web``, nothing from the
network) and the REST API under ``/api`` it runs on (OpenAPI page at ``/docs``).

Every error is JSON ``{"error": "one line naming the thing and the fix"}``. With a ``--token`` every request must
carry it (``Authorization: Bearer T``, the ``actionrec_token`` cookie, or ``?token=T`` once, which sets the cookie);
without one the server answers only requests addressed to a loopback name, so a web page elsewhere cannot reach it
through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from torch import nn

from .. import __version__
from ..errors import ActionrecError
from . import routes
from .docs import docs_page
from .jobs import JobStore, QueueFull, Runner
from .models import Models
from .settings import LOOPBACK_NAMES, Settings
from .storage import DataRoot, Refused, TooLarge, Uploads, sweep
from .work import Workshop

WEB = Path(__file__).resolve().parents[1] / "assets" / "web"
COOKIE = "actionrec_token"
REQUEST_THREADS = 8  # threads for blocking request work (probing uploads, thumbnails, relabelling, files)


class Server:
    """Everything the routes share."""

    def __init__(self, settings: Settings, preloaded: dict[str, nn.Module] | None = None):
        settings.check()
        self.settings = settings
        self.data = DataRoot(settings.data_root)
        self.uploads = Uploads(settings.state / "uploads", int(settings.max_upload_mb * 1e6))
        self.store = JobStore(settings.state / "jobs")
        self.models = Models(settings.models, Path(settings.runs), preloaded)
        self.cache = settings.state / "cache"
        self.runner = Runner(self.store, Workshop(self.models, self.store, self.cache, settings.features), settings.workers, settings.max_queued)
        self.paths: deque[str] = deque(maxlen=1000)  # the latest requests' paths (tests check what the slider sends)

    def sweep(self) -> int:
        """Remove finished jobs, uploads and cached probabilities older than the retention; returns how many."""
        keep_s = self.settings.retention_days * 86400
        expired = self.store.expired(keep_s)
        in_use = {j.upload for j in self.store.jobs.values() if j not in expired}
        for job in expired:
            self.store.remove(job)
            if job.upload and job.upload not in in_use:
                with contextlib.suppress(ActionrecError):
                    self.uploads.remove(self.uploads.find(job.upload))
        fresh = [self.uploads.folder / u for u in in_use if u]
        for path in fresh:  # an upload a job still shows is kept
            with contextlib.suppress(OSError):
                os.utime(path)
        return len(expired) + sweep([self.uploads.folder, self.cache], keep_s)


def create_app(settings: Settings, preloaded: dict[str, nn.Module] | None = None) -> FastAPI:
    """The application; `preloaded` maps model names to models already in memory (served as they are)."""
    server = Server(settings, preloaded)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        server.sweep()
        sweeper = asyncio.get_running_loop().create_task(_sweep_regularly(server))
        yield
        sweeper.cancel()
        server.runner.cancel_all()

    app = FastAPI(title="actionrec", version=__version__, lifespan=lifespan, docs_url="/docs/swagger", redoc_url=None,
                  description="Recognise actions in videos: jobs, timelines, flagging, runs. Errors are {\"error\": message}.")
    app.state.server = server
    _error_handlers(app)
    app.include_router(routes.router(server), prefix="/api")
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    app.add_middleware(Guard, server=server)
    return app


async def _sweep_regularly(server: Server) -> None:
    period = min(3600.0, max(60.0, server.settings.retention_days * 86400 / 4))
    while True:
        await asyncio.sleep(period)
        await anyio.to_thread.run_sync(server.sweep)


def _error_handlers(app: FastAPI) -> None:
    statuses = {Refused: 403, TooLarge: 413, QueueFull: 503}

    @app.exception_handler(ActionrecError)
    async def actionrec_error(request: Request, err: ActionrecError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=statuses.get(type(err), 400))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in err.errors()]
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)


class Guard:
    """ASGI wrapper: the token (or, without one, a loopback Host) on every request, and the request count."""

    def __init__(self, app, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.server.paths.append(scope.get("path", ""))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = self.server.settings.token
        from_query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if token:
            given = [headers.get("authorization", "").removeprefix("Bearer ").strip(), from_query, _cookie(headers)]
            if not any(g and hmac.compare_digest(g, token) for g in given):
                return await _reject(send, 401, "this server needs its token: open the address printed by "
                                                "`actionrec serve` (with ?token=...) or send 'Authorization: Bearer TOKEN'")
            if from_query:
                send = _setting_cookie(send, token)
        elif _hostname(headers.get("host", "")) not in LOOPBACK_NAMES:
            return await _reject(send, 403, "this server answers only at 127.0.0.1 or localhost; start it with "
                                            "--host and --token to reach it from elsewhere")
        await self.app(scope, receive, send)


def _cookie(headers: dict[str, str]) -> str:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return ""


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _setting_cookie(send, token: str):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            message = {**message, "headers": list(message.get("headers", [])) + [(b"set-cookie", cookie.encode())]}
        await send(message)

    return wrapped


async def _reject(send, status: int, message: str) -> None:
    body = JSONResponse({"error": message}, status_code=status).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
