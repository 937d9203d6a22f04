"""`actionrec serve`'s options, declared once (the CLI's defaults come from here); imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ActionrecError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


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
    max_upload_mb: float = 2048
    workers: int = 1  # jobs run at once
    max_queued: int = 100  # jobs waiting at most
    retention_days: float = 7.0
    features: Path | None = None  # training's feature cache (None: $ACTIONREC_HOME/features, shared with `actionrec train`)

    def check(self) -> None:
        if self.host not in LOOPBACK_NAMES and not self.token:
            raise ActionrecError(f"--host {self.host} makes the server reachable from other machines: give a --token "
                                 "too (requests without it get 401), or keep the default 127.0.0.1")
        if self.max_upload_mb <= 0 or self.retention_days <= 0:
            raise ActionrecError("--max-upload-mb and --retention-days must be positive")
        if self.workers < 1:
            raise ActionrecError(f"--workers must be at least 1, not {self.workers}")
