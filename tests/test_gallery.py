"""The error gallery: which clips it shows and in what order, frames from the real decoder spread over the video,
and an entry that survives a clip that can no longer be read."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image
from videos import coded_frames, decode_index, write_video

from actionrec.errors import ActionrecError
from actionrec.training.gallery import (
    Miss,
    gallery_section,
    misclassified,
    thumbnail_strip,
)

CLASSES = ["Jump", "Run", "Walk"]


@pytest.fixture(scope="module")
def coded_video(tmp_path_factory):
    """60 frames of 96x72 (short side 72: the strip keeps the size), each showing its own index."""
    return write_video(tmp_path_factory.mktemp("gallery") / "v_Jump_g01_c01.mp4", coded_frames(60, 72, 96), 25)


def test_misclassified_keeps_the_wrong_ones_most_confident_first():
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.05, 0.05, 0.9], [0.1, 0.2, 0.7]])
    misses = misclassified(["a", "b", "c", "d"], [0, 0, 2, 1], probs, CLASSES)
    assert [(m.video, m.true, m.predicted) for m in misses] == [("d", "Run", "Walk"), ("b", "Jump", "Run")]
    assert misses[0].confidence == pytest.approx(0.7) and misses[1].probs == {"Jump": 0.3, "Run": 0.6, "Walk": 0.1}


def test_misclassified_refuses_shapes_that_do_not_match():
    with pytest.raises(ActionrecError, match="error gallery"):
        misclassified(["a", "b"], [0, 1], np.zeros((2, 2)), CLASSES)


def test_the_strip_shows_frames_spread_over_the_whole_video(coded_video):
    strip = Image.open(io.BytesIO(thumbnail_strip(coded_video, frames=6, height=72)))
    assert strip.format == "JPEG" and strip.size == (6 * 96, 72)
    tiles = np.asarray(strip.convert("RGB"))
    indices = [decode_index(tiles[:, k * 96 : (k + 1) * 96]) for k in range(6)]
    centres = [(k + 0.5) * 10 for k in range(6)]  # the middle of each sixth of the 60 frames
    assert all(abs(i - c) <= 1 for i, c in zip(indices, centres)), indices


def test_the_section_inlines_one_strip_per_miss_with_classes_and_probabilities(coded_video):
    miss = Miss(str(coded_video), "Jump", "Run <b>", {"Jump": 0.25, "Run <b>": 0.7, "Walk": 0.05})
    page = gallery_section([miss], total=40)
    assert page.startswith('<section class="gallery">') and page.endswith("</section>")
    images = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 and Image.open(io.BytesIO(base64.b64decode(images[0]))).size == (6 * 96, 72)
    assert "1 video(s) of 40 misclassified" in page and "v_Jump_g01_c01.mp4" in page
    assert "Run &lt;b&gt;" in page and "<b>Run <b>" not in page  # class names are escaped
    assert "70.0 %" in page and "25.0 %" in page and "(true)" in page and "(predicted)" in page


def test_a_clip_that_cannot_be_read_keeps_its_entry_with_the_reason(tmp_path):
    broken = tmp_path / "gone.avi"
    broken.write_bytes(b"not a video")
    page = gallery_section([Miss(str(broken), "Jump", "Walk", {"Jump": 0.4, "Walk": 0.6})])
    assert "gone.avi" in page and "no thumbnails:" in page and "data:image" not in page


def test_entries_beyond_the_limit_are_listed_without_frames(coded_video):
    misses = [Miss(str(coded_video), "Jump", "Walk", {"Jump": 0.4, "Walk": 0.6})] * 3
    page = gallery_section(misses, max_shown=1)
    assert page.count("data:image/jpeg") == 1 and page.count('class="miss"') == 3 and "2 more shown without frames" in page


def test_no_mistakes_says_so():
    assert "every test video of 12 was classified correctly" in gallery_section([], total=12)
