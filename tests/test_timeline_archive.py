"""`timeline` over an archive is one engine stream (issue 20 item 3): decode-ahead and batches cross video boundaries,
each video's result is the one a call on that video alone gives, a bad file in the middle is reported and the rest
done, a cached video runs no network, and a killed archive resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_timeline import ColourModel, colour_frames, write_av_video

from actionrec.apps.archive import list_archive, run_archive
from actionrec.apps.timeline import timeline, timeline_iter
from actionrec.data.video import content_key
from actionrec.engine import engine_for
from actionrec.errors import ActionrecError

UCF = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset" / "UCF-101"


class BatchRecordingModel(ColourModel):
    """The colour model, recording the windows of each batch it is given."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return super().forward(x)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tl-archive")
    write_av_video(root / "a.mp4", colour_frames([("Red", 1.5), ("Green", 1.0)]))
    (root / "b_broken.mp4").write_text("not a video")
    write_av_video(root / "c.mp4", colour_frames([("Blue", 1.5)]))
    write_av_video(root / "d.mp4", colour_frames([("Green", 1.0), ("Red", 1.0)]))
    return root


def stream_of(model, **options):
    def stream(videos, on_error):
        return ((tl.video, tl.to_dict()) for tl in timeline_iter(videos, model, stride=0.5, on_error=on_error, **options))

    return stream


def test_one_stream_batches_across_videos_and_matches_one_video_at_a_time(folder, tmp_path):
    model = BatchRecordingModel()
    errors = []
    entries = list(run_archive(list_archive(folder), tmp_path / "out", stream_of(model, batch_size=4, cache=False),
                               content_key, on_error=lambda v, m: errors.append((v, m))))
    assert [(e["relative"], e["status"]) for e in entries] == [
        ("a.mp4", "ok"), ("b_broken.mp4", "error"), ("c.mp4", "ok"), ("d.mp4", "ok")]
    assert len(errors) == 1 and errors[0][0] == str(folder / "b_broken.mp4") and "b_broken.mp4" in errors[0][1]
    alone = {name: timeline(folder / name, ColourModel(), stride=0.5, cache=False) for name in ("a.mp4", "c.mp4", "d.mp4")}
    windows = sum(len(t.starts) for t in alone.values())
    # every batch full but the last: batches took windows of two videos (a.mp4's 4 windows and c.mp4's 2 do not fill 4s)
    assert sum(model.batches) == windows and model.batches[:-1] == [4] * (len(model.batches) - 1)
    assert any(len(t.starts) % 4 for t in alone.values())
    for name, tl in alone.items():
        got = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert got == json.loads(json.dumps({**tl.to_dict(), "video": str(folder / name)}))


def test_cached_videos_run_no_network_and_a_killed_archive_resumes(folder, tmp_path):
    model = ColourModel()
    cache, out = tmp_path / "cache", tmp_path / "out"
    first = run_archive(list_archive(folder), out, stream_of(model, cache=cache), content_key)
    assert next(first)["relative"] == "a.mp4"
    first.close()  # killed after the first video
    rest = list(run_archive(list_archive(folder), out, stream_of(model, cache=cache), content_key))
    assert [e["relative"] for e in rest] == ["b_broken.mp4", "c.mp4", "d.mp4"]
    calls = model.calls
    again = list(run_archive(list_archive(folder), tmp_path / "out2", stream_of(model, cache=cache), content_key))
    assert [e["status"] for e in again] == ["ok", "error", "ok", "ok"] and model.calls == calls  # all from the cache
    for name in ("a.mp4", "c.mp4", "d.mp4"):
        assert (json.loads((out / f"{name}.json").read_text())["segments"]
                == json.loads((tmp_path / "out2" / f"{name}.json").read_text())["segments"])


def test_without_on_error_a_bad_video_raises_its_one_line(folder):
    with pytest.raises(ActionrecError, match="b_broken.mp4"):
        list(timeline_iter([folder / "a.mp4", folder / "b_broken.mp4"], ColourModel(), cache=False))


def test_real_clips_through_the_real_network_in_one_stream_match_one_at_a_time(i3d_kinetics, tmp_path):
    """i3d-kinetics400 (its per-step path, batches of one chunk) on real UCF101 clips, a bad file in the middle."""
    if not UCF.is_dir():
        pytest.skip(f"{UCF} is absent: the real-clip checks need ../shared")
    clips = [UCF / "BabyCrawling" / "v_BabyCrawling_g01_c01.avi", UCF / "ApplyLipstick" / "v_ApplyLipstick_g01_c01.avi"]
    (tmp_path / "bad.avi").write_bytes(b"\x00" * 100)
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{clips[0]}\n{tmp_path / 'bad.avi'}\n{clips[1]}\n")
    engine = engine_for(i3d_kinetics)
    errors = []
    got = list(timeline_iter([i.video for i in list_archive(listing)], engine, cache=tmp_path / "cache",
                             on_error=lambda v, m: errors.append(v)))
    assert [tl.video for tl in got] == [str(c) for c in clips] and errors == [str(tmp_path / "bad.avi")]
    for tl, clip in zip(got, clips):
        alone = timeline(clip, engine, cache=False)
        np.testing.assert_allclose(tl.windows.probs, alone.windows.probs, rtol=0, atol=1e-5)
        assert [s.to_dict() for s in tl.segments] == [s.to_dict() for s in alone.segments]
    before = engine.clips_run
    cached = list(timeline_iter([str(c) for c in clips], engine, cache=tmp_path / "cache"))
    assert engine.clips_run == before and all(tl.from_cache for tl in cached)
