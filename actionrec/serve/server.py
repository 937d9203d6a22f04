"""What every route shares: :class:`Server` (settings, the data root and its datasets, uploads, jobs and their runner,
the models)."""

from __future__ import annotations

import contextlib
import os
import re
from collections import deque
from pathlib import Path

from torch import nn

from ..errors import ActionrecError
from .datasets import Datasets
from .jobs import Job, JobStore, Runner
from .models import Models
from .settings import Settings
from .storage import DataRoot, Uploads, sweep
from .work import Workshop


class Server:
    """Everything the routes share."""

    def __init__(self, settings: Settings, preloaded: dict[str, nn.Module] | None = None):
        settings.check()
        self.settings = settings
        self.data = DataRoot(settings.data_root)
        self.datasets = Datasets(self.data)
        self.uploads = Uploads(settings.state / "uploads", int(settings.max_upload_mb * 1e6), int(settings.upload_quota_mb * 1e6))
        self.store = JobStore(settings.state / "jobs")
        self.models = Models(settings.models, Path(settings.runs), preloaded)
        self.cache = settings.state / "cache"
        workshop = Workshop(self.models, self.store, self.cache, self.data, settings.features, self.public, self.datasets)
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
