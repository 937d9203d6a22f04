"""Export the whole network a prediction runs (backbone, and for a run its trained layers and head) to ONNX or
OpenVINO IR, with `PATH.json` beside it stating everything needed to feed it, and check the exported file before
saying done.

The JSON is derived from the model's own description (`model.info`: its WeightsSpec's fps, resize, crop, mean and
std, the frames and test views it predicts with, its classes), never from a second copy of those numbers. The check
decodes a clip with plain OpenCV and numpy *as the JSON says* (:func:`clips_as_described`, which does not use
actionrec's transforms), runs the exported file in its own runtime (ONNX Runtime, OpenVINO) and compares the logits
with the eager fp32 PyTorch model on actionrec's own preprocessing of the same clip: same top-1, and every logit
within ``LOGIT_TOLERANCE`` times the largest reference logit (at least 1). A disagreement is refused in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.sampling import _EPS as SAMPLING_EPS  # the samplers' epsilon: exact frame-rate ratios do not floor down
from ..defaults import EXPORT_FORMATS, STEP_FRAMES  # I3D's SAME paddings are the same for any multiple of STEP_FRAMES
from ..errors import ActionrecError
from ..files import write_json

MANIFEST_FORMAT = "actionrec-export"
INPUT, OUTPUT = "clip", "logits"
LOGIT_TOLERANCE = 1e-3  # of max(1, the largest |logit| of the reference): fp32 runtimes agree to ~1e-5 here
MIN_STEPS = 2  # and its final (2, 7, 7) pool needs 2 steps to keep one graph
MAX_STEPS = 4096


@dataclass(frozen=True)
class Check:
    """How the exported file compared with the eager model on one clip."""

    clip: str
    runtime: str
    reference_top1: str
    exported_top1: str
    max_abs_diff: float  # largest |exported - reference| logit
    tolerance: float
    max_input_diff: float  # largest |JSON-described input - actionrec's input|, for diagnosis

    @property
    def ok(self) -> bool:
        return self.reference_top1 == self.exported_top1 and self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"clip": self.clip, "runtime": self.runtime, "reference": "actionrec eager fp32 PyTorch model",
                "reference_top1": self.reference_top1, "exported_top1": self.exported_top1,
                "max_abs_logit_diff": self.max_abs_diff, "tolerance": self.tolerance, "max_abs_input_diff": self.max_input_diff,
                "tolerance_rule": f"{LOGIT_TOLERANCE} x max(1, largest |reference logit|)"}


def frames_rule(model: nn.Module) -> dict[str, int] | None:
    """The clip lengths the exported graph takes ({"multiple_of", "min"}), or None when it is fixed at the model's
    predict frames (C3D's fc6, a temporal head traced for its steps, a length that is not a multiple of 8)."""
    from ..models.i3d import I3D

    frames = model.info.predict_frames
    if isinstance(model, I3D) and model.temporal_head is None and frames % STEP_FRAMES == 0 \
            and frames >= STEP_FRAMES * MIN_STEPS:
        return {"multiple_of": STEP_FRAMES, "min": STEP_FRAMES * MIN_STEPS}
    return None


def feeding(model: nn.Module) -> dict[str, Any]:
    """Everything needed to feed the exported network, derived from `model.info` (see the module doc)."""

    info, spec = model.info, model.info.spec
    rule = frames_rule(model)
    return {
        "input": {"name": INPUT, "dtype": "float32", "layout": "NCTHW",
                  "shape": ["batch", 3, "frames" if rule else info.predict_frames, spec.crop, spec.crop],
                  "frames": info.predict_frames, "frames_allowed": rule or {"exactly": info.predict_frames}},
        "output": {"name": OUTPUT, "shape": ["batch", len(info.categories)],
                   "meaning": "class logits in the order of `classes`; softmax over them gives probabilities"},
        "sampling": {
            "frames": info.predict_frames, "fps": spec.fps, "views": info.test_views,
            "rule": ("decode every frame (OpenCV); frame j of a clip is source frame floor(j * video_fps / fps + "
                     f"{SAMPLING_EPS}) after its start (fps null: consecutive frames); footprint = that offset for "
                     "the last frame + 1; view k of V starts at floor((k + 0.5) * num_frames / V - footprint / 2 + "
                     f"{SAMPLING_EPS}) clamped to [0, num_frames - footprint] (V = 1: the central clip); a video "
                     "shorter than the footprint starts at 0 and is looped (offsets modulo num_frames)"),
            "combine": "softmax of each view's logits, averaged over the views",
        },
        "preprocess": {
            "colour": "RGB (OpenCV decodes BGR: convert)",
            "resize": {"short_side": spec.resize,
                       "long_side": f"int(long * {spec.resize} / short + 0.5)",
                       "interpolation": "cv2.INTER_AREA when the frame shrinks, cv2.INTER_LINEAR when it grows, "
                                        "none when it already has that size"},
            "crop": {"size": spec.crop, "position": "centre",
                     "offset": f"round((side - {spec.crop}) / 2) on each axis (Python's round: halves to even)"},
            "scale": "x / 255 (float32)", "mean": list(spec.mean), "std": list(spec.std),
            "normalise": "(x / 255 - mean) / std per channel, RGB order",
            "value_range": list(spec.value_range),
        },
        "classes": list(info.categories),
    }


def export(model_or_run: str | os.PathLike, fmt: str, out: str | os.PathLike, clip: str | os.PathLike | None = None,
           force: bool = False) -> dict[str, Any]:
    """Export `model_or_run` (weights name or run directory) to `out` in `fmt` ("onnx": one .onnx file; "openvino":
    an IR .xml + .bin), check it (see the module doc) on `clip` (default: a built-in synthetic clip), then write
    `out + ".json"`. Returns that JSON. An existing `out` is kept unless `force`; a failed check writes nothing."""
    from .. import __version__, load_model

    fmt, out = _check_format(fmt), Path(out)
    targets = _targets(fmt, out)
    existing = [p for p in (*targets, _manifest_path(out)) if p.exists()]
    if existing and not force:
        raise ActionrecError(f"{existing[0]}: already exists; choose another --out or pass --force to replace it")
    if clip is not None and not Path(clip).is_file():
        raise ActionrecError(f"{clip}: no such video; give a readable video with --clip")
    model = load_model(model_or_run, fast=False)
    from ..models.info import check_classifier

    check_classifier(model.info)
    manifest = {"format": MANIFEST_FORMAT, "format_version": 1, "model": model.info.name,
                "weights": model.info.spec.name, "weights_sha256": model.info.weights_sha256,
                "identity": model.info.identity, "actionrec_version": __version__, "runtime_format": fmt,
                **feeding(model)}
    with tempfile.TemporaryDirectory(dir=_mkdir(out.parent), prefix=f".{out.name}.") as tmp:
        staged = _targets(fmt, Path(tmp) / out.name)
        _write_graph(model, fmt, staged[0], frames_rule(model) is not None)
        with _clip_to_check(clip) as video:
            check = verify(model, manifest, staged[0], video, fmt)
        if not check.ok:
            raise ActionrecError(
                f"{out}: the exported {fmt} file disagrees with the model on {check.clip} (top-1 {check.exported_top1!r} "
                f"vs {check.reference_top1!r}, logits differ by up to {check.max_abs_diff:.3g} > {check.tolerance:.3g}, "
                f"inputs by {check.max_input_diff:.3g}); nothing was written: report this with the model and torch version")
        manifest["files"] = {p.name: _sha256(p) for p in staged}
        manifest["file"], manifest["verified"] = staged[0].name, check.to_dict()
        write_json(_manifest_path(staged[0].parent / out.name), manifest)
        for source, target in zip((*staged, _manifest_path(staged[0].parent / out.name)), (*targets, _manifest_path(out))):
            os.replace(source, target)  # the JSON last: an export without its JSON is unfinished
    return manifest


def _check_format(fmt: str) -> str:
    if fmt not in EXPORT_FORMATS:
        raise ActionrecError(f"unknown export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    return fmt


def _targets(fmt: str, out: Path) -> tuple[Path, ...]:
    """The files an export writes: the .onnx file, or the IR's .xml and its .bin (named after `out`)."""
    if fmt == "onnx":
        return (out,)
    xml = out if out.suffix == ".xml" else out.with_name(out.name + ".xml")
    return xml, xml.with_suffix(".bin")


def _manifest_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Logits(nn.Module):
    """The model's forward to logits, whatever its head (the one graph a prediction runs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.model.forward_logits(clip)


def _example_and_shapes(model: nn.Module, dynamic_frames: bool) -> tuple[torch.Tensor, tuple[dict, ...]]:
    """An example input (batch 2, so the batch stays symbolic) and the dynamic dimensions: batch, and frames as a
    multiple of 8 when the network allows it."""
    info = model.info
    example = torch.zeros(2, 3, info.predict_frames, info.spec.crop, info.spec.crop)
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=1024)}
    if dynamic_frames:
        dims[2] = STEP_FRAMES * torch.export.Dim("steps", min=MIN_STEPS, max=MAX_STEPS)
    return example, (dims,)


def _write_graph(model: nn.Module, fmt: str, path: Path, dynamic_frames: bool) -> None:
    """Export the logits graph of `model` to `path` (.onnx, or .xml with its .bin), dynamic in batch (and frames)."""
    network = _Logits(model).eval()
    example, shapes = _example_and_shapes(model, dynamic_frames)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            _export_onnx(network, example, shapes, path)
            return
        import openvino  # its PyTorch frontend cannot convert I3D's symbolic SAME paddings: convert the ONNX graph

        onnx_path = path.with_suffix(".onnx")
        _export_onnx(network, example, shapes, onnx_path)
        openvino.save_model(openvino.convert_model(onnx_path), path, compress_to_fp16=False)  # fp16 would change logits
        onnx_path.unlink()


def _export_onnx(network: nn.Module, example: torch.Tensor, shapes: tuple[dict, ...], path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ActionrecError("exporting to ONNX needs onnx and onnxscript: pip install 'actionrec[export]'") from None
    import io
    import logging

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" and the like
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
        program = torch.onnx.export(network, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes=shapes, external_data=False, verbose=False)
    if len(shapes[0]) > 1:  # name the frames dimension "frames" (the exporter writes "8*steps")
        program.model_proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "frames"
    import onnx

    onnx.save_model(program.model_proto, str(path))


# ------------------------------------------------------------------------------------------ the check


def clips_as_described(manifest: dict[str, Any], video: str | os.PathLike) -> np.ndarray:
    """The network inputs (views, 3, T, crop, crop) float32 of `video`, made with OpenCV and numpy from the JSON's
    rules alone (not actionrec's transforms): what a user's own code does with the exported file."""
    import cv2

    capture = cv2.VideoCapture(os.fspath(video))
    video_fps, frames = capture.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise ActionrecError(f"{video}: no frame could be decoded; give a readable video with --clip")
    sampling, pre = manifest["sampling"], manifest["preprocess"]
    views = [np.stack([_frame_as_described(frames[i], pre) for i in indices])
             for indices in _view_indices(len(frames), video_fps, sampling)]
    clips = (np.stack(views).astype(np.float32) / 255.0 - np.float32(pre["mean"])) / np.float32(pre["std"])
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3), dtype=np.float32)


def _view_indices(num_frames: int, video_fps: float, sampling: dict[str, Any]) -> list[np.ndarray]:
    """Source-frame indices of each view, as the JSON's sampling rule says."""
    n, fps, views = sampling["frames"], sampling["fps"], sampling["views"]
    step = 1.0 if fps is None else video_fps / fps
    offsets = np.floor(np.arange(n) * step + SAMPLING_EPS).astype(np.int64)
    footprint = int(offsets[-1]) + 1
    if footprint > num_frames:
        return [offsets % num_frames] * views
    starts = [min(max(math.floor((k + 0.5) * num_frames / views - footprint / 2 + SAMPLING_EPS), 0),
                  num_frames - footprint) for k in range(views)]
    return [start + offsets for start in starts]


def _frame_as_described(bgr: np.ndarray, pre: dict[str, Any]) -> np.ndarray:
    """One decoded BGR frame -> the RGB crop, resized and cropped as the JSON says (uint8)."""
    import cv2

    h, w = bgr.shape[:2]
    side, crop = pre["resize"]["short_side"], pre["crop"]["size"]
    size = (side, int(w * side / h + 0.5)) if h <= w else (int(h * side / w + 0.5), side)  # (height, width)
    if size != (h, w):
        shrink = size[0] * size[1] < h * w
        bgr = cv2.resize(bgr, size[::-1], interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    top, left = round((size[0] - crop) / 2), round((size[1] - crop) / 2)
    return cv2.cvtColor(bgr[top : top + crop, left : left + crop], cv2.COLOR_BGR2RGB)


def _reference_inputs(model: nn.Module, video: str, views: int) -> torch.Tensor:
    """The inputs actionrec's own prediction path makes of `video` (probe, sampler, decoder, transforms)."""
    from ..data.transforms import preprocess
    from ..data.video import probe, read_clips, uniform_clips

    spec, frames = model.info.spec, model.info.predict_frames
    meta = probe(video)
    spans = uniform_clips(meta.num_frames, meta.fps, n=frames, count=views, target_fps=spec.fps)
    return torch.stack([preprocess(c.frames, spec) for c in read_clips(video, spans, short_side=spec.resize)])


def run_exported(path: Path, fmt: str, x: np.ndarray) -> tuple[np.ndarray, str]:
    """(logits, runtime name and version) of the exported file at `path` on inputs `x`, in its own runtime (fp32)."""
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ActionrecError("checking an ONNX export needs onnxruntime: pip install 'actionrec[export]'") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run([OUTPUT], {INPUT: x})[0], f"onnxruntime {onnxruntime.__version__}"
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled({INPUT: x})[OUTPUT], f"openvino {openvino.get_version()}"


def verify(model: nn.Module, manifest: dict[str, Any], path: Path, video: str, fmt: str) -> Check:
    """Compare the exported file at `path` on `video` prepared as `manifest` says with the eager `model` on
    actionrec's own preparation of it (see the module doc)."""
    described = clips_as_described(manifest, video)
    reference_x = _reference_inputs(model, video, manifest["sampling"]["views"])
    with torch.no_grad():
        reference = model.forward_logits(reference_x).numpy()
    exported, runtime = run_exported(path, fmt, described)
    classes = manifest["classes"]
    top = lambda logits: classes[int(_softmax(logits).mean(0).argmax())]  # noqa: E731
    diff = float(np.abs(exported - reference).max()) if exported.shape == reference.shape else math.inf
    tolerance = LOGIT_TOLERANCE * max(1.0, float(np.abs(reference).max()))
    input_diff = float(np.abs(described - reference_x.numpy()).max()) if described.shape == reference_x.shape else math.inf
    return Check(os.path.basename(video), runtime, top(reference), top(exported), diff, tolerance, input_diff)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@contextlib.contextmanager
def _clip_to_check(clip: str | os.PathLike | None) -> Iterator[str]:
    """The clip to check on: the user's, or a built-in synthetic one written to a temporary folder."""
    if clip is not None:
        yield os.fspath(clip)
        return
    with tempfile.TemporaryDirectory(prefix="actionrec-export-") as tmp:
        yield write_builtin_clip(Path(tmp) / "builtin.avi")


def write_builtin_clip(path: Path, frames: int = 80, fps: float = 25.0) -> str:
    """A deterministic 320x240 MJPEG clip of stripes drifting over a gradient (no data files needed)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    for t in range(frames):
        stripes = 127.5 + 127.5 * np.sin((x + 4 * t) / 9.0 + np.sin(y / 23.0 + t / 7.0))
        frame = np.stack([stripes, (x / 320 * 255 + 2 * t) % 256, (y / 240 * 255)], axis=-1)
        writer.write(frame.astype(np.uint8))
    writer.release()
    return str(path)
