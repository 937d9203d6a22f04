"""`actionrec watch`: alert rules, debouncing, streaming windows, --exec and --webhook, the latency bound, Ctrl-C, and
a stream served over HTTP on 127.0.0.1; first with a stand-in model on solid-colour videos, then with a trained run on
demo clips (each expected alert exactly once)."""

from __future__ import annotations

import contextlib
import json
import shlex
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from actionrec.cli import main
from test_timeline import ColourModel, colour_frames, demo_video, read_frames, use_model, write_av_video


@contextlib.contextmanager
def serve(handler_class):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def mjpeg_handler(frames: np.ndarray, fps: float | None = None):
    """An MJPEG camera on HTTP (multipart/x-mixed-replace), sending `frames` once, paced at `fps` if given."""
    import cv2

    jpegs = [cv2.imencode(".jpg", np.ascontiguousarray(f[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            t0 = time.monotonic()
            try:
                for i, jpeg in enumerate(jpegs):
                    if fps:
                        time.sleep(max(0.0, t0 + i / fps - time.monotonic()))
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


class Hooks:
    """A webhook receiver: the JSON bodies POSTed to it."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

        self.handler = Handler


def alerts_of(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------- units


def test_parse_alert():
    from actionrec.errors import ActionrecError
    from actionrec.apps.watch import AlertRule, parse_alert

    classes = ("Spinning", "Sliding", "playing tennis")
    assert parse_alert("Spinning>=0.8", classes) == AlertRule("Spinning", 0.8)
    assert parse_alert(" playing tennis >= .5 ", classes) == AlertRule("playing tennis", 0.5)
    assert parse_alert("spinning>=1", classes) == AlertRule("Spinning", 1.0)
    for bad, needle in [("Spinning>0.8", "LABEL>=PROBABILITY"), ("Spinning>=1.5", "between 0 and 1"), ("Spinnig>=0.8", "Spinning")]:
        with pytest.raises(ActionrecError, match=needle):
            parse_alert(bad, classes)


def test_debouncer_fires_once_per_event():
    from actionrec.apps.watch import AlertRule, Debouncer

    d = Debouncer(AlertRule("A", 0.8), confirm=2, cooldown=2.0)
    scores = [0.1, 0.9, 0.5, 0.9, 0.95, 0.9, 0.7, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.85, 0.9, 0.9]
    fired = [(k, f) for k, s in enumerate(scores) if (f := d.update(k * 0.5, k * 0.5 + 0.64, s)) is not None]
    # 0.9 then 0.5: not confirmed; 3-4 confirm -> fire; the dip at 6 is too short to re-arm; 8-12 re-arm; 13-14 fire.
    assert [k for k, _ in fired] == [4, 14]
    assert fired[0][1] == (1.5, 2.0 + 0.64, 0.95) and fired[1][1][0] == 6.5


def test_windower_matches_sliding_windows():
    from actionrec.data.video import sliding_windows
    from actionrec.data.video import StreamWindower

    for fps in (25.0, 30.0, 12.0):
        w = StreamWindower(fps, 0.64, 0.5, 16)
        got = []
        for i in range(int(fps * 6)):
            if w.wanted(i):
                got += [(s, f[:, 0].tolist()) for s, _, f in w.add(i, np.array([i]))]
            assert len(w.held) <= 0.64 * fps + 2  # only the frames of open windows
        expected = [(s.start_sec, s.frame_indices.tolist()) for s in sliding_windows(int(fps * 6), fps, 0.64, 0.5, 16)]
        assert got == [e for e in expected if e[0] == pytest.approx(round(e[0] / 0.5) * 0.5)][: len(got)]
        assert len(got) == 11


# ----------------------------------------------------------------------------------------------- stand-in model

SEGMENTS = [("Red", 3.0), ("Green", 4.0), ("Red", 3.0), ("Blue", 2.0)]  # Green outlasts the 3 s cooldown


@pytest.fixture(scope="module")
def colour_video(tmp_path_factory) -> Path:
    return write_av_video(tmp_path_factory.mktemp("watch") / "colours.mp4", colour_frames(SEGMENTS))


@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    return write_av_video(tmp_path_factory.mktemp("watch") / "short.mp4", colour_frames([("Red", 2.0), ("Green", 2.0)]))


def test_file_as_stream_alerts_exec_and_webhook(colour_video, tmp_path, monkeypatch, capsys):
    use_model(monkeypatch, ColourModel())
    log = tmp_path / "exec.log"
    hooks = Hooks()
    with serve(hooks.handler) as url:
        command = f'printf "%s %s %s\\n" "$ACTIONREC_LABEL" "$ACTIONREC_START" "$ACTIONREC_SCORE" >> {shlex.quote(str(log))}'
        args = ["watch", str(colour_video), "--run", "any", "--alert", "Red>=0.8", "--alert", "Blue>=0.8",
                "--exec", command, "--webhook", url + "/hook", "--json"]
        assert main(args) == 0
    out, err = capsys.readouterr()
    alerts = alerts_of(out)
    assert [(a["label"], a["start"]) for a in alerts] == [("Red", 0.0), ("Red", 7.0), ("Blue", 10.0)]
    for a in alerts:
        assert a["score"] >= 0.8 and a["threshold"] == 0.8 and a["time"] > a["start"] and a["wall"]
        assert a["source"] == str(colour_video)
    lines = sorted(log.read_text().splitlines())
    assert [l.split()[:2] for l in lines] == [["Blue", "10.000"], ["Red", "0.000"], ["Red", "7.000"]]
    assert sorted((b["label"], b["start"]) for b in hooks.bodies) == sorted((a["label"], a["start"]) for a in alerts)
    assert "end of stream" in err and "none dropped" in err and "3 alerts" in err


def test_stream_on_loopback_http(colour_video, monkeypatch, capsys):
    use_model(monkeypatch, ColourModel())
    with serve(mjpeg_handler(read_frames(colour_video), fps=100)) as url:
        assert main(["watch", url + "/video.mjpg", "--run", "any", "--alert", "Red>=0.8", "--alert", "Green>=0.8",
                     "--max-latency", "1000", "--json", "--quiet"]) == 0
    alerts = alerts_of(capsys.readouterr().out)
    assert [(a["label"], a["start"]) for a in alerts] == [("Red", 0.0), ("Green", 3.0), ("Red", 7.0)]


def test_live_source_drops_windows_rather_than_fall_behind(short_video):
    from actionrec.apps.watch import AlertRule, WatchOptions, watch

    notes = []
    slow = ColourModel(delay=0.75)  # 0.75 s per window, a window every 0.25 s: it cannot keep up
    stats = watch(str(short_video), slow, [AlertRule("Red", 0.8)], WatchOptions(stride=0.25, realtime=True, max_latency=0.5),
                  say=notes.append)
    assert stats.frames == 100 and stats.windows >= 3 and stats.dropped >= 3
    assert stats.windows + stats.dropped == 14  # every window of the 4 s was either classified or dropped
    assert stats.max_lag <= 0.5 + 1e-6  # no window was classified more than 0.5 s behind the newest frame
    assert any("dropped" in n for n in notes) and "dropped" in stats.summary()


def test_live_latency_and_late_reads_are_reported(short_video, monkeypatch):
    """Each classified window's latency (from its last frame to its probabilities) is kept, and a reader held up
    for 0.5 s counts the frames it read late (a camera would have lost them) and its largest lag."""
    from actionrec.apps.watch import AlertRule, WatchOptions, watch
    from actionrec.data import video as video_module
    from actionrec.data.video import LATE_FRAMES

    resize, calls = video_module.resize_short_side, []

    def held_up_once(frame, size):
        calls.append(1)
        if len(calls) == 10:
            time.sleep(0.5)
        return resize(frame, size)

    monkeypatch.setattr(video_module, "resize_short_side", held_up_once)  # the live reader's resize
    slow = ColourModel(delay=0.05)
    stats = watch(str(short_video), slow, [AlertRule("Red", 0.8)], WatchOptions(realtime=True, max_latency=1000))
    assert stats.windows == 7 and stats.dropped == 0 and len(stats.latencies) == stats.windows
    assert min(stats.latencies) >= 0.05  # at least the model's own time
    assert stats.read_lag >= 0.45 and stats.late_frames >= int((0.45 - LATE_FRAMES / 25) * 25)
    assert "latency mean" in stats.summary() and "frames read late" in stats.summary()
    fast = watch(str(short_video), ColourModel(), [AlertRule("Red", 0.8)], WatchOptions())
    assert fast.windows == 7 and not fast.latencies and fast.late_frames == 0  # a file read at full speed: no latency


class ColdStartModel(ColourModel):
    """A model whose first forward takes 3 s, as a network compiled on first use does (OpenVINO's first export)."""

    def forward(self, x):
        if self.calls == 0:
            time.sleep(3.0)
        return super().forward(x)


def test_network_is_compiled_before_the_stream_starts(short_video):
    """The first forward (a compile) runs before the first frame is read, so a live stream drops no window for it."""
    from actionrec.apps.watch import AlertRule, WatchOptions, watch

    model = ColdStartModel()
    stats = watch(str(short_video), model, [AlertRule("Red", 0.8)], WatchOptions(realtime=True, max_latency=1.0))
    assert stats.dropped == 0 and stats.windows == 7 and model.calls == 8  # the 7 windows and the warm-up
    assert max(stats.latencies) < 3.0  # no window waited for the compile


def test_ctrl_c_ends_cleanly(colour_video, monkeypatch, capsys):
    import _thread

    use_model(monkeypatch, ColourModel())
    timer = threading.Timer(1.5, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    try:
        assert main(["watch", str(colour_video), "--run", "any", "--alert", "Green>=0.8", "--realtime"]) == 0
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 6  # stopped well before the 10.5 s of video
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith("actionrec-")]


def test_bad_source_and_rule_are_one_line(tmp_path, monkeypatch, capsys):
    use_model(monkeypatch, ColourModel())
    for args, needle in [
        (["watch", str(tmp_path / "nothing.mp4"), "--alert", "Red>=0.8"], "nothing.mp4"),
        (["watch", "http://127.0.0.1:9/none.mjpg", "--alert", "Red>=0.8"], "127.0.0.1:9"),
        (["watch", str(tmp_path), "--alert", "Purple>=0.8"], "Purple"),
    ]:
        assert main(args + ["--run", "any", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


# ----------------------------------------------------------------------------------------------- a trained run

STRIDE = 1.0


@pytest.fixture(scope="module")
def run_and_data(demo_run):
    return demo_run[0], demo_run[1]


def test_trained_run_on_a_file_read_as_a_stream(run_and_data, tmp_path, capsys):
    run, data = run_and_data
    video = demo_video(data, tmp_path / "watch.mp4", [("Spinning", 3.5), ("Bouncing", 4.0), ("Spinning", 3.5)])
    args = ["watch", str(video), "--run", str(run), "--alert", "Spinning>=0.8", "--alert", "Bouncing>=0.6",
            "--alert", "Zooming>=0.6", "--stride", str(STRIDE), "--json", "--quiet"]
    assert main(args) == 0
    alerts = alerts_of(capsys.readouterr().out)
    assert [a["label"] for a in alerts] == ["Spinning", "Bouncing", "Spinning"], alerts
    for a, start in zip(alerts, (0.0, 3.5, 7.5)):
        assert abs(a["start"] - start) <= STRIDE, (a, start)


def test_trained_run_on_a_stream_served_on_loopback(run_and_data, tmp_path, capsys):
    run, data = run_and_data
    video = demo_video(data, tmp_path / "camera.mp4", [("Bouncing", 3.0), ("Spinning", 3.5)])
    with serve(mjpeg_handler(read_frames(video), fps=50)) as url:
        args = ["watch", url + "/camera.mjpg", "--run", str(run), "--alert", "Spinning>=0.8", "--alert", "Bouncing>=0.6",
                "--stride", str(STRIDE), "--max-latency", "1000", "--json", "--quiet"]
        assert main(args) == 0
    alerts = alerts_of(capsys.readouterr().out)
    assert [a["label"] for a in alerts] == ["Bouncing", "Spinning"], alerts
    assert abs(alerts[1]["start"] - 3.0) <= STRIDE


def test_fps_is_checked_and_never_overrides_a_files_own_rate(colour_video, monkeypatch, capsys):
    from actionrec.apps.watch import AlertRule, WatchOptions, watch

    use_model(monkeypatch, ColourModel())
    for bad in ("-5", "0", "nan", "1e9"):
        assert main(["watch", str(colour_video), "--run", "any", "--alert", "Red>=0.8", "--fps", bad, "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--fps" in err[0], err
    stats = watch(str(colour_video), ColourModel(), [AlertRule("Red", 0.8)], WatchOptions(fps=100.0))
    assert stats.fps == 25.0 and stats.seconds == stats.frames / 25.0  # the file says 25 fps: its own rate wins
