"""A small labelled set of real video files for the built-in demo, synthesised with numpy and OpenCV.

Each clip shows 3-4 striped objects (each spanning 22-30 % of the frame's short side) that all do
the same thing; the classes differ in *motion* only:

* ``Bouncing``: each object falls and bounces on a floor with gravity (vertical, parabolic);
* ``Sliding``: the objects translate horizontally at constant speed, all the same way;
* ``Spinning``: each object rotates in place at constant angular speed (either direction);
* ``Zooming``: each object grows and shrinks in place (sinusoidally, with its own phase).

Everything else is drawn from the *same* distribution for every class, so that colour, shape,
size, position or background cannot tell the classes apart: each class's clips get evenly
spread hues (stratified, then shuffled) and each shape and object count equally often; the
background style of source ``s<NN>`` (kind, tints, brightness, angle, scale) is the same in
every class, only its random details (noise, phase) differ; and all clips get mild camera
shake, sensor noise and flicker.  Objects are saturated colours with a darker rim and stripes
that move with them; backgrounds are muted (saturation at most 0.25), so the objects stand out
at any brightness (the tests find them that way).  The motion happens in the central square of
the frame, the part that a centre crop keeps.

Why several striped objects: a pretrained 3D CNN's pooled features are dominated by the static
scene; one flat-coloured object moving over a textured background changes them too little for
a linear probe on a few dozen clips (about 55-70 % held-out accuracy on 4 classes), while 3-4
striped objects make the motion a large part of the picture (about 95 %).

Layout: ``root/<Class>/<Class>_s<NN>_c<NN>.mp4``.  The clips of a class come in "sources" of
2-3 clips sharing a background, named so that :func:`actionrec.datasets.infer_group` groups them
(group ``<Class>/<class>_s<NN>``) and group-aware splitting keeps a source on one side.
``root/demo.json`` records the parameters and files; it is written last, so a dataset without it
(an interrupted run) is rewritten, and one with it and the same parameters is reused as is.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import ActionrecError
from ..files import write_text
from .video import cv2_path

__all__ = ["DEMO_CLASSES", "write_demo_dataset"]

DEMO_CLASSES: tuple[str, ...] = ("Bouncing", "Sliding", "Spinning", "Zooming")

# Bump when the rendering changes, so that datasets written by an older version are rewritten.
DEMO_VERSION = 1
MANIFEST = "demo.json"

SHAPES: tuple[str, ...] = ("bar", "cross", "triangle", "star", "ellipse", "propeller")
BACKGROUNDS: tuple[str, ...] = ("gradient", "clouds", "stripes", "checker")
OBJECTS = (3, 4)  # objects per clip, all doing the class's motion
SIZE = (0.11, 0.15)  # object radius, as a fraction of the short side: each spans 22-30 % of it
STRIPE = 0.35  # contrast of the stripes painted on the objects

# (fourcc, extension): mp4v first; MJPG in AVI where this OpenCV cannot write or read back MPEG-4.
_CODECS: tuple[tuple[str, str], ...] = (("mp4v", ".mp4"), ("MJPG", ".avi"))
_CLASS_IDS = {name: i for i, name in enumerate(DEMO_CLASSES)}
_OUR_FILE = re.compile(r"^\.?(?P<cls>[A-Za-z]+)_s\d+_c\d+(\.part)?\.(mp4|avi)$")


# ----------------------------------------------------------------------------- public API


def write_demo_dataset(
    root: str | os.PathLike,
    clips_per_class: int = 24,
    seed: int = 0,
    size: tuple[int, int] = (160, 120),
    frames: int = 40,
    fps: float = 25.0,
    classes: Sequence[str] = DEMO_CLASSES,
) -> Path:
    """Write the demo dataset under `root` (if it is not already there) and return `root` as a Path.

    `classes` picks a subset of DEMO_CLASSES (e.g. three, like the study's UCF101 subset).
    `size` is (width, height) in pixels; every clip has `frames` frames at `fps`.  The same
    arguments always give the same frames.  If `root/demo.json` says that a complete dataset with
    these arguments is there, nothing is written; otherwise our files under `root` are replaced.
    A non-empty `root` that is not a demo dataset is refused (nothing in it is touched).
    """
    params = _params(classes, clips_per_class, seed, size, frames, fps)
    root = Path(root).expanduser()
    if _is_complete(root, params):
        return root
    _prepare(root)

    width, height = params["size"]
    frames, fps, seed, clips_per_class = params["frames"], params["fps"], params["seed"], params["clips_per_class"]
    groups = _source_sizes(clips_per_class, seed)
    codec = None
    files: list[str] = []
    for cls in params["classes"]:
        (root / cls).mkdir(parents=True, exist_ok=True)
        index = 0
        for g, n_in_group in enumerate(groups):
            background_style = _background_style(seed, g)
            background = _background(background_style, seed, cls, g, width, height)
            for c in range(n_in_group):
                clip = _render_clip(cls, seed, index, clips_per_class, background, width, height, frames, fps)
                stem = f"{cls}_s{g + 1:02d}_c{c + 1:02d}"
                codec, rel = _write_clip(root, cls, stem, clip, fps, codec)
                files.append(rel)
                index += 1

    write_text(root / MANIFEST, json.dumps(dict(params, fourcc=codec[0], files=files), indent=1) + "\n")
    return root


# ----------------------------------------------------------------------------- files


def _params(classes: Sequence[str], clips_per_class, seed, size, frames, fps) -> dict:
    """The checked arguments of :func:`write_demo_dataset`, as recorded in ``demo.json``."""
    clips_per_class = _int_arg("clips_per_class", clips_per_class, 1)
    frames = _int_arg("frames", frames, 2)
    seed = _int_arg("seed", seed, 0)
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ActionrecError(f"size must be (width, height), not {size!r}") from None
    if width < 32 or height < 32:
        raise ActionrecError(f"size {size!r} is too small: width and height must be at least 32 pixels")
    classes = list(classes)
    unknown = [c for c in classes if c not in DEMO_CLASSES]
    if unknown or len(classes) < 2:
        raise ActionrecError(f"demo classes {classes!r}: choose at least two of {', '.join(DEMO_CLASSES)}")
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise ActionrecError(f"fps must be a positive number, not {fps!r}")
    return {
        "version": DEMO_VERSION,
        "classes": classes,
        "clips_per_class": clips_per_class,
        "seed": seed,
        "size": [width, height],
        "frames": frames,
        "fps": fps,
    }


def _int_arg(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ActionrecError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def _is_complete(root: Path, params: dict) -> bool:
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in params.items()):
        return False
    files = manifest.get("files")
    expected = len(params["classes"]) * params["clips_per_class"]
    if not isinstance(files, list) or len(files) != expected:
        return False
    for rel in files:
        try:
            if (root / rel).stat().st_size <= 0:
                return False
        except (OSError, TypeError):
            return False
    return True


def _prepare(root: Path) -> None:
    """Make `root` ready for a fresh write: drop the manifest and our clips; refuse a foreign folder."""
    if root.exists() and not root.is_dir():
        raise ActionrecError(f"{root} is a file, not a folder: give the demo dataset a new or empty folder")
    root.mkdir(parents=True, exist_ok=True)
    ours = (root / MANIFEST).exists()
    if not ours:
        foreign = [
            e.name
            for e in os.scandir(root)
            if not (e.name in DEMO_CLASSES and e.is_dir()) and not e.name.startswith(f".{MANIFEST}.")  # our temp files
        ]
        foreign += [
            f"{cls}/{e.name}"
            for cls in DEMO_CLASSES
            if (root / cls).is_dir()
            for e in os.scandir(root / cls)
            if not _is_our_file(e.name, cls)
        ]
        if foreign:
            raise ActionrecError(
                f"{root} is not empty and is not an actionrec demo dataset (it holds {', '.join(sorted(foreign)[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}): give the demo dataset a new or empty folder"
            )
    (root / MANIFEST).unlink(missing_ok=True)
    for cls in DEMO_CLASSES:
        folder = root / cls
        if folder.is_dir():
            for e in os.scandir(folder):
                if _is_our_file(e.name, cls):
                    if e.is_dir(follow_symlinks=False):
                        shutil.rmtree(e.path)
                    else:
                        os.unlink(e.path)


def _is_our_file(name: str, cls: str) -> bool:
    m = _OUR_FILE.match(name)
    return bool(m) and m["cls"] == cls


def _write_clip(root: Path, cls: str, stem: str, clip: np.ndarray, fps: float, codec):
    """Write `clip` (T, H, W, 3) RGB uint8 and check that it decodes; pick the codec on the first clip."""
    candidates = [codec] if codec else list(_CODECS)
    problems = []
    for fourcc, ext in candidates:
        final = root / cls / f"{stem}{ext}"
        part = root / cls / f".{stem}.part{ext}"
        problem = _encode(part, clip, fps, fourcc)
        if problem is None:
            os.replace(part, final)
            return (fourcc, ext), f"{cls}/{final.name}"
        part.unlink(missing_ok=True)
        problems.append(f"{fourcc}: {problem}")
    raise ActionrecError(
        f"cannot write the demo videos with this OpenCV ({'; '.join(problems)}): "
        "install an opencv-python(-headless) wheel built with FFmpeg"
    )


def _encode(path: Path, clip: np.ndarray, fps: float, fourcc: str) -> str | None:
    with cv2_path(path) as name:  # the root's name may not be valid UTF-8
        return _encode_and_check(name, clip, fps, fourcc)


def _encode_and_check(name: str, clip: np.ndarray, fps: float, fourcc: str) -> str | None:
    """Write `clip` to `name` and decode it back; what went wrong, or None."""
    t, h, w = clip.shape[:3]
    writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    try:
        if not writer.isOpened():
            return "the writer does not open"
        for frame in clip:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR
    finally:
        writer.release()
    cap = cv2.VideoCapture(name)
    n = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if frame.shape != (h, w, 3):
                return f"a frame decodes as {frame.shape}, not {(h, w, 3)}"
            n += 1
    finally:
        cap.release()
    if n != t:
        return f"{n} of {t} frames decode back"
    return None


# ----------------------------------------------------------------------------- randomness


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([seed, *tags])


def _source_sizes(n: int, seed: int) -> list[int]:
    """Sizes of the sources (2 or 3 clips each; 1 only if n == 1), the same for every class."""
    rng = _rng(seed, 1)
    sizes = []
    left = n
    while left > 0:
        if left <= 3:
            take = left
        elif left == 4:
            take = 2
        else:
            take = int(rng.integers(2, 4))
        sizes.append(take)
        left -= take
    return sizes


def _muted(rng: np.random.Generator, hue: float, value: float) -> np.ndarray:
    """A muted colour (saturation <= 0.25), so that the saturated object stands out on any background."""
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.0, 0.25), value), np.float32)


# ----------------------------------------------------------------------------- backgrounds


def _background_style(seed: int, g: int) -> dict:
    """What source `g` looks like in every class: kind, colours, angle, scale."""
    rng = _rng(seed, 2, g)
    hue = rng.random()
    v0 = rng.uniform(0.35, 0.85)
    v1 = float(np.clip(v0 + rng.choice([-1, 1]) * rng.uniform(0.08, 0.22), 0.3, 0.9))
    return {
        "kind": BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        "c0": _muted(rng, hue, v0),
        "c1": _muted(rng, hue + rng.uniform(-0.15, 0.15), v1),
        "angle": rng.uniform(0, math.pi),
        "scale": rng.uniform(0.08, 0.25),  # stripe / checker period, cloud cell, as a fraction of the width
        "grain": rng.uniform(0.0, 0.03),
    }


def _background(style: dict, seed: int, cls: str, g: int, w: int, h: int) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]: the source's style with this class's own random details."""
    rng = _rng(seed, 3, _CLASS_IDS[cls], g)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ca, sa = math.cos(style["angle"]), math.sin(style["angle"])
    u = x * ca + y * sa  # along the style's direction
    v = -x * sa + y * ca
    period = max(4.0, style["scale"] * w)
    kind = style["kind"]
    if kind == "gradient":
        t = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
    elif kind == "clouds":
        gh = max(2, int(round(h / period)))
        gw = max(2, int(round(w / period)))
        t = cv2.resize(rng.random((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    elif kind == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
    else:  # checker, softened
        a = np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
        b = np.sin(2 * np.pi * v / period + rng.uniform(0, 2 * np.pi))
        t = 0.5 + 0.5 * np.tanh(3 * a * b)
    t = np.clip(t - t.mean() + 0.5, 0, 1)  # the same mean colour in every class: only the details differ
    bg = style["c0"] * (1 - t[..., None]) + style["c1"] * t[..., None]
    bg = bg + rng.normal(0, style["grain"], (h, w, 1)).astype(np.float32)  # static texture grain
    return np.clip(bg, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- objects


def _shape_polygons(shape: str) -> list[np.ndarray]:
    """Convex (or star-shaped) pieces in unit coordinates (extent ~1), each (N, 2)."""
    if shape == "bar":
        return [np.array([[-1, -0.4], [1, -0.4], [1, 0.4], [-1, 0.4]], np.float32)]
    if shape == "cross":
        a, b = 1.0, 0.34
        return [np.array([[-a, -b], [a, -b], [a, b], [-a, b]], np.float32),
                np.array([[-b, -a], [b, -a], [b, a], [-b, a]], np.float32)]
    if shape == "triangle":  # isosceles, so that its turns are easy to see
        return [np.array([[1.0, 0.0], [-0.7, -0.62], [-0.7, 0.62]], np.float32)]
    if shape == "star":
        ang = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.5)
        return [np.stack([r * np.cos(ang), r * np.sin(ang)], 1).astype(np.float32)]
    if shape == "ellipse":
        ang = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        return [np.stack([np.cos(ang), 0.55 * np.sin(ang)], 1).astype(np.float32)]
    if shape == "propeller":
        ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        blade = np.stack([0.5 + 0.5 * np.cos(ang), 0.24 * np.sin(ang)], 1).astype(np.float32)
        hub = np.stack([0.3 * np.cos(ang), 0.3 * np.sin(ang)], 1).astype(np.float32)
        pieces = [hub]
        for k in range(3):
            c, s = math.cos(2 * np.pi * k / 3), math.sin(2 * np.pi * k / 3)
            pieces.append(blade @ np.array([[c, s], [-s, c]], np.float32))
        return pieces
    raise ValueError(shape)


def _coverage(pieces: list[np.ndarray], cx: float, cy: float, radius: float, angle: float, x0: int, y0: int,
              w: int, h: int) -> np.ndarray:
    """Anti-aliased coverage (h, w) float32 in [0, 1] of the shape placed at (cx, cy), drawn sub-pixel accurately
    into the window of the frame whose top-left corner is (x0, y0)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]], np.float32) * radius
    mask = np.zeros((h, w), np.uint8)
    for piece in pieces:
        pts = piece @ rot + np.array([cx - x0, cy - y0], np.float32)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def _object_colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.7, 1.0), rng.uniform(0.65, 1.0)), np.float32)


# ----------------------------------------------------------------------------- clips


class _Stage(NamedTuple):
    """The central square of the frame (the part a centre crop keeps): the motion happens there."""

    x0: float
    y0: float
    short: float
    margin: float


class _Track(NamedTuple):
    """One object of a clip and where it is, how big and how turned in every frame."""

    pieces: list[np.ndarray]
    colour: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    rad: np.ndarray
    ang: np.ndarray
    stripes: tuple[float, float, float]  # frequency, angle, phase of the painted stripes


def _render_clip(
    cls: str, seed: int, index: int, n: int, background: np.ndarray, w: int, h: int, frames: int, fps: float
) -> np.ndarray:
    """The `index`-th clip of class `cls`: (T, H, W, 3) uint8 RGB."""
    rng = _rng(seed, 5, _CLASS_IDS[cls], index)
    tracks = _tracks(cls, seed, index, n, rng, w, h, frames, fps)
    shake, flicker, grain, offsets = _camera(rng, frames, w, h)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((frames, h, w, 3), np.uint8)
    for i in range(frames):
        frame = background.copy()
        for track in tracks:
            _draw(frame, track, i, gx, gy)
        dx, dy = shake[i]
        frame = cv2.warpAffine(frame, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frame *= np.float32(255 * flicker[i])
        oy, ox = offsets[i]
        frame += grain[oy : oy + h, ox : ox + w]
        out[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def _tracks(
    cls: str, seed: int, index: int, n: int, rng: np.random.Generator, w: int, h: int, frames: int, fps: float
) -> list[_Track]:
    """The 3-4 objects of the clip, all doing the class's motion."""
    # Stratified appearance: per class, hues spread evenly over the circle and every shape equally
    # often, each in a shuffled order (so no class gets more of any colour or shape).
    plan = _rng(seed, 4, _CLASS_IDS[cls])
    hue_slots = plan.permutation(n)
    shape_slots = plan.permutation(np.resize(np.arange(len(SHAPES)), n))
    count_slots = plan.permutation(np.resize(np.arange(OBJECTS[0], OBJECTS[1] + 1), n))
    hue = (hue_slots[index] + rng.random()) / n
    first_shape = int(shape_slots[index])
    count = int(count_slots[index])

    short = min(w, h)
    stage = _Stage((w - short) / 2, (h - short) / 2, short, 0.03 * short)
    t = np.arange(frames, dtype=np.float64)
    slots = rng.permutation(count)  # which column / row / cell each object gets
    cells = rng.permutation(4)[:count]  # 2 x 2 cells of the stage for the in-place classes
    direction = rng.choice([-1.0, 1.0])  # all objects of a Sliding clip go the same way
    tracks = []
    for k in range(count):
        shape = SHAPES[(first_shape + k) % len(SHAPES)]
        colour = _object_colour(rng, hue + k * 0.382)
        radius = rng.uniform(*SIZE) * short
        angle0 = rng.uniform(0, 2 * np.pi)
        slot = cells[k] if cls in ("Spinning", "Zooming") else slots[k]
        cx, cy, rad, ang = _motion(cls, rng, stage, count, slot, direction, radius, angle0, t, w, fps)
        stripes = (rng.uniform(2.0, 3.5), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi))
        tracks.append(_Track(_shape_polygons(shape), colour, cx, cy, rad, ang, stripes))
    return tracks


def _motion(
    cls: str, rng: np.random.Generator, stage: _Stage, count: int, slot: int, direction: float, radius: float,
    angle0: float, t: np.ndarray, w: int, fps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cx, cy, radius, angle) of one object in every frame; `slot` is its lane (or its cell of the stage)."""
    x0, y0, short, margin = stage
    frames = len(t)
    cx, cy = np.empty(frames), np.empty(frames)
    rad, ang = np.full(frames, radius), np.full(frames, angle0)
    if cls == "Bouncing":  # each in its own column, with its own height, period and phase
        lane = short / count
        cx[:] = x0 + lane * (slot + 0.5) + rng.uniform(-0.15, 0.15) * lane
        floor = y0 + short - radius - rng.uniform(0.5, 1.5) * margin
        room = floor - (y0 + radius + margin)
        period = rng.uniform(0.55, 0.95) * fps  # frames between bounces
        u = (t / period + rng.random()) % 1.0
        cy[:] = floor - rng.uniform(0.6, 0.95) * room * 4 * u * (1 - u)  # parabolas: constant gravity
    elif cls == "Sliding":  # each in its own row, all the same way, across the stage
        lane = short / count
        cy[:] = y0 + lane * (slot + 0.5) + rng.uniform(-0.15, 0.15) * lane
        travel = rng.uniform(0.8, 1.1) * short
        mid = w / 2 + rng.uniform(-0.2, 0.2) * short
        cx[:] = mid + direction * travel * (t / max(1, frames - 1) - 0.5)
    elif cls in ("Spinning", "Zooming"):  # in place, each in its own quarter of the stage
        cell = short / 2
        amp = rng.uniform(0.4, 0.55) if cls == "Zooming" else 0.0
        jitter = max(0.0, cell / 2 - radius * (1 + amp)) * 0.6
        cx[:] = x0 + cell * (slot % 2 + 0.5) + rng.uniform(-jitter, jitter)
        cy[:] = y0 + cell * (slot // 2 + 0.5) + rng.uniform(-jitter, jitter)
        if cls == "Spinning":
            omega = np.deg2rad(rng.uniform(180, 360)) / fps * rng.choice([-1.0, 1.0])  # per frame
            ang = angle0 + omega * t
        else:
            period = rng.uniform(0.7, 1.2) * fps
            rad = radius * (1 + amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))
    else:  # pragma: no cover
        raise ValueError(cls)
    return cx, cy, rad, ang


def _camera(rng: np.random.Generator, frames: int, w: int, h: int) -> tuple[np.ndarray, ...]:
    """A slow random shake (sub-pixel to ~1 px), flicker and sensor noise: (shake, flicker, grain, offsets)."""
    shake = np.cumsum(rng.normal(0, 0.25, (frames, 2)), 0)
    shake = np.clip(shake - shake.mean(0), -1.2, 1.2)
    flicker = 1 + rng.normal(0, 0.012, frames)
    noise = rng.uniform(0.006, 0.014)
    # Sensor noise: windows of one larger noise field at random offsets (much cheaper than fresh noise).
    grain = rng.standard_normal((2 * h, 2 * w, 3), dtype=np.float32) * np.float32(255 * noise) + np.float32(0.5)
    offsets = np.stack([rng.integers(0, h + 1, frames), rng.integers(0, w + 1, frames)], 1)
    return shake, flicker, grain, offsets


_ERODE = np.ones((3, 3), np.uint8)


def _draw(frame: np.ndarray, track: _Track, i: int, gx: np.ndarray, gy: np.ndarray) -> None:
    """Paint frame `i` of one object into `frame` ((H, W, 3) float32 in [0, 1]), in place."""
    h, w = frame.shape[:2]
    cx, cy, rad, ang = track.cx[i], track.cy[i], track.rad[i], track.ang[i]
    # Only the window around the object (every piece lies within 1.08 `rad` of its centre).
    reach = 1.1 * rad + 3
    left, top = max(0, int(cx - reach)), max(0, int(cy - reach))
    right, bottom = min(w, int(cx + reach) + 2), min(h, int(cy + reach) + 2)
    if right <= left or bottom <= top:
        return  # out of view
    m = _coverage(track.pieces, cx, cy, rad, ang, left, top, right - left, bottom - top)
    inner = cv2.GaussianBlur(cv2.erode(m, _ERODE), (3, 3), 0)[..., None]
    fill = track.colour * (0.55 + 0.45 * inner)  # a darker rim
    # Stripes painted on the object: they move, turn and scale with it (flat colour would only
    # show motion at the edges; a pattern makes the whole object's motion visible).
    freq, theta, phase = track.stripes
    a = ang + theta
    u = (gx[top:bottom, left:right] - cx) * math.cos(a) + (gy[top:bottom, left:right] - cy) * math.sin(a)
    fill = fill * (1 - STRIPE + STRIPE * np.sin(np.float32(np.pi * freq / rad) * u + np.float32(phase)))[..., None]
    window = frame[top:bottom, left:right]
    window += m[..., None] * (fill - window)
