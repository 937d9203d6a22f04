"""The Label view's REST API under ``/api/datasets``: datasets under the data root, their videos (uploaded or picked),
segments (each edit one operation on labels.csv as it is now: :class:`~actionrec.data.labels.LabelStore`; an edit of
a segment that is no longer there is 409), the fully-labelled mark, training rounds and the review (the model's
timelines and suggestions). Every route passes through the app's Guard like the others; bodies are the capped models
below; every path stays inside the data root (:class:`.datasets.Datasets`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, StringConstraints

from ..data.labels import LABELS_FILE, LabelSegment
from ..training.trainer import TrainConfig
from .jobs import ACTIVE
from .models import RUN_PREFIX, find_run
from .routes import Name, PathText, video_type
from .storage import NotFound
from .work import dataset_under_root

if TYPE_CHECKING:
    from .server import Server

Seconds = Annotated[float, Field(ge=0, le=1e6)]


class DatasetRequest(BaseModel):
    name: Name = Field(description="the dataset's folder name under the data root")


class VideoRequest(BaseModel):
    """A video for the dataset: an upload's id (moved into FOLDER/videos/) or a path under the data root."""

    upload: Annotated[str, StringConstraints(max_length=32)] | None = None
    path: PathText | None = None


class SegmentBody(BaseModel):
    video: PathText = Field(description="the video, relative to the dataset's folder")
    label: Name
    start: Seconds
    end: Seconds

    def segment(self) -> LabelSegment:
        return LabelSegment(self.video, self.label, self.start, self.end)


class AddRequest(SegmentBody):
    overwrite: bool = Field(False, description="cut away the parts of other segments it covers (accepting or "
                                               "correcting a suggestion)")


class ReplaceRequest(BaseModel):
    old: SegmentBody
    new: SegmentBody


class MarkRequest(BaseModel):
    video: PathText
    fully: bool = Field(True, description="true: its time outside every segment is 'none'; false: unknown")


class RoundRequest(BaseModel):
    epochs: int = Field(TrainConfig.epochs, ge=1, le=1000)
    finetune_epochs: int = Field(TrainConfig.finetune_epochs, ge=0, le=1000)


class ReviewRequest(BaseModel):
    run: Name | None = Field(None, description="a run under --runs (default: the latest round's)")


def router(server: Server) -> APIRouter:
    api = APIRouter()
    _datasets(api, server)
    _segments(api, server)
    _rounds(api, server)
    return api


def _datasets(api: APIRouter, server: Server) -> None:
    datasets = server.datasets

    @api.get("/datasets", summary="The Label view's datasets (folders under the data root holding labels.csv)")
    def listing() -> dict:
        return {"datasets": [datasets.summary(n) for n in datasets.names()]}

    @api.post("/datasets", summary="Create a dataset: a folder under the data root with an empty labels.csv", status_code=201)
    def create(req: DatasetRequest) -> dict:
        datasets.create(req.name)
        return datasets.summary(req.name)

    @api.get("/datasets/{name}", summary="A dataset: its videos, segments, fully labelled videos, labels and rounds")
    def one(name: str) -> dict:
        store = datasets.store(name)
        return {"name": name, "manifest": f"{name}/{LABELS_FILE}", "videos": datasets.videos(name),
                "segments": [s.to_dict() for s in store.segments()], "fully_labelled": store.fully_labelled(),
                "labels": store.labels(), "rounds": datasets.rounds(name)}

    @api.post("/datasets/{name}/videos", summary="Add a video: an upload (moved into the dataset) or a path under the "
                                                "data root", status_code=201)
    def add_video(name: str, req: VideoRequest) -> dict:
        if (req.upload is None) == (req.path is None):
            raise HTTPException(422, "give either upload (an id from POST /api/uploads) or path (under the data root)")
        if req.upload:
            upload = server.uploads.find(req.upload)
            if any(j.upload == req.upload for j in server.store.jobs.values()):
                raise HTTPException(409, f"upload {req.upload} is used by a job; upload the video again for the dataset")
            video = datasets.add_upload(name, upload)
            server.uploads.remove(upload)
        else:
            video = datasets.add_picked(name, req.path or "")
        return {"video": video, "videos": datasets.videos(name)}

    @api.get("/datasets/{name}/video", summary="A video of the dataset, for the player")
    def video(name: str, path: str = Query(max_length=1000, description="relative to the dataset's folder")) -> FileResponse:
        file = datasets.video_path(name, path)
        return FileResponse(file, media_type=video_type(file.name), content_disposition_type="inline", filename=file.name)


def _segments(api: APIRouter, server: Server) -> None:
    datasets = server.datasets

    def checked(name: str, body: SegmentBody) -> LabelSegment:
        datasets.video_path(name, body.video)  # inside the root, no link, a video
        return body.segment()

    @api.post("/datasets/{name}/segments", summary="Add a segment (overwrite: over whatever was there)", status_code=201)
    def add(name: str, req: AddRequest) -> dict:
        store, segment = datasets.store(name), checked(name, req)
        return (store.overwrite(segment) if req.overwrite else store.add(segment)).to_dict()

    @api.put("/datasets/{name}/segments", summary="Replace a segment (moved edges, another label); 409 when it is "
                                                   "no longer there")
    def replace(name: str, req: ReplaceRequest) -> dict:
        store = datasets.store(name)
        return store.replace(req.old.segment(), checked(name, req.new)).to_dict()

    @api.delete("/datasets/{name}/segments", summary="Remove a segment; 409 when it is no longer there")
    def remove(name: str, video: str = Query(max_length=1000), label: str = Query(max_length=200),
               start: float = Query(ge=0, le=1e6), end: float = Query(ge=0, le=1e6)) -> dict:
        segment = LabelSegment(video, label, start, end)
        datasets.store(name).remove(segment)
        return {"removed": segment.to_dict()}

    @api.put("/datasets/{name}/fully-labelled", summary="Mark a video fully labelled (its unlabelled time is 'none'), "
                                                        "or take the mark away")
    def mark(name: str, req: MarkRequest) -> dict:
        datasets.video_path(name, req.video)
        store = datasets.store(name)
        store.mark_fully_labelled(req.video, req.fully)
        return {"fully_labelled": store.fully_labelled()}


def _rounds(api: APIRouter, server: Server) -> None:
    datasets = server.datasets
    runs_dir = server.models.runs_dir

    def taken(run: str) -> bool:
        return (runs_dir / run).exists() or any(j.kind == "train" and j.name == run and j.status in ACTIVE
                                                for j in server.store.jobs.values())

    @api.post("/datasets/{name}/train", summary="Train a round on the dataset's labels.csv, then review it (a job)",
              status_code=201)
    async def train(name: str, req: RoundRequest) -> dict:
        folder = datasets.folder(name)
        busy = [j for j in server.store.jobs.values() if j.params.get("dataset") == name and j.status in ACTIVE]
        if busy:
            raise HTTPException(409, f"dataset {name} is being trained or reviewed already (job {busy[0].id}); wait for it")
        await anyio.to_thread.run_sync(dataset_under_root, server.data, folder / LABELS_FILE, None)
        run = datasets.next_run_name(name, taken)
        job = server.start("train", run, view="train", source=str(folder / LABELS_FILE), model=run,
                           params={"dataset": name, "epochs": req.epochs, "finetune_epochs": req.finetune_epochs})
        return job.public()

    @api.post("/datasets/{name}/review", summary="Run a model over the dataset's videos: timelines and suggestions (a job)",
              status_code=201)
    async def review(name: str, req: ReviewRequest) -> dict:
        folder = datasets.folder(name)
        rounds = datasets.rounds(name)
        run = req.run or (rounds[-1]["run"] if rounds else None)
        if run is None:
            raise NotFound(f"dataset {name} has no trained round yet; train it first")
        find_run(runs_dir, run)
        job = server.start("review", f"{name} review", view="review", source=str(folder / LABELS_FILE),
                           model=RUN_PREFIX + run, params={"dataset": name})
        return job.public()

    @api.get("/datasets/{name}/review", summary="The latest finished review of the dataset (its job's result)")
    def latest(name: str) -> dict:
        datasets.folder(name)
        done = [j for j in server.store.listing() if j.params.get("dataset") == name and j.view == "review"
                and j.status == "done"]
        for job in done:
            path = server.store.dir(job) / "result.json"
            if path.is_file():
                return {"job": job.id, **json.loads(path.read_text(encoding="utf-8"))}
        raise NotFound(f"dataset {name} has no review yet; train it (or review a run)")

