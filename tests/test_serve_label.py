"""The Label view's REST API (/api/datasets) on a real server with real video files: datasets created under the data
root, videos uploaded or picked, segments added, moved, removed (each edit one operation on labels.csv as it is now:
two clients never lose each other's segments, an edit of a segment that is gone is 409), the fully-labelled mark, a
restart that shows the same labels, requests from another site and paths outside the root refused; and one round of
training with the real I3D on a long video stitched from real UCF101 clips, then its review (timelines and
suggestions) and its validation figures kept per round."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from actionrec.data.manifest import load_manifest
from test_serve_api import settings_for, start_server
from test_timeline import colour_frames, write_av_video
from videos import stitch

UCF = Path(__file__).resolve().parents[1] / ".." / "shared" / "ucf101_subset" / "UCF-101"
LONG_CLIPS = [("BabyCrawling", "v_BabyCrawling_g01_c01.avi"), ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01.avi"),
              ("BabyCrawling", "v_BabyCrawling_g02_c01.avi"), ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g02_c01.avi")]


def stitched_real_video(path: Path) -> list[tuple[str, float, float]]:
    """A ~24 s video of four real UCF101 clips, two classes alternating; its true (label, start, end)."""
    if not UCF.is_dir():
        pytest.skip(f"needs the real clips in {UCF}")
    return stitch(path, [(UCF / label / name, label) for label, name in LONG_CLIPS])


@pytest.fixture
def root(tmp_path) -> Path:
    data = tmp_path / "data"
    (data / "elsewhere").mkdir(parents=True)
    write_av_video(data / "elsewhere" / "picked.mp4", colour_frames([("Red", 3.0), ("Blue", 3.0)]))
    write_av_video(tmp_path / "outside.mp4", colour_frames([("Green", 2.0)]))
    return data


def segment(video: str, label: str, start: float, end: float) -> dict:
    return {"video": video, "label": label, "start": start, "end": end}


def test_segments_created_edited_deleted_and_kept_across_a_restart(tmp_path, root):
    settings = settings_for(tmp_path, data_root=root)
    server = start_server(settings)
    try:
        assert server.call("GET", "/api/datasets")[1] == {"datasets": []}
        docs = server.call("GET", "/docs")[1].decode()
        assert all(route in docs for route in ("/api/datasets/{name}/segments", "/api/datasets/{name}/fully-labelled",
                                               "/api/datasets/{name}/train", "/api/datasets/{name}/review"))
        status, made, _ = server.call("POST", "/api/datasets", {"name": "mine"})
        assert status == 201 and made["segments"] == 0 and (root / "mine" / "labels.csv").is_file()
        assert server.call("POST", "/api/datasets", {"name": "mine"})[0] == 409
        assert server.call("POST", "/api/datasets", {"name": "../up"})[0] == 400
        upload = server.upload(tmp_path / "outside.mp4", name="my%20clip.mp4")[1]["upload"]
        status, added, _ = server.call("POST", "/api/datasets/mine/videos", {"upload": upload})
        assert status == 201 and added["video"] == "videos/my clip.mp4" and (root / "mine" / "videos" / "my clip.mp4").is_file()
        status, picked, _ = server.call("POST", "/api/datasets/mine/videos", {"path": "elsewhere/picked.mp4"})
        assert status == 201 and picked["video"] == "../elsewhere/picked.mp4"
        assert picked["videos"] == ["videos/my clip.mp4", "../elsewhere/picked.mp4"]
        status, body, headers = server.call("GET", "/api/datasets/mine/video?path=../elsewhere/picked.mp4")
        assert status == 200 and headers["content-type"] == "video/mp4" and len(body) > 1000

        red = segment("../elsewhere/picked.mp4", "red", 0.2, 1.8)
        assert server.call("POST", "/api/datasets/mine/segments", red)[0] == 201
        status, blue, _ = server.call("POST", "/api/datasets/mine/segments", segment("../elsewhere/picked.mp4", "blue", 3, 5.5))
        assert status == 201 and blue == segment("../elsewhere/picked.mp4", "blue", 3.0, 5.5)
        moved = {**blue, "end": 6.0}
        assert server.call("PUT", "/api/datasets/mine/segments", {"old": blue, "new": moved})[0] == 200
        status, err, _ = server.call("PUT", "/api/datasets/mine/segments", {"old": blue, "new": moved})
        assert status == 409 and "no longer there" in err["error"] and str(tmp_path) not in err["error"]
        green = segment("videos/my clip.mp4", "green", 0, 1.5)
        assert server.call("POST", "/api/datasets/mine/segments", green)[0] == 201
        query = "video=videos/my%20clip.mp4&label=green&start=0&end=1.5"
        assert server.call("DELETE", f"/api/datasets/mine/segments?{query}")[0] == 200
        assert server.call("DELETE", f"/api/datasets/mine/segments?{query}")[0] == 409
        status, marks, _ = server.call("PUT", "/api/datasets/mine/fully-labelled", {"video": "../elsewhere/picked.mp4"})
        assert status == 200 and marks == {"fully_labelled": ["../elsewhere/picked.mp4"]}
        # a bad edit: one line, the file unchanged
        before = (root / "mine" / "labels.csv").read_bytes()
        status, err, _ = server.call("POST", "/api/datasets/mine/segments", segment("../elsewhere/picked.mp4", "green", 2, 4))
        assert status == 400 and "overlaps" in err["error"] and "\n" not in err["error"] and str(root) not in err["error"]
        assert (root / "mine" / "labels.csv").read_bytes() == before
    finally:
        server.stop()
    server = start_server(settings)  # a restart shows the same labels
    try:
        status, one, _ = server.call("GET", "/api/datasets/mine")
        assert status == 200 and one["segments"] == [red, moved] and one["labels"] == ["blue", "red"]
        assert one["fully_labelled"] == ["../elsewhere/picked.mp4"]
        assert one["videos"] == ["videos/my clip.mp4", "../elsewhere/picked.mp4"]
        samples = load_manifest(root / "mine" / "labels.csv")  # what `actionrec train mine/labels.csv` reads
        assert {s.label for s in samples} == {"red", "blue", "none"}
    finally:
        server.stop()


def test_two_clients_editing_at_once_keep_every_segment(tmp_path, root):
    server = start_server(settings_for(tmp_path, data_root=root))
    try:
        server.call("POST", "/api/datasets", {"name": "mine"})
        server.call("POST", "/api/datasets/mine/videos", {"path": "elsewhere/picked.mp4"})
        statuses = []

        def tab(label: str, starts: list[float]) -> None:
            for a in starts:
                statuses.append(server.call("POST", "/api/datasets/mine/segments",
                                            segment("../elsewhere/picked.mp4", label, a, a + 0.4))[0])

        tabs = [threading.Thread(target=tab, args=("red", [0, 1, 2])), threading.Thread(target=tab, args=("blue", [0.5, 1.5, 2.5]))]
        for t in tabs:
            t.start()
        for t in tabs:
            t.join(120)
        assert statuses == [201] * 6
        listed = server.call("GET", "/api/datasets/mine")[1]["segments"]
        assert sorted(s["start"] for s in listed) == [0, 0.5, 1, 1.5, 2, 2.5]
    finally:
        server.stop()


def test_cross_site_and_outside_the_root_are_refused(tmp_path, root):
    server = start_server(settings_for(tmp_path, data_root=root))
    try:
        server.call("POST", "/api/datasets", {"name": "mine"})
        status, err, _ = server.call("POST", "/api/datasets", {"name": "evil"}, headers={"Origin": "http://evil.example"})
        assert status == 403 and "another web site" in err["error"] and not (root / "evil").exists()
        bad = segment("../elsewhere/picked.mp4", "red", 0, 1)
        assert server.call("POST", "/api/datasets/mine/segments", bad, headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
        assert server.call("GET", "/api/datasets/mine", headers={"Origin": "http://evil.example"})[0] == 403
        for video in ("../../outside.mp4", "/etc/passwd", "../elsewhere/../../outside.mp4"):
            status, err, _ = server.call("POST", "/api/datasets/mine/segments", segment(video, "red", 0, 1))
            assert status == 403, (video, err)
            assert server.call("GET", f"/api/datasets/mine/video?path={video}")[0] == 403
        assert server.call("POST", "/api/datasets/mine/videos", {"path": "../outside.mp4"})[0] == 403
        assert server.call("GET", "/api/datasets/..%2F..")[0] in (400, 404)
        (root / "linked").symlink_to(root / "mine")
        assert server.call("GET", "/api/datasets/linked")[0] == 403
        huge = {"name": "x" * 300}
        assert server.call("POST", "/api/datasets", huge)[0] == 422
        assert server.call("POST", "/api/datasets/mine/segments", {**bad, "label": "y" * 300_000})[0] == 413
        assert (root / "mine" / "labels.csv").read_text() == "path,label,start,end,group,split\n"
    finally:
        server.stop()
    server = start_server(settings_for(tmp_path / "no-root"))
    try:
        assert server.call("POST", "/api/datasets", {"name": "mine"})[0] == 403
    finally:
        server.stop()


def test_a_round_trains_reviews_and_keeps_its_figures(tmp_path, i3d_kinetics):
    root = tmp_path / "data"
    (root / "mine" / "videos").mkdir(parents=True)
    truth = stitched_real_video(root / "mine" / "videos" / "long.mp4")
    server = start_server(settings_for(tmp_path, data_root=root, features=tmp_path / "features"),
                          {"i3d-kinetics400": i3d_kinetics})
    try:
        server.call("POST", "/api/datasets", {"name": "mine"})
        assert server.call("POST", "/api/datasets/mine/train", {"epochs": 2, "finetune_epochs": 0})[0] == 400  # no labels
        for label, start, end in truth[:3]:  # the fourth clip is left for the model
            status, body, _ = server.call("POST", "/api/datasets/mine/segments",
                                          segment("videos/long.mp4", label, round(start + 0.5, 1), round(end - 0.5, 1)))
            assert status == 201, body
        status, job, _ = server.call("POST", "/api/datasets/mine/train", {"epochs": 5, "finetune_epochs": 0})
        assert status == 201 and job["name"] == "mine-1", job
        assert server.call("POST", "/api/datasets/mine/train", {"epochs": 5, "finetune_epochs": 0})[0] == 409  # busy
        done = server.wait(job["id"], timeout=600)
        assert done["status"] == "done" and done["view"] == "review", done
        review = done["result"]["review"]
        assert [v["video"] for v in review["videos"]] == ["videos/long.mp4"]
        assert {s["label"] for s in review["videos"][0]["segments"]} & {"BabyCrawling", "ApplyEyeMakeup"}
        assert review["suggestions"] and all(s["video"] == "videos/long.mp4" for s in review["suggestions"])
        assert str(tmp_path) not in json.dumps(done)
        rounds = server.call("GET", "/api/datasets/mine")[1]["rounds"]
        assert [r["round"] for r in rounds] == [1] and rounds[0]["run"] == "mine-1" and rounds[0]["segments"] == 3
        assert "val_accuracy" in rounds[0]
        assert server.call("GET", "/api/datasets/mine/review")[1]["job"] == job["id"]
        status, again, _ = server.call("POST", "/api/datasets/mine/review", {})
        assert status == 201 and server.wait(again["id"])["status"] == "done"
    finally:
        server.stop()


def test_a_round_keeps_the_validation_figures_of_the_epoch_the_run_kept(tmp_path):
    from actionrec.serve.datasets import Datasets
    from actionrec.serve.storage import DataRoot

    datasets = Datasets(DataRoot(tmp_path))
    datasets.create("mine")
    history = [{"phase": "head", "epoch": 2, "val_acc": 0.5, "val_loss": 1.0},
               {"phase": "head", "epoch": 3, "val_acc": 0.75, "val_loss": 0.6},
               {"phase": "finetune", "epoch": 4, "val_acc": 0.875, "val_loss": 0.4}]
    first = datasets.add_round("mine", "mine-1", {"best_epoch": {"head": 3}, "history": history, "test_accuracy": 0.8,
                                                  "splits": {"policy": "val: 20 % of the groups"}}, 4)
    second = datasets.add_round("mine", "mine-2", {"best_epoch": {"head": 3, "finetune": 4}, "history": history,
                                                   "test_accuracy": float("nan")}, 6)
    alone = datasets.add_round("mine", "mine-3", {"best_epoch": {"head": 1}, "test_accuracy": None,
                                                  "history": [{"phase": "head", "epoch": 1, "val_acc": float("nan")}]}, 1)
    assert (first["round"], first["val_accuracy"], first["val_loss"], first["test_accuracy"]) == (1, 0.75, 0.6, 0.8)
    assert (second["round"], second["val_accuracy"], second["test_accuracy"]) == (2, 0.875, None)
    assert alone["val_accuracy"] is None  # no validation set: null, never NaN (JSON has none)
    assert datasets.rounds("mine") == [first, second, alone]
    assert all(json.loads(line) for line in (tmp_path / "mine" / "rounds.jsonl").read_text().splitlines())
    assert "NaN" not in (tmp_path / "mine" / "rounds.jsonl").read_text()
