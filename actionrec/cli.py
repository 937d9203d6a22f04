"""`actionrec` command line: a thin layer over the Python API.

Every default shown in a help text is read from where the library declares it (TrainConfig, WatchOptions, the
signatures of predict_iter, flag_ranges and censor_video, module constants); option values are checked by the
library (one line, exit status 2), not here.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import exit_status, say_error

DEFAULT_TRAIN_OUT = "runs/latest"
DEFAULT_DEMO_OUT = "runs/demo"


def _say(quiet: bool) -> Callable[[str], None]:
    """Progress lines on stderr (never glued to a progress bar), or nothing with --quiet."""
    from .console import stderr_line

    return (lambda m: None) if quiet else stderr_line


def default_of(owner: object, name: str) -> object:
    """The default of `name`: a field of the dataclass `owner`, or a parameter of the function `owner`."""
    if dataclasses.is_dataclass(owner):
        return {f.name: f.default for f in dataclasses.fields(owner)}[name]
    return inspect.signature(owner).parameters[name].default


# ----------------------------------------------------------------------------------------------- commands


def _archive(source: str, out: str, process, args: argparse.Namespace) -> int:
    """A folder or list of videos: one JSON per video under `out`, an index, a summary (see apps.archive);
    `process` is the archive's one stream over its videos (apps.archive.Stream)."""
    from .apps.archive import process_archive, summary_table

    summary = process_archive(source, out, process, on_error=lambda video, message: say_error(message),
                              show_progress=not getattr(args, "quiet", False))
    if summary is not None:  # rank 0
        print(json.dumps(summary) if args.json else f"{summary_table(summary)}\nresults: {out}/ (index.jsonl, summary.json)")
        return 1 if summary["failed"] else 0
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .apps.archive import is_archive
    from .apps.predict import predict_iter
    from .checks import check_predict_options
    from .ready import ready_engine

    check_predict_options(frames=args.frames, test_views=args.test_views, batch_size=args.batch_size, top=args.top)
    model = ready_engine(args.model, device=args.device, **_engine_options(args)) or _classifier(args.model, args)
    groups = _groups(args, model)
    regroup = groups.apply if groups else (lambda p: p)
    failed = 0

    def on_error(video: str, message: str) -> None:
        nonlocal failed
        failed += 1
        say_error(message if video in message else f"{video}: {message}")

    views = 1 if args.single_clip else args.test_views
    frames = model.info.spec.clip_len if args.single_clip else args.frames
    if len(args.videos) == 1 and is_archive(args.videos[0]):
        options = dict(frames=frames, test_views=views, batch_size=args.batch_size)
        out = args.out or f"{Path(args.videos[0]).stem}_predictions"
        return _archive(args.videos[0], out, lambda videos, on_error: ((p.video, regroup(p).to_dict(args.top)) for p in
                        predict_iter(videos, model, on_error=on_error, **options)), args)
    for pred in map(regroup, predict_iter(args.videos, model, frames=frames, test_views=views, batch_size=args.batch_size,
                                          on_error=on_error)):
        if pred.warning:
            print(f"actionrec: warning: {pred.warning}", file=sys.stderr)
        if args.json:
            print(json.dumps(pred.to_dict(args.top)), flush=True)
        else:
            note = " (shorter than one window: looped)" if pred.looped else ""
            print(f"{pred.video}{note}")
            for label, prob in pred.top(args.top):
                print(f"  {prob:7.3f}  {label}")
            sys.stdout.flush()
    return 1 if failed else 0


def _train_config(args: argparse.Namespace):
    """The TrainConfig of the train command's options (checked by TrainConfig itself)."""
    from .training.config import TrainConfig

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    given["unfreeze"] = tuple(args.unfreeze.split(",")) if args.unfreeze else None
    return TrainConfig(**given)


def cmd_train(args: argparse.Namespace) -> int:
    from .data.datasets import load_dataset, make_splits
    from .distributed import ranks_from_env
    from .training import report
    from .training.trainer import train

    config = _train_config(args)
    samples = load_dataset(args.data, classes=args.classes, split=args.split, test_dir=args.test)
    splits = make_splits(samples, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed)
    metrics = train(splits, args.out, config, cache_root=args.cache, say=_say(args.quiet), progress=not args.quiet,
                    force=args.force)
    if ranks_from_env().is_main:  # under torchrun, rank 0 speaks for the job
        print(report.summary_text(metrics))
        print(f"run: {args.out}  (report: {args.out}/report.html)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data.datasets import load_dataset
    from .models.runs import load_run
    from .training.evaluate import evaluate_run

    classes = args.classes or ",".join(load_run(args.run).info.categories)
    samples = load_dataset(args.data, classes=classes, split=args.split)
    if any(s.split == "test" for s in samples):
        samples = [s for s in samples if s.split == "test"]
    metrics = evaluate_run(args.run, samples, cache_root=args.cache, progress=not args.quiet, test_views=args.test_views,
                           **_engine_options(args))
    if args.json:
        print(json.dumps(metrics))
    else:
        views = metrics["test_views"]
        print(f"{metrics['videos']} videos ({'the central clip' if views == 1 else f'{views} clips each, averaged'}): "
              f"accuracy {metrics['test_accuracy']:.3f}, loss {metrics['test_loss']:.3f}")
        for label, m in metrics["per_class"].items():
            print(f"  {label}: precision {m['precision']:.3f} recall {m['recall']:.3f} f1 {m['f1']:.3f} support {m['support']}")
    return 1 if metrics["skipped"] else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .training.report import compare_table

    print(compare_table(args.runs, markdown=args.markdown))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .apps.predict import predict_iter
    from .data.datasets import load_dataset, make_splits
    from .data.demo import write_demo_dataset
    from .files import home_dir
    from .training import report
    from .engine import load_model
    from .training.trainer import TrainConfig, train

    data = Path(args.data) if args.data else home_dir() / "demo-data"
    print(f"demo: writing a labelled set of synthetic videos to {data}", file=sys.stderr)
    write_demo_dataset(data)
    splits = make_splits(load_dataset(data), seed=0)
    # the study's whole recipe: softmax head, then fine-tuning (its 7 sources per class would take the few-shot head)
    config = TrainConfig(head_fit="softmax", **_engine_options(args))
    metrics = train(splits, args.out, config, say=_say(args.quiet), progress=not args.quiet, force=True)
    print(report.summary_text(metrics))
    model = load_model(args.out, **_engine_options(args))
    print("predictions on three held-out clips:")
    for pred in predict_iter([s.path for s in splits.test[:: max(len(splits.test) // 3, 1)][:3]], model):
        label, prob = pred.top(1)[0]
        print(f"  {Path(pred.video).name}: {label} {prob:.3f}")
    print(f"run: {args.out}  (open {args.out}/report.html)")
    return 0


def cmd_weights_list(args: argparse.Namespace) -> int:
    from .models.pretrained import PRETRAINED, weights_status
    from .models.weights import weights_path

    for spec in PRETRAINED.values():
        status = weights_status(spec)
        state = {"cached": f"cached at {weights_path(spec)}", "missing": f"not cached (actionrec weights fetch {spec.name})"}.get(status, status)
        print(f"{spec.name}: {spec.description}")
        print(f"    input {spec.clip_len}x{spec.crop}x{spec.crop} RGB at {spec.fps or 'native'} fps, range {spec.value_range}, "
              f"{len(spec.categories)} classes, licence {spec.licence}")
        print(f"    source {spec.url or 'bring your own file (--from FILE)'}")
        print(f"    {state}")
    return 0


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .models.pretrained import fetch_weights

    path = fetch_weights(args.name, source=args.source, force=args.force)
    print(path)
    return 0


def cmd_weights_calibrate(args: argparse.Namespace) -> int:
    from .apps.quantize import calibrate_int8

    print(calibrate_int8(args.name, args.videos, out=args.out))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .apps.windows import default_cache_root
    from .models.compiled import compiled_dir
    from .training import caches
    from .training.features import cache_root

    roots = {"features": cache_root(args.features), "timelines": Path(args.timelines) if args.timelines else default_cache_root()}
    compiled = compiled_dir()
    if args.unused:
        print(f"features: removed {caches.prune_unused(roots['features'], args.runs)} of recipes no run under "
              f"{', '.join(args.runs)} uses")
    if args.older_than is not None:
        for name, root in roots.items():
            print(f"{name}: removed {caches.prune_older(root, args.older_than)} unused for {args.older_than:g} days")
        print(f"compiled networks: removed {caches.prune_compiled(compiled, args.older_than)} unused for "
              f"{args.older_than:g} days")
    for name, root in roots.items():
        print(f"{name}: {root}: {caches.usage(root)}")
    print(f"compiled networks: {compiled}: {caches.compiled_usage(compiled)}")
    return 0


def _window_probs(args: argparse.Namespace, model, desc: str):
    from .apps.windows import window_probabilities
    from .console import progress_callback

    update, close = progress_callback(desc, "window", not args.quiet)
    try:
        wp = window_probabilities(args.video, model, args.window, args.stride, batch_size=args.batch_size,
                                  cache=False if args.no_cache else args.cache, progress=update)
    finally:
        close()
    if wp.warning:
        print(f"actionrec: warning: {wp.warning}", file=sys.stderr)
    return wp


def _classifier(name: str, args: argparse.Namespace):
    """The model `name` (weights or run) on the command's device, refused in one line when it has no classes."""
    from . import load_model
    from .models.info import check_classifier

    model = load_model(name, device=_device(args), **_engine_options(args))
    check_classifier(model.info)
    return model


def cmd_timeline(args: argparse.Namespace) -> int:
    from .apps.archive import is_archive
    from .apps.calibration import resolve_labels
    from .apps.timeline import timeline_iter
    from .console import progress_callback
    from .ready import ready_engine

    model = ready_engine(args.model, device=args.device, **_engine_options(args)) or _classifier(args.model, args)
    groups = _groups(args, model)
    resolve_labels(args.labels, groups.names if groups else model.info.categories)  # said before any video is read

    def timelines(videos, progress=None, on_error=None):
        return timeline_iter(videos, model, window=args.window, stride=args.stride, labels=args.labels,
                             threshold=args.threshold, smooth=args.smooth, min_segment=args.min_segment,
                             batch_size=args.batch_size, cache=False if args.no_cache else args.cache,
                             progress=progress, groups=groups, on_error=on_error)

    if is_archive(args.video):  # one engine stream over the whole archive
        return _archive(args.video, args.out or f"{Path(args.video).stem}_timelines",
                        lambda videos, on_error: ((tl.video, tl.to_dict()) for tl in timelines(videos, on_error=on_error)),
                        args)
    update, close = progress_callback("timeline", "window", not args.quiet)
    try:
        (tl,) = timelines([args.video], update)
    finally:
        close()
    if tl.warning:
        print(f"actionrec: warning: {tl.warning}", file=sys.stderr)
    out = Path(args.out) if args.out else Path(f"{Path(args.video).stem or 'video'}_timeline")
    written = tl.write_all(out)
    if args.json:
        print(json.dumps({**tl.to_dict(), "outputs": {k: str(v) for k, v in written.items()}}))
        return 0
    print(tl.summary())
    for s in tl.segments:
        print(f"  {s.start:9.2f} - {s.end:9.2f} s  {s.label}  ({s.confidence:.2f})")
    print(f"outputs: {', '.join(str(p) for p in written.values())}")
    return 0


def cmd_flag(args: argparse.Namespace) -> int:
    from .apps.calibration import resolve_labels, thresholds_for
    from .apps.flag import censor_video, flag_ranges, flag_result, require_av
    from .apps.timeline import format_clock

    model = _classifier(args.model, args)
    labels = resolve_labels(args.labels, model.info.categories)
    thresholds, source = thresholds_for(model.info, labels, args.threshold)
    if args.censor:
        require_av()  # fail before the long pass, not after it
    wp = _window_probs(args, model, "flag")
    ranges = flag_ranges(wp, labels, thresholds, smooth=args.smooth, pad=args.pad, merge_gap=args.merge_gap)
    flagged = sum(r.end - r.start for r in ranges)
    censored = None
    if args.censor:
        censored = censor_video(args.video, ranges, args.censor, style=args.style, crf=args.crf, fps=wp.fps)
    if args.json:
        print(json.dumps(flag_result(wp, labels, thresholds, ranges, args.censor, censored)))
        return 0
    print(f"{args.video}: {len(ranges)} range{'s' if len(ranges) != 1 else ''} to censor, {format_clock(flagged)} of "
          f"{format_clock(wp.duration)} ({', '.join(labels)}; thresholds: {source})")
    for r in ranges:
        print(f"  {format_clock(r.start):>9} - {format_clock(r.end):>9}  ({r.end - r.start:5.1f} s)  {','.join(r.labels)}  {r.score:.2f}")
    if censored:
        print(f"censored copy: {args.censor} ({censored['censored']} of {censored['frames']} frames {'blacked out' if args.style == 'black' else 'blurred'}, "
              f"{censored['audio_streams']} audio stream{'s' if censored['audio_streams'] != 1 else ''} copied)")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from .apps.watch import ExecAction, WatchOptions, WebhookAction, parse_alert, watch

    say = _say(args.quiet)
    warn = lambda m: print(f"actionrec: {m}", file=sys.stderr)  # noqa: E731
    model = _classifier(args.model, args)
    rules = [parse_alert(a, model.info.categories) for a in args.alert]
    actions = []
    if args.exec:
        actions.append(ExecAction(args.exec, warn))
    if args.webhook:
        actions.append(WebhookAction(args.webhook, warn))

    def on_alert(alert) -> None:
        print(json.dumps(alert.to_dict()) if args.json else alert.line(), flush=True)
        for action in actions:
            action(alert)

    say(f"watching {args.source} for {', '.join(f'{r.label} >= {r.threshold:g}' for r in rules)} (Ctrl-C to stop)")
    try:
        options = WatchOptions(window=args.window, stride=args.stride, max_latency=args.max_latency, realtime=args.realtime,
                               batch_size=args.batch_size, confirm=args.confirm, cooldown=args.cooldown, fps=args.fps)
        stats = watch(args.source, model, rules, options, on_alert=on_alert, say=warn)
    finally:
        for action in actions:
            action.close()
    say(stats.summary())
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    """The stretches to review first: where the model disagrees with labelled segments, or is least sure."""
    from .apps.suggest import suggest
    from .apps.timeline import format_clock
    from .console import Skipped, progress_callback

    videos, segments = _suggest_inputs(args.inputs)
    model = _classifier(args.model, args)
    skipped = Skipped()
    update, close = progress_callback("suggest", "video", not args.quiet)
    try:
        found = suggest(model, videos, segments, args.top, cache=False if args.no_cache else args.cache,
                        progress=lambda done, total: update(round(done / 1000, 2), total // 1000),
                        on_error=skipped, window=args.window, stride=args.stride, threshold=args.threshold,
                        batch_size=args.batch_size)
    finally:
        close()
    if args.json:
        print(json.dumps([s.to_dict() for s in found]))
    else:
        print(f"{len(found)} suggestion{'s' if len(found) != 1 else ''} from {len(videos) - len(skipped.files)} of "
              f"{len(videos)} videos, best first (disagrees: the model contradicts a label; uncertain: label these next)")
        for n, s in enumerate(found, 1):
            current = f"  labelled {s.current}" if s.current else ""
            print(f"{n:3d}. {s.video}  {format_clock(s.start)} - {format_clock(s.end)} ({s.end - s.start:.1f} s)  "
                  f"{s.kind:<9}  model: {s.label} ({s.confidence:.2f}){current}")
    return 1 if skipped.files else 0


def _suggest_inputs(inputs: Sequence[str]) -> tuple[list[str], list]:
    """Videos and labelled segments from VIDEO_OR_MANIFEST arguments: a .csv is a manifest (its videos, in order,
    and its segments), anything else a video."""
    from .data.manifest import load_manifest

    videos: list[str] = []
    segments: list = []
    for item in inputs:
        if item.lower().endswith(".csv"):
            samples = load_manifest(item)
            segments += samples
            videos += [s.video for s in samples]
        else:
            videos.append(item)
    return list(dict.fromkeys(videos)), segments


# ----------------------------------------------------------------------------------------------- the parser


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def _model_parent() -> argparse.ArgumentParser:
    """--model/--run: pretrained weights or a trained run (predict, timeline, flag, watch)."""
    from .apps.predict import predict

    p = _parent()
    p.add_argument("--model", "--run", dest="model", default=default_of(predict, "model"),
                   help="pretrained weights name or a trained run directory (default: %(default)s)")
    return p


def _engine_parent() -> argparse.ArgumentParser:
    """How the network runs: --precision, --backend, --device (every command that runs it)."""
    from .defaults import BACKENDS, PRECISIONS

    p = _parent()
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: int8 where measured faster on this kind of CPU with the accuracy held (the pretrained "
                        "I3D and its runs on AVX-512 VNNI + bf16 CPUs), else float; float: bf16 where the CPU has native "
                        "bf16 (avx512_bf16/AMX), else fp32; int8: OpenVINO with NNCF-quantized convolutions (pip install "
                        "nncf) (default: %(default)s)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: OpenVINO on the CPU when installed, else PyTorch (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda[:N]; auto: CUDA when available (default: %(default)s)")
    return p


def _engine_options(args: argparse.Namespace) -> dict[str, str]:
    """--precision and --backend, passed by name to what builds the engine (load_model, TrainConfig, evaluate_run)."""
    return {"precision": getattr(args, "precision", "auto"), "backend": getattr(args, "backend", "auto")}


def _device(args: argparse.Namespace) -> str:
    """The device the inference commands load their model on."""
    from .distributed import ranks_from_env, resolve_device

    return str(resolve_device(getattr(args, "device", "auto"), ranks_from_env()))


def _window_parent() -> argparse.ArgumentParser:
    """--window and --stride of the commands that slide windows over a video or a stream."""
    from .defaults import DEFAULT_MIN_STRIDE

    p = _parent()
    p.add_argument("--window", type=float, default=None,
                   help="window length in seconds (default: the model's frames at its fps: 0.64 s for a run, 2.56 s for i3d-kinetics400)")
    p.add_argument("--stride", type=float, default=None,
                   help=f"seconds between window starts (default: max({DEFAULT_MIN_STRIDE:g}, window / 2))")
    return p


def _long_video_parent() -> argparse.ArgumentParser:
    """The video and the options that timeline and flag share."""
    from .apps.calibration import DEFAULT_THRESHOLD
    from .defaults import FRAMES_PER_BATCH

    p = _parent()
    p.add_argument("video", help="a video file (any length) or a folder of frames; timeline also takes a folder of "
                   "videos or a .txt list (an archive: one JSON per video under --out, time per action over all)")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"probability a class needs, for every class (default: calibrated on the run's validation clips, else {DEFAULT_THRESHOLD:g})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"windows per forward pass (default: {FRAMES_PER_BATCH} frames' worth: {FRAMES_PER_BATCH // 16} of 16 frames, {FRAMES_PER_BATCH // 64} of 64)")
    p.add_argument("--cache", default=None, help="where per-window probabilities (and a head-only run's pooled features, shared by runs on the same "
                   "backbone) are kept (default: $ACTIONREC_HOME/timelines)")
    p.add_argument("--no-cache", action="store_true", help="always run the model, keep nothing")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _dataset_args(p: argparse.ArgumentParser) -> None:
    """The labelled videos of train and evaluate (positional: after the command's own positionals)."""
    from .data.datasets import load_dataset

    p.add_argument("data", nargs="+", help="class folders root, UCF101 root, CSV manifest (path,label[,group][,split]), or several")
    p.add_argument("--classes", default=None, help="comma-separated class subset, e.g. BabyCrawling,IceDancing,SkateBoarding")
    p.add_argument("--split", type=int, default=default_of(load_dataset, "split"), choices=(1, 2, 3),
                   help="UCF101 official split (default: %(default)s)")
    p.add_argument("--cache", default=None, help="feature cache folder (default: $ACTIONREC_HOME/features)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines (skipped files are still said)")


def _add_predict(sub, parents: list[argparse.ArgumentParser]) -> None:
    from .apps.predict import Prediction, predict_iter

    p = sub.add_parser("predict", parents=parents, description="Top-K actions of each video.")
    p.add_argument("videos", nargs="+", help="video files (mp4, avi, mkv, webm, mov, gif) or folders of frames; or ONE "
                   "folder of videos or .txt list of videos (an archive: one JSON per video under --out, resumable)")
    p.add_argument("--out", default=None, help="archive mode: folder for the per-video JSON, index.jsonl and summary.json "
                   "(default: ./<archive name>_predictions)")
    p.add_argument("--quiet", action="store_true", help="archive mode: no progress bar")
    p.add_argument("--top", type=int, default=default_of(Prediction.to_dict, "k"), help="how many classes to show (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per video per line on stdout")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's: 64 for I3D, a run's own)")
    _test_views_arg(p, "the model's: 1 central clip for pretrained weights, a run's own test views")
    p.add_argument("--single-clip", action="store_true", help="the study's way: one central clip of the model's training length (16)")
    p.add_argument("--batch-size", type=int, default=default_of(predict_iter, "batch_size"),
                   help="clips per forward pass (default: %(default)s)")
    _add_group_options(p)
    p.set_defaults(func=cmd_predict)


def _test_views_arg(parser: argparse.ArgumentParser, default_text: str, default: int | None = None) -> None:
    """--test-views, the one name of scoring a video from several clips across train, evaluate and predict."""
    parser.add_argument("--test-views", type=int, default=default, metavar="N",
                        help=f"score each video by the mean probabilities of N clips spread evenly over it (default: {default_text})")


def _learning_rate(text: str) -> float | str:
    """--lr: a number, or "auto" (a range test on the cached features picks it)."""
    from .training.config import AUTO_LR

    if text == AUTO_LR:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or {AUTO_LR}, not {text!r}") from None


def _per_backbone(key: str) -> str:
    """A per-backbone default for a help text, e.g. `0.05 for i3d, 0.001 for c3d`."""
    from .training.config import BACKBONE_DEFAULTS

    def shown(value: object) -> str:
        return ",".join(value) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{shown(d[key])} for {name}" for name, d in BACKBONE_DEFAULTS.items())


def _add_train(sub, parents: list[argparse.ArgumentParser]) -> None:
    from .training.config import BACKBONE_DEFAULTS, HEAD_FITS, HEADS, TrainConfig as C
    from .defaults import FEWSHOT_UP_TO

    t = sub.add_parser("train", parents=parents, description="Transfer learning: cached backbone features, a softmax head, then fine-tuning.")
    _dataset_args(t)
    t.add_argument("--test", default=None, help="a folder of test videos (one sub-folder per class) instead of a held-out fraction")
    t.add_argument("--out", default=DEFAULT_TRAIN_OUT, help="run directory to write (default: %(default)s)")
    t.add_argument("--force", action="store_true", help="replace a finished run (or other files) in --out")
    t.add_argument("--backbone", default=C.backbone, choices=tuple(BACKBONE_DEFAULTS), help="(default: %(default)s)")
    t.add_argument("--weights", default=None, help=f"pretrained weights name (default: {_per_backbone('weights')}); "
                                                   "none = random initialisation (not transfer learning)")
    t.add_argument("--frames", type=int, default=C.frames, help="frames per clip (default: 16, the study's; 64 with --head temporal)")
    t.add_argument("--crop", type=int, default=C.crop, help="side of the square the backbone sees, cut from frames resized "
                   "to the weights' short side (default: the weights', 224 for I3D; 256 with the few-shot head on I3D: the "
                   "whole height of the frame, measured better with few examples)")
    t.add_argument("--head", default=C.head, choices=HEADS, help="linear: softmax on the pooled features (the study's); temporal: "
                   "a 1D convolution over I3D's per-step features, one per 8 frames (default: %(default)s)")
    t.add_argument("--head-fit", default=C.head_fit, choices=HEAD_FITS, help="logistic: the few-shot head (logistic "
                   "regression; with a 'none' class from 2 or more sources, the prototype head beside an open-set none; no "
                   "validation hold-out, its setting by cross-validation over whole groups, 4 clips per training video (3 "
                   "spread, the central one mirrored), no fine-tuning); softmax: SGD with validation, then fine-tuning; auto: logistic when a class has at most "
                   f"{FEWSHOT_UP_TO} groups (videos, sources) for training, else softmax (default: %(default)s)")
    t.add_argument("--views", type=int, default=C.views, help="clips per training video, 1 central + augmented (default: %(default)s)")
    t.add_argument("--epochs", type=int, default=C.epochs, help="head epochs; the best on validation is kept (default: %(default)s)")
    t.add_argument("--lr", type=_learning_rate, default=None, help=f"head learning rate, or auto: chosen by a range test "
                   f"on the cached features, its curve in the report (default: {_per_backbone('lr')})")
    t.add_argument("--weight-decay", type=float, default=C.weight_decay, help="L2 (default: %(default)s)")
    t.add_argument("--dropout", type=float, default=C.dropout, help="before the head (default: %(default)s)")
    t.add_argument("--batch-size", type=int, default=C.batch_size, help="(default: %(default)s)")
    t.add_argument("--patience", type=int, default=C.patience, help="early stopping on validation loss; 0 = off (default: %(default)s)")
    t.add_argument("--finetune-epochs", type=int, default=C.finetune_epochs, help="fine-tuning epochs, 0 = none (default: %(default)s)")
    t.add_argument("--finetune-lr", type=float, default=None, help=f"(default: {_per_backbone('finetune_lr')})")
    t.add_argument("--unfreeze", default=None, help=f"blocks to fine-tune (default: {_per_backbone('unfreeze')})")
    _test_views_arg(t, f"{C.test_views}; 1 = the central clip, the study's", C.test_views)
    t.add_argument("--val-fraction", type=float, default=C.val_fraction, help="of training, for validation (default: %(default)s)")
    t.add_argument("--test-fraction", type=float, default=C.test_fraction, help="held out when the data has no test set (default: %(default)s)")
    t.add_argument("--seed", type=int, default=C.seed, help="(default: %(default)s)")
    t.set_defaults(func=cmd_train)


def _add_evaluate_demo(sub, parents: list[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("evaluate", parents=parents)
    e.add_argument("run", help="run directory")
    _dataset_args(e)
    e.add_argument("--json", action="store_true", help="metrics as one JSON object")
    _test_views_arg(e, "the run's own, as its test phase")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", parents=parents)
    d.add_argument("--out", default=DEFAULT_DEMO_OUT, help="run directory, replaced if it exists (default: %(default)s)")
    d.add_argument("--data", default=None, help="where to write the demo videos (default: $ACTIONREC_HOME/demo-data)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)


def _add_compare(sub) -> None:
    c = sub.add_parser("compare", help="runs side by side (accuracy, loss, time, per-class F1, size)")
    c.add_argument("runs", nargs="+", help="run directories")
    c.add_argument("--markdown", action="store_true", help="a Markdown table")
    c.set_defaults(func=cmd_compare)


def _add_group_options(p: argparse.ArgumentParser) -> None:
    """--group-by / --group: report groups of classes (predict, timeline)."""
    p.add_argument("--group-by", default=None, metavar="category|FILE",
                   help="report groups of classes: 'category' (Kinetics-400's 38 published parent categories) or a "
                        "groups file (lines 'name: label, label'); probabilities are summed per group")
    p.add_argument("--group", action="append", default=[], metavar="NAME=LABEL,LABEL",
                   help="a group of your own (repeatable; adds to a groups file)")


def _groups(args: argparse.Namespace, model):
    """The Groups asked for by --group-by/--group for `model`'s classes, or None."""
    from .apps.categories import load_groups

    return load_groups(model.info.categories, args.group_by, args.group)


def _add_timeline_flag(sub, parents: list[argparse.ArgumentParser]) -> None:
    from .apps.flag import censor_video, flag_ranges
    from .defaults import DEFAULT_SMOOTH

    tl = sub.add_parser("timeline", parents=parents,
                        description="Sliding windows over the whole video in one streaming pass, smoothed, with 'none' "
                                    "where no class is confident; merged segments and the time per class.")
    tl.add_argument("--labels", default=None, help="comma-separated classes to report (e.g. Kinetics-400 'playing tennis,skiing'); others count as none")
    tl.add_argument("--smooth", type=float, default=DEFAULT_SMOOTH, help="seconds of windows over which a running median smooths the probabilities (default: %(default)s)")
    tl.add_argument("--min-segment", type=float, default=None, help="shorter segments go to their neighbours (default: 1.5 strides)")
    tl.add_argument("--out", default=None, help="folder for the CSV, JSON, SRT and PNG files (default: ./<video name>_timeline; "
                    "an archive: ./<name>_timelines)")
    _add_group_options(tl)
    tl.set_defaults(func=cmd_timeline)

    fl = sub.add_parser("flag", parents=parents,
                        description="The time ranges where any of --labels reaches its threshold; --censor writes a copy "
                                    "with them blacked out or blurred (audio copied, duration unchanged; needs PyAV).")
    fl.add_argument("--labels", required=True, help="comma-separated classes to flag")
    fl.add_argument("--censor", default=None, metavar="OUT", help="write a censored copy (.mp4, .mkv, .mov, .avi, .webm)")
    fl.add_argument("--style", choices=("black", "blur"), default=default_of(censor_video, "style"), help="how flagged frames are hidden (default: %(default)s)")
    fl.add_argument("--crf", type=int, default=default_of(censor_video, "crf"), help="H.264/VP9 quality of the copy, 0 = lossless (default: %(default)s)")
    fl.add_argument("--pad", type=float, default=default_of(flag_ranges, "pad"), help="seconds added before and after each range (default: %(default)s)")
    fl.add_argument("--merge-gap", type=float, default=default_of(flag_ranges, "merge_gap"), help="ranges closer than this are merged (default: %(default)s s)")
    fl.add_argument("--smooth", type=float, default=default_of(flag_ranges, "smooth"), help="seconds of running-median smoothing first (default: %(default)s, none)")
    fl.set_defaults(func=cmd_flag)


def _add_watch(sub, parents: list[argparse.ArgumentParser]) -> None:
    from .apps.watch import WatchOptions as W
    from .data.video import DEFAULT_FPS

    wa = sub.add_parser("watch", parents=parents,
                        description="Classify windows as the frames arrive and raise debounced alerts; ends at the end "
                                    "of the stream or on Ctrl-C.")
    wa.add_argument("source", help="camera index (0), stream URL (rtsp://, http://...) or video file")
    wa.add_argument("--alert", action="append", required=True, metavar="LABEL>=P",
                    help="raise an alert when LABEL's probability reaches P, e.g. 'Spinning>=0.8' (repeatable)")
    wa.add_argument("--exec", default=None, metavar="CMD", help="shell command run per alert, with ACTIONREC_LABEL, ACTIONREC_SCORE, "
                                                               "ACTIONREC_TIME, ACTIONREC_WALLTIME, ACTIONREC_ALERT (JSON)... in its environment")
    wa.add_argument("--webhook", default=None, metavar="URL", help="POST each alert as JSON to this URL")
    wa.add_argument("--max-latency", type=float, default=default_of(W, "max_latency"),
                    help="live sources: drop windows more than this many seconds behind the newest frame (default: %(default)s)")
    wa.add_argument("--realtime", action="store_true", help="read a file at its frame rate, like a camera (default: as fast as the model goes)")
    wa.add_argument("--confirm", type=int, default=default_of(W, "confirm"), help="windows in a row at the threshold to raise an alert (default: %(default)s)")
    wa.add_argument("--cooldown", type=float, default=default_of(W, "cooldown"), help="seconds below the threshold before the same alert again (default: %(default)s)")
    wa.add_argument("--fps", type=float, default=default_of(W, "fps"), help=f"frame rate of a source that does not tell (default: its own, else {DEFAULT_FPS:g})")
    wa.add_argument("--batch-size", type=int, default=default_of(W, "batch_size"), help="windows per forward pass (default: 1 live, 8 for a file)")
    wa.add_argument("--json", action="store_true", help="one JSON object per alert per line on stdout")
    wa.add_argument("--quiet", action="store_true", help="no start and summary lines on stderr")
    wa.set_defaults(func=cmd_watch)


def _add_weights_cache(sub) -> None:
    w = sub.add_parser("weights", help="list, fetch or calibrate (int8) pretrained weights")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wl = wsub.add_parser("list", help="what exists and what is cached")
    wl.set_defaults(func=cmd_weights_list)
    wf = wsub.add_parser("fetch", help="download (or take a local copy), check, convert and cache")
    wf.add_argument("name", help="weights name, e.g. i3d-kinetics400")
    wf.add_argument("--from", dest="source", default=None, help="a local file or URL instead of the published download")
    wf.add_argument("--force", action="store_true", help="convert again even if cached")
    wf.set_defaults(func=cmd_weights_fetch)
    wc = wsub.add_parser("calibrate", help="measure int8 activation ranges on your videos (for --precision int8)",
                         description="Runs the weights on central clips of up to 48 of VIDEO... and keeps each "
                                     "activation's range, so --precision int8 can quantize them (pip install nncf). "
                                     "i3d-kinetics400 ships its ranges; C3D and your own weights need this once.")
    wc.add_argument("name", help="weights name, e.g. c3d-sports1m")
    wc.add_argument("videos", nargs="+", metavar="VIDEO", help="real videos of the kind you will run it on")
    wc.add_argument("--out", default=None, help="where to write the ranges (default: the cache, where int8 finds them)")
    wc.set_defaults(func=cmd_weights_calibrate)

    c = sub.add_parser("cache", help="size of the feature, timeline and compiled-network caches; prune them by age or use",
                       description="Shows what the feature cache, the timeline cache and the compiled networks "
                                   "($ACTIONREC_HOME/compiled) hold; --older-than and --unused remove entries first "
                                   "(only the caches' own files).")
    c.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="remove feature entries and compiled networks not used, and timeline entries not written, "
                        "for this many days")
    c.add_argument("--unused", action="store_true", help="remove the feature recipes that no run under --runs uses")
    c.add_argument("--runs", nargs="+", default=["runs"], metavar="DIR", help="folders holding your run directories, for --unused (default: runs)")
    c.add_argument("--features", default=None, metavar="DIR", help="feature cache folder (default: $ACTIONREC_HOME/features)")
    c.add_argument("--timelines", default=None, metavar="DIR", help="timeline cache folder (default: $ACTIONREC_HOME/timelines)")
    c.set_defaults(func=cmd_cache)


def _add_suggest(sub, parents: list[argparse.ArgumentParser]) -> None:
    from .apps.calibration import DEFAULT_THRESHOLD
    from .defaults import DEFAULT_SUGGESTIONS

    p = sub.add_parser("suggest", parents=parents, help="what to review next: where a model disagrees with your labels or is least sure",
                       description="The model's timeline of each video beside its labelled segments: stretches where "
                                   "it confidently disagrees with a label first, then those it is least sure about "
                                   "(small margin between its top two classes or to the threshold), across all videos.")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_MANIFEST",
                   help="videos, or manifests (.csv: path,label[,start,end]...) whose videos and segments are used")
    p.add_argument("--top", type=int, default=DEFAULT_SUGGESTIONS, help="how many suggestions (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"probability a class needs, for every class (default: calibrated on the run's validation clips, else {DEFAULT_THRESHOLD:g})")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: as timeline)")
    p.add_argument("--cache", default=None, help="where per-window probabilities (and a head-only run's pooled features, shared by runs on the same "
                   "backbone) are kept (default: $ACTIONREC_HOME/timelines)")
    p.add_argument("--no-cache", action="store_true", help="always run the model, keep nothing")
    p.add_argument("--json", action="store_true", help="a JSON list of suggestions on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_suggest)


class _Parsers(dict):
    """Command name -> parser, where looking a lazy command up builds its parser first (see _Commands)."""

    def __init__(self, build: Callable[[str], None]):
        super().__init__()
        self._build = build

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        self._build(name)
        return super().__getitem__(name)


class _Commands(argparse._SubParsersAction):
    """The subcommands. A lazy one (:meth:`add_lazy`) is listed by `actionrec --help` from its one-line help alone;
    its parser is built when it is chosen, because the modules that declare its defaults import numpy or OpenCV
    (never PyTorch or OpenVINO: every command's help starts at once, tests/test_startup.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, tuple[str, Callable[[], None]]] = {}  # name -> (one-line help, what adds its parser)
        self._name_parser_map = self.choices = _Parsers(self.build)

    def add_lazy(self, helps: dict[str, str], build: Callable[[], None]) -> None:
        """Commands (name: one-line help) whose parsers `build()` adds with add_parser, once one of them is chosen."""
        for name, text in helps.items():
            super().add_parser(name, help=text)  # a stand-in: listed, and a valid choice
            self._lazy[name] = (text, build)

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        if name in self._lazy:  # the real parser of a lazy command replaces its stand-in (and is listed already)
            text, _ = self._lazy.pop(name)
            del self._name_parser_map[name]
            kwargs.pop("help", None)
            kwargs.setdefault("description", text[:1].upper() + text[1:] + ".")
        return super().add_parser(name, **kwargs)

    def build(self, name: str) -> None:
        """Build the parser of `name` if it is a lazy command not built yet."""
        if name in self._lazy:
            self._lazy[name][1]()


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Most commands' parsers are built when chosen (see _Commands), so that `actionrec
    --help` imports only what listing the commands needs."""
    parser = argparse.ArgumentParser(prog="actionrec", description="Recognise human actions in videos with pretrained 3D CNNs.")
    sub = parser.add_subparsers(dest="command", required=True, action=_Commands)
    model, windows, engine = functools.cache(_model_parent), functools.cache(_window_parent), functools.cache(_engine_parent)
    sub.add_lazy({"predict": "per-class probabilities for videos"}, lambda: _add_predict(sub, [model(), engine()]))
    sub.add_lazy({"train": "train a classifier on your classes"}, lambda: _add_train(sub, [engine()]))
    evaluate_demo = lambda: _add_evaluate_demo(sub, [engine()])  # noqa: E731
    sub.add_lazy({"evaluate": "score a trained run on labelled videos"}, evaluate_demo)
    _add_compare(sub)
    sub.add_lazy({"demo": "the whole workflow on a built-in synthetic dataset, in minutes"}, evaluate_demo)
    sub.add_lazy({"timeline": "label a long video over time: segments, minutes per class, CSV/JSON/SRT/PNG",
                  "flag": "time ranges showing given actions, and optionally a censored copy"},
                 lambda: _add_timeline_flag(sub, [model(), windows(), _long_video_parent(), engine()]))
    sub.add_lazy({"watch": "live alerts on a camera, a stream or a file"}, lambda: _add_watch(sub, [model(), windows(), engine()]))
    sub.add_lazy({"suggest": "what to review next: where a model disagrees with your labels or is least sure"},
                 lambda: _add_suggest(sub, [model(), windows(), engine()]))
    _add_weights_cache(sub)
    sub.add_lazy({"doctor": "the CPU, its flags, and the backend and precision the engine picks"}, lambda: _add_doctor(sub))
    sub.add_lazy({"export": "export a model or run to ONNX or OpenVINO IR, with PATH.json saying how to feed it"},
                 lambda: _add_export(sub))
    from .serve.cli import add_parser as add_serve_parser

    add_serve_parser(sub)
    return parser


def cmd_doctor(args: argparse.Namespace) -> int:
    """What runs the network on this machine: the CPU and its flags, the backend and precision the engine chose."""
    from .engine import Engine
    from .models.info import ModelInfo
    from .models.pretrained import build_model, get_spec

    spec = get_spec("i3d-kinetics400")  # the architecture only: no weights are needed to see what would run it
    info = ModelInfo(name="probe", spec=spec, categories=spec.categories, weights_sha256="", predict_frames=16, identity="")
    report = Engine(build_model(info, None, _device(args)), device=_device(args), **_engine_options(args)).describe()
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0


def _add_doctor(sub) -> None:
    d = sub.add_parser("doctor", parents=[_engine_parent()])
    d.add_argument("--json", action="store_true", help="one JSON object")
    d.set_defaults(func=cmd_doctor)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model or run to ONNX / OpenVINO IR with PATH.json, checked against the eager model first."""
    from .apps.export import export

    manifest = export(args.model, args.format, args.out, clip=args.clip, force=args.force)
    check = manifest["verified"]
    print(json.dumps(manifest) if args.json else
          f"{args.out}: {args.format} ({', '.join(manifest['files'])}) and {args.out}.json; checked on {check['clip']} "
          f"with {check['runtime']}: top-1 {check['exported_top1']!r} as the model, logits within "
          f"{check['max_abs_logit_diff']:.2g} (tolerance {check['tolerance']:.2g})")
    return 0


def _add_export(sub) -> None:
    from .defaults import EXPORT_FORMATS

    e = sub.add_parser("export")
    e.add_argument("model", metavar="MODEL_OR_RUN", help="pretrained weights name (e.g. i3d-kinetics400) or a run directory")
    e.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="onnx: one .onnx file; openvino: an IR .xml + .bin")
    e.add_argument("--out", required=True, metavar="PATH", help="the exported file; its description goes to PATH.json")
    e.add_argument("--clip", default=None, metavar="VIDEO", help="video to check the export on (default: a built-in clip)")
    e.add_argument("--force", action="store_true", help="replace an existing PATH")
    e.add_argument("--json", action="store_true", help="print PATH.json's object")
    e.set_defaults(func=cmd_export)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
