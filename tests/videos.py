"""Synthetic videos for tests (and the decode bench).

* :func:`coded_frames` draws frames that carry their own index in big black/white cells, so a test can
  read back which frame it got (:func:`decode_index`) even after lossy compression and resizing; a red
  cell in the top-left corner and a blue one in the bottom-right show the orientation.
* :func:`moving_square_frames` draws a white square that moves with the frame index
  (:func:`square_position` finds it again).
* :func:`write_video` writes frames to any container the project reads, choosing a codec from the
  extension (PyAV for everything but GIF, which Pillow writes); :func:`write_frames_folder` writes a
  folder of image frames.

PyAV is a test-only dependency.
"""

from __future__ import annotations

import fractions
import os
from pathlib import Path

import numpy as np

# Layout of coded_frames: a ROWS x COLS grid of cells; the first cell is red, the last blue, the
# cells between hold the bits of the frame index (least significant first).
ROWS, COLS = 3, 4
INDEX_BITS = ROWS * COLS - 2
MAX_INDEX = 2**INDEX_BITS - 1
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _cell_bounds(height: int, width: int, cell: int) -> tuple[int, int, int, int]:
    r, c = divmod(cell, COLS)
    return r * height // ROWS, (r + 1) * height // ROWS, c * width // COLS, (c + 1) * width // COLS


def coded_frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """One (height, width, 3) uint8 RGB frame showing ``index`` in binary (0 <= index <= MAX_INDEX)."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index must be in [0, {MAX_INDEX}]")
    frame = np.zeros((height, width, 3), np.uint8)
    for cell in range(ROWS * COLS):
        y0, y1, x0, x1 = _cell_bounds(height, width, cell)
        if cell == 0:
            frame[y0:y1, x0:x1] = RED
        elif cell == ROWS * COLS - 1:
            frame[y0:y1, x0:x1] = BLUE
        elif (index >> (cell - 1)) & 1:
            frame[y0:y1, x0:x1] = 255
    return frame


def coded_frames(num_frames: int, height: int = 48, width: int = 64, first: int = 0) -> np.ndarray:
    """(num_frames, height, width, 3) uint8 RGB; frame t shows the number ``first + t``."""
    return np.stack([coded_frame(first + t, height, width) for t in range(num_frames)])


def decode_index(frame: np.ndarray) -> int:
    """The number drawn by :func:`coded_frame`, read from the middle of each cell (any frame size)."""
    height, width = frame.shape[:2]
    value = 0
    for cell in range(1, ROWS * COLS - 1):
        y0, y1, x0, x1 = _cell_bounds(height, width, cell)
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        if frame[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean() > 127:
            value |= 1 << (cell - 1)
    return value


def decode_indices(frames: np.ndarray) -> list[int]:
    return [decode_index(f) for f in frames]


def corner_colours(frame: np.ndarray) -> dict[str, str]:
    """Which of 'red' / 'blue' / 'other' dominates each corner (top_left, top_right, ...)."""
    height, width = frame.shape[:2]
    ch, cw = max(height // 8, 1), max(width // 8, 1)
    corners = {
        "top_left": frame[:ch, :cw],
        "top_right": frame[:ch, -cw:],
        "bottom_left": frame[-ch:, :cw],
        "bottom_right": frame[-ch:, -cw:],
    }
    out = {}
    for name, patch in corners.items():
        r, g, b = patch.reshape(-1, 3).mean(axis=0)
        out[name] = "red" if r > 150 and g < 100 and b < 100 else "blue" if b > 150 and r < 100 and g < 100 else "other"
    return out


def moving_square_frames(
    num_frames: int, height: int = 48, width: int = 64, size: int | None = None, background: int = 64
) -> np.ndarray:
    """A white square moving left to right (wrapping) one step per frame on a grey background."""
    size = size or max(height // 4, 4)
    travel = max(width - size, 1)
    step = max(travel // max(num_frames - 1, 1), 1)
    frames = np.full((num_frames, height, width, 3), background, np.uint8)
    y0 = (height - size) // 2
    for t in range(num_frames):
        x0 = (t * step) % (travel + 1)
        frames[t, y0 : y0 + size, x0 : x0 + size] = 255
    return frames


def square_position(frame: np.ndarray) -> tuple[float, float]:
    """(row, column) of the centre of the bright square drawn by :func:`moving_square_frames`."""
    mask = frame.mean(axis=2) > 160
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return float("nan"), float("nan")
    return float(ys.mean()), float(xs.mean())


def textured_frames(num_frames: int, height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """Camera-like content (smooth texture panning, a moving blob, mild noise) so encoders do real work."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    phases = rng.uniform(0, 2 * np.pi, size=(3, 3)).astype(np.float32)
    for t in range(num_frames):
        shift = 2.0 * t
        img = np.empty((height, width, 3), np.float32)
        for ch in range(3):
            img[..., ch] = (
                110
                + 45 * np.sin((xx + shift) / (17 + 5 * ch) + phases[ch, 0])
                + 35 * np.sin((yy - 0.5 * shift) / (23 + 3 * ch) + phases[ch, 1])
                + 20 * np.sin((xx + yy + shift) / 9.0 + phases[ch, 2])
            )
        cy = height / 2 + height / 4 * np.sin(t / 11.0)
        cx = (t * 3.0) % width
        blob = np.exp(-(((yy - cy) / 25.0) ** 2 + ((xx - cx) / 25.0) ** 2))
        img += 90 * blob[..., None]
        img += rng.normal(0, 4, size=img.shape).astype(np.float32)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------

DEFAULT_CODECS = {
    ".avi": "mpeg4",  # MPEG-4 Part 2 with B-frames, tagged XVID (like UCF101's files)
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".webm": "libvpx-vp9",
    ".gif": "gif",
}


def _rate(fps: float) -> fractions.Fraction:
    return fractions.Fraction(fps).limit_denominator(1001)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    codec: str | None = None,
    *,
    rotation: int = 0,
    bframes: int = 3,
    gop: int = 30,
    crf: int | None = None,
) -> Path:
    """Write (T, H, W, 3) uint8 RGB ``frames`` to ``path``; the codec defaults from the extension.

    ``codec`` may be any PyAV encoder name ("libx264", "mpeg4", "libvpx" (VP8), "libvpx-vp9"), or
    "cv2-xvid" for OpenCV's own XVID writer (AVI, no B-frames). Quality is set high so coded frames
    survive. H.264 and MPEG-4 get ``bframes`` B-frames in a fixed pattern and a key frame every
    ``gop`` frames. ``crf`` overrides the constant-quality setting of H.264 / VP8 / VP9 (default 8 and 4:
    near lossless; x264's own default is 23). ``rotation`` writes a display matrix (counter-clockwise degrees, as PyAV's
    ``set_display_rotation``: a player shows the stored frame rotated by that much; ffmpeg's
    legacy ``rotate`` tag and OpenCV report the same thing as ``(360 - rotation) % 360`` clockwise).
    """
    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError("frames must be (T, H, W, 3) uint8 RGB")
    ext = path.suffix.lower()
    codec = codec or DEFAULT_CODECS.get(ext, "libx264")
    if codec == "gif" or ext == ".gif":
        return _write_gif(path, frames, fps)
    if codec == "cv2-xvid":
        return _write_cv2(path, frames, fps, "XVID")
    return _write_pyav(path, frames, fps, codec, rotation=rotation, bframes=bframes, gop=gop, crf=crf)


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> Path:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    # GIF delays are in 1/100 s: fps that are not 100/k come back slightly different.
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path


def _write_cv2(path: Path, frames: np.ndarray, fps: float, fourcc: str) -> Path:
    import cv2

    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    try:
        for f in frames:
            writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    finally:
        writer.release()
    return path


def _write_pyav(
    path: Path, frames: np.ndarray, fps: float, codec: str, *, rotation: int, bframes: int, gop: int, crf: int | None
) -> Path:
    import av

    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError("4:2:0 video needs an even width and height")
    options: dict[str, str] = {"g": str(gop)}
    bit_rate = None
    if codec == "libx264":
        options.update({
            "crf": str(8 if crf is None else crf),
            "preset": "fast",
            "bf": str(bframes),
            "x264-params": "b-adapt=0",  # B-frames in a fixed pattern, not only where x264 finds them useful
        })
    elif codec == "mpeg4":
        options.update({"bf": str(bframes)})
        bit_rate = max(4_000_000, width * height * 60)
    elif codec in ("libvpx", "libvpx-vp9"):
        options.update({
            "deadline": "realtime",
            "cpu-used": "8",
            "crf": str(4 if crf is None else crf),
            "lag-in-frames": "0",
        })
        bit_rate = max(4_000_000, width * height * 60)
    container = av.open(str(path), "w")
    try:
        stream = container.add_stream(codec, rate=_rate(fps), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if bit_rate:
            stream.bit_rate = bit_rate
        if rotation % 360:
            stream.set_display_rotation(rotation % 360)
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    if codec == "mpeg4" and path.suffix.lower() == ".avi":
        _retag_avi(path, b"FMP4", b"XVID")
    return path


def _retag_avi(path: Path, old: bytes, new: bytes) -> None:
    """Change the video FourCC in an AVI header (PyAV does not pass codec_tag to the AVI muxer)."""
    data = bytearray(path.read_bytes())
    head = bytes(data[:8192])
    if old in head:
        data[:8192] = head.replace(old, new)
        path.write_bytes(bytes(data))


def write_frames_folder(
    folder: str | os.PathLike, frames: np.ndarray, ext: str = ".png", pattern: str = "frame_{:05d}"
) -> list[Path]:
    """Write each frame as an image file named ``pattern.format(t) + ext`` in ``folder`` (created)."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, f in enumerate(np.asarray(frames, dtype=np.uint8)):
        p = folder / (pattern.format(t) + ext)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext.lower() in (".jpg", ".jpeg") else []
        if not cv2.imwrite(str(p), np.ascontiguousarray(f[:, :, ::-1]), params):
            raise RuntimeError(f"cannot write {p}")
        paths.append(p)
    return paths


def frame_types(path: str | os.PathLike) -> str:
    """Picture types of the decoded frames in display order, e.g. "IBBPBBP..." (PyAV)."""
    import av

    names = {1: "I", 2: "P", 3: "B", 4: "S"}
    with av.open(str(path)) as container:
        return "".join(names.get(int(f.pict_type), "?") for f in container.decode(video=0))


def count_b_frames(path: str | os.PathLike) -> int:
    return frame_types(path).count("B")


def read_all_frames(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame of a video as (T, H, W, 3) uint8 RGB, resized to ``size`` = (width, height) if given (OpenCV)."""
    import cv2

    cap = cv2.VideoCapture(os.fspath(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if size is not None and (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"{path}: no frames could be read")
    return np.stack(frames)


def stitch(
    path: str | os.PathLike, clips: list[tuple[str | os.PathLike, str]], fps: float = 25.0,
    size: tuple[int, int] = (320, 240),
) -> list[tuple[str, float, float]]:
    """One video at ``path`` made of the real ``clips`` (each (file, label)) played one after another, every frame of
    each, resized to ``size``; returns the true (label, start, end) of each clip in it, in seconds (frames / fps)."""
    parts, truth, at = [], [], 0
    for clip, label in clips:
        frames = read_all_frames(clip, size)
        parts.append(frames)
        truth.append((label, at / fps, (at + len(frames)) / fps))
        at += len(frames)
    write_video(path, np.concatenate(parts), fps)
    return truth
