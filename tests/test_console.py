"""What long jobs show on stderr: a skipped file gets a line of its own even while a progress bar is drawn."""

from __future__ import annotations

from actionrec.console import Skipped, progress_bar, progress_callback


def test_a_skipped_line_is_not_glued_to_the_progress_bar(capsys):
    bar = progress_bar("features", "video", enabled=True, total=4)
    bar.update(1)
    bar.refresh()
    skipped = Skipped()
    skipped("bad.mp4", "bad.mp4: damaged or not a video")
    skipped("worse.mp4", "no frames")
    bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "features" in err  # the bar was drawn
    shown = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]  # what a terminal shows after each carriage return
    assert "skipped: bad.mp4: damaged or not a video" in shown
    assert "skipped: worse.mp4: no frames" in shown
    for line in err.split("\n"):
        if "skipped:" in line:
            assert line.rsplit("\r", 1)[-1].startswith("skipped:"), repr(line)  # the bar was cleared before it
    assert skipped.videos == ["bad.mp4", "worse.mp4"] and skipped.files[1] == {"video": "worse.mp4", "error": "no frames"}


def test_disabled_bars_draw_nothing_and_callbacks_still_work(capsys):
    update, close = progress_callback("timeline", "window", enabled=False)
    update(3, 10)
    close()
    bar = progress_bar("features", "video", enabled=False, total=2)
    bar.update(2)
    bar.close()
    assert capsys.readouterr().err == ""
