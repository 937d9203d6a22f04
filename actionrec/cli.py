"""`actionrec` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import ActionrecError


def _error(message: str) -> None:
    print(f"actionrec: error: {message}", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> int:
    from . import load_model
    from .predict import predict_iter

    model = load_model(args.model)
    failed = 0

    def on_error(video: str, message: str) -> None:
        nonlocal failed
        failed += 1
        _error(message if video in message else f"{video}: {message}")

    windows = 1 if args.single_clip else args.windows
    frames = model.spec.clip_len if args.single_clip else args.frames
    for pred in predict_iter(args.videos, model, frames=frames, windows=windows, batch_size=args.batch_size, on_error=on_error):
        if args.json:
            print(json.dumps(pred.to_dict(args.top)), flush=True)
        else:
            note = " (shorter than one window: looped)" if pred.looped else ""
            print(f"{pred.video}{note}")
            for label, prob in pred.top(args.top):
                print(f"  {prob:7.3f}  {label}")
            sys.stdout.flush()
    return 1 if failed else 0


def cmd_weights_list(args: argparse.Namespace) -> int:
    from .models import PRETRAINED
    from .weights import weights_path

    for spec in PRETRAINED.values():
        path = weights_path(spec)
        state = f"cached at {path}" if path.exists() else "not cached (actionrec weights fetch " + spec.name + ")"
        print(f"{spec.name}: {spec.description}")
        print(f"    input {spec.clip_len}x{spec.crop}x{spec.crop} RGB at {spec.fps or 'native'} fps, range {spec.value_range}, "
              f"{len(spec.categories)} classes, licence {spec.licence}")
        print(f"    source {spec.url or 'bring your own file (--from FILE)'}")
        print(f"    {state}")
    return 0


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .models import fetch_weights

    path = fetch_weights(args.name, source=args.source, force=args.force)
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actionrec", description="Recognise human actions in videos with pretrained 3D CNNs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="per-class probabilities for videos", description="Top-K actions of each video.")
    p.add_argument("videos", nargs="+", help="video files (mp4, avi, mkv, webm, mov, gif) or folders of frames")
    p.add_argument("--model", default="i3d-kinetics400", help="pretrained weights name (default: %(default)s)")
    p.add_argument("--top", type=int, default=5, help="how many classes to show (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per video per line on stdout")
    p.add_argument("--frames", type=int, default=None, help="frames per window (default: the model's; 64 for I3D)")
    p.add_argument("--windows", type=int, default=1, help="evenly spaced windows to average (default: %(default)s, central)")
    p.add_argument("--single-clip", action="store_true", help="the study's way: one central clip of the model's training length (16)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (default: %(default)s)")
    p.set_defaults(func=cmd_predict)

    w = sub.add_parser("weights", help="list or fetch pretrained weights")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wl = wsub.add_parser("list", help="what exists and what is cached")
    wl.set_defaults(func=cmd_weights_list)
    wf = wsub.add_parser("fetch", help="download (or take a local copy), check, convert and cache")
    wf.add_argument("name", help="weights name, e.g. i3d-kinetics400")
    wf.add_argument("--from", dest="source", default=None, help="a local file or URL instead of the published download")
    wf.add_argument("--force", action="store_true", help="convert again even if cached")
    wf.set_defaults(func=cmd_weights_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ActionrecError as err:
        _error(str(err))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
