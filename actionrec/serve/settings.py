"""`actionrec serve`'s options, declared once (the CLI's defaults come from here); imports nothing heavy."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ActionrecError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
TOKEN = re.compile(r"[!#-+\--:<-\[\]-~]+")  # printable ASCII but space " , ; \\ (a cookie value as it is)


def default_state() -> Path:
    from ..models.weights import home_dir

    return home_dir() / "serve"


@dataclass
class Settings:
    """What `actionrec serve --help` describes."""

    state: Path = field(default_factory=default_state)  # uploads, jobs, cached probabilities
    data_root: Path | None = None  # the only folder the page may pick files from
    runs: Path = Path("runs")
    models: list[str] = field(default_factory=lambda: ["i3d-kinetics400"])
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_mb: float = 2048  # the largest upload
    upload_quota_mb: float = 10240  # all uploads kept together (retention frees room)
    max_body_kb: float = 256  # the largest JSON request body (every route but the upload's)
    max_connections: int = 100  # open connections; over it the oldest idle one is closed
    header_timeout: float = 10.0  # seconds a client has to send a request's headers
    body_timeout: float = 30.0  # seconds a request's body may pause
    workers: int = 1  # jobs run at once
    max_queued: int = 100  # jobs waiting at most
    retention_days: float = 7.0
    features: Path | None = None  # training's feature cache (None: $ACTIONREC_HOME/features, shared with `actionrec train`)

    def check(self) -> None:
        if self.host not in LOOPBACK_NAMES and not self.token:
            raise ActionrecError(f"--host {self.host} makes the server reachable from other machines: give a --token "
                                 "too (requests without it get 401), or keep the default 127.0.0.1")
        for name in ("max_upload_mb", "upload_quota_mb", "max_body_kb", "header_timeout", "body_timeout", "retention_days"):
            if not getattr(self, name) > 0:  # also refuses nan
                raise ActionrecError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if self.max_connections < 2:
            raise ActionrecError(f"--max-connections must be at least 2, not {self.max_connections}")
        if self.token is not None and not TOKEN.fullmatch(self.token):
            raise ActionrecError("--token: use printable ASCII characters without spaces, quotes, ';', ',' "
                                 "or '\\' (or --token random)")
        if self.workers < 1:
            raise ActionrecError(f"--workers must be at least 1, not {self.workers}")
