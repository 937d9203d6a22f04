"""Mirrored views (features.mirrored): the same frames as the view they name, flipped left-right, cached as entries of
their own; on tiny real videos through the real decoder, with a stand-in network that sees left from right."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from actionrec.training.features import FeatureCache, Sampling, mirrored, read_entry, uniform_view
from videos import coded_frames, write_video

ENDPOINT = "Mixed_4f"


class LeftMinusRight(nn.Module):
    """Stand-in backbone: the activation is the clip's mean colour on its left half minus its right half (B, 3), so a
    mirror image gives the negated activation and any other clip another one."""

    def __init__(self):
        super().__init__()
        from actionrec.models.i3d import I3D_KINETICS400
        from actionrec.models.info import ModelInfo

        spec = dataclasses.replace(I3D_KINETICS400, name="left-right", resize=32, crop=32, sha256="")
        self.info = ModelInfo(name="left-right", spec=spec, categories=("a", "b"), weights_sha256="left-right-1",
                              predict_frames=8, identity="left-right-1")
        self.w = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 2)

    def forward_until(self, x: torch.Tensor, endpoint: str) -> torch.Tensor:
        half = x.shape[-1] // 2
        return x[..., :half].mean(dim=(2, 3, 4)) - x[..., -half:].mean(dim=(2, 3, 4))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    return str(write_video(tmp_path_factory.mktemp("videos") / "v.mp4", coded_frames(40), fps=25.0))


def test_mirrored_view_names():
    assert mirrored(0) == "0m" and mirrored("u1of2") == "u1of2m"
    assert uniform_view("u1of2m") == uniform_view("u1of2") == (1, 2)
    assert uniform_view("0m") is None and uniform_view(0) is None


def test_mirrored_views_are_the_same_frames_flipped(video, tmp_path):
    cache = FeatureCache(LeftMinusRight(), ENDPOINT, Sampling(frames=8), root=tmp_path)
    views = [0, "u0of2", "u1of2", 1]
    found = cache.extract([video], views=[*views, *map(mirrored, views)])
    assert cache.backbone_calls == 2 * len(views)  # each mirrored view is an entry of its own
    entry = {view: read_entry(found[(video, view)]).astype(np.float64) for view in [*views, *map(mirrored, views)]}
    for view in views:
        assert np.abs(entry[view]).max() > 1e-3  # the stand-in sees the asymmetry of the frames
        np.testing.assert_allclose(entry[mirrored(view)], -entry[view], atol=2e-3)  # float16 entries
    assert np.abs(entry["u0of2"] - entry["u1of2"]).max() > 1e-3  # other frames, other numbers
    plans = [cache.plan("ab" * 8, view) for view in (0, "0m", "u1of2m")]
    assert [p.flip for p in plans] == [False, True, True] and all(p.crop_shift == (0.0, 0.0) for p in plans)
    assert cache.plan("ab" * 8, "1m").flip != cache.plan("ab" * 8, 1).flip  # an augmented view mirrored once more
    assert cache.plan("ab" * 8, "1m").crop_shift == cache.plan("ab" * 8, 1).crop_shift


def test_a_segments_clip_mirrored(video, tmp_path):
    cache = FeatureCache(LeftMinusRight(), ENDPOINT, Sampling(frames=8), root=tmp_path)
    segment = f"{video}#t=0.2,1.4"
    found = cache.extract([segment], views=[0, "0m"])
    a, b = (read_entry(found[(segment, v)]).astype(np.float64) for v in (0, "0m"))
    assert found[(segment, 0)] != found[(segment, "0m")]
    np.testing.assert_allclose(b, -a, atol=2e-3)
