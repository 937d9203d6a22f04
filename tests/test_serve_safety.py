"""`actionrec serve` left running: what another web site, an idle or slow client, a dataset pointing outside the data
root, an oversized body, a strange token or bad job fields can do (issue 18), each on a real server on 127.0.0.1 with
short limits set through Settings (the flags' values).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time
from pathlib import Path

import pytest

from actionrec.errors import ActionrecError
from test_serve_api import STITCHED, settings_for, start_server
from test_timeline import ColourModel, colour_frames, write_av_video

EVIL = {"Origin": "http://evil.example"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("safety-videos")
    return {"long": write_av_video(folder / "stitched.mp4", colour_frames(STITCHED)),
            "short": write_av_video(folder / "green.mp4", colour_frames([("Green", 1.2)]))}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_server(settings_for(tmp_path_factory.mktemp("safety"), upload_quota_mb=3.0, max_body_kb=4),
                          {"colour": ColourModel()})
    yield server
    server.stop()


def upload_ids(server) -> list[str]:
    folder = server.server.uploads.folder
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ----------------------------------------------------------------------------------------------- 1: other sites, quota


def test_another_sites_requests_are_refused_and_uploads_have_a_quota(live, clips):
    data = clips["short"].read_bytes()
    before = upload_ids(live)
    for headers in (EVIL | {"Content-Type": "text/plain"}, EVIL | {"Content-Type": "multipart/form-data; boundary=x"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}, {"Origin": f"http://127.0.0.1:{live.port + 1}"}):
        status, body, _ = live.call("POST", "/api/uploads?filename=a.mp4", data, headers=headers)
        assert status == 403 and "another web site" in body["error"], headers
    assert upload_ids(live) == before  # nothing kept
    assert live.call("POST", "/api/jobs", {"upload": "0" * 32}, headers=EVIL)[0] == 403
    assert live.call("DELETE", "/api/jobs/x", headers={"Sec-Fetch-Site": "same-site"})[0] == 403
    assert live.call("GET", "/api/jobs", headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert live.call("GET", "/", headers={"Sec-Fetch-Site": "cross-site"})[0] == 200  # a link to the page still opens it
    # the page's own requests (same origin) and clients that send no Origin are served
    own = {"Origin": f"http://127.0.0.1:{live.port}", "Sec-Fetch-Site": "same-origin"}
    status, body, _ = live.call("POST", "/api/uploads?filename=a.mp4", data, headers=own)
    assert status == 200, body

    used = live.server.uploads.stored_bytes()
    assert 0 < used < 3e6
    n = int((3e6 - used) // len(data))
    for _ in range(n):
        assert live.upload(clips["short"])[0] == 200
    status, body = live.upload(clips["short"])  # over the 3 MB quota
    assert status == 413 and "quota" in body["error"] and "--upload-quota-mb" in body["error"]
    assert live.server.uploads.stored_bytes() <= 3e6
    for upload in upload_ids(live):  # make room for the other tests
        live.server.uploads.remove(live.server.uploads.find(upload))


# ----------------------------------------------------------------------------------------------- 2: idle connections


def test_idle_and_slow_connections_are_dropped_while_the_server_answers(tmp_path):
    server = start_server(settings_for(tmp_path, max_connections=12, header_timeout=1.0, body_timeout=1.0))
    socks = []
    try:
        for i in range(40):  # nothing, half a request line, headers without their end
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall([b"", b"GET /api/in", b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n"][i % 3])
            socks.append(s)
        status, body, _ = server.call("GET", "/api/info")  # answered while 40 idle ones were opened
        assert status == 200 and body["version"]
        open_now = [c for c in server.uv.server_state.connections if not c.transport.is_closing()]
        assert len(open_now) <= 12
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # a body that stops
        slow.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"upl")
        started = time.monotonic()
        assert _closed(slow, 10)
        assert 0.8 < time.monotonic() - started < 5
        deadline = time.monotonic() + 10
        assert all(_closed(s, max(0.1, deadline - time.monotonic())) for s in socks)  # each within its limit
        assert sum(not c.transport.is_closing() for c in server.uv.server_state.connections) <= 1
        assert server.call("GET", "/api/info")[0] == 200
    finally:
        for s in socks:
            s.close()
        server.stop()


def test_when_every_connection_is_busy_a_new_one_gets_503(tmp_path):
    server = start_server(settings_for(tmp_path, max_connections=2, header_timeout=5.0, body_timeout=5.0))
    busy = []
    try:
        for _ in range(2):  # two requests whose bodies are still coming
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
            busy.append(s)
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        answer = extra.recv(4096)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503") and json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        for s in busy:
            s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and server.uv.server_state.connections:
            time.sleep(0.05)
        assert server.call("GET", "/api/info")[0] == 200  # served again once they are gone
    finally:
        for s in busy:
            s.close()
        server.stop()


def _closed(sock: socket.socket, within: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ----------------------------------------------------------------------------------------------- 3: datasets


def test_a_dataset_naming_videos_outside_the_data_root_is_refused(tmp_path, clips):
    from actionrec.serve.storage import DataRoot, Refused
    from actionrec.serve.work import dataset_under_root

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    for label in ("Red", "Green"):
        for folder in (root / "good" / label, elsewhere / label):
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"{label}{i}.mp4").write_bytes(clips["short"].read_bytes() + bytes([i]))
    (root / "linked").mkdir()
    os.symlink(root / "good" / "Red", root / "linked" / "Red")  # a class folder that is a link (inside the root even)
    os.symlink(elsewhere / "Green", root / "linked" / "Green")
    rows = "path,label\n" + "".join(f"../good/{l}/{l}{i}.mp4,{l}\n" for l in ("Red", "Green") for i in range(3))
    (root / "lists").mkdir()
    (root / "lists" / "fine.csv").write_text(rows)
    (root / "lists" / "absolute.csv").write_text(rows + f"{elsewhere / 'Red' / 'Red0.mp4'},Red\n")
    (root / "lists" / "dotdot.csv").write_text(rows + "../../elsewhere/Green/Green0.mp4,Green\n")

    data = DataRoot(root)
    assert len(dataset_under_root(data, root / "good", None)) == 6
    assert len(dataset_under_root(data, root / "lists" / "fine.csv", None)) == 6
    for source, says in (("linked", "symbolic links"), ("lists/absolute.csv", "outside the data root"),
                         ("lists/dotdot.csv", "outside the data root")):
        with pytest.raises(Refused, match=says) as err:
            dataset_under_root(data, root / source, None)
        assert "\n" not in str(err.value)

    server = start_server(settings_for(tmp_path, data_root=root))
    try:
        for source in ("linked", "lists/absolute.csv", "lists/dotdot.csv"):
            status, body, _ = server.call("POST", "/api/train", {"data": source, "name": "x"})
            assert status == 403 and str(tmp_path) not in body["error"], (source, body)
        assert server.call("GET", "/api/jobs")[1]["jobs"] == []  # no job was made
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------- 4: bodies, lists, queue


def test_a_body_over_the_limit_and_long_lists_are_refused_and_a_full_queue_leaves_no_record(live, tmp_path, clips):
    labels = ["Red"] * 2000
    status, body, _ = live.call("POST", "/api/jobs", {"upload": "0" * 32, "labels": labels})  # ~16 kB > 4 kB
    assert status == 413 and "--max-body-kb" in body["error"]
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)  # no length announced: counted as it comes
    conn.putrequest("POST", "/api/jobs")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for piece in (b'{"upload": "' + b"0" * 32 + b'", "labels": [', *[b'"Red",' * 100] * 10, b'"Red"]}'):
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    assert r.status == 413 and "--max-body-kb" in json.loads(r.read())["error"]
    conn.close()
    from actionrec.serve.routes import MAX_ITEMS, FlagRequest

    with pytest.raises(ValueError):
        FlagRequest(labels=["Red"] * (MAX_ITEMS + 1))

    server = start_server(settings_for(tmp_path, max_queued=1), {"colour": ColourModel(delay=0.2)})
    try:
        first = server.analyse(clips["long"])  # runs
        while server.call("GET", f"/api/jobs/{first['id']}")[1]["status"] != "running":
            time.sleep(0.02)
        second = server.analyse(clips["long"])  # waits
        upload = server.upload(clips["short"])[1]["upload"]
        status, body, _ = server.call("POST", "/api/jobs", {"upload": upload})
        assert status == 503 and "waiting" in body["error"]
        assert {j["id"] for j in server.call("GET", "/api/jobs")[1]["jobs"]} == {first["id"], second["id"]}
        for job in (second, first):
            server.call("POST", f"/api/jobs/{job['id']}/cancel")
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------- 5: tokens


def test_a_non_ascii_token_gets_401_and_is_refused_at_start(tmp_path):
    for bad in ("é-secret", "has space", "semi;colon"):
        with pytest.raises(ActionrecError, match="--token"):
            settings_for(tmp_path, token=bad).check()
    server = start_server(settings_for(tmp_path, token="s3cret-token"))
    try:
        assert server.call("GET", "/api/info?token=%C3%A9")[0] == 401
        assert server.call("GET", "/api/info?token=%FF")[0] == 401
        assert server.call("GET", "/api/info", headers={"Authorization": "Bearer \u00e9\u00e9"})[0] == 401
        assert server.call("GET", "/api/info", headers={"Cookie": "actionrec_token=\u00e9"})[0] == 401
        assert server.call("GET", "/api/info?token=s3cret-token")[0] == 200
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------- 6: job fields


def test_bad_job_fields_are_refused_when_the_job_is_made(live, clips, demo_run, tmp_path):
    upload = live.upload(clips["short"])[1]["upload"]
    jobs_before = live.call("GET", "/api/jobs")[1]["jobs"]
    for fields, status in (({"model": "nope"}, 404), ({"model": "run:../../etc"}, 404), ({"labels": ["Purple"]}, 400),
                           ({"labels": []}, 422), ({"labels": [""]}, 422), ({"mode": "fast"}, 422)):
        got, body, _ = live.call("POST", "/api/jobs", {"upload": upload, **fields})
        assert got == status and body["error"], (fields, body)
    assert live.call("GET", "/api/jobs")[1]["jobs"] == jobs_before  # none was made
    status, job, _ = live.call("POST", "/api/jobs", {"upload": upload, "labels": ["green"]})  # the model's spelling
    assert status == 201 and job["labels"] == ["Green"]
    live.wait(job["id"])
    live.call("DELETE", f"/api/jobs/{job['id']}")

    run, data, cache = demo_run
    runs = tmp_path / "runs"
    runs.mkdir()
    os.symlink(run, runs / "taken")  # not a listed run, but the name is taken
    server = start_server(settings_for(tmp_path, data_root=data.parent, features=cache))
    try:
        for name in ("", ".", "..", "...", "a/b", "-x", "x" * 101):
            status, body, _ = server.call("POST", "/api/train", {"data": data.name, "name": name})
            assert status in (400, 422) and body["error"], (name, body)
        assert server.call("POST", "/api/train", {"data": data.name, "name": "taken"})[0] == 409
        status, body, _ = server.call("POST", "/api/train", {"data": data.name, "name": "y", "classes": ["nope", "nada"]})
        assert status == 400 and "nope" in body["error"]
        assert server.call("GET", "/api/jobs")[1]["jobs"] == []
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------- 7: downloads


def test_a_download_is_made_at_exactly_the_threshold_asked_for(live, clips):
    job = live.wait(live.analyse(clips["long"])["id"])
    for threshold in (0.9806, 0.9809, 0.98, 0.9806, 0.3):
        status, data, _ = live.call("GET", f"/api/jobs/{job['id']}/download/json?threshold={threshold}")
        expected = live.call("GET", f"/api/jobs/{job['id']}/timeline?threshold={threshold}")[1]
        assert status == 200 and data == expected, threshold
    folder = live.server.store.dir(live.server.store.get(job["id"]))
    assert sorted(p.name for p in (folder / "files").glob("at-*")) == ["at-0.300", "at-0.980"]  # grid values kept
    deadline = time.monotonic() + 10
    while list(folder.glob("download-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(folder.glob("download-*"))  # the others were made for their answer only
    live.call("DELETE", f"/api/jobs/{job['id']}")


# ----------------------------------------------------------------------------------------------- 8: leaks and codes


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seen: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record)


def test_errors_name_no_server_paths_missing_things_are_404_and_needed_jobs_stay(tmp_path, clips):
    root = tmp_path / "data"
    root.mkdir()
    (root / "broken.mp4").write_bytes(b"\x00 not a video " * 100)
    server = start_server(settings_for(tmp_path, data_root=root), {"colour": ColourModel(delay=0.3)})
    try:
        failed = server.wait(server.call("POST", "/api/jobs", {"path": "broken.mp4"})[1]["id"])
        assert failed["status"] == "failed" and "broken.mp4" in failed["error"] and str(tmp_path) not in failed["error"]
        for path in ("/api/jobs/nope", "/api/jobs/nope/result", "/api/runs/nope/report", "/api/compare?runs=nope",
                     "/api/models/nope/classes", "/api/files?path=missing"):
            status, body, _ = server.call("GET", path)
            assert status == 404 and str(tmp_path) not in body["error"], (path, body)
        assert server.call("POST", "/api/jobs", {"path": "missing.mp4"})[0] == 404

        analysed = server.wait(server.analyse(clips["long"])["id"])
        busy = server.analyse(clips["long"])  # the one worker is busy with this one ...
        status, censor, _ = server.call("POST", f"/api/jobs/{analysed['id']}/censor", {"labels": ["Green"]})
        assert status == 201 and censor["status"] == "queued"  # ... so the censoring waits
        status, body, _ = server.call("DELETE", f"/api/jobs/{analysed['id']}")
        assert status == 409 and censor["id"] in body["error"]
        server.call("POST", f"/api/jobs/{busy['id']}/cancel")
        assert server.wait(censor["id"])["status"] == "done"
        assert server.call("DELETE", f"/api/jobs/{analysed['id']}")[0] == 200

        records = Records()
        for name in ("actionrec.serve", "uvicorn.error"):  # uvicorn's own logger does not propagate to the root
            logging.getLogger(name).addHandler(records)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # an upload cut off midway
        sock.sendall(b"POST /api/uploads?filename=cut.mp4 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
                     + b"x" * 70000)
        time.sleep(0.3)
        sock.close()
        deadline = time.monotonic() + 10
        while not any("went away" in r.getMessage() for r in records.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        lines = [r for r in records.seen if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in lines] == ["an upload of cut.mp4 stopped: the client went away (nothing was kept)"]
        assert not any(r.exc_info for r in records.seen)
        assert not any(p.is_file() for p in server.server.uploads.folder.rglob("cut.mp4"))
    finally:
        for name in ("actionrec.serve", "uvicorn.error"):
            logging.getLogger(name).removeHandler(records)
        server.stop()


# ----------------------------------------------------------------------------------------------- 9: headers


def test_every_answer_forbids_framing_and_sniffing_and_videos_have_their_type(live, tmp_path):
    for method, path in (("GET", "/"), ("GET", "/api/info"), ("GET", "/static/app.js"), ("GET", "/docs"),
                         ("GET", "/api/jobs/nope"), ("POST", "/api/jobs")):
        _, _, headers = live.call(method, path)
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    _, _, headers = live.call("GET", "/api/info", host="evil.example")  # a refusal too
    assert headers["x-frame-options"] == "DENY"
    assert live.call("GET", "/docs/swagger")[0] == 404  # no page that loads a script from a CDN
    status, docs, _ = live.call("GET", "/docs")
    assert status == 200 and b"swagger" not in docs.lower() and b"https://" not in docs

    ts = write_av_video(tmp_path / "match.ts", colour_frames([("Red", 1.2)]))
    job = live.wait(live.analyse(ts)["id"])
    status, data, headers = live.call("GET", f"/api/jobs/{job['id']}/video")
    assert status == 200 and headers["content-type"] == "video/mp2t" and data == ts.read_bytes()
    live.call("DELETE", f"/api/jobs/{job['id']}")


# ----------------------------------------------------------------------------------------------- newcomer findings


def test_runs_show_macro_f1_and_the_training_form_starts_from_the_librarys_defaults(live, demo_run, tmp_path):
    from actionrec.training.report import load_metrics, macro_f1
    from actionrec.training.trainer import TrainConfig
    from actionrec.serve.routes import TrainRequest

    defaults = live.call("GET", "/api/info")[1]["train_defaults"]
    assert defaults == {"epochs": TrainConfig.epochs, "finetune_epochs": TrainConfig.finetune_epochs}
    request = TrainRequest(data="d", name="n")
    assert (request.epochs, request.finetune_epochs) == (TrainConfig.epochs, TrainConfig.finetune_epochs)

    run = demo_run[0]
    runs = tmp_path / "runs"
    runs.mkdir()
    import shutil

    shutil.copytree(run, runs / "demo")
    server = start_server(settings_for(tmp_path))
    try:
        listed = server.call("GET", "/api/runs")[1]["runs"]
        expected = macro_f1(load_metrics(run)["per_class"])
        assert [r["name"] for r in listed] == ["demo"] and listed[0]["macro_f1"] == pytest.approx(expected)
        table = server.call("GET", "/api/compare?runs=demo&runs=demo")[1]["table"]
        assert str(tmp_path) not in table and table.splitlines()[0].split() == ["demo", "demo"]
    finally:
        server.stop()
