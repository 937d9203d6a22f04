"""Transfer learning on the user's classes: cached backbone features, a softmax head, then fine-tuning of the top.

With few examples (at most fewshot.FEWSHOT_UP_TO groups in some class, or ``--head-fit logistic``) the head is the
few-shot one instead (training/fewshot.py): four clips per training video (fewshot.training_views), no validation
hold-out, logistic regression whose penalty is chosen by cross-validation over whole groups, no fine-tuning; it is
saved as the same linear layer, so everything that loads a run is unchanged (:func:`choose_head_fit`).

The study's recipe is the starting point: frozen backbone, softmax head, SGD, 20 epochs, 20 % of training for
validation, then fine-tuning of the last layers. The frozen part of the backbone runs once per clip and view (the
feature cache), so every epoch costs milliseconds for the head and seconds for fine-tuning.

Under torchrun (`torchrun --nproc-per-node N -m actionrec train ...`, the same arguments) :func:`train` joins the
process group (gloo on the CPU, NCCL on CUDA, one GPU per local rank), splits the feature extraction over the ranks
balanced by video duration (read from each container), every rank writing the one shared cache folder; after a
barrier every rank knows every entry (gathered, not hashed again) and the skipped files (reported once, by rank 0,
and dropped on every rank); the head and fine-tuning run as DDP (see phases.py for what differs from one process);
rank 0 alone claims and writes the run directory and shows one progress bar for the whole job. A job restarted by
`torchrun --max-restarts K` finds the entries already written and computes only the rest; rank 0 takes over its own
unfinished run directory (same configuration, see outdir.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..console import Skipped, progress_bar, stderr_line
from ..data.samples import NONE_LABEL, Sample
from ..data.splits import Splits
from ..distributed import (SINGLE, Ranks, all_gather, barrier, from_main, main_decides, process_group, ranks_from_env,
                           resolve_device, threads_per_rank)
from ..errors import ActionrecError
from ..files import write_json
from ..engine import Engine
from ..models.runs import save_run
from . import fewshot
from .config import AUTO_LR, BACKBONE_DEFAULTS, NO_WEIGHTS, TrainConfig  # TrainConfig: also importable from here
from .features import FeatureCache, Sampling, View, cache_root as feature_cache_root, test_views as test_views_of
from .outdir import claim_run_dir, writable_dir
from .metrics import per_class_metrics
from .phases import (Datasets, FinetunePhase, HeadPhase, History, entries_of, evaluate, fit, pooled_by_all, probabilities,
                     scores, sgd)

def cut_endpoint(model: nn.Module, unfreeze: Sequence[str]) -> str:
    """The last frozen endpoint: features are cached there. `unfreeze` must be the consecutive top blocks."""
    endpoints, trainable = model.ENDPOINTS, model.TRAINABLE_BLOCKS
    if not unfreeze:
        return model.FEATURES_ENDPOINT
    unknown = [u for u in unfreeze if u not in trainable]
    if unknown:
        raise ActionrecError(f"--unfreeze {','.join(unfreeze)}: unknown block {unknown[0]!r}; blocks: {', '.join(trainable)}")
    first = min(endpoints.index(u) for u in unfreeze)
    expected = [e for e in endpoints[first:] if e in trainable]
    if sorted(unfreeze, key=endpoints.index) != expected:
        raise ActionrecError(f"--unfreeze {','.join(unfreeze)}: tune consecutive top blocks, e.g. {','.join(expected)}")
    if first == 0:
        raise ActionrecError("--unfreeze cannot include the first block: nothing would be frozen and cached")
    return endpoints[first - 1]


def gflops_per_clip(model: nn.Module, frames: int) -> float:
    """Forward FLOPs of one clip (a multiply-add counts 2), counted by PyTorch on a shape-only copy; counted once per
    network structure and input size, then read from $ACTIONREC_HOME/gflops.json (counting takes seconds)."""
    import copy

    from ..files import home_dir

    crop = model.info.spec.crop
    key = hashlib.sha256(f"{model!r}|{frames}|{crop}".encode()).hexdigest()[:24]  # the modules, their shapes, the input
    memo = home_dir() / "gflops.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), (int, float)):
        return float(known[key])
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, 3, frames, crop, crop, device="meta"))
    gflops = counter.get_total_flops() / 1e9
    try:
        write_json(memo, {**known, key: gflops})
    except OSError:
        pass  # a read-only home only costs the next run the count
    return gflops


def backbone_for(cfg: TrainConfig, say: Callable[[str], None], explicit: bool = True) -> nn.Module:
    """The pretrained backbone of `cfg`, or a randomly initialised one (said loudly) when there are no weights.

    Weights the user named must load; the backbone's default weights fall back to random initialisation with a
    warning when they cannot be had (C3D's Sports-1M weights are not downloadable everywhere)."""
    from dataclasses import replace as replace_spec

    from ..models.info import RANDOM_WEIGHTS, ModelInfo
    from ..models.pretrained import build_model, get_spec, load_pretrained, with_crop

    if cfg.weights != NO_WEIGHTS:
        spec = get_spec(cfg.weights)
        if spec.arch != cfg.backbone:
            raise ActionrecError(f"--weights {cfg.weights} are {spec.arch} weights, not {cfg.backbone}; see `actionrec weights list`")
        with_crop(spec, cfg.crop)  # a crop the weights cannot take is refused here, not taken for missing weights
        try:
            model = load_pretrained(cfg.weights, crop=cfg.crop)
            say(f"backbone: {cfg.backbone} with pretrained weights {spec.name} ({spec.description})")
            return model
        except ActionrecError as err:
            if explicit:
                raise
            say(f"warning: no {spec.name} weights ({err}); fetch them with `actionrec weights fetch {spec.name} --from FILE`")
    spec = with_crop(get_spec(BACKBONE_DEFAULTS[cfg.backbone]["weights"]), cfg.crop)
    say(f"warning: training {cfg.backbone} from random initialisation (seed {cfg.seed}): this is NOT transfer learning, "
        "expect far lower accuracy than with pretrained weights")
    torch.manual_seed(cfg.seed)
    name = f"{cfg.backbone}-random-seed{cfg.seed}"
    info = ModelInfo(name=name, spec=replace_spec(spec, name=name, url=""), categories=spec.categories,
                     weights_sha256=f"{RANDOM_WEIGHTS}-seed{cfg.seed}", predict_frames=spec.predict_frames, identity="")
    return build_model(info, None)


def _versions() -> dict[str, str]:
    from ..version import __version__

    return {"actionrec": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _recipe(cfg: TrainConfig, splits: Splits) -> str:
    """What makes two trainings the same command: the resolved configuration (but where it runs) and the clips of
    each split."""
    data = {name: [[s.path, s.label] for s in getattr(splits, name)] for name in ("train", "val", "test")}
    config = {k: v for k, v in asdict(cfg).items() if k != "device"}
    return hashlib.sha256(json.dumps({"config": config, "data": data}, sort_keys=True).encode()).hexdigest()


def _silent(message: str) -> None:
    pass


def _duration(address: str) -> float:
    """The seconds of video a sample's work covers, its weight when the work is shared by ranks: a whole video's
    duration, read from the container (0 for one that cannot be read: it costs nothing, and is skipped); a range's
    length, divided by N for a clip ``&clip=KofN`` of it (see data.segments), read from the address alone."""
    from ..data.samples import parse_address
    from ..data.video import probe

    video, start, end, clip = parse_address(address)
    if start is not None and end is not None:
        return (end - start) / (clip[1] if clip else 1)
    try:
        return probe(video).duration
    except ActionrecError:
        return 0.0


@dataclass(frozen=True)
class HeadChoice:
    """How the linear head is fitted ("logistic" or "softmax"), for how few groups (videos, sources) in the smallest
    class, and whether the user forced it (``--head-fit``) or `auto` chose it."""

    fit: str
    fewest: int
    forced: bool

    def reason(self, cfg: TrainConfig) -> str:
        """Why the softmax head (the logistic head's reason names its fitted setting: fewshot.reason)."""
        if self.forced:
            return f"softmax head: --head-fit softmax ({self.fewest} group(s) in the smallest class), SGD with validation"
        if cfg.head != "linear":
            return "softmax head: --head temporal trains on the linear head's validation"
        return (f"softmax head: {self.fewest} groups in the smallest class (> {fewshot.FEWSHOT_UP_TO}), SGD with "
                f"{100 * cfg.val_fraction:g} % validation, then fine-tuning (README: few examples per class)")


def choose_head_fit(splits: Splits, config: TrainConfig) -> tuple[Splits, TrainConfig, HeadChoice]:
    """The head fit for these splits (`config.head_fit`; auto: fewshot.choose_head of the fewest distinct groups of any
    class in training and validation, the softmax head with --head temporal), and the splits and configuration it
    trains with: the few-shot head holds nothing out for validation (it moves into training), is not fine-tuned
    (no validation set would keep fine-tuning honest) and sees fewshot.crop_for's crop unless --crop names one."""
    samples = splits.train + splits.val
    groups: dict[str, set[str]] = {c: set() for c in splits.classes}
    for s in samples:
        groups.setdefault(s.label, set()).add(s.group)
    fewest = min((len(g) for g in groups.values()), default=0)
    fit = config.head_fit
    if fit == "auto":
        fit = fewshot.choose_head(fewest) if config.head == "linear" else fewshot.SOFTMAX
    choice = HeadChoice(fit, fewest, forced=config.head_fit != "auto")
    if fit != "logistic":
        return splits, replace(config, head_fit=fit), choice
    policy = (f"{splits.policy}; few-shot head ({fewest} group(s) in the smallest class): no validation hold-out "
              "(validation moved into training), settings by cross-validation over whole groups, no fine-tuning")
    crop = config.crop or fewshot.crop_for(config.backbone, any(s.start is not None for s in samples))
    return (replace(splits, train=samples, val=[], policy=policy),
            replace(config, head_fit=fit, finetune_epochs=0, crop=crop), choice)


class _Training:
    """One training run, phase by phase: features, the head, fine-tuning, the test, writing the run directory.

    Under torchrun every rank makes one; each takes part in every collective (extraction results, DDP steps), and only
    rank 0 speaks (`say`, the progress bar, skipped files, job-level warnings) and writes the run directory."""

    def __init__(self, config: TrainConfig, out: Path, cache_root: Path, say: Callable[[str], None],
                 warn: Callable[[str], None], progress: bool, ranks: Ranks = SINGLE,
                 device: torch.device | None = None, job: str = "", choice: HeadChoice | None = None):
        self.cfg = cfg = config.resolved()
        self.choice = choice or HeadChoice(cfg.head_fit, 0, forced=True)
        self.fewshot = cfg.head_fit == "logistic"
        self.ranks, self.device, self.job = ranks, device or torch.device("cpu"), job
        main = ranks.is_main
        self.out, self.progress = out, progress and main
        self.say, self.warn = (say, warn) if main else (_silent, _silent)
        self.timing: dict[str, float] = {}
        self.t_start = time.perf_counter()
        torch.manual_seed(cfg.seed)
        self.model = self._backbone(config, say if main else _silent).to(self.device)
        self.random_init = self.model.info.random_weights
        self.cut = cut_endpoint(self.model, cfg.unfreeze)  # also without fine-tuning, so head-only runs share the cache
        threads = threads_per_rank(ranks) if ranks.distributed else None  # OpenVINO's; torch's: distributed.init
        engine = Engine(self.model, device=self.device, threads=threads, precision=cfg.precision, backend=cfg.backend)
        rank_warn = warn if main else (lambda m: warn(f"rank {ranks.rank}: {m}"))  # this rank's own cache findings
        self.cache = FeatureCache(engine, self.cut, Sampling(frames=cfg.frames, views=cfg.views, seed=cfg.seed),
                                  root=cache_root, say=rank_warn)
        self._check_same_features()
        self.skipped = Skipped(self.warn)
        self.history = History()
        self.classes: list[str] = []  # the readable classes, set by `features`
        self.trained_modules = ["head"]
        self.head_test = (float("nan"), float("nan"))  # test loss and accuracy of the head alone, set by `head`
        self.rank_stats: list[dict] = []  # what each rank extracted, set by `features`
        self.lr_range = None  # the range test of --lr auto (an LRRange), set by `head`
        self.linear_test = (float("nan"), float("nan"))  # --head temporal: the linear head's test loss and accuracy
        self.head_fit: dict = {}  # how the head was fitted and why (metrics.json), set by `head`
        self.out_of_fold: np.ndarray | None = None  # the few-shot head's out-of-fold probabilities per training clip
        self.entries: dict = {}  # the cache entries of every (video, view), set by `features`

    def _backbone(self, config: TrainConfig, say: Callable[[str], None]) -> nn.Module:
        """The backbone; under torchrun the first local rank of each machine loads (and if need be fetches) the weights
        before the others, so they are downloaded once per machine."""
        first = self.ranks.local_rank == 0
        if not first:
            barrier(self.ranks)
        try:
            return backbone_for(self.cfg, say, explicit=config.weights is not None)
        finally:
            if first:
                barrier(self.ranks)

    def _check_same_features(self) -> None:
        """Every rank must compute the same features (same precision and backend), or their entries would not mix."""
        keys = all_gather((self.cache.recipe_key, self.cache.engine.precision, self.cache.engine.backend), self.ranks)
        if len(set(keys)) > 1:
            seen = ", ".join(f"rank {r}: {p}/{b}" for r, (_, p, b) in enumerate(keys))
            raise ActionrecError(f"the ranks would compute different features ({seen}); pass the same --precision and "
                                 "--backend (fp32 or bf16, openvino or torch) on every machine")

    def _extract(self, everything: list[str], views: Callable[[str], Sequence[int]]) -> tuple[dict, list[dict]]:
        """This rank's share of the clips (balanced by duration) through the cache; every rank's entries and skipped
        files afterwards, gathered (in the work list's order), with one progress bar on rank 0 for all ranks."""
        from ..distributed import SharedCount, balanced_shards, shared_weights

        ranks, t0 = self.ranks, time.perf_counter()
        durations = shared_weights(everything, _duration, ranks) if ranks.distributed else [0.0] * len(everything)
        mine = balanced_shards(range(len(everything)), durations.__getitem__, ranks.world)[ranks.rank]
        bar = progress_bar("features", "video", self.progress, total=len(everything))
        count = SharedCount(self.cache.root / ".progress", self.job, ranks, lambda total: bar.update(total - bar.n))
        skipped = Skipped(_silent) if ranks.distributed else self.skipped
        found = self.cache.extract([everything[i] for i in mine], views=views, on_error=skipped, progress=count.add)
        stats = {"rank": ranks.rank, "videos": len(mine), "backbone_clips": self.cache.backbone_calls,
                 "duration": round(sum(durations[i] for i in mine), 3) if ranks.distributed else None,
                 "seconds": round(time.perf_counter() - t0, 3)}
        count.flush()
        barrier(ranks, while_waiting=count.refresh)  # rank 0's bar goes on with the others' counts meanwhile
        count.finish(len(everything))
        bar.close()
        root, entries, failed = self.cache.root, {}, {}
        for part_entries, part_skipped, part_stats in all_gather(
                ({k: os.path.relpath(v, root) for k, v in found.items()}, skipped.files, stats), ranks):
            entries.update({k: root / v for k, v in part_entries.items()})
            failed.update({f["video"]: f for f in part_skipped})
            self.rank_stats.append(part_stats)
        unseen = sum(1 for path in entries.values() if not path.exists()) if ranks.distributed else 0
        if unseen:
            raise ActionrecError(f"rank {ranks.rank}: {unseen} feature cache entries written by other ranks are not in "
                                 f"{root}; under torchrun --cache must be one folder every machine shares (e.g. NFS)")
        order = {v: i for i, v in enumerate(everything)}
        return entries, sorted(failed.values(), key=lambda f: order.get(f["video"], len(order)))

    def train_views(self) -> list[View]:
        """The clips of each training video: the few-shot head's (fewshot.training_views: the central one, those of
        the default test views and the central one mirrored) or the central one, then the augmented ones of --views."""
        return [*(fewshot.training_views() if self.fewshot else [0]), *range(1, self.cfg.views)]

    def features(self, splits: Splits) -> tuple[Splits, Datasets]:
        """The frozen part runs once per clip and view (training videos get the training views); unreadable clips
        are left out of the splits, and with them a class none of whose training clips could be read."""
        t0 = time.perf_counter()
        everything = [s.path for s in splits.train + splits.val + splits.test]
        views = {"train": self.train_views(), "val": [0], "test": test_views_of(self.cfg.test_views)}

        def views_for(name: str, sample: Sample) -> list[View]:
            # a segment's clip is one place in its range: its uniform views would be that clip again
            return [v for v in views[name] if isinstance(v, int)] if sample.clip is not None else views[name]

        views_of = {s.path: views_for(name, s) for name in ("train", "val", "test") for s in getattr(splits, name)}
        entries, failed = self._extract(everything, views_of.__getitem__)
        self.entries = entries  # the int8 check scores the validation clips from them again
        if self.ranks.distributed:  # said live in one process; here once, by rank 0, for every rank
            for f in failed:
                self.skipped(f["video"], f["error"])
        self.timing["features"] = time.perf_counter() - t0
        readable = splits.without(v for v in everything if (v, views_of[v][0]) not in entries)
        for label in readable.dropped_classes[len(splits.dropped_classes):]:
            self.warn(f"warning: class {label} left out: none of its training clips could be read")
        self.say(readable.summary())
        self.classes = list(readable.classes)
        data = Datasets(*(entries_of(getattr(readable, name), entries, self.classes, views[name])
                          for name in ("train", "val", "test")))
        if len(data.train) == 0 or len({int(y) for y in data.train.labels}) < 2:
            raise ActionrecError(f"{self.out}: fewer than 2 classes have readable training videos; add videos or fix the skipped files")
        return readable, data

    def head(self, data: Datasets) -> int | None:
        """The head on pooled features of the frozen backbone (computed once from the cache): the few-shot head in
        closed form, or the softmax head by SGD (its best epoch is returned; None for the few-shot head). The test
        loss and accuracy of the head alone are kept (`head_test`)."""
        model = self.model
        model.reset_classifier(len(self.classes))
        model.drop.p = self.cfg.dropout
        for p in model.parameters():
            p.requires_grad_(False)
        t0 = time.perf_counter()
        if self.fewshot:
            best = self._fewshot_head(data)
        else:
            phase = HeadPhase(model, self.cut, data, self.cfg.lr, self.cfg.epochs, self.ranks)  # pooled once, shared
            if self.cfg.lr == AUTO_LR:
                phase.lr = self._lr_by_range_test(phase)
            best = fit(phase, self.cfg, self.history, self.say, self.ranks)
            self.head_fit = {"head": "softmax", "reason": self.choice.reason(self.cfg)}
        self.timing["head"] = time.perf_counter() - t0
        if self.ranks.is_main:  # the test is rank 0's
            self.head_test = evaluate(model, self.cut, data.test)[:2]
        return best

    def _fewshot_head(self, data: Datasets) -> None:
        """The few-shot head (fewshot.fit_head: logistic regression on the pooled training clips, its penalty chosen
        by cross-validation over whole groups; with a ``none`` class, the prototype head with an open-set ``none``)
        loaded into the model's linear head; the same on every rank."""
        model, train_set, classes = self.model, data.train, self.classes
        model.eval()
        x = pooled_by_all(model, self.cut, train_set, self.ranks).float().cpu().numpy()
        labels = train_set.labels.numpy()
        background = classes.index(NONE_LABEL) if NONE_LABEL in classes else None
        result = fewshot.fit_head(x, labels, train_set.groups, len(classes), class_names=classes, background=background)
        fewshot.load_into(model.head, result)
        fewest = fewshot.fewest_examples(labels, train_set.groups, len(classes))
        clips = round(len(train_set) / max(train_set.videos, 1))
        reason = fewshot.reason(result, fewest, clips, forced=self.choice.forced)
        self.head_fit, self.out_of_fold = {**result.describe(), "reason": reason}, result.oof_probs
        self.say(f"head: {reason}")
        if result.oof_probs is None:
            self.say("head: no validation probabilities (one group per class: no fold held out), so the timeline's "
                     "thresholds are not calibrated")
        return None

    def _lr_by_range_test(self, phase: HeadPhase) -> float:
        """--lr auto: a learning-rate range test of the head on the pooled training features (rank 0's choice on every
        rank); kept for the report."""
        from .lr_range import lr_range_test

        cfg = self.cfg
        for p in phase.parameters():
            p.requires_grad_(True)
        phase.model.drop.train()  # as in the head's steps
        result = lr_range_test(phase.net, phase.pooled_train, phase.data.train.labels.to(phase.device),
                               batch_size=cfg.batch_size, optimizer=lambda params, lr: sgd(params, lr, cfg), seed=cfg.seed)
        phase.model.drop.eval()
        self.lr_range = from_main(result, self.ranks)
        self.say(f"head: {self.lr_range.describe()}")
        return self.lr_range.chosen

    def finetune(self, data: Datasets) -> int | None:
        """The top blocks and the head from the cached activations at the cut; the best epoch (None: no fine-tuning)."""
        cfg, best = self.cfg, None
        if cfg.finetune_epochs and cfg.unfreeze:
            t0 = time.perf_counter()
            phase = FinetunePhase(self.model, self.cut, data, cfg.unfreeze, cfg.finetune_lr, cfg.finetune_epochs)
            best = fit(phase, cfg, self.history, self.say, self.ranks)
            if best is not None:  # None: no epoch beat the head's state, which was put back
                self.trained_modules = phase.modules
            self.timing["finetune"] = time.perf_counter() - t0
        for p in self.model.parameters():
            p.requires_grad_(False)
        return best

    def temporal(self, data: Datasets) -> int | None:
        """--head temporal: the temporal head on the per-step features of the (fine-tuned) backbone, which then
        classifies; the linear head's test figures on the same clips are kept for comparison. Its best epoch."""
        if self.cfg.head != "temporal":
            return None
        from .temporal import TemporalConfig, train_temporal_head

        t0 = time.perf_counter()
        self.linear_test = evaluate(self.model, self.cut, data.test)[:2]
        fit = train_temporal_head(self.model, self.cut, data, TemporalConfig(seed=self.cfg.seed), self.say)
        first = len(self.history.rows)
        for row in fit.history:
            self.history.add(**{**row, "epoch": first + row["epoch"]})
        self.trained_modules = [*self.trained_modules, "temporal_head"]
        self.timing["temporal"] = time.perf_counter() - t0
        return first + fit.best_epoch

    def test(self, data: Datasets, tested_videos: Sequence[Sample], val_samples: Sequence[Sample] = ()) -> dict:
        """The held-out videos (`tested_videos`, those of `data.test` in order), once, with the final model, each from
        its test views; the validation probabilities (they calibrate the timeline's per-class thresholds); and for
        int8 features, the validation videos (`val_samples`) scored at the float precision too (:meth:`int8_check`)."""
        t0 = time.perf_counter()
        test_loss, test_acc, test_probs = scores(self.model, self.cut, data.test)
        val_probs, val_labels = self.validation_probs(data)
        labels = data.test.video_labels.numpy()
        per_class, confusion = per_class_metrics(labels, test_probs.argmax(1), self.classes)
        self.timing["evaluate"] = time.perf_counter() - t0
        int8_check = self.int8_check(val_samples, data)
        self.timing["total"] = time.perf_counter() - self.t_start
        predictions = [{"video": s.path, "label": s.label, "probs": np.round(p, 5).tolist()}
                       for s, p in zip(tested_videos, test_probs)]
        return {"test_loss": test_loss, "test_accuracy": test_acc, "per_class": per_class, "confusion_matrix": confusion,
                "val_probs": val_probs, "val_labels": val_labels, "test_predictions": predictions,
                "int8_check": int8_check}

    def int8_check(self, val_samples: Sequence[Sample], data: Datasets) -> dict | None:
        """A run on int8 features (``--precision int8``, or ``auto`` where int8 is measured faster): its validation
        videos' central clips computed once more at the float precision (bf16 with native bf16, else fp32; cached
        apart: the precision is part of the cache key) and scored by the final model beside the int8 ones. The
        validation set is 20 % of training, one clip per video (UCF101 split 1: 56 videos, a sixth of the run). None for float runs; the few-shot head
        holds no validation videos out, so it says so rather than check."""
        engine = self.cache.engine
        if engine.precision != "int8":
            return None
        if self.fewshot or not len(data.val):
            return {"checked": False, "why": "no validation videos (the few-shot head holds none out; its "
                                             "cross-validation ran on the int8 features)"}
        t0 = time.perf_counter()
        floating = Engine(self.model, device=self.device, threads=engine.threads, precision="float", backend=engine.backend)
        cache = FeatureCache(floating, self.cut, self.cache.sampling, root=self.cache.root, say=_silent)
        entries = cache.extract([s.path for s in val_samples], views=[0], on_error=lambda video, message: None)
        both = [s for s in val_samples if (s.path, 0) in entries]
        at_int8 = scores(self.model, self.cut, entries_of(both, self.entries, self.classes, [0]))
        at_float = scores(self.model, self.cut, entries_of(both, entries, self.classes, [0]))
        self.timing["int8_check"] = time.perf_counter() - t0
        return {"checked": True, "videos": len(both), "float_precision": floating.precision,
                "int8_val_accuracy": at_int8[1], "float_val_accuracy": at_float[1],
                "int8_val_loss": at_int8[0], "float_val_loss": at_float[0],
                "top1_agreement": float((at_int8[2].argmax(1) == at_float[2].argmax(1)).mean()) if both else float("nan"),
                "seconds": round(self.timing["int8_check"], 3)}

    def validation_probs(self, data: Datasets) -> tuple[np.ndarray, list[int]]:
        """Probabilities of videos the head did not train on, and their labels (the timeline calibrates its thresholds
        on them): the validation videos'; with the few-shot head (no validation set), each training video's mean
        out-of-fold probability over its clips, from the cross-validation folds that held it out (none without
        folds: one group per class)."""
        if not self.fewshot:
            return probabilities(self.model, self.cut, data.val), data.val.labels.tolist()
        if self.out_of_fold is None:
            return np.zeros((0, len(self.classes)), np.float32), []
        owners, video_labels = data.train.owners.numpy(), data.train.video_labels.tolist()
        probs = [self.out_of_fold[owners == v].mean(0) for v in range(data.train.videos)]
        held = [v for v, p in enumerate(probs) if not np.isnan(p).any()]
        return np.array([probs[v] for v in held], np.float32).reshape(-1, len(self.classes)), [video_labels[v] for v in held]

    def run_config(self) -> dict:
        """config.json: what the run is (classes, backbone, weights, cut, preprocessing, options, versions)."""
        cfg, spec, random_init = self.cfg, self.model.info.spec, self.random_init
        return {
            "classes": self.classes,
            "backbone": cfg.backbone,
            "weights": None if random_init else cfg.weights,
            "weights_sha256": None if random_init else self.model.info.weights_sha256,
            "trained_modules": self.saved_modules(),
            "cut_endpoint": self.cut,
            "frames": cfg.frames,
            "temporal_head": self._temporal_architecture(),
            "preprocessing": {"fps": spec.fps, "resize": spec.resize, "crop": spec.crop,
                              "mean": spec.mean, "std": spec.std, "value_range": spec.value_range},
            "train_config": {**asdict(cfg), "train_views": self.train_views()},
            # what computed the cached features: runs on machines of another precision or backend differ slightly
            "engine": {"backend": self.cache.engine.backend, "precision": self.cache.engine.precision},
            "versions": _versions(),
        }

    def _temporal_architecture(self) -> dict | None:
        """How the temporal head is built (load_run rebuilds it from this), None for the linear head."""
        from .temporal import TemporalConfig, architecture

        return architecture(TemporalConfig(seed=self.cfg.seed)) if self.cfg.head == "temporal" else None

    def saved_modules(self) -> list[str]:
        """The modules written to model.safetensors: the trained ones (a randomly initialised backbone: all)."""
        return [name for name, _ in self.model.named_children()] if self.random_init else self.trained_modules

    def metrics(self, splits: Splits, data: Datasets, best: dict, tested: dict) -> dict:
        """metrics.json: the history, the test, the splits, the time per phase, the model and the cache."""
        cfg, model, spec, head_test = self.cfg, self.model, self.model.info.spec, self.head_test
        trainable = sum(p.numel() for name in self.trained_modules for p in getattr(model, name).parameters())
        return {
            "run": str(self.out),
            "backbone": cfg.backbone,
            "weights": f"none (random initialisation, seed {cfg.seed})" if self.random_init else cfg.weights,
            "classes": self.classes,
            "history": self.history.rows,
            "best_epoch": best,
            "test_loss": tested["test_loss"],
            "test_accuracy": tested["test_accuracy"],
            "head_test_loss": head_test[0] if cfg.finetune_epochs else None,
            "head_test_accuracy": head_test[1] if cfg.finetune_epochs and cfg.unfreeze else None,
            "head": cfg.head,
            "head_fit": self.head_fit,
            "linear_test_loss": self.linear_test[0] if cfg.head == "temporal" else None,
            "linear_test_accuracy": self.linear_test[1] if cfg.head == "temporal" else None,
            "test_views": cfg.test_views,
            "per_class": tested["per_class"],
            "confusion_matrix": tested["confusion_matrix"],
            "test_predictions": tested["test_predictions"],
            "lr_range": self.lr_range.to_dict() if self.lr_range is not None else None,
            "splits": {"policy": splits.policy, "counts": splits.counts(), "clips": data.sizes()},
            "skipped": self.skipped.files,
            "val_probs": np.round(tested["val_probs"], 6).tolist(),
            "val_labels": tested["val_labels"],
            "int8_check": tested["int8_check"],
            "timing": self.timing,
            "model": {"parameters": sum(p.numel() for p in model.parameters()), "trainable_parameters": trainable,
                      "input": f"3x{cfg.frames}x{spec.crop}x{spec.crop}",
                      "gflops_per_clip": round(gflops_per_clip(model, cfg.frames), 2)},
            "config": asdict(cfg),
            "feature_cache": {**self.cache.describe(), "backbone_clips": sum(r["backbone_clips"] for r in self.rank_stats)},
            "distributed": self.describe_ranks(),
            "engine": self.cache.engine.describe(),
            "versions": _versions(),
        }

    def describe_ranks(self) -> dict:
        """Where the run ran: world, process group backend, device, threads per rank, and what each rank extracted."""
        ranks = self.ranks
        backend = ("nccl" if self.device.type == "cuda" else "gloo") if ranks.distributed else None
        return {"world": ranks.world, "backend": backend, "device": str(self.device),
                "threads_per_rank": torch.get_num_threads(), "ranks": self.rank_stats}

    def write(self, config: dict, metrics: dict) -> None:
        """The run directory, config.json last: until it is written the run is unfinished (and loads as none)."""
        from . import report

        self.model.cpu()  # the run's files hold CPU tensors, whatever the device it trained on
        (self.out / "config.json").unlink(missing_ok=True)
        write_json(self.out / "metrics.json", metrics)
        report.write_report(self.out)
        save_run(self.model, self.out, config, self.saved_modules())

    def run(self, splits: Splits) -> dict:
        """Every phase in turn; the run's metrics (on every rank: rank 0 tests and writes, the others wait for it)."""
        readable, data = self.features(splits)
        head_epoch = self.head(data)
        best = {} if head_epoch is None else {"head": head_epoch}
        finetuned = self.finetune(data)
        if finetuned is not None:
            best["finetune"] = finetuned
        # the temporal head (seconds on the CPU), the test and the run are rank 0's; its error stops every rank
        return main_decides(self.ranks, lambda: self.finish(readable, data, best))

    def finish(self, readable: Splits, data: Datasets, best: dict) -> dict:
        """The temporal head if any, the test, and the run directory written; the run's metrics."""
        temporal = self.temporal(data)
        if temporal is not None:
            best["temporal"] = temporal
        tested = self.test(data, readable.test, readable.val)
        metrics = self.metrics(readable, data, best, tested)
        self.write(self.run_config(), metrics)
        return metrics


def train(
    splits: Splits,
    out: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    cache_root: str | os.PathLike | None = None,
    say: Callable[[str], None] = stderr_line,
    progress: bool = True,
    force: bool = False,
    warn: Callable[[str], None] = stderr_line,
    ranks: Ranks | None = None,
) -> dict:
    """Train on `splits` (a datasets.Splits) and write the run directory `out`; returns its metrics.

    `say` gets progress lines (the split table, epochs), `warn` the lines that must always be seen (skipped
    files, classes left out, damaged cache entries). A finished run in `out` is replaced only with `force`; an
    unfinished one left by the same command is taken over. The output and cache folders are checked writable, and
    `out` locked, before any work. `config.device` says where it runs (auto: CUDA when available).
    `config.head_fit` picks the head's fit (:func:`choose_head_fit`; auto: the few-shot head for few groups per class).

    Under torchrun (`ranks`, default: read from the environment) every rank calls this with the same arguments; the
    work is shared (see the module doc) and every rank returns the same metrics. Each step of N ranks takes the clips
    of the same step of one process when N divides the batch size; what differs (sampler padding, a batch N does not
    divide, dropout masks, rounding) is in phases.py. With dropout 0, tests/test_distributed.py holds a 2-rank run to
    the same test accuracy within one clip and the test loss within 1e-3 of one process.
    """
    cfg = config.resolved()
    ranks = ranks_from_env() if ranks is None else ranks
    device = resolve_device(cfg.device, ranks)
    with process_group(ranks, device):
        features_root = writable_dir(feature_cache_root(cache_root), "feature cache folder", "pass --cache DIR on a writable disk")
        splits, config, choice = choose_head_fit(splits, config)
        recipe = _recipe(config.resolved(), splits)
        job = from_main(hashlib.sha256(f"{recipe}|{os.path.abspath(out)}".encode()).hexdigest()[:16], ranks)
        with contextlib.ExitStack() as held:  # rank 0 claims the run directory; its refusal stops every rank
            out_dir = main_decides(ranks, lambda: held.enter_context(
                claim_run_dir(out, recipe, force, say if ranks.is_main else _silent)))
            return _Training(config, out_dir, features_root, say, warn, progress, ranks, device, job, choice).run(splits)
