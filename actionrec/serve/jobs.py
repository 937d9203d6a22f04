"""Jobs: a record per video (or censoring, or training) kept on disk, queued and run a bounded number at a time.

A job's folder ``<state>/jobs/<id>/`` holds ``job.json`` (its record), ``result.json`` (the same JSON as the CLI's
``--json``), ``windows.npz`` (a long video's per-window probabilities) and ``files/`` (downloads); everything is
written atomically, so a restarted server shows every finished job as it was. A job that was queued or running
when the server stopped is marked ``interrupted``.

:class:`Runner` runs at most ``workers`` jobs at once, each in one worker thread of a limiter of that size (the
engine adds its own decode thread per running job); waiting jobs are coroutines, not threads, and at most
``max_queued`` wait. Cancelling a waiting job removes it; a running one stops at its next progress report.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..errors import ActionrecError
from ..files import write_json

ACTIVE = ("queued", "running")
LOG_LINES = 200  # lines of a job's log kept (training prints one per epoch)


class Cancelled(Exception):
    """Raised inside a job's work when it was cancelled."""


class QueueFull(ActionrecError):
    """More jobs are waiting than the server takes (HTTP 503)."""


@dataclass
class Job:
    """What the page shows of a job; ``source`` (the video's path on this machine) is never sent. The worker thread
    replaces its lists and dicts rather than changing them, so a request reading the job never sees one mid-change."""

    id: str
    kind: str  # "analyse", "censor" or "train"
    name: str  # what the page calls it: the file's name, the run's name
    model: str = ""
    labels: list[str] | None = None  # classes asked for (None: all of the model's)
    mode: str = "auto"  # analyse: "auto", "clip" or "timeline"
    view: str = ""  # the result's kind: "clip", "timeline", "censor" or "train"
    status: str = "queued"  # queued, running, done, failed, cancelled, interrupted
    progress: float = 0.0
    message: str = ""
    error: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None
    source: str = ""
    upload: str | None = None  # upload id, when the video was uploaded
    parent: str | None = None  # the analysed job a censoring job works on
    params: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # download kind -> file name in files/
    top: list[dict] = field(default_factory=list)  # the whole video's top 5
    log: list[str] = field(default_factory=list)

    def public(self) -> dict:
        out = asdict(self)
        out.pop("source")
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Context:
    """What a job's work reports through; every report checks for cancellation."""

    def __init__(self, job: Job, folder: Path, cancel: threading.Event):
        self.job, self.folder, self._cancel = job, folder, cancel

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def progress(self, fraction: float, message: str | None = None) -> None:
        self.check()
        self.job.progress = float(min(max(fraction, 0.0), 1.0))
        if message is not None:
            self.job.message = message

    def log(self, line: str) -> None:
        self.check()
        self.job.log = (self.job.log + [line])[-LOG_LINES:]
        self.job.message = line


Work = Callable[[Job, Context], None]


class JobStore:
    """Jobs in memory, each saved to ``<folder>/<id>/job.json`` when its state changes."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self._load()

    def _load(self) -> None:
        for path in sorted(self.folder.glob("*/job.json")):
            try:
                job = Job.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue  # a job folder being removed, or not ours
            if job.status in ACTIVE:
                job.status, job.error = "interrupted", "the server stopped before this job finished; run it again"
                job.finished = job.finished or time.time()
                self.save(job)
            self.jobs[job.id] = job

    def new(self, kind: str, name: str, **values: Any) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], kind=kind, name=name, **values)
        self.jobs[job.id] = job
        self.save(job)
        return job

    def dir(self, job: Job) -> Path:
        return self.folder / job.id

    def save(self, job: Job) -> None:
        write_json(self.dir(job) / "job.json", asdict(job))

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def listing(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)

    def expired(self, older_than_s: float, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        return [j for j in self.jobs.values() if j.status not in ACTIVE and now - (j.finished or j.created) > older_than_s]

    def remove(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        shutil.rmtree(self.dir(job), ignore_errors=True)


class Runner:
    """Runs jobs' work at most `workers` at a time (see the module doc)."""

    def __init__(self, store: JobStore, work: Work, workers: int = 1, max_queued: int = 100,
                 public: Callable[[str, Job], str] = lambda text, job: text):
        if workers < 1:
            raise ActionrecError(f"--workers must be at least 1, not {workers}")
        self.store, self.work, self.workers, self.max_queued = store, work, workers, max_queued
        self.public = public  # an error's text as the page may show it (no server paths)
        self._cancel: dict[str, threading.Event] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._limiter: anyio.CapacityLimiter | None = None
        self.running = 0
        self._count = threading.Lock()
        self.most_running = 0  # the most jobs that ran at once (tests check the bound)

    def check_room(self) -> None:
        """QueueFull when `max_queued` jobs wait already (check before making the job's record)."""
        waiting = sum(1 for j in self.store.jobs.values() if j.status == "queued" and j.id in self._tasks)
        if waiting >= self.max_queued:
            raise QueueFull(f"{waiting} jobs are waiting already; try again when some have finished")

    def submit(self, job: Job) -> None:
        """Queue `job` (call from the event loop, after :meth:`check_room`)."""
        self._cancel[job.id] = threading.Event()
        self._tasks[job.id] = asyncio.get_running_loop().create_task(self._run(job))

    def cancel(self, job: Job) -> None:
        event = self._cancel.get(job.id)
        if job.status not in ACTIVE or event is None:
            raise ActionrecError(f"job {job.id} is {job.status}; only queued or running jobs can be cancelled")
        event.set()
        if job.status == "queued":
            self._finish(job, "cancelled", "")

    def cancel_all(self) -> None:
        for event in self._cancel.values():
            event.set()

    async def _run(self, job: Job) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.workers)
        try:  # the limiter lets waiting jobs in first come, first served
            await anyio.to_thread.run_sync(self._work, job, limiter=self._limiter)
        finally:
            self._tasks.pop(job.id, None)
            self._cancel.pop(job.id, None)

    def _work(self, job: Job) -> None:
        """In a worker thread: the job's work, its end state saved whatever happens."""
        cancel = self._cancel[job.id]
        if cancel.is_set():
            return
        job.status, job.message = "running", "starting"
        self.store.save(job)
        with self._count:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.work(job, Context(job, self.store.dir(job), cancel))
            self._finish(job, "done", "")
        except Cancelled:
            self._finish(job, "cancelled", "")
        except ActionrecError as err:
            self._finish(job, "failed", self.public(str(err), job))
        except Exception as err:  # a job's failure must not take the server down; the page shows it
            self._finish(job, "failed", self.public(f"{type(err).__name__}: {err}", job))
        finally:
            with self._count:
                self.running -= 1

    def _finish(self, job: Job, status: str, error: str) -> None:
        job.status, job.error, job.finished = status, error, time.time()
        if status == "done":
            job.progress, job.message = 1.0, "done"
        self.store.save(job)
