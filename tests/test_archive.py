"""Archives: a folder of videos (or a list) through predict/timeline, resumable after a kill, one bad file reported
once; shards balanced by duration."""

from __future__ import annotations

import json
import random

import pytest

from test_timeline import ColourModel, colour_frames, write_av_video

from actionrec.apps.archive import list_archive, one_at_a_time, run_archive, summarize, summary_table
from actionrec.apps.predict import predict_iter
from actionrec.apps.timeline import timeline
from actionrec.distributed import Ranks, balanced_shards, ranks_from_env, threads_per_rank
from actionrec.errors import ActionrecError
from actionrec.training.features import content_key


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    (root / "season" / "week1").mkdir(parents=True)
    write_av_video(root / "season" / "week1" / "a.mp4", colour_frames([("Red", 2.0), ("Green", 1.0)]))
    write_av_video(root / "season" / "b.mp4", colour_frames([("Blue", 1.5)]))
    write_av_video(root / "c.mp4", colour_frames([("Green", 2.5)]))
    (root / "broken.mp4").write_text("not a video")
    return root


def test_listing_a_folder_and_a_list_file(archive, tmp_path):
    items = list_archive(archive)
    assert [i.relative for i in items] == ["broken.mp4", "c.mp4", "season/b.mp4", "season/week1/a.mp4"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two of them\n{archive / 'c.mp4'}\n\n{archive / 'season' / 'b.mp4'}\n")
    assert [i.video for i in list_archive(listing)] == [str(archive / "c.mp4"), str(archive / "season" / "b.mp4")]
    with pytest.raises(ActionrecError, match="no such folder"):
        list_archive(tmp_path / "missing")


def test_timeline_archive_resumes_and_reports_the_bad_file_once(archive, tmp_path):
    model = ColourModel()
    out = tmp_path / "out"
    errors = []

    process = one_at_a_time(lambda video: timeline(video, model, stride=0.5, cache=False).to_dict())

    items = list_archive(archive)
    first = run_archive(items, out, process, content_key, on_error=lambda v, m: errors.append(v))
    next(first)  # the broken file, then a kill: the generator is dropped before the rest
    next(first)
    first.close()
    calls = model.calls
    entries = list(run_archive(items, out, process, content_key, on_error=lambda v, m: errors.append(v)))
    assert [e["relative"] for e in entries] == ["season/b.mp4", "season/week1/a.mp4"]  # only what was not done
    assert model.calls > calls and errors == [str(archive / "broken.mp4")]  # reported once, not retried
    assert list(run_archive(items, out, process, content_key)) == []  # all done
    result = json.loads((out / "season" / "week1" / "a.mp4.json").read_text())
    assert {s["label"] for s in result["segments"]} >= {"Red", "Green"}
    summary = summarize(out)
    assert summary["videos"] == 4 and summary["done"] == 3 and len(summary["failed"]) == 1
    assert abs(summary["duration"] - 7.0) < 0.3 and abs(sum(summary["totals"].values()) - summary["duration"]) < 0.1
    assert abs(summary["totals"]["Green"] - 3.5) < 0.6
    text = summary_table(summary)
    assert "3 of 4 videos done, 1 failed" in text and "broken.mp4" in text


class BatchRecordingModel(ColourModel):
    """The colour model, recording the size of each batch it is given."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return super().forward(x)


def test_predict_archive_is_one_stream_whose_batches_cross_videos_and_resumes(archive, tmp_path):
    model = BatchRecordingModel()
    out = tmp_path / "out"
    errors = []

    def stream(videos, on_error):
        return ((p.video, p.to_dict()) for p in predict_iter(videos, model, batch_size=4, on_error=on_error))

    items = list_archive(archive)
    entries = list(run_archive(items, out, stream, content_key, on_error=lambda v, m: errors.append(v)))
    assert [(e["relative"], e["status"]) for e in entries] == [
        ("broken.mp4", "error"), ("c.mp4", "ok"), ("season/b.mp4", "ok"), ("season/week1/a.mp4", "ok")]
    assert model.batches == [3]  # one clip per readable video, all three in one batch
    assert errors == [str(archive / "broken.mp4")]
    assert json.loads((out / "season" / "b.mp4.json").read_text())["top"][0]["label"] == "Blue"
    assert json.loads((out / "c.mp4.json").read_text())["top"][0]["label"] == "Green"

    # killed after two results: the rerun does only the rest, in one stream again
    (out / "index.jsonl").unlink()
    first = run_archive(items, out, stream, content_key)
    assert [next(first)["relative"], next(first)["relative"]] == ["broken.mp4", "c.mp4"]
    first.close()
    model.batches.clear()
    entries = list(run_archive(items, out, stream, content_key))
    assert [e["relative"] for e in entries] == ["season/b.mp4", "season/week1/a.mp4"] and model.batches == [2]
    assert summarize(out)["done"] == 3


def test_a_video_that_cannot_be_hashed_is_reported_once_and_the_others_go_on(archive, tmp_path):
    out = tmp_path / "out"
    errors = []
    listing = tmp_path / "list.txt"
    listing.write_text(f"{archive / 'c.mp4'}\n{tmp_path / 'gone.mp4'}\n{archive / 'season' / 'b.mp4'}\n")
    stream = one_at_a_time(lambda video: {"video": video})
    entries = list(run_archive(list_archive(listing), out, stream, content_key, on_error=lambda v, m: errors.append(m)))
    assert [e["status"] for e in entries] == ["ok", "error", "ok"]
    assert len(errors) == 1 and "gone.mp4" in errors[0] and "gone.mp4" in entries[1]["error"]


def test_shards_are_balanced_by_duration_and_cover_every_item_once():
    rng = random.Random(0)
    for _ in range(50):
        weights = [rng.expovariate(1 / 600) for _ in range(rng.randint(1, 40))]
        world = rng.randint(1, 5)
        shards = balanced_shards(list(range(len(weights))), lambda i: weights[i], world)
        assert sorted(i for s in shards for i in s) == list(range(len(weights)))
        loads = [sum(weights[i] for i in s) for s in shards]
        assert max(loads) - min(loads) <= max(weights) + 1e-9
        assert all(s == sorted(s) for s in shards)


def test_ranks_from_torchrun_variables():
    assert ranks_from_env({}) == Ranks()
    r = ranks_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (r.rank, r.world, r.local_rank, r.local_world, r.is_main, r.distributed) == (3, 4, 1, 2, False, True)
    assert threads_per_rank(r, cores=2) == 1 and threads_per_rank(Ranks(), cores=2) == 2
    with pytest.raises(ActionrecError, match="not a valid torchrun placement"):
        ranks_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_cli_timeline_and_predict_over_an_archive(archive, tmp_path, monkeypatch, capsys):
    from test_timeline import use_model

    from actionrec.cli import main

    use_model(monkeypatch, ColourModel())
    out = tmp_path / "tl"
    assert main(["timeline", str(archive), "--run", "any", "--out", str(out), "--stride", "0.5", "--no-cache", "--quiet"]) == 1
    stdout, err = capsys.readouterr()
    assert "3 of 4 videos done, 1 failed" in stdout and "Green" in stdout
    assert sum("broken.mp4" in line for line in err.splitlines()) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 3 and (out / "c.mp4.json").is_file()
    assert main(["timeline", str(archive), "--run", "any", "--out", str(out), "--json", "--quiet"]) == 1  # nothing redone
    assert json.loads(capsys.readouterr().out)["done"] == 3
    assert main(["predict", str(archive), "--run", "any", "--out", str(tmp_path / "p"), "--quiet"]) == 1
    assert json.loads((tmp_path / "p" / "season" / "b.mp4.json").read_text())["top"][0]["label"] == "Blue"


def test_torchrun_two_ranks_share_an_archive(archive, tmp_path, i3d_kinetics):
    """`torchrun --nproc-per-node 2 -m actionrec predict FOLDER`: each video done once, by one rank; one summary."""
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "actionrec",
           "predict", str(archive), "--out", str(out), "--single-clip", "--quiet"]
    child = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert child.returncode != 0  # the broken file makes the job's status 1 (rank 0), torchrun reports it
    lines = [json.loads(l) for l in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(l["relative"] for l in lines) == ["broken.mp4", "c.mp4", "season/b.mp4", "season/week1/a.mp4"]
    assert json.loads((out / "summary.json").read_text())["done"] == 3
    assert child.stdout.count("3 of 4 videos done") == 1, child.stdout
