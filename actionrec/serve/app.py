"""The web application: the page (plain HTML, CSS and JavaScript from ``actionrec/assets/web``, nothing from the
network) and the REST API under ``/api`` it runs on (OpenAPI page at ``/docs``).

Every error is JSON ``{"error": "one line naming the thing and the fix"}``, with paths relative to the data root (the
server's own folders are never named). :class:`Guard` protects every route (see there): with a ``--token`` every
request must carry it (``Authorization: Bearer T``, the ``actionrec_token`` cookie, or ``?token=T`` once, which sets
the cookie); without one the server answers only requests addressed to a loopback name, so a web page elsewhere
cannot reach it through DNS rebinding; requests from other web sites are refused; bodies are limited. The
connections' limits are in :mod:`.connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import re
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
from .jobs import Job, JobStore, QueueFull, Runner
from .models import Models
from .settings import LOOPBACK_NAMES, Settings
from .storage import DataRoot, NotFound, Refused, TooLarge, Uploads, sweep
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
        self.uploads = Uploads(settings.state / "uploads", int(settings.max_upload_mb * 1e6), int(settings.upload_quota_mb * 1e6))
        self.store = JobStore(settings.state / "jobs")
        self.models = Models(settings.models, Path(settings.runs), preloaded)
        self.cache = settings.state / "cache"
        workshop = Workshop(self.models, self.store, self.cache, self.data, settings.features, self.public)
        self.runner = Runner(self.store, workshop, settings.workers, settings.max_queued, self.public)
        self.paths: deque[str] = deque(maxlen=1000)  # the latest requests' paths (tests check what the slider sends)

    def public(self, text: str, job: Job | None = None) -> str:
        """`text` with the server's paths made relative: a job's video by its name, a path under the data root
        relative to it, a run by its name, the state folder left out."""
        if job is not None and job.source:
            text = text.replace(job.source, job.name)
        for uploads in {str(self.uploads.folder), str(self.uploads.folder.resolve())}:
            text = re.sub(re.escape(uploads) + r"/[0-9a-f]{32}/", "", text)
        for folder, called in ((self.data.root, "the data root"), (self.models.runs_dir, "the runs folder"),
                               (self.settings.state, "the server's folder")):
            for name in {str(folder), str(folder.resolve())} if folder is not None else ():
                if os.path.isabs(name):
                    text = re.sub(re.escape(name) + r"(?![\w.-])", called, text.replace(name + os.sep, ""))
        return text

    def start(self, kind: str, name: str, **values) -> Job:
        """A new job, queued; QueueFull (and no record) when too many wait."""
        self.runner.check_room()
        job = self.store.new(kind, name, **values)
        self.runner.submit(job)
        return job

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

    app = FastAPI(title="actionrec", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
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
    statuses = {Refused: 403, NotFound: 404, TooLarge: 413, QueueFull: 503}
    public = app.state.server.public

    @app.exception_handler(ActionrecError)
    async def actionrec_error(request: Request, err: ActionrecError) -> JSONResponse:
        return JSONResponse({"error": public(str(err))}, status_code=statuses.get(type(err), 400))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": public(str(err.detail))}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in err.errors()]
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
STREAMED = ("/api/uploads",)  # routes that read their body as a stream, under their own limit (--max-upload-mb)
HARDENING = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
             (b"content-security-policy", b"frame-ancestors 'none'; default-src 'self'; img-src 'self' data: blob:; "
                                          b"media-src 'self' blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; "
                                          b"base-uri 'none'; form-action 'self'")]


class Guard:
    """ASGI wrapper around every route, so a new route gets the same protection by being added to the app:

    * the token (or, without one, a loopback Host), compared as bytes;
    * another site's requests refused: an ``Origin`` other than the server's own, or ``Sec-Fetch-Site`` cross-site or
      same-site, on every request that is not GET/HEAD/OPTIONS and on every request under ``/api``;
    * a request body (but the streamed upload's) read whole before the route sees it, at most ``--max-body-kb``;
    * hardening headers on every response (no framing, no sniffing, no referrer, a content security policy).
    """

    def __init__(self, app, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        self.server.paths.append(path)
        send = _adding_headers(send, HARDENING)
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        token = self.server.settings.token
        if token:
            given = _given_tokens(headers, scope.get("query_string", b""))
            if not any(hmac.compare_digest(g, token.encode()) for g in given if g):
                return await _reject(send, 401, "this server needs its token: open the address printed by "
                                                "`actionrec serve` (with ?token=...) or send 'Authorization: Bearer TOKEN'")
            if given[1]:
                send = _adding_headers(send, [(b"set-cookie", f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode())])
        elif _hostname(headers.get("host", b"").decode("latin-1")) not in LOOPBACK_NAMES:
            return await _reject(send, 403, "this server answers only at 127.0.0.1 or localhost; start it with "
                                            "--host and --token to reach it from elsewhere")
        if (method not in SAFE_METHODS or path.startswith("/api/")) and _from_another_site(headers):
            return await _reject(send, 403, "a request from another web site is refused; use the page this server "
                                            "serves, or a client that sends no Origin header")
        if method not in SAFE_METHODS and not path.startswith(STREAMED):
            limit = int(self.server.settings.max_body_kb * 1000)
            body = await _read_body(receive, headers, limit)
            if body is GONE:
                return None  # the client went away (or sent its body too slowly): no one to answer
            if body is None:
                return await _reject(send, 413, f"the request body is over {limit // 1000} kB (--max-body-kb); send less")
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _given_tokens(headers: dict[str, bytes], query: bytes) -> list[bytes]:
    """The token as the header, the query (?token=) and the cookie give it, as bytes ("" where absent)."""
    bearer = headers.get("authorization", b"").removeprefix(b"Bearer ").strip()
    values = parse_qs(query.decode("latin-1"), encoding="utf-8", errors="surrogateescape").get("token", [""])
    from_query = values[0].encode("utf-8", "surrogateescape")
    cookie = b""
    for part in headers.get("cookie", b"").split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == COOKIE.encode():
            cookie = value
    return [bearer, from_query, cookie]


def _from_another_site(headers: dict[str, bytes]) -> bool:
    if headers.get("sec-fetch-site", b"").lower() in (b"cross-site", b"same-site"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    scheme, _, rest = origin.decode("latin-1").partition("://")
    return scheme not in ("http", "https") or rest.lower() != headers.get("host", b"").decode("latin-1").lower()


GONE = b"(the client went away)"


async def _read_body(receive, headers: dict[str, bytes], limit: int) -> bytes | None:
    """The whole request body, None when it is (or announces) more than `limit` bytes, GONE when the client left."""
    announced = headers.get("content-length", b"")
    if announced.isdigit() and int(announced) > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """A `receive` that gives the body read already, then waits on the connection's (for its disconnect)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _adding_headers(send, extra: list[tuple[bytes, bytes]]):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": list(message.get("headers", [])) + extra}
        await send(message)

    return wrapped


async def _reject(send, status: int, message: str) -> None:
    body = JSONResponse({"error": message}, status_code=status).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
