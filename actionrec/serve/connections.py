"""The HTTP connections' limits, which uvicorn lacks: a client has ``header_timeout`` seconds to send a request's
headers (from connecting, or from the end of its previous response), a request's body may pause at most
``body_timeout`` seconds, and at most ``max_connections`` are open: a new one over the cap closes the oldest
connection that is waiting for a request (idle, or sending its headers), or, when every one is busy with a request,
is answered 503 itself. Idle or slow connections are thus shed while the server keeps answering.

:func:`uvicorn_config` is the one place the server's uvicorn settings are made (the CLI and the tests use it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import Settings

log = logging.getLogger("actionrec.serve")
_BUSY_BODY = b'{"error": "too many connections are busy; try again shortly (--max-connections)"}'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class LimitedH11(H11Protocol):
    """uvicorn's h11 protocol with the limits of the module doc (set by :func:`uvicorn_config`)."""

    max_connections = 100
    header_timeout = 10.0
    body_timeout = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_since = self.loop.time()
        self._phase = "headers"
        self._arm(self.header_timeout, "its request's headers")
        open_now = [c for c in self.connections if not (c.transport and c.transport.is_closing())]
        if len(open_now) > self.max_connections:
            self._shed(open_now)

    def waiting(self) -> bool:
        """True while no request is being read or answered."""
        return self.cycle is None or self.cycle.response_complete

    def _shed(self, open_now: list) -> None:
        ours = [c for c in open_now if isinstance(c, LimitedH11) and c is not self and c.waiting()]
        if ours:
            oldest = min(ours, key=lambda c: c._waiting_since)
            log.info("closing an idle connection: %d are open (--max-connections %d)", len(open_now), self.max_connections)
            oldest.transport.close()
        else:
            self.transport.write(BUSY)
            self.transport.close()

    def _arm(self, seconds: float, what: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(seconds, self._expire, what, seconds)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, what: str, seconds: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we paused reading (the app is behind), not the client
            self._arm(seconds, what)
            return
        log.info("closing a connection that sent no %s for %g s", what, seconds)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._waiting_since = self.loop.time()
        self._timer, timer = None, self._timer  # a new wait for headers starts now
        if timer is not None:
            timer.cancel()
        self._follow()

    def _follow(self) -> None:
        """The clock for what the connection does now: headers (a deadline that more bytes do not move), a body (a
        pause limit), or the app's answer (none)."""
        if self.transport.is_closing():
            return
        if self.waiting():
            if self._phase != "headers" or self._timer is None:
                self._phase = "headers"
                self._arm(self.header_timeout, "its request's headers")
        elif self.cycle.more_body:
            self._phase = "body"
            self._arm(self.body_timeout, "more of its request's body")
        else:
            self._phase = "answer"
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def uvicorn_config(app: Any, settings: Settings, log_level: str = "warning") -> uvicorn.Config:
    """uvicorn's settings for `app`: the h11 protocol with `settings`' connection limits."""
    protocol = type("Limited", (LimitedH11,), {"max_connections": settings.max_connections,
                                               "header_timeout": settings.header_timeout,
                                               "body_timeout": settings.body_timeout})
    return uvicorn.Config(app, http=protocol, log_level=log_level, timeout_keep_alive=min(5, int(settings.header_timeout) or 1),
                          h11_max_incomplete_event_size=64 * 1024)
