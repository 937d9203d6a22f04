"""What a job does, in its worker thread, through the package's public functions (the engine runs every forward):

* ``analyse``: a short clip gets the top 5 (``actionrec predict --json``); a long one (at least
  :data:`LONG_VIDEO_WINDOWS` of the model's windows) gets the timeline (``actionrec timeline --json``), its
  per-window probabilities kept for relabelling, and its downloads; by group when the job's ``params`` name
  ``group_by``/``groups`` (``--group-by``/``--group``, through :func:`~actionrec.apps.categories.load_groups`);
* ``censor``: the ranges ``actionrec flag`` finds in an analysed job, blacked out in a copy;
* ``train``: ``actionrec train`` on a dataset folder under the data root, into a run under ``--runs``; every video
  the dataset names must lie under the data root and reach it through no symbolic link (:func:`dataset_under_root`).
  A Label view dataset's training (``params["dataset"]``) records the round (:meth:`.Datasets.add_round`) and then
  reviews it;
* ``review``: a model (the round's run) over every video of a Label view dataset: each one's timeline beside its
  labels, and the suggestions of :func:`~actionrec.apps.suggest.suggest` (where it disagrees, where it is least sure).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..apps.calibration import resolve_labels
from ..apps.categories import Groups, load_groups
from ..apps.flag import censor_video, flag_ranges
from ..apps.predict import predict_iter
from ..apps.suggest import suggest
from ..apps.timeline import DOWNLOADS
from ..apps.timeline import timeline as timeline_of
from ..apps.windows import save_window_probs, window_frames
from ..data.datasets import Sample, load_dataset, make_splits
from ..data.labels import LabelSegment, LabelStore
from ..data.video import probe
from ..errors import ActionrecError
from ..files import write_json
from ..training.report import summary_text
from ..training.trainer import TrainConfig, train
from .datasets import Datasets
from .jobs import Context, Job, JobStore
from .models import RUN_PREFIX, Models
from .results import load_windows, thresholds_at, write_download
from .storage import DataRoot, safe_name

LONG_VIDEO_WINDOWS = 3  # a video this many windows long or longer gets a timeline, a shorter one the top 5
TOP = 5
TRAIN_SHARE = 0.7  # of a Label view dataset's progress bar: training, then the review
SUGGESTIONS = 10  # suggestions a review lists


@dataclass
class Workshop:
    """Runs a job's work (see the module doc); `cache`: the per-window probabilities' cache folder; `data`: the data
    root training reads from; `features`: training's feature cache; `public`: a text as the page may show it."""

    models: Models
    store: JobStore
    cache: Path
    data: DataRoot
    features: Path | None = None
    public: Callable[[str], str] = lambda text: text

    datasets: Datasets | None = None  # the Label view's datasets (default: those of `data`)

    def __post_init__(self) -> None:
        if self.datasets is None:
            self.datasets = Datasets(self.data)

    def __call__(self, job: Job, ctx: Context) -> None:
        {"analyse": self.analyse, "censor": self.censor, "train": self.train, "review": self.review}[job.kind](job, ctx)

    # ------------------------------------------------------------------------------------------ analyse

    def analyse(self, job: Job, ctx: Context) -> None:
        ctx.progress(0.0, f"loading {job.model}")
        model = self.models.get(job.model)
        info = model.info
        groups = load_groups(info.categories, job.params.get("group_by"), job.params.get("groups") or ())
        labels = list(resolve_labels(job.labels, groups.names if groups else info.categories))
        ctx.progress(0.0, "reading the video")
        meta = probe(job.source)
        window, _ = window_frames(info, None, meta.fps)
        long = meta.num_frames / meta.fps >= LONG_VIDEO_WINDOWS * window
        job.view = "timeline" if job.mode == "timeline" or (job.mode == "auto" and long) else "clip"
        if job.view == "clip":
            self._clip(job, ctx, model, labels, groups)
        else:
            self._timeline(job, ctx, model, labels, groups)

    def _clip(self, job: Job, ctx: Context, model, labels: list[str], groups: Groups | None) -> None:
        ctx.progress(0.1, "classifying")
        errors: list[str] = []
        preds = list(predict_iter([job.source], model, on_error=lambda video, message: errors.append(message)))
        if errors:
            raise ActionrecError(errors[0].replace(job.source, job.name))
        pred = groups.apply(preds[0]) if groups else preds[0]
        result = pred.to_dict(TOP)
        result["video"] = job.name
        if job.labels is not None:  # the classes asked for, ranked among themselves
            keep = [i for i, label in enumerate(pred.labels) if label in labels]
            order = sorted(keep, key=lambda i: -pred.probs[i])[:TOP]
            result["top"] = [{"label": pred.labels[i], "prob": float(pred.probs[i])} for i in order]
        job.top = result["top"]
        write_json(ctx.folder / "result.json", result)

    def _timeline(self, job: Job, ctx: Context, model, labels: list[str], groups: Groups | None) -> None:
        """The timeline (by group with `groups`: its stored windows are then the groups' probabilities, so the page's
        slider, flagging and downloads relabel groups; the cache keeps the model's own, shared by every grouping)."""
        timeline = timeline_of(job.source, model, labels=labels, cache=self.cache, groups=groups,
                               progress=lambda done, total: ctx.progress(done / max(total, 1), f"window {done} of {total}"))
        ctx.progress(1.0, "writing the timeline")
        wp = timeline.windows
        save_window_probs(ctx.folder / "windows.npz", wp)
        job.params = {**job.params, "labels": labels, "thresholds": timeline.thresholds,
                      "threshold_source": timeline.threshold_source}
        timeline.video = job.name
        mean = wp.probs.mean(0)
        job.top = [{"label": wp.categories[i], "prob": float(mean[i])} for i in np.argsort(-mean, kind="stable")[:TOP]]
        stem = Path(safe_name(job.name)).stem
        job.files = {kind: write_download(timeline, kind, ctx.folder / "files", stem).name for kind in DOWNLOADS}
        write_json(ctx.folder / "result.json", timeline.to_dict())

    # ------------------------------------------------------------------------------------------ censor

    def censor(self, job: Job, ctx: Context) -> None:
        parent = self.store.jobs.get(job.parent or "")
        if parent is None:
            raise ActionrecError(f"the analysed job {job.parent} was removed; analyse the video again")
        wp = load_windows(self.store.dir(parent) / "windows.npz")
        labels = job.params["labels"]
        thresholds, _ = thresholds_at(labels, parent.params["thresholds"], "", job.params.get("threshold"))
        ranges = flag_ranges(wp, labels, thresholds)
        ctx.progress(0.1, f"censoring {len(ranges)} ranges")
        ext = ".webm" if parent.source.lower().endswith(".webm") else ".mp4"
        out = ctx.folder / "files" / f"{Path(safe_name(parent.name)).stem}.censored{ext}"
        counts = censor_video(parent.source, ranges, out, style=job.params.get("style", "black"))
        job.files = {"video": out.name}
        write_json(ctx.folder / "result.json", {"video": parent.name, "ranges": [r.to_dict() for r in ranges], **counts})

    # ------------------------------------------------------------------------------------------ train

    def train(self, job: Job, ctx: Context) -> None:
        p = job.params
        config = TrainConfig(epochs=int(p.get("epochs", TrainConfig.epochs)),
                             finetune_epochs=int(p.get("finetune_epochs", TrainConfig.finetune_epochs)))
        total = config.epochs + config.finetune_epochs
        epochs_seen = [0]
        dataset = p.get("dataset")
        share = TRAIN_SHARE if dataset else 1.0  # of the progress bar: a dataset's review follows its training

        def say(line: str) -> None:
            if " epoch " in line:
                epochs_seen[0] += 1
                ctx.progress(share * epochs_seen[0] / max(total, 1))
            ctx.log(self.public(line))

        ctx.progress(0.0, "reading the dataset")
        samples = dataset_under_root(self.data, job.source, p.get("classes") or None, say=lambda line: ctx.log(self.public(line)))
        splits = make_splits(samples, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed)
        ctx.log(splits.summary().splitlines()[0])
        out = self.models.runs_dir / job.name
        metrics = train(splits, out, config, cache_root=self.features, say=say, progress=False)
        self.models.forget_run(job.name)
        job.files = {"report": "report.html"}
        result = {"run": job.name, "summary": self.public(summary_text(metrics)), "test_accuracy": metrics.get("test_accuracy")}
        if dataset:
            segments = len(LabelStore(Path(job.source).parent).segments())
            result["round"] = self.datasets.add_round(dataset, job.name, metrics, segments)
            write_json(ctx.folder / "result.json", result)  # the round is kept whatever the review does
            result["review"] = self._review(dataset, RUN_PREFIX + job.name, ctx, start=share)
            job.view = "review"
        write_json(ctx.folder / "result.json", result)

    # ------------------------------------------------------------------------------------------ review

    def review(self, job: Job, ctx: Context) -> None:
        result = {"run": job.model.removeprefix(RUN_PREFIX), "review": self._review(job.params["dataset"], job.model, ctx)}
        write_json(ctx.folder / "result.json", result)

    def _review(self, dataset: str, model_name: str, ctx: Context, start: float = 0.0) -> dict:
        """The model's timeline of each video of `dataset` and the suggestions over all of them (a video that cannot
        be read is skipped and named)."""
        model = self.models.get(model_name)
        store = self.datasets.store(dataset)
        videos, skipped = {}, []
        for rel in self.datasets.videos(dataset):
            try:
                videos[rel] = str(self.datasets.video_path(dataset, rel))
            except ActionrecError as err:
                skipped.append(self.public(str(err)))
        timelines = []
        for i, (rel, path) in enumerate(videos.items()):
            def step(done: int, total: int, i: int = i, rel: str = rel) -> None:
                ctx.progress(start + (1 - start) * (i + done / max(total, 1)) / len(videos), f"reviewing {rel}: window {done} of {total}")

            try:
                tl = timeline_of(path, model, cache=self.cache, progress=step)
            except ActionrecError as err:
                skipped.append(self.public(str(err)))
                continue
            timelines.append({**tl.to_dict(), "video": rel, "model": model_name, "labels": list(tl.labels)})
        readable = {v: videos[v] for v in (t["video"] for t in timelines)}
        by_path = {p: rel for rel, p in readable.items()} | {os.path.realpath(p): rel for rel, p in readable.items()}
        labelled = [LabelSegment(readable[s.video], s.label, s.start, s.end) for s in store.segments() if s.video in readable]
        found = suggest(model, list(readable.values()), labelled, top=SUGGESTIONS, cache=self.cache) if readable else []
        suggestions = [{**s.to_dict(), "video": by_path.get(s.video, by_path.get(os.path.realpath(s.video), s.video))}
                       for s in found]
        return {"run": model_name.removeprefix(RUN_PREFIX), "videos": timelines, "suggestions": suggestions, "skipped": skipped}


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")


def run_name(name: str) -> str:
    """A new run's folder name: letters, digits, spaces, ``._-`` (spaces and dots become ``_``), starting with a
    letter or digit, at most 100 characters; anything else is refused, never changed into another name."""
    if not RUN_NAME.fullmatch(name or ""):
        raise ActionrecError(f"run name {name!r}: use letters, digits, spaces, '-', '_' and '.', starting with a letter "
                             "or digit (at most 100 characters)")
    return name.replace(" ", "_").replace(".", "_")


def dataset_under_root(data: DataRoot, source: str | os.PathLike, classes: list[str] | None,
                       say: Callable[[str], None] = lambda line: None) -> list[Sample]:
    """The samples of the dataset at `source` (under the data root), refused when one of its videos is outside the
    root or is reached through a symbolic link (a manifest's row, a class folder that is a link)."""
    samples = load_dataset(source, classes=classes, say=say)
    data.check_samples(s.video for s in samples)
    return samples
