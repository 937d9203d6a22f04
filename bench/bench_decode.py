"""Decoding speed of a central clip: actionrec.data.video (OpenCV) against a plain PyAV decode.

For each video, measures the wall time to get the central 16 frames, and the central 64 frames
resampled to 25 fps (I3D's input), as uint8 RGB arrays, starting from the file path (open + probe +
decode + colour conversion, no resizing). PyAV decodes the very same frame indices sequentially from
the start, converting only the frames it keeps; "PyAV threaded" is the same with FFmpeg's frame
threading switched on (``thread_type = "AUTO"``). Both decoders' frames are compared (mean absolute
difference in grey levels; the two FFmpeg builds convert YUV to RGB slightly differently).

Videos: (a) a generated UCF101-like clip, 320x240, 25 fps, 7 s, XVID AVI (OpenCV's writer);
(b) the same frames as H.264 MP4 with 3 B-frames (x264 CRF 23, key frame every 250 frames); (c) the real clips in ../shared/realclips/ if present.

Run:  python bench/bench_decode.py [--repeat 15]    (about a minute; prints a Markdown table)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import av  # noqa: E402
import cv2  # noqa: E402

from actionrec.data import video as V  # noqa: E402
from videos import textured_frames, write_video  # noqa: E402

REALCLIPS = ROOT.parent / "shared" / "realclips"


def pyav_frames(path: str, indices: np.ndarray, threaded: bool) -> np.ndarray:
    """Plain PyAV: decode from the start, keep (as RGB arrays) the frames whose index is wanted."""
    wanted = sorted(set(indices.tolist()))
    kept: dict[int, np.ndarray] = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        if threaded:
            stream.thread_type = "AUTO"
        k = 0
        last = wanted[-1]
        for i, frame in enumerate(container.decode(stream)):
            if i == wanted[k]:
                kept[i] = frame.to_ndarray(format="rgb24")
                k += 1
                if i == last:
                    break
    return np.stack([kept[i] for i in indices.tolist()])


def timed_interleaved(fns: list, repeat: int) -> tuple[list[float], list[object]]:
    """Median ms of each function; the runs are interleaved so that load changes hit all alike."""
    results = [fn() for fn in fns]  # warm-up (file cache, lazy library set-up)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) * 1000.0 for t in times], results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per cell (median reported)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        frames = textured_frames(175, 240, 320)
        avi = write_video(Path(tmp) / "ucf_like.avi", frames, 25.0, "cv2-xvid")
        mp4 = write_video(Path(tmp) / "ucf_like.mp4", frames, 25.0, gop=250, crf=23)
        videos = [
            ("UCF101-like 320x240 XVID .avi (generated)", str(avi)),
            ("UCF101-like 320x240 H.264 B-frames .mp4 (generated)", str(mp4)),
        ]
        for name in ("arm_wrestling.mp4", "archery.avi"):
            path = REALCLIPS / name
            if path.exists():
                videos.append((f"{name} (real)", str(path)))
            else:
                print(f"(skipping {path}: not present)", file=sys.stderr)

        rows = []
        for label, path in videos:
            info = V.probe(path)
            with av.open(path) as container:
                codec = container.streams.video[0].codec_context.name
            for n, target_fps in ((16, None), (64, 25.0)):
                span = V.central_clip(info.num_frames, info.fps, n, target_fps)
                (ours_ms, av_ms, avt_ms), (ours, theirs, _) = timed_interleaved(
                    [
                        lambda: V.read_clip(path, n=n, target_fps=target_fps),
                        lambda: pyav_frames(path, span.frame_indices, False),
                        lambda: pyav_frames(path, span.frame_indices, True),
                    ],
                    args.repeat,
                )
                assert ours.span.frame_indices.tolist() == span.frame_indices.tolist()
                diff = float(np.abs(ours.frames.astype(np.int16) - theirs.astype(np.int16)).mean())
                clip = f"central {n}" + (" @25 fps" if target_fps else "")
                last = int(span.frame_indices.max())
                rows.append((label, f"{codec}, {info.width}x{info.height}, {info.fps:g} fps, {info.num_frames} fr",
                             clip, last + 1, ours_ms, av_ms, avt_ms, diff))

    print(f"Decode benchmark: {platform.machine()}, {os.cpu_count()} CPU cores, OpenCV {cv2.__version__}, "
          f"PyAV {av.__version__}; median of {args.repeat} interleaved runs, ms per clip from the file path (lower is better).")
    print()
    print("| video | codec, size, fps, frames | clip | frames decoded | actionrec (OpenCV) ms | PyAV ms | PyAV threaded ms | mean abs diff |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for label, fmt, clip, decoded, ours_ms, av_ms, avt_ms, diff in rows:
        print(f"| {label} | {fmt} | {clip} | {decoded} | {ours_ms:.1f} | {av_ms:.1f} | {avt_ms:.1f} | {diff:.2f} |")


if __name__ == "__main__":
    main()
