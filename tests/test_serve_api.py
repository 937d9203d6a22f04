"""`actionrec serve`'s REST API on a real server (uvicorn on 127.0.0.1, port 0, in a thread) with real video files:
results are the CLI's JSON, relabelling matches `build_timeline`, and the error cases: token (401), foreign Host,
traversal and symlinks (403), oversize (413), bad names and bad files; a bounded runner under 20 uploads at once,
cancelling, restarts that keep results, retention, flag and censor, runs and training.

The stand-in model reads the colour of the frames (test_timeline.ColourModel), so a stitched video's segments are known.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from actionrec.errors import ActionrecError
from test_timeline import ColourModel, colour_frames, write_av_video

STITCHED = [("Red", 4.0), ("Green", 4.0), ("Blue", 4.0), ("grey", 3.0)]

# ----------------------------------------------------------------------------------------------- a live server


@dataclass
class Live:
    """A server running in a thread; `call` sends one request over a real socket."""

    app: object
    port: int
    uv: object
    thread: threading.Thread

    @property
    def server(self):
        return self.app.state.server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None,
             host: str | None = None) -> tuple[int, dict | bytes, dict]:
        headers = dict(headers or {})
        if isinstance(body, dict):
            body, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if host is not None:
            headers["Host"] = host
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            out = json.loads(data) if r.getheader("content-type", "").startswith("application/json") else data
            return r.status, out, {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()

    def upload(self, path: Path, name: str | None = None) -> tuple[int, dict]:
        status, body, _ = self.call("POST", f"/api/uploads?filename={name or path.name}", path.read_bytes())
        return status, body

    def analyse(self, path: Path, **options) -> dict:
        status, body = self.upload(path)
        assert status == 200, body
        status, job, _ = self.call("POST", "/api/jobs", {"upload": body["upload"], **options})
        assert status == 201, job
        return job

    def wait(self, job_id: str, timeout: float = 120) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.call("GET", f"/api/jobs/{job_id}")[1]
            if job["status"] not in ("queued", "running"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")

    def stop(self) -> None:
        self.uv.should_exit = True
        self.thread.join(timeout=30)


def start_server(settings, preloaded=None) -> Live:
    """uvicorn with the app on 127.0.0.1 and a free port, in a daemon thread; returns when it listens."""
    import uvicorn

    from actionrec.serve.app import create_app
    from actionrec.serve.cli import listen
    from actionrec.serve.connections import uvicorn_config

    app = create_app(settings, preloaded)
    sock = listen("127.0.0.1", 0)
    uv = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not uv.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    return Live(app, sock.getsockname()[1], uv, thread)


def settings_for(tmp: Path, **values):
    from actionrec.serve.settings import Settings

    return Settings(state=tmp / "state", models=[], runs=tmp / "runs", **values)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve-videos")
    return {
        "long": write_av_video(folder / "stitched.mp4", colour_frames(STITCHED)),
        "short": write_av_video(folder / "green.mp4", colour_frames([("Green", 1.2)])),
        "bad": _write(folder / "broken.mp4", b"\x00\x01 this is not a video " * 200),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One server for the tests that do not need their own settings."""
    server = start_server(settings_for(tmp_path_factory.mktemp("serve")), {"colour": ColourModel()})
    yield server
    server.stop()


# ----------------------------------------------------------------------------------------------- results


def test_results_are_the_clis_json_and_relabelling_matches_build_timeline(live, videos):
    from actionrec.apps.predict import predict_iter
    from actionrec.apps.timeline import build_timeline
    from actionrec.apps.windows import window_probabilities

    model = live.server.models.get("colour")
    short = live.wait(live.analyse(videos["short"])["id"])
    assert short["status"] == "done" and short["view"] == "clip"
    expected = next(predict_iter([videos["short"]], model)).to_dict(5)
    assert short["result"] == {**expected, "video": "green.mp4"}
    assert short["result"]["top"][0]["label"] == "Green"

    job = live.wait(live.analyse(videos["long"])["id"])
    assert job["status"] == "done" and job["view"] == "timeline", job
    wp = window_probabilities(videos["long"], model, cache=False)
    for threshold in (None, 0.3, 0.8):
        thresholds = {l: 0.5 if threshold is None else threshold for l in ("Red", "Green", "Blue")}
        tl = build_timeline(wp, ("Red", "Green", "Blue"), thresholds)
        tl.video = "stitched.mp4"
        query = "" if threshold is None else f"?threshold={threshold}"
        status, relabelled, _ = live.call("GET", f"/api/jobs/{job['id']}/timeline{query}")
        assert status == 200 and relabelled == tl.to_dict()
        if threshold is None:
            assert job["result"] == tl.to_dict()
            assert [s["label"] for s in tl.to_dict()["segments"]] == ["Red", "Green", "Blue", "none"]
    assert live.call("GET", f"/api/jobs/{job['id']}/timeline?threshold=0.3")[1]["segments"][-1]["label"] != "none"

    windows = live.call("GET", f"/api/jobs/{job['id']}/windows")[1]
    assert windows["labels"] == ["Red", "Green", "Blue"] and len(windows["probs"]) == len(wp.starts) == len(windows["starts"])
    assert windows["probs"][0] == pytest.approx(wp.probs[0].tolist(), abs=1e-6)
    status, result, _ = live.call("GET", f"/api/jobs/{job['id']}/result")
    assert status == 200 and result == job["result"]


def test_downloads_video_and_thumbnails(live, videos):
    job = live.wait(live.analyse(videos["long"])["id"])
    jid = job["id"]
    status, srt, headers = live.call("GET", f"/api/jobs/{jid}/download/srt?threshold=0.3")
    assert status == 200 and b"Red" in srt and "stitched.srt" in headers["content-disposition"]
    assert srt.count(b"-->") == 4  # at 0.3 the grey end is labelled too
    assert live.call("GET", f"/api/jobs/{jid}/download/srt")[1].count(b"-->") == 3
    status, png, _ = live.call("GET", f"/api/jobs/{jid}/download/png")
    assert status == 200 and png.startswith(b"\x89PNG")
    assert live.call("GET", f"/api/jobs/{jid}/download/exe")[0] == 404
    status, part, headers = live.call("GET", f"/api/jobs/{jid}/video", headers={"Range": "bytes=0-99"})
    assert status == 206 and len(part) == 100 and part == videos["long"].read_bytes()[:100]
    status, jpeg, _ = live.call("GET", f"/api/jobs/{jid}/thumbnail?t=6")
    assert status == 200 and jpeg.startswith(b"\xff\xd8")
    import cv2
    import numpy as np

    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape[1] == 160 and frame[..., 1].mean() > 150 > frame[..., 2].mean()  # green at 6 s (BGR)


def test_flag_and_censor(live, videos):
    import cv2

    job = live.wait(live.analyse(videos["long"])["id"])
    status, flagged, _ = live.call("POST", f"/api/jobs/{job['id']}/flag", {"labels": ["Green"]})
    assert status == 200 and len(flagged["ranges"]) == 1
    r = flagged["ranges"][0]
    assert r["labels"] == ["Green"] and r["start"] == pytest.approx(4 - 0.25, abs=0.3) and r["end"] == pytest.approx(8 + 0.25, abs=0.3)
    assert live.call("POST", f"/api/jobs/{job['id']}/flag", {"labels": ["Purple"]})[0] == 400
    status, censor, _ = live.call("POST", f"/api/jobs/{job['id']}/censor", {"labels": ["Green"]})
    assert status == 201
    done = live.wait(censor["id"])
    assert done["status"] == "done", done
    status, data, _ = live.call("GET", f"/api/jobs/{censor['id']}/video")
    out = live.server.store.dir(live.server.store.get(censor["id"])) / "files" / done["files"]["video"]
    assert status == 200 and data == out.read_bytes()
    cap = cv2.VideoCapture(str(out))
    means = []
    while (frame := cap.read())[0]:
        means.append(frame[1].mean())
    assert len(means) == 15 * 25 and max(means[110:190]) < 5 and min(means[:80] + means[220:]) > 40


# ----------------------------------------------------------------------------------------------- safety


def test_another_host_needs_a_token_and_requests_without_it_get_401(tmp_path):
    from actionrec.serve.app import create_app
    from actionrec.serve.cli import main

    with pytest.raises(ActionrecError, match="--token"):
        create_app(settings_for(tmp_path, host="0.0.0.0"))
    assert main(["--host", "0.0.0.0", "--state", str(tmp_path / "s")]) == 2

    server = start_server(settings_for(tmp_path, token="s3cret"))
    try:
        for path in ("/api/jobs", "/", "/static/app.js", "/docs"):
            status, body, _ = server.call("GET", path)
            assert status == 401 and "token" in body["error"], path
        assert server.call("GET", "/api/jobs", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert server.call("GET", "/api/jobs", headers={"Authorization": "Bearer s3cret"})[0] == 200
        status, _, headers = server.call("GET", "/?token=s3cret")
        assert status == 200 and "actionrec_token=s3cret" in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"]
        assert server.call("GET", "/api/jobs", headers={"Cookie": "actionrec_token=s3cret"})[0] == 200
    finally:
        server.stop()


def test_without_a_token_only_loopback_names_are_answered(live):
    assert live.call("GET", "/api/jobs", host=f"localhost:{live.port}")[0] == 200
    status, body, _ = live.call("GET", "/api/jobs", host="attacker.example")
    assert status == 403 and "127.0.0.1" in body["error"]


def test_the_page_and_the_api_docs_work_offline(live):
    from actionrec.serve.app import WEB

    status, page, _ = live.call("GET", "/")
    assert status == 200 and b'id="file-input"' in page
    for asset in sorted(WEB.iterdir()):
        status, body, _ = live.call("GET", f"/static/{asset.name}")
        assert status == 200 and body == asset.read_bytes() and b"http:" not in body and b"https:" not in body, asset
    status, docs, _ = live.call("GET", "/docs")
    assert status == 200 and b"<script" not in docs and b"/api/jobs/{job_id}/windows" in docs
    assert b"application/octet-stream" in docs  # the upload's body
    schema = live.call("GET", "/openapi.json")[1]
    assert {"/api/uploads", "/api/jobs", "/api/jobs/{job_id}/cancel", "/api/runs"} <= set(schema["paths"])


def test_nothing_outside_the_data_root_is_read_or_listed(tmp_path, videos):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "clip.mp4").write_bytes(videos["short"].read_bytes())
    (root / "notes.txt").write_text("not a video")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(videos["short"].read_bytes())
    os.symlink(secret, root / "link.mp4")
    os.symlink(tmp_path, root / "up")
    server = start_server(settings_for(tmp_path, data_root=root), {"colour": ColourModel()})
    try:
        status, listing, _ = server.call("GET", "/api/files")
        assert status == 200 and [e["name"] for e in listing["entries"]] == ["sub"]
        assert [e["path"] for e in server.call("GET", "/api/files?path=sub")[1]["entries"]] == ["sub/clip.mp4"]
        for bad in ("..", "sub/../..", "/etc", str(tmp_path), "up", "up/secret.mp4", "link.mp4", "sub/../../secret.mp4"):
            status, body, _ = server.call("GET", f"/api/files?path={bad}")
            assert status == 403, (bad, body)
            status, body, _ = server.call("POST", "/api/jobs", {"path": bad})
            assert status == 403 and body["error"], (bad, body)
        assert server.call("POST", "/api/jobs", {"path": "notes.txt"})[0] == 400
        assert server.call("POST", "/api/train", {"data": "../", "name": "x"})[0] == 403
        job = server.wait(server.call("POST", "/api/jobs", {"path": "sub/clip.mp4"})[1]["id"])
        assert job["status"] == "done" and job["result"]["top"][0]["label"] == "Green"
        assert "source" not in job and str(root) not in json.dumps(job)
    finally:
        server.stop()


def test_uploads_oversize_bad_names_and_bad_files_get_clear_json_errors(tmp_path, videos):
    server = start_server(settings_for(tmp_path, max_upload_mb=0.2))
    uploads = tmp_path / "state" / "uploads"
    try:
        big = _write(tmp_path / "big.mp4", os.urandom(300_000))
        status, body = server.upload(big)
        assert status == 413 and "limit" in body["error"] and "--max-upload-mb" in body["error"]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # no length announced: cut mid-stream
        conn.putrequest("POST", "/api/uploads?filename=big.mp4")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for _ in range(5):
            conn.send(b"%x\r\n%s\r\n" % (65536, os.urandom(65536)))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        assert r.status == 413 and "limit" in json.loads(r.read())["error"]
        conn.close()
        status, body = server.upload(videos["bad"])
        assert status == 422 and body["error"].startswith("broken.mp4: cannot be opened as a video")
        assert str(tmp_path) not in body["error"]
        status, body = server.upload(videos["short"], name="report.exe")
        assert status == 400 and "not a video file name" in body["error"]
        assert not any(p.is_file() for p in uploads.rglob("*"))  # nothing partial or refused stays
        status, body = server.upload(videos["short"], name="..%2F..%2Fmy%20clip%3B%20rm.mp4")
        assert status == 200 and body["name"] == "my clip_ rm.mp4"
        assert [p.relative_to(uploads).parts[1:] for p in uploads.rglob("*.mp4")] == [("my clip_ rm.mp4",)]
        assert server.call("POST", "/api/jobs", {"upload": "../../etc"})[0] == 403
        assert server.call("POST", "/api/jobs", {"upload": "0" * 32})[0] == 404
        assert server.call("POST", "/api/jobs", {"mode": "clip"})[0] == 422
    finally:
        server.stop()


def test_an_upload_is_streamed_to_disk_in_bounded_memory(tmp_path):
    from actionrec.serve.storage import TooLarge, Uploads

    uploads = Uploads(tmp_path / "up", max_bytes=60 << 20)
    chunk = os.urandom(1 << 20)

    async def chunks(n):
        for _ in range(n):
            yield chunk

    tracemalloc.start()
    try:
        path = asyncio.run(uploads.save("big.mp4", chunks(40)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert path.stat().st_size == 40 << 20 and peak < 4 << 20  # a few chunks at most, not the 40 MB
    with pytest.raises(TooLarge):
        asyncio.run(uploads.save("bigger.mp4", chunks(61)))
    assert [p.name for p in (tmp_path / "up").rglob("*.mp4")] == ["big.mp4"]


# ----------------------------------------------------------------------------------------------- under load


def test_twenty_uploads_at_once_run_a_bounded_number_at_a_time_and_the_page_stays_responsive(tmp_path, videos):
    from actionrec.serve.app import REQUEST_THREADS

    def anyio_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith("AnyIO worker"))

    before = anyio_threads()  # idle ones of the other servers in this process
    model = ColourModel(delay=0.05)
    server = start_server(settings_for(tmp_path, workers=2), {"colour": model})
    results: list = []
    most = {"decode": 0, "workers": 0}

    def client(i: int) -> None:
        results.append(server.analyse(videos["short"]))

    def count_threads() -> None:
        names = [t.name for t in threading.enumerate()]
        most["decode"] = max(most["decode"], names.count("actionrec-decode"))
        most["workers"] = max(most["workers"], anyio_threads())

    try:
        clients = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for c in clients:
            c.start()
        page_while_busy = []
        while any(c.is_alive() for c in clients) or any(j["status"] in ("queued", "running") for j in
                                                        server.call("GET", "/api/jobs")[1]["jobs"]):
            count_threads()
            status, page, _ = server.call("GET", "/")
            jobs = server.call("GET", "/api/jobs")[1]["jobs"]
            if any(j["status"] == "queued" for j in jobs):
                page_while_busy.append(status == 200 and b"actionrec" in page)
            time.sleep(0.02)
        for c in clients:
            c.join()
        jobs = [server.wait(j["id"]) for j in results]
    finally:
        server.stop()
    assert len(jobs) == 20 and all(j["status"] == "done" and j["top"][0]["label"] == "Green" for j in jobs)
    assert server.server.runner.most_running == 2  # bounded by --workers, and both used
    assert page_while_busy and all(page_while_busy)  # the page was served while jobs were waiting
    assert most["decode"] <= 2 and most["workers"] - before <= REQUEST_THREADS + 2  # threads bounded, whatever the load


def test_cancel_a_running_and_a_queued_job(tmp_path, videos):
    model = ColourModel(delay=0.2)
    server = start_server(settings_for(tmp_path), {"colour": model})
    try:
        running = server.analyse(videos["long"])
        queued = server.analyse(videos["long"])
        while server.call("GET", f"/api/jobs/{running['id']}")[1]["status"] != "running":
            time.sleep(0.02)
        assert server.call("POST", f"/api/jobs/{queued['id']}/cancel")[1]["status"] == "cancelled"
        status, body, _ = server.call("POST", f"/api/jobs/{running['id']}/cancel")
        assert status == 200
        done = server.wait(running["id"], timeout=30)
        assert done["status"] == "cancelled" and model.calls < 30
        calls = model.calls
        time.sleep(0.5)
        assert model.calls == calls and server.wait(queued["id"])["status"] == "cancelled"
        assert server.call("POST", f"/api/jobs/{running['id']}/cancel")[0] == 400
    finally:
        server.stop()


def test_a_restart_keeps_finished_results_and_retention_removes_old_ones(tmp_path, videos):
    settings = settings_for(tmp_path, retention_days=1)
    first = start_server(settings, {"colour": ColourModel()})
    try:
        job = first.wait(first.analyse(videos["long"])["id"])
        windows = first.call("GET", f"/api/jobs/{job['id']}/windows")[1]
    finally:
        first.stop()
    state = tmp_path / "state" / "jobs"
    ghost = json.loads((state / job["id"] / "job.json").read_text())  # a job the server was running when it stopped
    ghost.update(id="f" * 16, status="running", upload=None)
    (state / ghost["id"]).mkdir()
    (state / ghost["id"] / "job.json").write_text(json.dumps(ghost))

    second = start_server(settings, {"colour": ColourModel()})
    try:
        again = second.call("GET", f"/api/jobs/{job['id']}")[1]
        assert again["status"] == "done" and again["result"] == job["result"]
        assert second.call("GET", f"/api/jobs/{job['id']}/windows")[1] == windows
        interrupted = second.call("GET", f"/api/jobs/{ghost['id']}")[1]
        assert interrupted["status"] == "interrupted" and "run it again" in interrupted["error"]
        fresh = second.wait(second.analyse(videos["short"])["id"])
        record = second.server.store.get(job["id"])
        record.finished -= 2 * 86400
        upload = Path(record.source).parent
        os.utime(upload, (time.time() - 2 * 86400,) * 2)
        second.server.sweep()
        assert second.call("GET", f"/api/jobs/{job['id']}")[0] == 404 and not (state / job["id"]).exists()
        assert not upload.exists()
        assert second.call("GET", f"/api/jobs/{fresh['id']}")[1]["status"] == "done"
        assert Path(second.server.store.get(fresh["id"]).source).is_file()
    finally:
        second.stop()


# ----------------------------------------------------------------------------------------------- models and runs


def test_runs_listed_compared_and_trained_from_the_page(demo_run, tmp_path):
    run, data, _ = demo_run
    runs = tmp_path / "runs"
    runs.mkdir()
    os.symlink(run, runs / "linked")  # a symlinked run is not listed
    server = start_server(settings_for(tmp_path, data_root=data.parent, features=data.parent / "cache"))
    try:
        assert server.call("GET", "/api/runs")[1] == {"runs": []}
        status, job, _ = server.call("POST", "/api/train", {"data": data.name, "name": "first try", "epochs": 2,
                                                            "finetune_epochs": 0})
        assert status == 201 and job["name"] == "first_try"
        done = server.wait(job["id"], timeout=300)
        assert done["status"] == "done", done
        # two sources per class: the few-shot head, whose fit (no epochs) the log says
        assert any(line.startswith("head: ") for line in done["log"]) and done["progress"] == 1.0
        assert done["result"]["summary"].startswith("first_try: ") and str(tmp_path) not in json.dumps(done)
        assert server.call("POST", "/api/train", {"data": data.name, "name": "first try"})[0] == 409  # taken
        listed = server.call("GET", "/api/runs")[1]["runs"]
        assert [r["name"] for r in listed] == ["first_try"] and listed[0]["report"]
        status, html, _ = server.call("GET", "/api/runs/first_try/report")
        assert status == 200 and b"<html" in html.lower()
        assert server.call("GET", "/api/runs/linked/report")[0] == 404
        table = server.call("GET", "/api/compare?runs=first_try&runs=first_try")[1]["table"]
        assert table.splitlines()[0].split() == ["first_try", "first_try"] and str(tmp_path) not in table
        models = [m["name"] for m in server.call("GET", "/api/models")[1]["models"]]
        assert models == ["run:first_try"]
        classes = server.call("GET", "/api/models/run:first_try/classes")[1]["classes"]
        assert classes == listed[0]["classes"]
    finally:
        server.stop()


def test_the_serve_command_line(tmp_path):
    import argparse

    from actionrec.serve.cli import add_parser, settings_from
    from actionrec.serve.settings import Settings

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--data-root", str(tmp_path), "--model", "i3d-kinetics400", "--port", "0",
                              "--token", "random", "--state", str(tmp_path / "s")])
    settings = settings_from(args)
    assert args.func.__name__ == "run" and settings.data_root == tmp_path and settings.port == 0
    assert len(settings.token) >= 20 and settings.host == Settings().host == "127.0.0.1"
    assert settings.workers == Settings().workers and settings.state == tmp_path / "s"
    args = parser.parse_args(["serve", "--upload-quota-mb", "5", "--max-body-kb", "8", "--max-connections", "20",
                              "--header-timeout", "2.5", "--body-timeout", "4"])
    limits = settings_from(args)
    assert (limits.upload_quota_mb, limits.max_body_kb, limits.max_connections, limits.header_timeout,
            limits.body_timeout) == (5, 8, 20, 2.5, 4)
    for bad in (["--max-connections", "1"], ["--header-timeout", "0"], ["--body-timeout", "nan"],
                ["--upload-quota-mb", "-1"], ["--token", "caf\u00e9-secret"]):
        with pytest.raises(ActionrecError, match=bad[0]):
            settings_from(parser.parse_args(["serve", *bad]))


def test_a_windows_file_of_an_older_server_is_read_once_and_rewritten(tmp_path):
    import numpy as np

    from actionrec.apps.windows import load_window_probs
    from actionrec.serve.results import load_windows

    old = tmp_path / "windows.npz"
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    np.savez(old, video=np.array("v.mp4"), model=np.array("m"), categories=np.array(["a", "b"]),
             starts=np.array([0.0, 0.5]), ends=np.array([0.64, 1.14]), probs=probs,
             numbers=np.array([1.2, 25.0, 0.64, 0.5, 30], np.float64))  # the page's own format before the library's
    wp = load_windows(old)
    assert wp.categories == ("a", "b") and wp.duration == 1.2 and wp.frames == 30 and np.allclose(wp.probs, probs)
    again = load_window_probs(old)  # rewritten in the library's one format
    assert again.categories == wp.categories and again.stride == 0.5 and np.allclose(again.probs, probs)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ActionrecError, match="analyse the video again"):
        load_windows(tmp_path / "broken.npz")


# ----------------------------------------------------------------------------------------------- groups of classes


def test_jobs_report_by_group_and_grouped_results_are_their_own(i3d_kinetics, demo_run, realclips, tmp_path):
    """`group_by: "category"` through the real I3D on a real clip: its top 5 and its timeline name the published
    parents ("martial arts" for arm_wrestling.mp4), the stored windows are the groups' (the slider and the downloads
    relabel groups), and the ungrouped job of the same video keeps its classes (the raw probabilities' cache is
    shared, the results are not). "category" for a trained run's classes, and a bad group, are refused at creation."""
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(demo_run[0], runs / "demo")
    server = start_server(settings_for(tmp_path), {"i3d-kinetics400": i3d_kinetics})
    clip = realclips / "arm_wrestling.mp4"
    try:
        assert server.call("GET", "/api/models/i3d-kinetics400/classes")[1]["categories"][:2] == ["arts and crafts",
                                                                                                  "athletics - jumping"]
        assert server.call("GET", "/api/models/run:demo/classes")[1]["categories"] is None  # the page offers no choice
        status, body = server.upload(clip)
        refused = [server.call("POST", "/api/jobs", {"upload": body["upload"], **fields})
                   for fields in ({"model": "run:demo", "group_by": "category"},
                                  {"group_by": "category", "groups": ["fights=arm wrestling"]},
                                  {"groups": ["fights=arm wrestlin"]}, {"groups": ["no equals sign"]},
                                  {"group_by": "category", "labels": ["arm wrestling"]}, {"group_by": "sport"},
                                  {"groups": []})]
        assert [r[0] for r in refused] == [400, 400, 400, 400, 400, 422, 422]
        assert "group the 400 Kinetics-400 classes; this model has 4 other classes" in refused[0][1]["error"]
        assert "did you mean 'arm wrestling'" in refused[2][1]["error"]
        assert len(server.server.store.jobs) == 0  # no job for a refused request

        top = server.wait(server.analyse(clip, group_by="category", mode="clip")["id"], timeout=300)
        assert top["status"] == "done", top
        assert top["result"]["top"][0]["label"] == "martial arts" and top["params"]["group_by"] == "category"
        plain, grouped = (server.wait(server.analyse(clip, mode="timeline", **fields)["id"], timeout=300)
                          for fields in ({}, {"group_by": "category", "labels": ["martial arts", "dancing"]}))
        assert plain["status"] == grouped["status"] == "done", (plain, grouped)
        assert plain["top"][0]["label"] == "arm wrestling" and grouped["top"][0]["label"] == "martial arts"
        assert set(grouped["result"]["totals"]) == {"martial arts", "dancing", "none"}
        assert grouped["result"]["totals"] != plain["result"]["totals"]
        windows = server.call("GET", f"/api/jobs/{grouped['id']}/windows")[1]
        assert windows["labels"] == ["martial arts"] and windows["threshold_source"] != plain["params"]["threshold_source"]
        relabelled = server.call("GET", f"/api/jobs/{grouped['id']}/timeline?threshold=0.05")[1]
        assert relabelled["totals"]["martial arts"] >= grouped["result"]["totals"]["martial arts"] > 0
        csv = server.call("GET", f"/api/jobs/{grouped['id']}/download/csv")[1]
        assert b"martial arts" in csv and b"arm wrestling" not in csv
        own = server.wait(server.analyse(clip, mode="clip", groups=["fights=arm wrestling,punching person (boxing)",
                                                                      "fights=wrestling"])["id"], timeout=300)
        assert own["status"] == "done" and [t["label"] for t in own["result"]["top"]][:1] == ["fights"]
    finally:
        server.stop()
