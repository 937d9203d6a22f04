"""The REST API under /api: uploads, jobs and what derives from a job's stored probabilities, models, the data root's
files, and runs. Blocking work runs in the request thread pool (plain ``def`` routes) or in a job, never in the event
loop, so the page stays responsive while jobs run."""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, StringConstraints
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from .. import __version__
from ..apps.calibration import resolve_labels
from ..apps.categories import CATEGORY, load_groups
from ..data.video import VideoError, probe, thumbnail_jpeg
from ..errors import ActionrecError
from ..training.report import compare_table, load_metrics, macro_f1
from ..training.trainer import TrainConfig
from .jobs import ACTIVE, Job
from .models import find_run, run_folders
from .results import DOWNLOADS, load_windows, relabel, windows_payload, flagged, write_download
from .storage import NotFound, safe_name
from .work import dataset_under_root, run_name

if TYPE_CHECKING:
    from .server import Server

THUMB_WIDTH = 160
MAX_ITEMS = 1000  # the most labels or classes one request may name (Kinetics has 400, Sports-1M 487)
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PathText = Annotated[str, StringConstraints(max_length=1000)]
Names = Annotated[list[Name], Field(min_length=1, max_length=MAX_ITEMS)]
GroupText = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]  # all 400 Kinetics classes fit
log = logging.getLogger("actionrec.serve")


class JobRequest(BaseModel):
    """A video to analyse: an upload's id or a path under the data root."""

    upload: Annotated[str, StringConstraints(max_length=32)] | None = None
    path: PathText | None = None
    model: Name | None = Field(None, description="a name from GET /api/models (default: the first)")
    labels: Names | None = Field(None, description="classes to report (default: all of the model's)")
    mode: Literal["auto", "clip", "timeline"] = "auto"
    group_by: Literal["category"] | None = Field(None, description="report groups of classes: 'category' (the "
                                                 "published Kinetics-400 parent categories; Kinetics-400 models only)")
    groups: Annotated[list[GroupText], Field(min_length=1, max_length=MAX_ITEMS)] | None = Field(
        None, description="groups of your own, each 'NAME=label,label' (as `--group`); `labels` then name groups")


class FlagRequest(BaseModel):
    labels: Names
    threshold: float | None = Field(None, ge=0, le=1, description="default: the job's thresholds")


class CensorRequest(FlagRequest):
    style: Literal["black", "blur"] = "black"


class TrainRequest(BaseModel):
    data: PathText = Field(description="a dataset folder (or CSV manifest) under the data root")
    name: Name = Field(description="the run's folder name under --runs")
    classes: Names | None = None
    epochs: int = Field(TrainConfig.epochs, ge=1, le=1000)
    finetune_epochs: int = Field(TrainConfig.finetune_epochs, ge=0, le=1000)


def train_defaults() -> dict:
    """The training form's starting values: the library's own defaults (TrainConfig), declared there once."""
    return {"epochs": TrainConfig.epochs, "finetune_epochs": TrainConfig.finetune_epochs}


def router(server: Server) -> APIRouter:
    api = APIRouter()
    _general(api, server)
    _jobs(api, server)
    _job_views(api, server)
    _runs(api, server)
    return api


def _job(server: Server, job_id: str, view: str | None = None) -> Job:
    job = server.store.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}; it may have been removed after the retention time")
    if view is not None and (job.status != "done" or job.view != view):
        raise HTTPException(409, f"job {job_id} has no {view} result (it is {job.status}, {job.view or 'not yet analysed'})")
    return job


def _general(api: APIRouter, server: Server) -> None:
    @api.get("/info", summary="Version and limits")
    def info() -> dict:
        s = server.settings
        return {"version": __version__, "data_root": s.data_root is not None, "max_upload_mb": s.max_upload_mb,
                "upload_quota_mb": s.upload_quota_mb, "max_body_kb": s.max_body_kb, "workers": s.workers,
                "retention_days": s.retention_days, "train_defaults": train_defaults()}

    @api.get("/models", summary="Pretrained models and trained runs to choose from")
    def models() -> dict:
        return {"models": server.models.choices()}

    @api.get("/models/{name}/classes", summary="A model's classes and, for Kinetics-400, its published categories")
    def classes(name: str) -> dict:
        categories = server.models.get(name).info.categories
        return {"classes": list(categories), "categories": category_names(categories)}

    @api.get("/files", summary="Folders and videos under the data root")
    def files(path: str = "") -> dict:
        return {"path": path, "entries": [e.to_dict() for e in server.data.listing(path)]}

    @api.post("/uploads", summary="Upload a video: the request body is the file, streamed to disk",
              openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                  "schema": {"type": "string", "format": "binary"}}}}})
    async def upload(request: Request, filename: str = Query(description="the file's name, e.g. match.mp4")) -> dict:
        announced = request.headers.get("content-length")
        server.uploads.check_size(int(announced) if announced and announced.isdigit() else None)
        try:
            path = await server.uploads.save(filename, request.stream())
        except ClientDisconnect:
            log.warning("an upload of %s stopped: the client went away (nothing was kept)", safe_name(filename))
            return Response(status_code=400)
        try:
            meta = await anyio.to_thread.run_sync(probe, path)
        except ActionrecError as err:
            server.uploads.remove(path)
            message = str(err).replace(str(path), path.name)
            raise HTTPException(422, f"{message if path.name in message else f'{path.name}: {message}'}") from None
        return {"upload": path.parent.name, "name": path.name, "size": path.stat().st_size,
                "duration": round(meta.num_frames / meta.fps, 3)}


def _jobs(api: APIRouter, server: Server) -> None:
    @api.post("/jobs", summary="Analyse a video (an upload or a path under the data root)", status_code=201)
    async def create(req: JobRequest) -> dict:
        if (req.upload is None) == (req.path is None):
            raise HTTPException(422, "give either upload (an id from POST /api/uploads) or path (under the data root)")
        source = server.uploads.find(req.upload) if req.upload else server.data.video(req.path or "")
        model = req.model or server.models.choices()[0]["name"]
        grouping = {"group_by": req.group_by, "groups": req.groups} if req.group_by or req.groups else {}
        labels = await anyio.to_thread.run_sync(checked_labels, model, req.labels, grouping)
        job = server.start("analyse", source.name, model=model, labels=labels, mode=req.mode, source=str(source),
                           upload=req.upload, params=grouping)
        return job.public()

    def checked_labels(model: str, labels: list[str] | None, grouping: dict) -> list[str] | None:
        """The model's (or its groups') spelling of `labels` (None: all); a 404 for an unknown model, a 400 for an
        unknown label or groups the model's classes do not allow (:func:`load_groups`, as the job will call it)."""
        categories = server.models.get(model).info.categories
        groups = load_groups(categories, grouping.get("group_by"), grouping.get("groups") or ())
        return None if labels is None else list(resolve_labels(labels, groups.names if groups else categories))

    @api.get("/jobs", summary="All jobs, newest first")
    def listing() -> dict:
        return {"jobs": [j.public() for j in server.store.listing()]}

    @api.get("/jobs/{job_id}", summary="A job's state, progress and (when done) its result")
    def one(job_id: str) -> dict:
        job = _job(server, job_id)
        out = job.public()
        result = server.store.dir(job) / "result.json"
        out["result"] = json.loads(result.read_text(encoding="utf-8")) if job.status == "done" and result.is_file() else None
        return out

    @api.get("/jobs/{job_id}/result", summary="The result: the same JSON as the CLI's --json output")
    def result(job_id: str) -> FileResponse:
        job = _job(server, job_id)
        path = server.store.dir(job) / "result.json"
        if job.status != "done" or not path.is_file():
            raise HTTPException(409, f"job {job_id} is {job.status}: no result yet")
        return FileResponse(path, media_type="application/json")

    @api.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
    def cancel(job_id: str) -> dict:
        job = _job(server, job_id)
        server.runner.cancel(job)
        return job.public()

    @api.delete("/jobs/{job_id}", summary="Remove a finished job and its files")
    def remove(job_id: str) -> dict:
        job = _job(server, job_id)
        if job.status in ACTIVE:
            raise HTTPException(409, f"job {job_id} is {job.status}; cancel it first")
        needs = [j for j in server.store.jobs.values() if j.parent == job.id and j.status in ACTIVE]
        if needs:
            raise HTTPException(409, f"job {job_id} is needed by job {needs[0].id} ({needs[0].name}, {needs[0].status}); "
                                     "wait for it or cancel it first")
        server.store.remove(job)
        if job.upload and not any(j.upload == job.upload for j in server.store.jobs.values()):
            server.uploads.remove(Path(job.source))
        return {"removed": job_id}

    @api.post("/train", summary="Train a run on a dataset under the data root", status_code=201)
    async def train(req: TrainRequest) -> dict:
        source = server.data.resolve(req.data)
        name = run_name(req.name)
        taken = any(p.name == name for p in run_folders(server.models.runs_dir)) or (server.models.runs_dir / name).exists()
        if taken or any(j.kind == "train" and j.name == name and j.status in ACTIVE for j in server.store.jobs.values()):
            raise HTTPException(409, f"a run called {name} exists or is being trained; choose another name")
        await anyio.to_thread.run_sync(dataset_under_root, server.data, source, req.classes)
        job = server.start("train", name, view="train", source=str(source), model=name,
                           params={"classes": req.classes, "epochs": req.epochs, "finetune_epochs": req.finetune_epochs})
        return job.public()


def _job_views(api: APIRouter, server: Server) -> None:
    def timeline_of(job: Job, threshold: float | None):
        wp = load_windows(server.store.dir(job) / "windows.npz")
        p = job.params
        tl = relabel(wp, p["labels"], p["thresholds"], p["threshold_source"], threshold)
        tl.video = job.name
        return wp, tl

    @api.get("/jobs/{job_id}/windows", summary="A long video's per-window probabilities, for relabelling in the page")
    def windows(job_id: str) -> dict:
        wp, tl = timeline_of(_job(server, job_id, "timeline"), None)
        return windows_payload(wp, tl)

    @api.get("/jobs/{job_id}/timeline", summary="The timeline relabelled at a threshold (as `actionrec timeline --json`)")
    def timeline(job_id: str, threshold: float | None = Query(None, ge=0, le=1)) -> dict:
        return timeline_of(_job(server, job_id, "timeline"), threshold)[1].to_dict()

    @api.get("/jobs/{job_id}/download/{kind}", summary=f"The timeline as a file: {', '.join(DOWNLOADS)}")
    def download(job_id: str, kind: str, threshold: float | None = Query(None, ge=0, le=1)) -> FileResponse:
        """A file made at exactly `threshold`: kept for a threshold on the slider's 0.001 grid, else made for this
        answer only (so a file is never served for a nearby threshold, and their number stays bounded)."""
        job = _job(server, job_id, "timeline")
        if kind not in DOWNLOADS:
            raise NotFound(f"no download {kind!r}; choose one of {', '.join(DOWNLOADS)}")
        folder, cleanup = server.store.dir(job) / "files", None
        if threshold is not None and round(threshold, 3) == threshold:
            folder = folder / f"at-{threshold:.3f}"
        elif threshold is not None:
            folder = Path(tempfile.mkdtemp(prefix="download-", dir=server.store.dir(job)))
            cleanup = BackgroundTask(shutil.rmtree, folder, ignore_errors=True)
        stem = Path(safe_name(job.name)).stem
        path = folder / f"{stem}.{DOWNLOADS[kind]}"
        if not path.is_file():
            path = write_download(timeline_of(job, threshold)[1], kind, folder, stem)
        return FileResponse(path, filename=path.name, background=cleanup)

    @api.post("/jobs/{job_id}/flag", summary="The ranges `actionrec flag` finds for some of the job's classes")
    def flag(job_id: str, req: FlagRequest) -> dict:
        job = _job(server, job_id, "timeline")
        wp = load_windows(server.store.dir(job) / "windows.npz")
        return {"ranges": flagged(wp, req.labels, job.params["thresholds"], req.threshold)}

    @api.post("/jobs/{job_id}/censor", summary="Write a copy with the flagged ranges blacked out (a new job)", status_code=201)
    async def censor(job_id: str, req: CensorRequest) -> dict:
        parent = _job(server, job_id, "timeline")
        flagged(load_windows(server.store.dir(parent) / "windows.npz"), req.labels, parent.params["thresholds"], req.threshold)
        job = server.start("censor", f"{parent.name} (censored)", view="censor", parent=parent.id, model=parent.model,
                           params={"labels": req.labels, "threshold": req.threshold, "style": req.style})
        return job.public()

    @api.get("/jobs/{job_id}/video", summary="The job's video (the censored copy for a censoring job)")
    def video(job_id: str) -> FileResponse:
        job = _job(server, job_id)
        if job.kind == "censor":
            if "video" not in job.files:
                raise HTTPException(409, f"job {job_id} is {job.status}: no censored copy yet")
            return FileResponse(server.store.dir(job) / "files" / job.files["video"], filename=job.files["video"])
        if job.kind != "analyse" or not Path(job.source).is_file():
            raise NotFound(f"job {job_id} has no video (removed after the retention time?)")
        return FileResponse(job.source, media_type=video_type(job.name), content_disposition_type="inline", filename=job.name)

    @api.get("/jobs/{job_id}/thumbnail", summary="A JPEG of the frame at t seconds")
    def thumbnail(job_id: str, t: float = Query(0.0, ge=0)) -> Response:
        job = _job(server, job_id)
        return Response(_frame_jpeg(job.source, t), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


def category_names(classes: tuple[str, ...]) -> list[str] | None:
    """The names `group_by: "category"` reports for a model with these classes (the page's "group by" choice), or
    None where the published categories do not apply (a model whose classes are not Kinetics-400's)."""
    try:
        return list(load_groups(classes, CATEGORY).names)
    except ActionrecError:
        return None


def video_type(name: str) -> str:
    """A video file's media type (the system's table calls .ts a Qt translation file)."""
    ext = os.path.splitext(name)[1].lower()
    guess = mimetypes.guess_type(name)[0] or ""
    return "video/mp2t" if ext in (".ts", ".mts", ".m2ts") else guess if guess.startswith("video/") else "application/octet-stream"


def _frame_jpeg(video: str, t: float) -> bytes:
    try:
        return thumbnail_jpeg(video, t, THUMB_WIDTH)
    except VideoError as err:
        raise NotFound(str(err)) from None


def _runs(api: APIRouter, server: Server) -> None:
    runs_dir = server.models.runs_dir

    @api.get("/runs", summary="The trained runs under --runs with their headline metrics")
    def runs() -> dict:
        out = []
        for path in run_folders(runs_dir):
            try:
                m = load_metrics(path)
            except ActionrecError as err:
                out.append({"name": path.name, "error": str(err)})
                continue
            per_class = m.get("per_class") or {}
            out.append({"name": path.name, "classes": m.get("classes"), "test_accuracy": m.get("test_accuracy"),
                        "macro_f1": macro_f1(per_class) if per_class else None, "report": (path / "report.html").is_file()})
        return {"runs": out}

    @api.get("/runs/{name}/report", summary="A run's report.html")
    def report(name: str) -> FileResponse:
        path = find_run(runs_dir, name) / "report.html"
        if not path.is_file():
            raise NotFound(f"run {name} has no report.html; write it with `actionrec train`")
        return FileResponse(path, media_type="text/html")

    @api.get("/compare", summary="Runs side by side (the `actionrec compare` table)")
    def compare(runs: list[Name] = Query(description="two or more run names", max_length=MAX_ITEMS)) -> dict:
        folders = [find_run(runs_dir, r) for r in runs]
        table = compare_table(folders)
        for folder in folders:  # each column named by its run, the alignment kept (the columns are right-aligned)
            prefix = str(folder.parent) + os.sep
            table = table.replace(prefix, " " * len(prefix))
        return {"table": table}
